"""Signed bundles: refused unless signed and intact; swapped atomically; rolled back when
the new model does not load, with the old one still loading and running.

The model check is the real one (onnxruntime in a child process) on the real shipped
models, so "the old model keeps running" means exactly that.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.update import (
    MANIFEST,
    SIGNATURE,
    BundleError,
    Updater,
    UpdateReport,
    UpdateWorker,
    check_release,
    check_release_in_child,
    is_bundle,
    load_public_key,
    verify_bundle,
)
from server.bundles import build_bundle, generate_key, load_private_key, model_files

ME = "s1/w01"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Ed25519PrivateKey:
    path = tmp_path_factory.mktemp("keys") / "bundle-signing.key"
    pub = generate_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert load_public_key(pub) == load_private_key(path).public_key()
    return load_private_key(path)


@pytest.fixture
def updater(tmp_path: Path, key: Ed25519PrivateKey, models_dir: Path) -> Updater:
    up = Updater(tmp_path / "bundles", [key.public_key()], identity=ME)
    up.seed(models_dir)
    return up


def bundle(key: Ed25519PrivateKey, models: Path, serial: int = 2) -> bytes:
    files = model_files(models)
    return build_bundle(files, version=f"v{serial}", serial=serial, key=key, targets=[ME])


def rezip(data: bytes, change: Callable[[str, bytes], bytes | None]) -> bytes:
    """Copy a bundle member by member through ``change`` (None drops the member)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            new = change(name, src.read(name))
            if new is not None:
                dst.writestr(name, new)
    return out.getvalue()


def test_good_bundle_swaps_and_reports_every_step(
    updater: Updater, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    before = updater.current()
    data = bundle(key, models_dir, 2)
    assert is_bundle(data)
    report = updater.apply(data)
    assert report.ok, report.steps
    assert [s.step for s in report.steps] == [
        "receive",
        "verify_signature",
        "verify_checksums",
        "verify_manifest",
        "unpack",
        "swap",
        "check",
    ]
    assert all(s.ok for s in report.steps)
    assert updater.current() is not None and updater.current() != before
    assert updater.current_serial() == 2
    assert updater.previous_link.resolve() == before
    check_release(updater.model_dir)  # the agent's model dir works
    # The retained message comes again at the next reconnect: nothing is redone.
    again = updater.apply(data)
    assert again.skipped and not again.ok and updater.current_serial() == 2
    assert len(report.replies()) == len(report.steps)


def test_unsigned_bundle_is_refused(
    updater: Updater, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    before = updater.current()
    unsigned = rezip(bundle(key, models_dir), lambda n, b: None if n == SIGNATURE else b)
    report = updater.apply(unsigned)
    assert not report.ok
    assert report.steps[-1].step == "verify_signature" and not report.steps[-1].ok
    assert updater.current() == before


def test_bundle_signed_by_another_key_is_refused(updater: Updater, models_dir: Path) -> None:
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(BundleError, match="signature"):
        verify_bundle(bundle(stranger, models_dir), updater.trusted)
    assert not updater.apply(bundle(stranger, models_dir)).ok


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda n, b: b[:-1] + bytes([b[-1] ^ 1]) if n == "files/smile.onnx" else b,
            id="model-byte-flipped",
        ),
        pytest.param(
            lambda n, b: b.replace(b'"serial": 2', b'"serial": 9') if n == MANIFEST else b,
            id="manifest-edited",
        ),
        pytest.param(lambda n, b: None if n == "files/smile.onnx" else b, id="file-removed"),
    ],
)
def test_tampered_bundle_is_refused(
    updater: Updater,
    key: Ed25519PrivateKey,
    tamper: Callable[[str, bytes], bytes | None],
    models_dir: Path,
) -> None:
    before = updater.current()
    report = updater.apply(rezip(bundle(key, models_dir), tamper))
    assert not report.ok
    assert not report.steps[-1].ok
    assert report.steps[-1].step in ("verify_signature", "verify_checksums")
    assert updater.current() == before
    assert not any(p.name.startswith("2-") for p in updater.releases.iterdir())


