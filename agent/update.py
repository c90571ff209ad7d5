"""Signed update bundles on the terminal: verify, stage, swap atomically, check, roll back.

A bundle is a zip file (``server/bundles.py`` builds it; the format is ``agent/bundle.py``,
shared by both sides) holding::

    manifest.json   what is in it: format, version, serial, targets, files (path, sha256, size)
    manifest.sig    the Ed25519 signature of manifest.json's exact bytes (64 bytes)
    files/<path>    the payload: model files (face_detector.onnx, smile.onnx, manifest.json
                    of the models package), optionally window configuration

The signature covers the manifest and the manifest covers every file by SHA-256, so one
signature check plus one hash per file authenticates the whole bundle; a file that is
not listed, or listed and missing, is refused. Zip rather than tar because zipfile never
creates links or devices, which closes the usual "tar slip" tricks before they start.

On disk (``root``, e.g. ``/var/lib/warmwindow/bundles``)::

    releases/<serial>-<version>/   one unpacked bundle each (the newest few are kept)
    current  -> releases/...       what the agent loads models from (the model dir)
    previous -> releases/...       what a rollback returns to
    state.json                     last failed serial, so a retained bad bundle is not
                                   retried at every reconnect

The swap is a symlink flip: a new link is made beside ``current`` and renamed over it,
which POSIX makes atomic; a power cut leaves either the old or the new release, never a
mix. After the flip the release is checked the way the agent will use it (every ONNX
model is loaded with onnxruntime and run on a dummy input, in a child process so that a
model that crashes onnxruntime cannot take the agent with it) and, on failure, the link
is flipped back and the old release checked again.

``Updater.apply`` returns an ``UpdateReport``: one ``StepResult`` per step, for the
caller to publish (``UpdateReport.replies()`` fits today's ``reply`` topic).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, ValidationError

from agent.bundle import (
    FILES,
    MANIFEST,
    MAX_BUNDLE_BYTES,
    SIGNATURE,
    Closed,
    Manifest,
    is_bundle,
    sha256_hex,
)
from agent.protocol import Reply

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S: Final = 120.0

Step = Literal[
    "receive",
    "verify_signature",
    "verify_checksums",
    "verify_manifest",
    "validate",
    "unpack",
    "swap",
    "check",
    "rollback",
]


class BundleError(ValueError):
    """The bundle is refused: not signed by a trusted key, tampered, or not for us."""


class StepResult(Closed):
    """One step of an update, as reported to the server."""

    step: Step
    ok: bool
    detail: Annotated[str, Field(max_length=64)] = ""


@dataclass
class UpdateReport:
    version: str | None
    serial: int | None
    steps: list[StepResult] = field(default_factory=list)
    ok: bool = False
    #: True when the bundle was already installed (or already failed): nothing was done.
    skipped: bool = False

    def add(self, step: Step, ok: bool, detail: str = "") -> StepResult:
        result = StepResult(step=step, ok=ok, detail=_short(detail))
        self.steps.append(result)
        log.log(logging.INFO if ok else logging.WARNING, "update %s: %s", step, detail or "ok")
        return result

    def replies(self) -> list[Reply]:
        """Each step as a ``protocol.Reply`` (cmd_id None), publishable on ``reply`` today."""
        tag = f"{self.serial}-{self.version}" if self.version else "bundle"
        return [
            Reply(cmd_id=None, ok=s.ok, error=_short(f"update {tag} {s.step}: {s.detail or 'ok'}"))
            for s in self.steps
        ]


def _short(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A trusted bundle-signing key: PEM (SubjectPublicKeyInfo) or 32 raw bytes."""
    data = path.read_bytes()
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path} is not an Ed25519 public key")
    return key


# --------------------------------------------------------------------------- verification


