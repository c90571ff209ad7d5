"""The HTTP JSON sender: one POST per delivery, the key as ``Idempotency-Key``.

Only the configured target's URL is ever requested (server/outbound/targets.py checked
it at start); redirects are not followed and no proxy from the environment is used, so
neither a receiver nor the environment can send the request elsewhere.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from server.outbound.queue import Permanent, Retry
from server.outbound.targets import Target

USER_AGENT = "warmwindow-outbound/1"


def classify(status: int) -> type[Retry] | type[Permanent] | None:
    """What an HTTP status means for the delivery: None (taken), ``Retry`` or ``Permanent``.

    >>> [getattr(classify(s), "__name__", None) for s in (204, 408, 429, 503, 404, 301)]
    [None, 'Retry', 'Retry', 'Retry', 'Permanent', 'Permanent']
    """
    if 200 <= status < 300:
        return None
    if status in (408, 429) or status >= 500:
        return Retry
    return Permanent


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx surfaces as an HTTPError: Permanent


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class HttpSender:
    """POSTs the body as UTF-8 JSON; ``Authorization: Bearer <secret>`` when the target
    has a secret."""

    def send(self, target: Target, body: Mapping[str, Any], key: str) -> None:
        if target.url is None:
            raise Permanent("no url")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": key,
            "User-Agent": USER_AGENT,
        }
        if target.secret:
            headers["Authorization"] = f"Bearer {target.secret}"
        data = json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")
        req = urllib.request.Request(target.url, data=data, headers=headers, method="POST")
        try:
            with _OPENER.open(req, timeout=target.timeout_s) as resp:
                resp.read()
                status = int(resp.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Retry(f"{type(exc).__name__}: {reason}") from None
        outcome = classify(status)
        if outcome is not None:
            raise outcome(f"HTTP {status}")
