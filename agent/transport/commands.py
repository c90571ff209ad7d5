"""Answers to ``cmd`` payloads: every payload gets a ``Reply``, whatever it holds.

Pure apart from the handler it calls: bytes in, a reply out. An invalid payload, or a
handler that raises, is answered with ``ok=false`` instead of crashing the transport.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Final

from pydantic import ValidationError

from agent.protocol import Command, Reply

__all__ = ["CommandHandler", "answer", "short"]

log = logging.getLogger(__name__)

CommandHandler = Callable[[Command], Reply | None]
_SHORT: Final = 64  # protocol.ShortText


def short(text: str) -> str:
    """``text`` cut to fit a ``ShortText`` field."""
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def _salvage_cmd_id(payload: bytes) -> uuid.UUID | None:
    """The cmd_id of an invalid command, when it has a usable one, so the reply can be matched."""
    try:
        return uuid.UUID(str(json.loads(payload)["cmd_id"]))
    except Exception:  # not JSON, not an object, no cmd_id, not a UUID: answer with null
        return None


def answer(payload: bytes, handler: CommandHandler | None) -> tuple[Reply, bool]:
    """The reply to ``payload``, and whether the payload failed validation."""
    try:
        cmd = Command.model_validate_json(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        return Reply(
            cmd_id=_salvage_cmd_id(payload),
            ok=False,
            error=short(f"invalid command: {where}: {err['msg']}"),
        ), True
    if handler is None:
        return Reply(cmd_id=cmd.cmd_id, ok=False, error="commands not supported"), False
    try:
        return handler(cmd) or Reply(cmd_id=cmd.cmd_id, ok=True), False
    except Exception as exc:
        log.exception("command handler failed on %s", cmd.action)
        return Reply(
            cmd_id=cmd.cmd_id, ok=False, error=short(f"{type(exc).__name__}: {exc}")
        ), False