def verify_bundle(
    data: bytes,
    trusted: Sequence[Ed25519PublicKey],
    report: UpdateReport | None = None,
    *,
    max_bytes: int = MAX_BUNDLE_BYTES,
) -> tuple[Manifest, dict[str, bytes]]:
    """Check signature, manifest and every file; return them, or raise ``BundleError``.

    Pure (no disk, no clock): usable on the server to check what it is about to push.
    """
    rep = report or UpdateReport(None, None)
    if len(data) > max_bytes:
        rep.add("receive", False, f"{len(data)} bytes > {max_bytes}")
        raise BundleError("bundle too large")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
    except zipfile.BadZipFile as exc:
        rep.add("receive", False, f"not a zip: {exc}")
        raise BundleError("not a bundle") from exc
    if len(names) != len(set(names)):
        rep.add("receive", False, "duplicate member names")
        raise BundleError("duplicate member names")
    if sum(i.file_size for i in zf.infolist()) > max_bytes:
        rep.add("receive", False, "unpacked size too large")
        raise BundleError("unpacked size too large")
    rep.add("receive", True, f"{len(data)} bytes, {len(names)} members")

    if MANIFEST not in names or SIGNATURE not in names:
        rep.add("verify_signature", False, "unsigned: no manifest.sig")
        raise BundleError("unsigned bundle")
    manifest_bytes = zf.read(MANIFEST)
    signature = zf.read(SIGNATURE)
    if not _signed_by_any(manifest_bytes, signature, trusted):
        rep.add("verify_signature", False, "signature not from a trusted key")
        raise BundleError("bad signature")
    rep.add("verify_signature", True)

    try:
        manifest = Manifest.model_validate_json(manifest_bytes)
    except ValidationError as exc:
        err = exc.errors()[0]
        rep.add("verify_manifest", False, f"{'.'.join(map(str, err['loc']))}: {err['msg']}")
        raise BundleError("invalid manifest") from exc
    rep.version, rep.serial = manifest.version, manifest.serial

    listed = {FILES + f.path for f in manifest.files}
    if len(listed) != len(manifest.files):
        rep.add("verify_checksums", False, "a path is listed twice")
        raise BundleError("duplicate paths in manifest")
    extra = set(names) - listed - {MANIFEST, SIGNATURE}
    if extra:
        rep.add("verify_checksums", False, f"unlisted member {sorted(extra)[0]}")
        raise BundleError(f"unlisted members: {sorted(extra)}")
    files: dict[str, bytes] = {}
    for entry in manifest.files:
        name = FILES + entry.path
        if name not in names:
            rep.add("verify_checksums", False, f"missing {entry.path}")
            raise BundleError(f"missing {entry.path}")
        try:
            content = zf.read(name)
        except (zipfile.BadZipFile, OSError) as exc:  # CRC error: damaged in transit
            rep.add("verify_checksums", False, f"{entry.path}: {exc}")
            raise BundleError(f"damaged {entry.path}") from exc
        if len(content) != entry.size or sha256_hex(content) != entry.sha256:
            rep.add("verify_checksums", False, f"{entry.path}: sha256 mismatch")
            raise BundleError(f"checksum mismatch: {entry.path}")
        files[entry.path] = content
    rep.add("verify_checksums", True, f"{len(files)} files")
    return manifest, files


def _signed_by_any(message: bytes, signature: bytes, trusted: Iterable[Ed25519PublicKey]) -> bool:
    for key in trusted:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


# --------------------------------------------------------------------------- model check


def check_release(release: Path) -> None:
    """Load every ONNX model of ``release`` and run it once on a dummy input.

    Also checks the models package's ``manifest.json``, when present, against the files
    (the agent reports its version from it). Raises on the first problem.
    """
    import numpy as np

    from agent.vision.runtime import make_session

    models = sorted(release.glob("*.onnx"))
    if not models:
        raise RuntimeError(f"no .onnx model in {release}")
    listed = release / "manifest.json"
    if listed.exists():
        doc = json.loads(listed.read_text(encoding="utf-8"))
        for item in doc.get("files", []):
            got = sha256_hex((release / item["file"]).read_bytes())
            if got != item["sha256"]:
                raise RuntimeError(f"{item['file']} does not match models manifest.json")
    dtypes = {
        "tensor(float)": np.float32,
        "tensor(float16)": np.float16,
        "tensor(double)": np.float64,
        "tensor(uint8)": np.uint8,
        "tensor(int8)": np.int8,
        "tensor(int32)": np.int32,
        "tensor(int64)": np.int64,
        "tensor(bool)": np.bool_,
    }
    for path in models:
        try:
            session = make_session(path)
        except Exception as exc:  # name the file first: reports keep 64 characters
            raise RuntimeError(f"{path.name} does not load: {exc}".replace(str(path), "")) from exc
        feeds: dict[str, Any] = {}
        for inp in session.get_inputs():
            # Symbolic or unknown dimensions (batch) become 1.
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
            dtype = dtypes.get(inp.type)
            if dtype is None:
                raise RuntimeError(f"{path.name}: unsupported input type {inp.type}")
            feeds[inp.name] = np.zeros(shape, dtype=dtype)
        outputs = session.run(None, feeds)
        if not outputs:
            raise RuntimeError(f"{path.name} produced no output")


