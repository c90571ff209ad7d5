"""The packaged unit, derived from deploy/systemd/warmwindow-agent.service.

    python3 deploy/deb/make_unit.py deploy/systemd/warmwindow-agent.service OUT

The same unit (watchdog, sandbox, user, restart policy) with the package's paths, and two
guards so an installed but unconfigured terminal neither fails nor reboots
(``StartLimitAction=reboot``): the unit is skipped, not failed, while the site file or
WW_WINDOW is missing. Each change must match the source exactly once: a changed source
unit fails the build here instead of producing a unit that silently lost a line.
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = """\
# WarmWindow window terminal agent (Raspberry Pi), as installed by the warmwindow-agent
# package (built by deploy/deb/build-deb.sh from deploy/systemd/warmwindow-agent.service).
# The window slug and other settings come from /etc/warmwindow/agent.env (WW_WINDOW=w03).
"""

#: (old, new): each old text must occur exactly once in the source unit.
CHANGES: list[tuple[str, str]] = [
    (
        "Documentation=file:///opt/warmwindow/src/deploy/pi/README.md\n",
        "Documentation=man:warmwindow(1)\n"
        "# Installed but not configured: skipped (not failed, so no restart or reboot loop).\n"
        "ConditionPathExists=/etc/warmwindow/site/site.toml\n",
    ),
    (
        "# Models come from the installed bundle (agent/update.py flips this link atomically).\n"
        "Environment=WW_MODEL_DIR=/var/lib/warmwindow/bundles/current\n",
        "# Models: the installed bundle when WW_BUNDLE_KEY is set (the agent seeds it from the\n"
        "# package's models on first start), else the package's own in /opt/warmwindow/lib.\n"
        "# An empty WW_WINDOW skips the start, as a missing site file does.\n"
        'ExecCondition=/usr/bin/test -n "${WW_WINDOW}"\n',
    ),
    (
        "ExecStart=/opt/warmwindow/venv/bin/warmwindow agent ",
        "ExecStart=/opt/warmwindow/bin/warmwindow agent ",
    ),
    (
        "# --- Identity: a dedicated system user (provision.sh creates it).",
        "# --- Identity: a dedicated system user (the package creates it).",
    ),
]


def packaged_unit(source: str) -> str:
    lines = source.splitlines(keepends=True)
    # The source's leading comment block describes provision.sh's install: replaced.
    body = "".join(lines[next(i for i, line in enumerate(lines) if not line.startswith("#")) :])
    for old, new in CHANGES:
        count = body.count(old)
        if count != 1:
            raise SystemExit(
                f"make_unit: expected 1 occurrence in the source unit, found {count}: {old!r}"
            )
        body = body.replace(old, new)
    return HEADER + body


def main() -> None:
    src, out = (Path(a) for a in sys.argv[1:3])
    out.write_text(packaged_unit(src.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
