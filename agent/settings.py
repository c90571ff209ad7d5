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
=====================  ==============================================  =====================

A malformed value fails at start with the variable's name, e.g.
``WW_BUNDLE_KEY: /etc/warmwindow/missing.pub does not exist``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AgentEnv", "AgentEnvError"]


class AgentEnvError(ValueError):
    """The agent's environment is malformed: names each variable and what is wrong."""


class AgentEnv(BaseSettings):
    """What the agent takes from its environment. ``AgentEnv.read()`` is the way in."""

    model_config = SettingsConfigDict(env_prefix="WW_", extra="ignore", frozen=True)

    model_dir: Path | None = Field(None, description="ONNX models directory")
    bundle_key: Path | None = Field(None, description="bundle signing public key (PEM)")
    config_version: str = Field("local", min_length=1, max_length=64)

    @field_validator("model_dir", "bundle_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("bundle_key")
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
