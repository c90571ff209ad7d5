"""The terminal's settings over the air: the window file plus the installed overrides.

``WindowSettings`` keeps the signed settings bundles (``agent/overrides.py``) the way
``agent/update.py`` keeps model bundles, under ``<state>/settings``::

    releases/<serial>-<version>/overrides.json
    current -> releases/...     what the agent applies on top of its window file
    previous -> releases/...    what a rollback returns to (serial 0: no overrides)

A bundle is validated against this terminal's window file before anything on disk
changes (``validate``: the same pydantic model as ``warmwindow config check``), checked
again after the swap, and then the agent restarts on it when the window is idle. It
stays *pending* until the agent has run healthily on it (``Updater.confirm``); an agent
that fails its health check, or does not come up, is rolled back
(``Updater.roll_back_pending``, ``Updater.boot_check``).

Without a bundle signing key there are no updates, and the window file is all there is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from agent.config import WindowConfig
from agent.directory import ClerkDirectory
from agent.overrides import (
    DIRECTORY_FILE,
    OVERRIDES_FILE,
    Effective,
    OverrideError,
    Overrides,
    apply_overrides,
)
from agent.update import Updater

log = logging.getLogger(__name__)

__all__ = ["SettingsState", "WindowSettings", "installed_overrides", "read_overrides"]


def read_overrides(files: dict[str, bytes]) -> Overrides:
    """The bundle's ``overrides.json``; ``OverrideError`` when it is missing or malformed."""
    raw = files.get(OVERRIDES_FILE)
    if raw is None:
        raise OverrideError([f"{OVERRIDES_FILE}: missing from the bundle"])
    try:
        return Overrides.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors(include_input=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(file)"
        raise OverrideError([f"{OVERRIDES_FILE}: {loc}: {err['msg']}"]) from None


def read_directory(files: dict[str, bytes], site: str) -> ClerkDirectory | None:
    """The bundle's clerk directory, if it carries one, checked for ``site``."""
    raw = files.get(DIRECTORY_FILE)
    if raw is None:
        return None
    try:
        directory = ClerkDirectory.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors(include_input=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(file)"
        raise OverrideError([f"{DIRECTORY_FILE}: {loc}: {err['msg']}"]) from None
    if directory.site != site:
        raise OverrideError([f"{DIRECTORY_FILE}: site {directory.site!r}, not {site!r}"])
    return directory


class SettingsState:
    """What the agent runs with and tells the centre: the effective configuration, the
    serial of the overrides in it (None: none), the last refusal or rollback, and the
    clerk directory the bundle carried (None: none; the agent keeps WW_CLERK_DIRECTORY)."""

    def __init__(
        self,
        effective: Effective,
        serial: int | None,
        error: str | None,
        directory: ClerkDirectory | None = None,
    ) -> None:
        self.effective = effective
        self.serial = serial
        self.error = error
        self.directory = directory


class WindowSettings:
    """Settings bundles for one window (``site``/``base.window``) under ``root``.

    Example::

        settings = WindowSettings(state_dir / "settings", [key], "qingpu", window)
        settings.updater.boot_check()          # before anything uses the configuration
        state = settings.load()                # window file + installed overrides
        worker = UpdateWorker(settings.updater, ...)   # fed from the settings topic
    """

    def __init__(
        self, root: Path, trusted: Sequence[Ed25519PublicKey], site: str, base: WindowConfig
    ) -> None:
        self.site = site
        self.base = base
        self.updater = Updater(
            root,
            trusted,
            identity=f"{site}/{base.window}",
            kind="settings",
            check=self._check_release,
            precheck=self._precheck,
        )
        empty = Overrides(site=site, window=base.window).model_dump_json().encode()
        self.updater.seed_files({OVERRIDES_FILE: empty}, "none")

    def _precheck(self, files: dict[str, bytes]) -> None:
        overrides = read_overrides(files)
        if overrides.site != self.site:
            raise OverrideError([f"site: overrides for {overrides.site!r}, not {self.site!r}"])
        apply_overrides(self.base, overrides)
        read_directory(files, self.site)

    def _check_release(self, release: Path) -> None:
        self._precheck(_release_files(release))

    def load(self) -> SettingsState:
        """The window file with the installed overrides. Overrides that no longer fit
        (the window file was changed locally since) are not applied: the agent runs on
        its window file and says why in its health report."""
        serial = self.updater.current_serial() or None
        release = self.updater.current()
        error = self.updater.last_failure()
        if release is None:
            return SettingsState(Effective(self.base, {}), None, error)
        try:
            files = _release_files(release)
            effective = apply_overrides(self.base, read_overrides(files))
            return SettingsState(effective, serial, error, read_directory(files, self.site))
        except (OSError, OverrideError) as exc:
            log.error("settings serial %s not applied: %s", serial, exc)
            return SettingsState(
                Effective(self.base, {}), None, f"serial {serial} no longer fits: {exc}"[:64]
            )


def _release_files(release: Path) -> dict[str, bytes]:
    return {
        name: (release / name).read_bytes()
        for name in (OVERRIDES_FILE, DIRECTORY_FILE)
        if (release / name).is_file()
    }


def installed_directory(root: Path, site: str) -> ClerkDirectory | None:
    """The clerk directory installed with the settings under ``root``, if any."""
    current = root / "current"
    if not current.is_symlink():
        return None
    return read_directory(_release_files(current.resolve()), site)


def installed_overrides(root: Path) -> tuple[int, Overrides | None]:
    """What ``root`` (``<state>/settings``) has installed: (serial, overrides); (0, None)
    when nothing is. Reads only: for ``warmwindow config show``, which needs no key."""
    current = root / "current"
    if not current.is_symlink():
        return 0, None
    release = current.resolve()
    try:
        serial = int(release.name.split("-", 1)[0])
    except ValueError:
        serial = 0
    raw = (release / OVERRIDES_FILE).read_bytes()
    return serial, read_overrides({OVERRIDES_FILE: raw})
