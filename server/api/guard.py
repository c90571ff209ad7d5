"""Refuse, at the door, URLs that carry control characters.

PostgreSQL cannot store NUL in text and refuses any statement that binds one, so a
``%00`` in an id or a ``site=`` would reach the database as a 500. No identifier of this
API (slugs, clerk ids, UUIDs, user names, periods) may contain a control character, so
one check in front of every route answers 400 instead, whatever route it was.
"""

from __future__ import annotations

import json
import re
from typing import Final
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

#: C0 controls and DEL; none belongs in a path or a query of this API.
CONTROL: Final = re.compile(rb"[\x00-\x1f\x7f]")


def has_control(path: str, query: bytes) -> bool:
    raw_path = path.encode("utf-8", "surrogateescape")
    return bool(
        CONTROL.search(raw_path) or CONTROL.search(unquote_to_bytes(query.replace(b"+", b" ")))
    )


class RefuseControlCharacters:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and has_control(
            scope.get("path", ""), scope.get("query_string", b"")
        ):
            body = json.dumps({"detail": "control characters are not accepted in the URL"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
