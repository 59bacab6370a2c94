"""The shared status key's values: reading one whatever its Redis type, parsing it, and
the SCAN of every session's status — part of `service.store.StatusStore` (mixed in).

Owns what a status value may be (`Status`'s strings) and how anything else is reported
(`MalformedInput("redis", ...)`, counted by the store). Must not write statuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

import redis.asyncio as aioredis

from service import keys
from service.core import Status
from service.errors import MalformedInput
from service.logging import get_logger
from service.outbox import redis_text

log = get_logger(component="store")

_STATUS_PREFIX = keys.status_key("")

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



class StatusScan:
    """Mixed into `StatusStore`, whose state these methods share."""

    redis: aioredis.Redis
    malformed: int
    _round_trip: Callable[[str], AbstractContextManager[None]]

    async def iter_sessions_with_status(self, status: Status, *, scan_count: int = 500) -> AsyncIterator[str]:
        """Session ids whose Redis status is `status`, by SCAN in batches of about
        `scan_count` keys (one SCAN plus one MGET per batch). Unparseable values are counted
        and skipped. A session written during the scan may or may not be seen."""
        status = Status(status)
        if not isinstance(scan_count, int) or scan_count < 1:
            raise ValueError(f"scan_count must be an int >= 1, got {scan_count!r}")
        cursor: int | bytes = 0
        while True:
            with self._round_trip(f"SCAN statuses for {status.value}"):
                cursor, found = await self.redis.scan(cursor, match=_STATUS_PREFIX + "*", count=scan_count)
            if found:
                with self._round_trip("MGET statuses"):
                    values = await self.redis.mget(found)
                for key, value in zip(found, values):
                    session_id = self._session_of(key)
                    if session_id is not None and self._status_or_none(value, session_id) is status:
                        yield session_id
            if int(cursor) == 0:
                return

    def _session_of(self, key: Any) -> str | None:
        try:
            return redis_text(key, "status key")[len(_STATUS_PREFIX):]
        except MalformedInput as err:
            self.malformed += 1
            log.warning("status_key_malformed", detail=err.detail)
            return None

    def _status_or_none(self, value: Any, session_id: str) -> Status | None:
        try:
            return parse_status(value, session_id)
        except MalformedInput as err:
            self.malformed += 1
            log.warning("status_malformed", session_id=session_id, detail=err.detail)
            return None

    async def sessions_with_status(self, status: Status, *, scan_count: int = 500) -> list[str]:
        """All session ids with `status` (see `iter_sessions_with_status`), sorted."""
        return sorted([sid async for sid in self.iter_sessions_with_status(status, scan_count=scan_count)])
