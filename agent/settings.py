"""The window agent's environment, read in one place (like the server's ``ServerEnv``).

``AgentEnv`` reads the ``WW_*`` variables systemd gives the agent (``EnvironmentFile=
/etc/warmwindow/agent.env`` written by ``deploy/pi/provision.sh``, plus the unit's own
``Environment=`` lines; ``WW_WINDOW`` there is the unit's ``--window`` argument, read by
systemd, not by the agent). Nothing is read at import; ``run_agent_cli`` reads it once and
passes each value down explicitly, so no part below the command line looks at
``os.environ`` (the systemd watchdog's ``NOTIFY_SOCKET`` is systemd's protocol and stays
with ``agent/watchdog.py``).

=====================  ==============================================  =====================
Variable               Meaning                                         Default
=====================  ==============================================  =====================
WW_MODEL_DIR           ONNX models directory (``--model-dir`` wins;    the package's models
                       an installed bundle release wins over both)
WW_BUNDLE_KEY          public key that signs update bundles; turns     (none: no updates)
                       the update worker on
WW_CONFIG_VERSION      configuration version the terminal reports      local
WW_CLERK_DIRECTORY     the centre's clerk directory (JSON, written by  (none: no sign-in at
                       ``warmwindow clerks directory --site S --out    the terminal)
                       FILE``); turns on badge and PIN sign-in
WW_HEALTH_S            seconds between health reports                  60
WW_CONFIRM_AFTER_S     a new bundle (models or settings) is kept once  300
                       the agent has run healthily this long on it;
                       an unhealthy agent then rolls it back
=====================  ==============================================  =====================

A malformed value fails at start with the variable's name, e.g.
``WW_BUNDLE_KEY: /etc/warmwindow/missing.pub does not exist``. The clerk directory is
read and checked at start too (``load_clerk_directory``): a file that is not a valid
directory, or one of another centre than the window's site, fails naming the file and
the problem.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.directory import ClerkDirectory

__all__ = ["AgentEnv", "AgentEnvError", "load_clerk_directory"]

#: A directory of a large city is a few MB of digests; anything far bigger is not one.
MAX_DIRECTORY_BYTES = 64 * 1024 * 1024


class AgentEnvError(ValueError):
    """The agent's environment is malformed: names each variable and what is wrong."""


class AgentEnv(BaseSettings):
    """What the agent takes from its environment. ``AgentEnv.read()`` is the way in."""

    model_config = SettingsConfigDict(env_prefix="WW_", extra="ignore", frozen=True)

    model_dir: Path | None = Field(None, description="ONNX models directory")
    bundle_key: Path | None = Field(None, description="bundle signing public key (PEM)")
    config_version: str = Field("local", min_length=1, max_length=64)
    clerk_directory: Path | None = Field(None, description="clerk directory (JSON)")
    health_s: float = Field(60.0, ge=1.0, le=3600.0, description="health report interval")
    confirm_after_s: float = Field(
        300.0, ge=1.0, le=86_400.0, description="healthy run that confirms a new bundle"
    )

    @field_validator("model_dir", "bundle_key", "clerk_directory", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("bundle_key", "clerk_directory")
    @classmethod
    def _key_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} does not exist")
        return v

    @field_validator("model_dir")
    @classmethod
    def _dir_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_dir():
            raise ValueError(f"{v} is not a directory")
        return v

    @classmethod
    def read(cls, env: dict[str, str] | None = None) -> AgentEnv:
        """The environment (``env`` in tests, else the process's), validated; a bad
        value raises ``AgentEnvError`` naming the variable."""
        try:
            if env is None:
                return cls()
            fields = {
                name: env[f"WW_{name.upper()}"]
                for name in cls.model_fields
                if f"WW_{name.upper()}" in env
            }
            return cls.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(
                f"WW_{str(err['loc'][0]).upper()}: {err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors()
            )
            raise AgentEnvError(problems) from None


def load_clerk_directory(path: Path, site: str) -> ClerkDirectory:
    """The clerk directory in ``path`` (``WW_CLERK_DIRECTORY``), checked for the window's
    ``site``; ``AgentEnvError`` names the variable, the file and what is wrong with it
    (unreadable, not JSON, a field that is not a directory's, another centre's)."""

    def bad(problem: str) -> AgentEnvError:
        return AgentEnvError(f"WW_CLERK_DIRECTORY: {path}: {problem}")

    try:
        if path.stat().st_size > MAX_DIRECTORY_BYTES:
            raise bad(f"larger than {MAX_DIRECTORY_BYTES // (1024 * 1024)} MiB")
        raw = path.read_bytes()
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror or exc})") from None
    try:
        directory = ClerkDirectory.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(file)'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_input=False)[:5]
        )
        more = exc.error_count() - 5
        tail = f" (and {more} more)" if more > 0 else ""
        raise bad(f"not a clerk directory: {problems}{tail}") from None
    if directory.site != site:
        raise bad(
            f"the directory of site {directory.site!r}, not of this window's site {site!r} "
            f"(write it with: warmwindow clerks directory --site {site} --out {path})"
        )
    return directory