def test_extra_unlisted_file_is_refused(
    updater: Updater, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    data = bundle(key, models_dir)
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr("files/../../etc/cron.d/evil", b"* * * * * root sh")
    report = updater.apply(out.getvalue())
    assert not report.ok and report.steps[-1].step == "verify_checksums"


def test_bundle_for_another_window_or_older_serial_is_refused(
    updater: Updater, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    other = build_bundle(
        model_files(models_dir), version="v5", serial=5, key=key, targets=["s1/w02"]
    )
    report = updater.apply(other)
    assert not report.ok and "not for" in report.steps[-1].detail
    assert updater.apply(bundle(key, models_dir, 4)).ok
    downgrade = updater.apply(bundle(key, models_dir, 3))
    assert not downgrade.ok and "downgrade" in downgrade.steps[-1].detail
    assert updater.current_serial() == 4


def test_model_that_fails_to_load_is_rolled_back_and_old_keeps_running(
    updater: Updater, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    assert updater.apply(bundle(key, models_dir, 2)).ok
    good = updater.current()
    # The models manifest would catch the mismatch too; drop it so onnxruntime must.
    files = model_files(models_dir)
    files["smile.onnx"] = b"\x08\x07 not an onnx model"
    del files["manifest.json"]
    broken = build_bundle(files, version="v3", serial=3, key=key, targets=[ME])
    report = updater.apply(broken)
    steps = {s.step: s for s in report.steps}
    assert not report.ok
    assert steps["swap"].ok, "the new release was swapped in before the check"
    assert not steps["check"].ok and "smile.onnx" in steps["check"].detail
    assert steps["rollback"].ok
    assert updater.current() == good and updater.current_serial() == 2
    check_release_in_child(updater.model_dir)  # the old model loads and runs
    # The failed serial is remembered: its retained message does not trigger a retry.
    assert updater.apply(broken).skipped
    assert json.loads(updater.state_path.read_text())["failed_serial"] == 3


def test_old_releases_are_pruned_but_current_and_previous_kept(
    tmp_path: Path, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    up = Updater(tmp_path / "b", [key.public_key()], identity=ME, check=lambda p: None, keep=2)
    up.seed(models_dir)
    for serial in range(2, 6):
        assert up.apply(bundle(key, models_dir, serial)).ok
    names = sorted(p.name for p in up.releases.iterdir())
    assert names == ["4-v4", "5-v5"]
    assert up.current_serial() == 5 and up.previous_link.resolve().name == "4-v4"


def test_release_the_agent_never_confirms_is_rolled_back_at_boot(
    tmp_path: Path, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    """The model check passed, but the agent keeps crashing with the release."""
    up = Updater(tmp_path / "b", [key.public_key()], identity=ME, check=lambda p: None)
    up.seed(models_dir)
    assert up.apply(bundle(key, models_dir, 2)).ok
    up.confirm()
    assert up.apply(bundle(key, models_dir, 3)).ok
    assert [up.boot_check(max_boots=2) for _ in range(2)] == [None, None]
    report = up.boot_check(max_boots=2)
    assert report is not None and report.steps[-1].step == "rollback" and report.steps[-1].ok
    assert up.current_serial() == 2
    assert up.apply(bundle(key, models_dir, 3)).skipped  # not retried from the retained message
    # A confirmed release is never rolled back by the guard.
    assert all(up.boot_check(max_boots=2) is None for _ in range(5))
    assert up.current_serial() == 2


def test_worker_applies_off_thread_and_reports(
    tmp_path: Path, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    up = Updater(tmp_path / "b", [key.public_key()], identity=ME, check=lambda p: None)
    up.seed(models_dir)
    reports: list[UpdateReport] = []
    installed: list[UpdateReport] = []
    with UpdateWorker(up, on_report=reports.append, on_installed=installed.append) as worker:
        worker.submit(b'{"not": "a bundle"}')  # other config payloads are not ours
        worker.submit(bundle(key, models_dir, 2))
        deadline = time.monotonic() + 10
        while not installed and time.monotonic() < deadline:
            time.sleep(0.02)
        worker.submit(bundle(key, models_dir, 2))  # the retained copy again: skipped, not reported
        worker.submit(rezip(bundle(key, models_dir, 4), lambda n, b: None if n == SIGNATURE else b))
        while len(reports) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [r.ok for r in reports] == [True, False]
    assert installed == reports[:1] and up.current_serial() == 2


def test_models_manifest_must_match_the_models(
    updater: Updater, key: Ed25519PrivateKey, models_dir: Path
) -> None:
    """A signed bundle whose model files and models manifest.json disagree (a botched
    build) is rolled back too: the agent reports its model version from that manifest."""
    files = model_files(models_dir)
    files["smile.onnx"], files["face_detector.onnx"] = (
        files["face_detector.onnx"],
        files["smile.onnx"],
    )
    report = updater.apply(build_bundle(files, version="v2", serial=2, key=key, targets=[ME]))
    steps = {s.step: s for s in report.steps}
    assert not report.ok and "does not match models manifest.json" in steps["check"].detail
    assert steps["rollback"].ok and updater.current_serial() == 0