def check_release_in_child(release: Path, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """``check_release`` in a child Python, so a crash or hang in onnxruntime stays there."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "agent.update", "check", str(release)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"model check hung for {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"model check exit {proc.returncode}")


# --------------------------------------------------------------------------- updater


class Updater:
    """Installs verified bundles under ``root``; ``model_dir`` is what the agent loads.

    Example::

        up = Updater(Path("/var/lib/warmwindow/bundles"), [load_public_key(pub)],
                     identity="qingpu/w03")
        up.seed(Path(models.__file__).parent)   # first boot: the packaged models
        report = up.apply(payload)              # from the retained config topic
        for reply in report.replies(): ...
    """

    def __init__(
        self,
        root: Path,
        trusted: Sequence[Ed25519PublicKey],
        *,
        identity: str | None = None,
        check: Callable[[Path], None] = check_release_in_child,
        keep: int = 3,
        kind: Literal["models", "settings"] = "models",
        precheck: Callable[[dict[str, bytes]], None] | None = None,
    ) -> None:
        if not trusted:
            raise ValueError("at least one trusted signing key is required")
        self.root = Path(root)
        self.trusted = list(trusted)
        self.identity = identity
        self.check = check
        self.kind = kind
        #: Checks the files before anything on disk changes (a settings bundle's fields
        #: against the window file); raises with what is wrong, reported as ``validate``.
        self.precheck = precheck
        self.keep = max(2, keep)
        self.releases = self.root / "releases"
        self.current_link = self.root / "current"
        self.previous_link = self.root / "previous"
        self.state_path = self.root / "state.json"
        self.failure_path = self.root / "failure.json"
        self.releases.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ state

    @property
    def model_dir(self) -> Path:
        """The directory the agent loads its models from (follows ``current``)."""
        return self.current_link

    def current(self) -> Path | None:
        return self.current_link.resolve() if self.current_link.is_symlink() else None

    def current_serial(self) -> int:
        cur = self.current()
        if cur is None:
            return 0
        try:
            return int(cur.name.split("-", 1)[0])
        except ValueError:
            return 0

    def _state(self) -> dict[str, int]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: int(v) for k, v in data.items() if isinstance(v, int)}

    def _save_state(self, drop: Iterable[str] = (), **values: int) -> None:
        state = {k: v for k, v in self._state().items() if k not in set(drop)}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**state, **values}), encoding="utf-8")
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------------ actions

    def seed(self, source: Path, version: str = "packaged") -> Path:
        """Install ``source`` (the models package dir) as serial 0 if nothing is installed,
        so the very first bundle has something to roll back to."""
        if self.current() is not None:
            return self.current_link
        files = {
            f.name: f.read_bytes()
            for f in source.iterdir()
            if f.is_file() and f.suffix in (".onnx", ".json")
        }
        return self.seed_files(files, version)

    def seed_files(self, files: dict[str, bytes], version: str) -> Path:
        """Install ``files`` as serial 0 if nothing is installed (a settings updater's
        empty overrides), so the first bundle has something to roll back to."""
        if self.current() is not None:
            return self.current_link
        release = self.releases / f"0-{version}"
        if not release.exists():
            staging = self.releases / f".staging-0-{version}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for name, content in files.items():
                (staging / name).write_bytes(content)
            _fsync_tree(staging)
            os.rename(staging, release)
        self._point(self.current_link, release)
        return self.current_link

    def last_failure(self) -> str | None:
        """What the last refused or rolled-back bundle failed at (for the health report):
        ``'serial 9 validate: rules.greet_within_s: ...'``; None once a later one is in."""
        try:
            doc = json.loads(self.failure_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return str(doc.get("text")) if isinstance(doc, dict) and doc.get("text") else None

    def _note_failure(self, report: UpdateReport) -> None:
        failed = next((s for s in report.steps if not s.ok), None)
        if failed is None or report.serial is None:
            return
        text = f"serial {report.serial} {failed.step}: {failed.detail}"
        tmp = self.failure_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"serial": report.serial, "text": text}), encoding="utf-8")
        os.replace(tmp, self.failure_path)

    def _clear_failure(self) -> None:
        self.failure_path.unlink(missing_ok=True)

    def apply(self, data: bytes) -> UpdateReport:
        """Verify, unpack, swap, check; roll back if the check fails. Never raises for a
        bad bundle: the outcome is in the report (``ok``, ``skipped``, ``steps``)."""
        report = UpdateReport(None, None)
        try:
            manifest, files = verify_bundle(data, self.trusted, report)
        except BundleError:
            return report
        if not self._acceptable(manifest, report):
            if not report.skipped:
                self._note_failure(report)
            return report
        if self.precheck is not None:
            try:
                self.precheck(files)
            except Exception as exc:  # whatever the check says, nothing was touched
                report.add("validate", False, str(exc))
                self._save_state(failed_serial=manifest.serial)
                self._note_failure(report)
                return report
            report.add("validate", True, "fits this window")
        release = self.releases / f"{manifest.serial}-{manifest.version}"
        try:
            self._unpack(release, manifest, files)
        except OSError as exc:
            report.add("unpack", False, f"{type(exc).__name__}: {exc}")
            return report
        report.add("unpack", True, release.name)

        old = self.current()
        try:
            self._point(self.current_link, release)
        except OSError as exc:
            report.add("swap", False, str(exc))
            return report
        report.add("swap", True, f"{old.name if old else 'none'} -> {release.name}")

        try:
            self.check(self.current_link)
        except Exception as exc:  # any failure of the new release means: go back
            report.add("check", False, str(exc))
            self._save_state(failed_serial=manifest.serial)
            self._roll_back(old, report)
            self._note_failure(report)
            return report
        report.add("check", True, "models load and run" if self.kind == "models" else "applies")
        self._clear_failure()
        if old is not None:
            self._point(self.previous_link, old)
        # Confirmed only once the restarted agent has run for a while (confirm()).
        self._save_state(pending_serial=manifest.serial, pending_boots=0)
        self._prune()
        report.ok = True
        return report

    # ------------------------------------------------------------------ boot guard

    def boot_check(self, max_boots: int = 3) -> UpdateReport | None:
        """Call once at agent start, before loading models.

        The check proves a model loads and runs in isolation; this catches the rest (the
        agent crash-looping with the new release). A release not yet confirmed gets
        ``max_boots`` starts; at the next one it is rolled back and marked failed.
        Returns a report when it rolled back, else None.
        """
        pending = self.pending()
        if pending is None:
            return None
        boots = self._state().get("pending_boots", 0) + 1
        if boots <= max_boots:
            self._save_state(pending_boots=boots)
            return None
        return self.roll_back_pending(
            f"agent did not confirm serial {pending} in {max_boots} starts"
        )

    def pending(self) -> int | None:
        """The serial installed and not yet confirmed, if any."""
        pending = self._state().get("pending_serial")
        return pending if pending is not None and pending == self.current_serial() else None

    def roll_back_pending(self, reason: str) -> UpdateReport | None:
        """The agent failed its health check on the release not yet confirmed: go back to
        the previous one and never retry this serial. None when nothing is pending."""
        pending = self.pending()
        if pending is None:
            return None
        report = UpdateReport(None, pending)
        report.add("check", False, reason)
        previous = self._resolve(self.previous_link)
        self._save_state(drop=("pending_serial", "pending_boots"), failed_serial=pending)
        self._roll_back(previous, report)
        self._note_failure(report)
        return report

    def confirm(self) -> None:
        """The agent has run healthily on the current release: keep it."""
        if "pending_serial" in self._state():
            self._save_state(drop=("pending_serial", "pending_boots"))

    def _acceptable(self, manifest: Manifest, report: UpdateReport) -> bool:
        if manifest.kind != self.kind:
            report.add("verify_manifest", False, f"a {manifest.kind} bundle, not {self.kind}")
            return False
        if manifest.targets and self.identity not in manifest.targets:
            report.add("verify_manifest", False, f"not for {self.identity}")
            return False
        current = self.current_serial()
        if manifest.serial == current or manifest.serial == self._state().get("failed_serial"):
            # The retained config message comes back at every reconnect.
            report.skipped = True
            report.add("verify_manifest", True, f"serial {manifest.serial} already handled")
            return False
        if manifest.serial < current:
            report.add("verify_manifest", False, f"downgrade {manifest.serial} < {current}")
            return False
        report.add("verify_manifest", True, f"serial {manifest.serial} for {self.identity}")
        return True

    def _unpack(self, release: Path, manifest: Manifest, files: dict[str, bytes]) -> None:
        staging = self.releases / f".staging-{release.name}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(release, ignore_errors=True)  # a half-installed earlier attempt
        staging.mkdir(parents=True)
        base = staging.resolve()
        for entry in manifest.files:
            target = (staging / PurePosixPath(entry.path)).resolve()
            if not target.is_relative_to(base):  # belt and braces: the pattern forbids '..'
                raise OSError(f"path escapes release: {entry.path}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[entry.path])
        (staging / ".bundle-manifest.json").write_text(manifest.model_dump_json())
        _fsync_tree(staging)
        os.rename(staging, release)

    def _roll_back(self, old: Path | None, report: UpdateReport) -> None:
        if old is None:
            self.current_link.unlink(missing_ok=True)
            report.add("rollback", False, "no previous release to return to")
            return
        self._point(self.current_link, old)
        try:
            self.check(self.current_link)
        except Exception as exc:
            report.add("rollback", False, f"old release fails too: {exc}")
            return
        report.add("rollback", True, f"back on {old.name}")

    def _point(self, link: Path, target: Path) -> None:
        """Atomically make ``link`` a symlink to ``target`` (relative, so the tree moves)."""
        tmp = link.with_name(f".{link.name}.{os.getpid()}.{time.monotonic_ns()}")
        tmp.symlink_to(os.path.relpath(target, link.parent))
        os.replace(tmp, link)
        _fsync_dir(link.parent)

    def _prune(self) -> None:
        keep = {p for p in (self.current(), self._resolve(self.previous_link)) if p}
        done = sorted(
            (p for p in self.releases.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: int(p.name.split("-", 1)[0]) if p.name[0].isdigit() else -1,
        )
        for p in done[: max(0, len(done) - self.keep)]:
            if p.resolve() not in keep:
                shutil.rmtree(p, ignore_errors=True)

    @staticmethod
    def _resolve(link: Path) -> Path | None:
        return link.resolve() if link.is_symlink() else None


class UpdateWorker:
    """Applies bundles on a thread of its own: the transport's config handler must not block
    (verifying and checking a model bundle takes seconds on a Pi).

    ``submit`` is that handler: non-bundle payloads are ignored, and only the latest
    pending bundle is kept. ``on_report`` receives every report that did something (to
    publish its ``replies()``); ``on_installed`` is called after a successful swap, e.g.
    to let systemd restart the agent on the new models.
    """

    def __init__(
        self,
        updater: Updater,
        *,
        on_report: Callable[[UpdateReport], None] = lambda r: None,
        on_installed: Callable[[UpdateReport], None] = lambda r: None,
    ) -> None:
        self.updater = updater
        self.on_report = on_report
        self.on_installed = on_installed
        self._pending: bytes | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, payload: bytes) -> None:
        if is_bundle(payload):
            self._pending = payload  # latest wins: an older bundle is superseded anyway
            self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bundle-update", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = CHECK_TIMEOUT_S) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> UpdateWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            payload, self._pending = self._pending, None
            if payload is None or self._stop.is_set():
                continue
            try:
                report = self.updater.apply(payload)
            except Exception:  # a bug here must not end updates for good
                log.exception("bundle update failed")
                continue
            if report.skipped:
                continue
            self.on_report(report)
            if report.ok:
                self.on_installed(report)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush files before the rename that publishes them: an SD card loses unsynced data."""
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agent.update check DIR``: the child process of ``check_release_in_child``."""
    p = argparse.ArgumentParser(prog="python -m agent.update")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="load and run every model of a release directory")
    c.add_argument("release", type=Path)
    args = p.parse_args(argv)
    try:
        check_release(args.release)
    except Exception as exc:
        # The message alone: it becomes a 64-character step detail in the report.
        print(str(exc) or type(exc).__name__, file=sys.stderr)
        return 1
    print(f"{args.release}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
