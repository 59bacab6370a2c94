"""The `wire` frame format, shared by the `wire` client and the WhatsApp stand-in server.

A session connects over WebSocket to `/ws/<session_id>` and sends one `hello` frame
with its credentials; the server answers `open` (logged in) or closes the WebSocket with
a close code. Close codes carry WhatsApp's codes as 4000 + code (401 → 4401) so they
survive RFC 6455's range; `reconnect_after_s` in the close reason carries a ban's wait.
Keepalive: the client sends `ping` with a sequence number; the server answers `pong`.
Frames are JSON text objects with a `type`, at most MAX_FRAME_BYTES and MAX_DEPTH levels
deep; anything else (deep nesting, a 5,000-digit number, NaN, binary, truncated) is a
`MalformedInput`, never another exception. Must not do I/O.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from service.errors import MalformedInput

WS_PATH_PREFIX = "/ws/"
CODE_OFFSET = 4000  # WebSocket application close codes are 4000–4999
FRAME_TYPES = frozenset({"hello", "open", "ping", "pong"})
MAX_FRAME_BYTES = 64 * 1024
MAX_DEPTH = 16  # a real frame is one object of scalars; deeper is hostile


def to_ws_close_code(code: int) -> int:
    """WhatsApp code (100–999) → WebSocket close code (4100–4999)."""
    if not 100 <= code <= 999:
        raise ValueError(f"WhatsApp close code must be in 100..999, got {code!r}")
    return CODE_OFFSET + code


def from_ws_close_code(ws_code: int | None) -> int | None:
    """WebSocket close code → WhatsApp code; None for a close that carries none (1000, 1006…)."""
    if ws_code is None or not CODE_OFFSET + 100 <= ws_code <= CODE_OFFSET + 999:
        return None
    return ws_code - CODE_OFFSET


def parse_close_reason(reason: str | None) -> float | None:
    """`reconnect_after_s` from a close reason, or None when it carries none."""
    if not reason or not reason.startswith("{"):
        return None
    try:
        value = json.loads(reason).get("reconnect_after_s")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return float(value)


def encode(frame_type: str, **fields: Any) -> str:
    return encode_bytes(frame_type, **fields).decode("utf-8")


def encode_bytes(frame_type: str, **fields: Any) -> bytes:
    """The frame as the UTF-8 text a WebSocket text frame carries (orjson: compact, non-ASCII
    as itself; a tenth of json.dumps's CPU for the hello each attempt sends)."""
    if frame_type not in FRAME_TYPES:
        raise ValueError(f"unknown frame type {frame_type!r}; known: {sorted(FRAME_TYPES)}")
    return orjson.dumps({"type": frame_type, **fields})


def decode(raw: str | bytes) -> dict[str, Any]:
    """Parse one frame; raise `MalformedInput` naming what is wrong."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_FRAME_BYTES:
            raise MalformedInput("wire", f"frame of {len(raw)} bytes exceeds {MAX_FRAME_BYTES}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedInput("wire", f"frame is not UTF-8: {exc.reason}") from exc
    if len(raw) > MAX_FRAME_BYTES:
        raise MalformedInput("wire", f"frame of {len(raw)} characters exceeds {MAX_FRAME_BYTES}")
    try:
        frame = json.loads(raw, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise MalformedInput("wire", f"frame is not JSON ({exc.msg}): {raw[:60]!r}") from exc
    except RecursionError:
        raise MalformedInput("wire", f"frame nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # a number of more than 4,300 digits, NaN, Infinity
        raise MalformedInput("wire", f"frame has an unusable value: {str(exc)[:80]}") from None
    if not isinstance(frame, dict):
        raise MalformedInput("wire", f"frame must be a JSON object, got {type(frame).__name__}")
    if _depth_over(frame, MAX_DEPTH):
        raise MalformedInput("wire", f"frame nests deeper than {MAX_DEPTH} levels")
    frame_type = frame.get("type")
    if not isinstance(frame_type, str) or frame_type not in FRAME_TYPES:
        raise MalformedInput("wire", f"unknown frame type {str(frame_type)[:40]!r}")
    return frame


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth_over(value: Any, limit: int) -> bool:
    """Does `value` nest more than `limit` containers deep? Iterative: no recursion to exhaust."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
