"""The shared status key's values: reading one whatever its Redis type, and parsing it.

Owns what a status value may be (`Status`'s strings) and how anything else is reported
(`MalformedInput("redis", ...)`, counted by the store). Must not write statuses.
"""

from __future__ import annotations

from typing import Any

from service.core import Status
from service.errors import MalformedInput
from service.outbox import redis_text

# a status key of any other type answers {type}: a malformed value, not a failed read
READ_STATUS_LUA = """
local k = redis.call('TYPE', KEYS[1])['ok']
if k == 'string' then return redis.call('GET', KEYS[1]) end
if k == 'none' then return false end
return {k}
"""


def parse_status(value: Any, session_id: str) -> Status | None:
    """A raw Redis value → `Status` (None when absent); raises `MalformedInput("redis", ...)`."""
    if value is None:
        return None
    if isinstance(value, list):  # `_READ_STATUS_LUA`'s answer for a key of another type
        kind = redis_text(value[0], "status type") if value else "?"
        raise MalformedInput("redis", f"status of session {session_id!r} is a Redis {kind}, expected a string")
    text = redis_text(value, f"status of session {session_id!r}")
    try:
        return Status(text)
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise MalformedInput("redis", f"status of session {session_id!r} is {text[:40]!r}, "
                                      f"expected one of {allowed}") from None
