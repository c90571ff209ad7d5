"""The agent's environment: read once, typed, and a bad value named at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.settings import AgentEnv, AgentEnvError
from tests.conftest import EXAMPLE_SITE, REPO


def test_defaults_when_nothing_is_set() -> None:
    env = AgentEnv.read({})
    assert env.model_dir is None and env.bundle_key is None
    assert env.config_version == "local"


def test_values_are_typed_and_empty_means_unset(tmp_path: Path) -> None:
    key = tmp_path / "bundle.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\n")
    env = AgentEnv.read(
        {
            "WW_MODEL_DIR": str(tmp_path),
            "WW_BUNDLE_KEY": str(key),
            "WW_CONFIG_VERSION": "2026-12-a",
            "WW_WINDOW": "w03",  # the unit's, not the agent's: ignored
        }
    )
    assert env.model_dir == tmp_path and env.bundle_key == key
    assert env.config_version == "2026-12-a"
    assert AgentEnv.read({"WW_MODEL_DIR": "", "WW_BUNDLE_KEY": ""}).model_dir is None


def test_a_bad_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(AgentEnvError) as err:
        AgentEnv.read(
            {"WW_BUNDLE_KEY": str(tmp_path / "missing.pub"), "WW_MODEL_DIR": "/nonexistent"}
        )
    said = str(err.value)
    assert f"WW_BUNDLE_KEY: {tmp_path / 'missing.pub'} does not exist" in said
    assert "WW_MODEL_DIR: /nonexistent is not a directory" in said


def test_the_process_environment_is_what_read_takes_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WW_CONFIG_VERSION", "from-systemd")
    assert AgentEnv.read().config_version == "from-systemd"


def test_the_agent_command_refuses_a_bad_environment(tmp_path: Path) -> None:
    env = {**os.environ, "WW_BUNDLE_KEY": str(tmp_path / "missing.pub")}
    args = ["--site", str(EXAMPLE_SITE), "--window", "w01", "--state-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "agent", *args, "--mock-pins", "--scripted"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "bad environment: WW_BUNDLE_KEY:" in done.stderr
    assert "Traceback" not in done.stderr
