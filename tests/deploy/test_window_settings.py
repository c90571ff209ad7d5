"""Settings over the air on the terminal: how layers apply, what is refused before
anything changes, and how a pending bundle is kept or rolled back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.bundle import MANIFEST
from agent.config import load_site
from agent.overrides import (
    OVERRIDABLE,
    OVERRIDES_FILE,
    Layer,
    OverrideError,
    Overrides,
    apply_overrides,
    check_fields,
)
from agent.update import Updater
from agent.window_settings import WindowSettings
from server.bundles import build_bundle
from server.policy.window_settings import compose
from tests.conftest import EXAMPLE_SITE

SITE = load_site(EXAMPLE_SITE)
W03 = SITE.window("w03")


def layer(scope: str, push_id: int, **fields: Any) -> Layer:
    return Layer(scope=scope, push_id=push_id, by="ann", at_ms=1, fields=fields)


def doc(*layers: Layer, window: str = "w03") -> Overrides:
    return Overrides(site="qingpu", window=window, layers=layers)


def settings_bundle(key: Ed25519PrivateKey, overrides: Overrides, serial: int) -> bytes:
    return build_bundle(
        {OVERRIDES_FILE: overrides.model_dump_json().encode()},
        version=f"settings-{serial}",
        serial=serial,
        key=key,
        targets=[f"{overrides.site}/{overrides.window}"],
        kind="settings",
    )


# ------------------------------------------------------------------ layering


def test_the_narrowest_latest_layer_wins_and_each_field_says_where_it_came_from() -> None:
    eff = apply_overrides(
        W03,
        doc(
            layer("district:青浦区", 1, **{"rules.greet_within_s": 6.0, "camera.idle_fps": 1.0}),
            layer("window:qingpu/w03", 4, **{"rules.greet_within_s": 7.5}),
        ),
    )
    assert eff.window.rules.greet_within_s == 7.5
    assert eff.window.camera.idle_fps == 1.0
    assert eff.window.rules.stand_within_s == W03.rules.stand_within_s  # untouched
    assert eff.window.gpio == W03.gpio
    assert eff.sources == {
        "rules.greet_within_s": "window:qingpu/w03 (push 4)",
        "camera.idle_fps": "district:青浦区 (push 1)",
    }


def test_the_server_orders_pushes_broadest_first_and_leaves_out_withdrawn_ones() -> None:
    rows = [
        {"id": 5, "scope": "window:qingpu/w03", "fields": {"rules.greet_within_s": 9.0}},
        {"id": 2, "scope": "all", "fields": {"rules.greet_within_s": 5.0}},
        {"id": 3, "scope": "district:青浦区", "fields": {"rules.greet_within_s": 6.0}},
        {"id": 4, "scope": "district:青浦区", "fields": {"rules.see_off_s": 2.0}},
        {"id": 6, "scope": "site:qingpu", "fields": {"label": "x"}, "withdrawn_ms": 9},
        {"id": 7, "scope": "district:松江区", "fields": {"rules.see_off_s": 9.0}},
        {"id": 8, "scope": "window:qingpu/w04", "fields": {"rules.see_off_s": 9.0}},
    ]
    for r in rows:
        r.update(by="ann", at_ms=1, note="")
        r.setdefault("withdrawn_ms", None)
    got = compose(rows, "qingpu", "w03", "青浦区")
    assert [layer.push_id for layer in got.layers] == [2, 3, 4, 5]
    eff = apply_overrides(W03, got)
    assert eff.window.rules.greet_within_s == 9.0
    assert eff.window.rules.see_off_s == 2.0


# ------------------------------------------------------------------ refusals


def test_wiring_role_and_broker_cannot_be_sent_over_the_air() -> None:
    assert "gpio.sign_sensor" not in OVERRIDABLE
    assert "role" not in OVERRIDABLE
    assert "camera.device" not in OVERRIDABLE
    problems = check_fields({"gpio.sign_sensor": 5, "role": "help_desk", "rules.see_off_s": 2})
    assert len(problems) == 2
    assert problems[0].startswith("gpio.sign_sensor: may not be set over the air")
    with pytest.raises(OverrideError, match=r"gpio\.sign_sensor: may not be set"):
        apply_overrides(W03, doc(layer("all", 1, **{"gpio.sign_sensor": 5})))


def test_a_value_out_of_range_is_named_on_the_server_and_on_the_terminal() -> None:
    assert check_fields({"rules.greet_within_s": -1}) == [
        "rules.greet_within_s: Input should be greater than 0"
    ]
    assert check_fields({"rules.greet_within_s": 6, "camera.idle_fps": 2}) == []
    with pytest.raises(OverrideError) as err:
        apply_overrides(W03, doc(layer("all", 1, **{"rules.greet_within_s": -1})))
    assert err.value.problems == ["rules.greet_within_s: Input should be greater than 0"]


def test_a_value_that_contradicts_the_window_file_is_refused_by_the_terminal() -> None:
    """The server checks a field against the defaults; only the terminal knows its own
    window file: here its too-broad threshold is below the smile threshold pushed."""
    strict = W03.model_copy(
        update={"rules": W03.rules.model_copy(update={"too_broad_threshold": 0.9})}
    )
    fields = {"rules.smile_threshold": 0.95}
    assert check_fields(fields) == []
    with pytest.raises(OverrideError, match="rules: too_broad_threshold must be above"):
        apply_overrides(strict, doc(layer("district:青浦区", 1, **fields)))


# ------------------------------------------------------------------ the updater


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_a_good_bundle_is_installed_pending_and_confirmed(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    ws = WindowSettings(tmp_path / "settings", [key.public_key()], "qingpu", W03)
    assert ws.load().serial is None  # serial 0: the window file only
    report = ws.updater.apply(
        settings_bundle(key, doc(layer("all", 1, **{"rules.greet_within_s": 6.0})), 3)
    )
    assert report.ok, report.steps
    assert [s.step for s in report.steps] == [
        "receive",
        "verify_signature",
        "verify_checksums",
        "verify_manifest",
        "validate",
        "unpack",
        "swap",
        "check",
    ]
    state = ws.load()
    assert state.serial == 3 and state.error is None
    assert state.effective.window.rules.greet_within_s == 6.0
    assert ws.updater.pending() == 3
    ws.updater.confirm()
    assert ws.updater.pending() is None


def test_a_bad_bundle_is_refused_before_anything_changes_and_not_retried(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    ws = WindowSettings(tmp_path / "settings", [key.public_key()], "qingpu", W03)
    ok = settings_bundle(key, doc(layer("all", 1, **{"rules.greet_within_s": 6.0})), 3)
    assert ws.updater.apply(ok).ok
    bad = settings_bundle(key, doc(layer("all", 2, **{"rules.greet_within_s": -1})), 4)
    report = ws.updater.apply(bad)
    assert not report.ok
    assert report.steps[-1].step == "validate"
    assert "rules.greet_within_s" in report.steps[-1].detail
    assert ws.updater.current_serial() == 3  # nothing moved
    assert ws.load().effective.window.rules.greet_within_s == 6.0
    assert ws.updater.last_failure() == (
        "serial 4 validate: rules.greet_within_s: Input should be greater than 0"
    )
    assert ws.updater.apply(bad).skipped  # the retained message at every reconnect
    # Another centre's document in a bundle addressed to us is refused too.
    foreign = Overrides(site="songjiang", window="w03", layers=(layer("all", 3, label="x"),))
    data = build_bundle(
        {OVERRIDES_FILE: foreign.model_dump_json().encode()},
        version="s5",
        serial=5,
        key=key,
        targets=["qingpu/w03"],
        kind="settings",
    )
    assert "site: overrides for 'songjiang'" in ws.updater.apply(data).steps[-1].detail


def test_models_and_settings_bundles_are_not_taken_for_each_other(
    tmp_path: Path, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    from server.bundles import model_files

    ws = WindowSettings(tmp_path / "settings", [key.public_key()], "qingpu", W03)
    models = build_bundle(model_files(models_dir), version="m", serial=9, key=key)
    assert ws.updater.apply(models).steps[-1].detail == "a models bundle, not settings"
    up = Updater(tmp_path / "bundles", [key.public_key()], identity="qingpu/w03")
    settings = settings_bundle(key, doc(layer("all", 1, label="x")), 9)
    assert up.apply(settings).steps[-1].detail == "a settings bundle, not models"


def test_a_models_manifest_is_signed_without_kind_as_before() -> None:
    """Terminals from before settings bundles refuse unknown manifest fields."""
    import io
    import zipfile

    key = Ed25519PrivateKey.generate()
    data = build_bundle({"smile.onnx": b"x"}, version="v", serial=1, key=key)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read(MANIFEST))
    assert "kind" not in manifest
    settings = settings_bundle(key, doc(layer("all", 1, label="x")), 2)
    assert json.loads(zipfile.ZipFile(io.BytesIO(settings)).read(MANIFEST))["kind"] == "settings"


def test_an_unhealthy_agent_rolls_the_pending_bundle_back(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    ws = WindowSettings(tmp_path / "settings", [key.public_key()], "qingpu", W03)
    assert ws.updater.roll_back_pending("unhealthy") is None  # nothing pending: nothing to do
    first = settings_bundle(key, doc(layer("all", 1, **{"rules.greet_within_s": 6.0})), 3)
    assert ws.updater.apply(first).ok
    ws.updater.confirm()
    second = settings_bundle(key, doc(layer("all", 2, **{"camera.active_fps": 15.0})), 4)
    assert ws.updater.apply(second).ok
    report = ws.updater.roll_back_pending("agent unhealthy 5 s after start")
    assert report is not None and report.steps[-1].step == "rollback" and report.steps[-1].ok
    assert ws.updater.current_serial() == 3
    assert ws.load().effective.window.camera.active_fps == W03.camera.active_fps
    assert ws.updater.last_failure() == "serial 4 check: agent unhealthy 5 s after start"
    assert ws.updater.apply(second).skipped  # never retried


def test_config_show_prints_each_field_with_where_it_came_from(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    state = tmp_path / "state"
    ws = WindowSettings(state / "settings", [key.public_key()], "qingpu", W03)
    pushed = doc(layer("district:青浦区", 7, **{"rules.greet_within_s": 6.0}))
    assert ws.updater.apply(settings_bundle(key, pushed, 3)).ok
    out = subprocess.run(
        [
            *(sys.executable, "-m", "agent.cli", "config", "show"),
            *("--site", str(EXAMPLE_SITE), "--window", "w03", "--state-dir", str(state)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert lines[1] == "# settings serial 3: push 7 (district:青浦区, by ann)"
    assert "rules.greet_within_s = 6.0  # district:青浦区 (push 7)" in lines
    assert "gpio.sign_sensor = 22  # window file" in lines
    assert f"rules.presence_hold_s = {W03.rules.presence_hold_s}  # default" in lines
