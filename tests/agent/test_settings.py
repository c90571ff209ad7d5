"""The agent's environment: read once, typed, and a bad value named at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.directory import ClerkDirectory, Credentials
from agent.settings import AgentEnv, AgentEnvError, load_clerk_directory
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


# --------------------------------------------------------------------------- clerk directory


def directory_file(tmp_path: Path, site: str = "qingpu") -> Path:
    d = ClerkDirectory.build(site, {"c-li": Credentials(badges=("0012345678",), pin="1234")})
    path = tmp_path / f"{site}.clerks.json"
    path.write_text(d.model_dump_json(indent=1))  # as `warmwindow clerks directory` writes it
    return path


def test_the_clerk_directory_is_loaded_for_its_own_site(tmp_path: Path) -> None:
    path = directory_file(tmp_path)
    env = AgentEnv.read({"WW_CLERK_DIRECTORY": str(path)})
    assert env.clerk_directory == path
    directory = load_clerk_directory(path, "qingpu")
    assert directory.clerk_ids == {"c-li"}
    assert directory.lookup("pin", "1234").clerk_id == "c-li"
    assert AgentEnv.read({"WW_CLERK_DIRECTORY": ""}).clerk_directory is None
    assert AgentEnv.read({}).clerk_directory is None


def test_a_missing_clerk_directory_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(AgentEnvError, match=r"^WW_CLERK_DIRECTORY: .*missing.json does not exist"):
        AgentEnv.read({"WW_CLERK_DIRECTORY": str(tmp_path / "missing.json")})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a clerk directory: (file): Invalid JSON"),
        ('{"site": "qingpu"}', "not a clerk directory: salt: Field required"),
        ('{"site": "qingpu", "salt": "00", "clerks": []}', "salt: String should match"),
        ("[]", "not a clerk directory: (file): Input should be an object"),
    ],
)
def test_a_bad_clerk_directory_names_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "clerks.json"
    path.write_text(content)
    with pytest.raises(AgentEnvError) as err:
        load_clerk_directory(path, "qingpu")
    assert str(err.value).startswith(f"WW_CLERK_DIRECTORY: {path}: ")
    assert problem in str(err.value)


def test_two_clerks_with_one_pin_is_named(tmp_path: Path) -> None:
    good = ClerkDirectory.model_validate_json(directory_file(tmp_path).read_text())
    row = good.clerks[0].model_dump()
    twin = {**row, "clerk_id": "c-wang", "badges": []}
    path = tmp_path / "twins.json"
    path.write_text(
        json.dumps({"site": "qingpu", "salt": good.salt, "clerks": [row, twin]}, default=list)
    )
    with pytest.raises(AgentEnvError, match="c-wang and c-li have the same PIN"):
        load_clerk_directory(path, "qingpu")


def test_another_centres_directory_is_refused(tmp_path: Path) -> None:
    path = directory_file(tmp_path, site="xujiahui")
    with pytest.raises(AgentEnvError) as err:
        load_clerk_directory(path, "qingpu")
    said = str(err.value)
    assert said.startswith(f"WW_CLERK_DIRECTORY: {path}: the directory of site 'xujiahui'")
    assert "not of this window's site 'qingpu'" in said
    assert "warmwindow clerks directory --site qingpu" in said


def test_an_unreadable_clerk_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(AgentEnvError, match=r"WW_CLERK_DIRECTORY: .*: cannot be read"):
        load_clerk_directory(tmp_path, "qingpu")  # a directory, not a file
