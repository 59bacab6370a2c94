"""Small aiohttp helpers shared by both stand-ins: JSON answers, JSON bodies with clear
400 errors, and starting one app on 127.0.0.1.

Must not hold stand-in state or log request bodies (they may carry secrets).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"
LISTEN_BACKLOG = 4096  # 10k sockets connecting at once overflow the default of 128


class BadRequest(web.HTTPBadRequest):
    """400 with a JSON body `{"error": message}` naming what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(text=json.dumps({"error": message}), content_type="application/json")


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(value, separators=(",", ":")), status=status,
                        content_type="application/json")


async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object body; an empty body is `{}` unless `required`."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest("request body must be a JSON object, got an empty body")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def optional_code(body: dict[str, Any], key: str = "code") -> int | None:
    """A WhatsApp close code (100..999) or None from `body[key]`."""
    value = body.get(key)
    if value is None:
        return None
    return required_code(body, key)


def required_code(body: dict[str, Any], key: str = "code") -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 999:
        raise BadRequest(f"{key!r} must be a WhatsApp close code, an integer in 100..999, got {value!r}")
    return value


def non_negative_number(body: dict[str, Any], key: str, default: float | None = None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BadRequest(f"{key!r} must be a number >= 0, got {value!r}")
    return float(value)


async def start_app(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1:`port` (0 = a free port); returns the runner and real port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=LISTEN_BACKLOG)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    return runner, bound_port
