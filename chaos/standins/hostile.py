"""Hostile replies of the back-office stand-in: what a broken or malicious back office
sends, for each of the service's three calls (`validity`, `validity_batch`,
`status_batch`).

Owns the modes' replies — too deep, numbers too long, wrong types, truncated, larger than
any client should read, valid but of any size, never ending, trickling — and their
parameters (`HostileParams`). Must not hold accounts or updates (`backoffice.py` does)
or log request bodies. Every wait is bounded (`MAX_HOLD_S`) and ends as soon as the
client goes away.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiohttp import web

from chaos.standins.webutil import BadRequest, non_negative_number
from service.backoffice import MAX_REPLY_BYTES  # the service's limit: oversize replies pass it by one

ENDPOINTS = ("validity", "validity_batch", "status_batch")
MAX_HOLD_S = 600.0  # the longest a never-ending reply holds its connection
MAX_SIZE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 10_000_000
MAX_DIGITS = 10_000_000
POLL_S = 0.05


class Mode(str, Enum):
    """How the API answers. `ok`, `error500`, `garbage` (an HTML page) and `slow` (the
    right answer after `delay_s`) are the plain failures; the rest are hostile replies."""

    OK = "ok"
    ERROR500 = "error500"
    GARBAGE = "garbage"
    SLOW = "slow"
    DEEP_NESTING = "deep_nesting"  # `depth` nested arrays where the answer should be
    HUGE_NUMBER = "huge_number"  # a number of `digits` digits where the answer should be
    WRONG_TYPES = "wrong_types"  # the answer's fields with wrong types, a different one each reply
    TRUNCATED = "truncated"  # the right answer, cut in half: Content-Length says more, then the close
    OVERSIZE = "oversize"  # a valid answer of `size_bytes` (default limit + 1), chunked: no length announced
    PADDED = "padded"  # the right answer padded to exactly `size_bytes`, with Content-Length
    NEVER_ENDS = "never_ends"  # half the right answer, then nothing, connection held open
    TRICKLE = "trickle"  # the right answer, `chunk_bytes` every `delay_s`


# modes whose reply is made without the real handler (nothing is recorded: the request is refused)
WITHOUT_HANDLER = frozenset({Mode.ERROR500, Mode.GARBAGE, Mode.DEEP_NESTING, Mode.HUGE_NUMBER,
                             Mode.WRONG_TYPES})


@dataclass(frozen=True)
class HostileParams:
    """A mode's knobs (admin `POST /admin/mode` body keys of the same names)."""

    delay_s: float = 0.0
    depth: int = 50_000
    digits: int = 5_000
    size_bytes: int = MAX_REPLY_BYTES + 1
    chunk_bytes: int = 1
    endpoints: frozenset[str] = frozenset(ENDPOINTS)


def parse_params(mode: Mode, body: dict[str, Any]) -> HostileParams:
    """The admin body's knobs, checked; `BadRequest` names the bad one."""
    default_delay_s = {Mode.SLOW: 2.0, Mode.TRICKLE: 0.01, Mode.NEVER_ENDS: MAX_HOLD_S}.get(mode, 0.0)
    delay_s = non_negative_number(body, "delay_s", default=default_delay_s) or 0.0
    endpoints = body.get("endpoints", list(ENDPOINTS))
    if (not isinstance(endpoints, list) or not endpoints
            or not all(isinstance(e, str) and e in ENDPOINTS for e in endpoints)):
        raise BadRequest(f"'endpoints' must be a non-empty list of {list(ENDPOINTS)}, got {str(endpoints)[:80]}")
    return HostileParams(delay_s=min(delay_s, MAX_HOLD_S), depth=_int(body, "depth", 50_000, 1, MAX_DEPTH),
                         digits=_int(body, "digits", 5_000, 1, MAX_DIGITS),
                         size_bytes=_int(body, "size_bytes", MAX_REPLY_BYTES + 1, 0, MAX_SIZE_BYTES),
                         chunk_bytes=_int(body, "chunk_bytes", 1, 1, MAX_SIZE_BYTES), endpoints=frozenset(endpoints))


