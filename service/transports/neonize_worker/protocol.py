"""Messages between the service and a neonize worker process: one JSON object per line.

A worker hosts many clients; every op and message about one names it by `client` (the
id the service gave it, also its neonize uuid). Service → worker on the worker's stdin:
`connect` (client, store, proxy, pairing — secrets travel only here, never in argv or
the environment), `stop` (one client) and `shutdown` (every client, then exit). Worker →
service on the worker's original stdout: `ready`, then per client `open`, `closed`,
`failed`, `keepalive` and, last, `stopped` (its neonize client is stopped and released);
`error` (client may be null). `inject` (a serialized event for neonize's real dispatch
path) is for tests and is refused unless the worker was started with `--allow-inject`.
Owns encoding, decoding and validation; a line that does not parse raises
`MalformedInput`. Must not do I/O.
"""

from __future__ import annotations

import json
from typing import Any

from service.errors import MalformedInput

MAX_LINE_BYTES = 64 * 1024

# kind → required fields (and their types)
WORKER_MESSAGES: dict[str, dict[str, tuple[type, ...]]] = {
    "ready": {"pid": (int,)},
    "open": {"client": (str,)},
    "closed": {"client": (str,), "code": (str, int, type(None)), "wait_s": (float, int, type(None)), "reason": (str,)},
    "failed": {"client": (str,), "reason": (str,), "detail": (str,)},
    "keepalive": {"client": (str,), "code": (str,), "ok": (bool,), "error_count": (int,)},
    "stopped": {"client": (str,)},
    "error": {"client": (str, type(None)), "detail": (str,)},
}
SERVICE_OPS: dict[str, dict[str, tuple[type, ...]]] = {
    "connect": {"client": (str,), "store": (str,), "proxy": (str, type(None)), "pairing": (bool,)},
    "stop": {"client": (str,)},
    "shutdown": {},
    "inject": {"client": (str,), "event": (str,), "data": (str,)},  # tests only: a serialized event, base64
}


def encode_message(kind: str, **fields: Any) -> bytes:
    """A worker → service line."""
    return _encode("kind", kind, WORKER_MESSAGES, fields)


def encode_op(op: str, **fields: Any) -> bytes:
    """A service → worker line."""
    return _encode("op", op, SERVICE_OPS, fields)


def decode_message(line: bytes) -> dict[str, Any]:
    """Parse and check a worker → service line."""
    return _decode(line, "kind", WORKER_MESSAGES, "neonize worker")


def decode_op(line: bytes) -> dict[str, Any]:
    """Parse and check a service → worker line."""
    return _decode(line, "op", SERVICE_OPS, "neonize service")


def _encode(key: str, name: str, schema: dict[str, dict[str, tuple[type, ...]]], fields: dict[str, Any]) -> bytes:
    value = {key: name, **fields}
    _check(value, key, schema)
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def _decode(line: bytes, key: str, schema: dict[str, dict[str, tuple[type, ...]]], source: str) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise MalformedInput(source, f"line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedInput(source, f"not JSON: {err.msg if hasattr(err, 'msg') else err}") from None
    if not isinstance(value, dict):
        raise MalformedInput(source, f"expected a JSON object, got {type(value).__name__}")
    try:
        _check(value, key, schema)
    except ValueError as err:
        raise MalformedInput(source, str(err)) from None
    return value


def _check(value: dict[str, Any], key: str, schema: dict[str, dict[str, tuple[type, ...]]]) -> None:
    name = value.get(key)
    if name not in schema:
        raise ValueError(f"unknown {key} {name!r}; known: {sorted(schema)}")
    for field, types in schema[name].items():
        if field not in value:
            raise ValueError(f"{key} {name!r} lacks field {field!r}")
        if not isinstance(value[field], types) or (isinstance(value[field], bool) and bool not in types):
            raise ValueError(f"{key} {name!r}: field {field!r} has type {type(value[field]).__name__}")