def _int(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{key!r} must be an integer in {low}..{high}, got {value!r}")
    return value


def endpoint_of(request: web.Request) -> str:
    if request.path == "/api/validity/batch":
        return "validity_batch"
    if request.path == "/api/status/batch":
        return "status_batch"
    return "validity"


# ---- replies made without the handler ----------------------------------------------------

# what stands where the answer should be, per endpoint: (prefix, suffix) around the hostile value
_AROUND = {"validity": ('{"session_id":"%s","valid":', "}"),
           "validity_batch": ('{"sessions":[{"session_id":"%s","valid":', "}]}"),
           "status_batch": ('{"acked":', "}")}

# wrong types for each endpoint, one per reply in turn: every JSON kind but the right one
_WRONG = {
    "validity": ['{"session_id":"%s","valid":null}', '{"session_id":"%s","valid":"true"}',
                 '{"session_id":"%s","valid":1}', '{"session_id":"%s","valid":[]}', '{"session_id":"%s","valid":{}}',
                 '{"session_id":7,"valid":true}', '{"valid":true}', '[true]', '"valid"', 'null', '1e999'],
    "validity_batch": ['{"sessions":null}', '{"sessions":"%s"}', '{"sessions":{"%s":true}}', '{"sessions":7}',
                       '{"sessions":[7]}', '{"sessions":[null]}', '{"sessions":[{"session_id":"%s","valid":"yes"}]}',
                       '{"sessions":[{"session_id":1,"valid":true}]}', '{"sessions":[[]]}', '[]', 'true'],
    "status_batch": ['{"acked":null}', '{"acked":"u"}', '{"acked":{}}', '{"acked":7}', '{"acked":[1,2]}',
                     '{"acked":[null]}', '{"acked":[[]]}', '{"acked":[{}]}', '[]', '"acked"', '1e999'],
}


def _first_session(request: web.Request, body: Any) -> str:
    sid = request.match_info.get("session_id")
    if sid is None and isinstance(body, dict) and isinstance(body.get("session_ids"), list) and body["session_ids"]:
        sid = body["session_ids"][0]
    return json.dumps(sid if isinstance(sid, str) else "s")[1:-1]


def refused_body(mode: Mode, params: HostileParams, endpoint: str, request: web.Request, body: Any,
                 counter: int) -> bytes:
    """The body of a hostile reply that needs no real answer (`WITHOUT_HANDLER` but 500/garbage)."""
    sid = _first_session(request, body)
    prefix, suffix = _AROUND[endpoint]
    prefix = prefix.replace("%s", sid)
    if mode is Mode.DEEP_NESTING:
        return (prefix + "[" * params.depth + "]" * params.depth + suffix).encode()
    if mode is Mode.HUGE_NUMBER:
        return (prefix + "9" * params.digits + suffix).encode()
    choices = _WRONG[endpoint]
    return choices[counter % len(choices)].replace("%s", sid).encode()


# ---- replies made from the real answer ------------------------------------------------------

def padded(answer: bytes, size_bytes: int) -> bytes:
    """`answer` (a JSON object) with a `pad` field making it exactly `size_bytes` long, or
    the shortest it can be when `size_bytes` is smaller."""
    value = json.loads(answer)
    if not isinstance(value, dict):
        return answer
    bare = json.dumps({**value, "pad": ""}, separators=(",", ":"))
    return json.dumps({**value, "pad": "x" * max(0, size_bytes - len(bare))}, separators=(",", ":")).encode()


async def stream_reply(request: web.Request, mode: Mode, params: HostileParams, answer: bytes,
                       status: int) -> web.StreamResponse:
    """Send `answer` the way `mode` says (padded, oversize, truncated, never ending, trickling)."""
    headers = {"Content-Type": "application/json"}
    if mode is Mode.PADDED:
        return web.Response(body=padded(answer, params.size_bytes), status=status, headers=headers)
    response = web.StreamResponse(status=status, headers=headers)
    if mode is Mode.OVERSIZE:
        response.enable_chunked_encoding()  # the client must count, not trust a length
        await response.prepare(request)
        body = padded(answer, params.size_bytes)
        for start in range(0, len(body), 64 * 1024):
            await response.write(body[start:start + 64 * 1024])
        await response.write_eof()
        return response
    if mode is Mode.TRICKLE:
        response.content_length = len(answer)
        await response.prepare(request)
        for start in range(0, len(answer), params.chunk_bytes):
            await response.write(answer[start:start + params.chunk_bytes])
            if not await _hold(request, params.delay_s):
                break
        return response
    response.content_length = len(answer)  # truncated and never_ends announce the whole answer
    await response.prepare(request)
    await response.write(answer[:len(answer) // 2])
    if mode is Mode.NEVER_ENDS:
        await _hold(request, params.delay_s)
    if request.transport is not None:
        request.transport.close()  # the rest never comes: the client sees the connection end early
    return response


async def _hold(request: web.Request, hold_s: float) -> bool:
    """Wait `hold_s` (bounded); False as soon as the client has gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(hold_s, MAX_HOLD_S)
    while loop.time() < deadline:
        if request.transport is None or request.transport.is_closing():
            return False
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))
    return request.transport is not None and not request.transport.is_closing()
