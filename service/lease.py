"""Session ownership leases for several gateway processes sharing one Redis (B4): the
Redis implementation of `service.ports.Leases`.

Owns: `keys.lease_key(session_id)`, whose value is the owner id and whose TTL is the
lease, and the fencing token each acquisition takes (`keys.fence_key`, B9: see
`service.redis_scripts`). Acquire, renew and release are Lua scripts that act only while
the value is still our owner id (compare-and-expire, compare-and-delete) — renew also only
while the session's token is still the one we took — so a process never extends or deletes
a lease another process has taken over. Must not: start sessions or decide reconnects; the
caller stops driving a session whose lease it lost, and passes `token(session_id)` with
every write that depends on owning it (Redis refuses the write once the token has moved).

Key layout (`service.keys.KeyLayout`): with Redis Cluster each session's lease and fence
share its shard's hash tag, and a renewal runs one script per shard (per chunk of a shard).

Safety: two processes with different owner ids never hold one session at once in Redis.
How long this process may still act on a lease whose renewal failed is the caller's to judge
(the gateway counts from when the last renewal was *sent*).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service import keys
from service.keys import check_session_id
from service.errors import ConfigError, StoreError
from service.logging import get_logger
from service.redis_connect import layout_for
from service.redis_scripts import ACQUIRE_LUA, RELEASE_LUA, RENEW_LUA, reply_text

log = get_logger(component="lease")

RENEW_CHUNK = 500  # keys per renew script call, so one call never blocks Redis for long


def check_lease_settings(owner_id: str, ttl_s: float) -> None:
    if not isinstance(owner_id, str) or not owner_id:
        raise ConfigError(f"leases owner_id must be a non-empty str, got {owner_id!r}")
    if not isinstance(ttl_s, (int, float)) or isinstance(ttl_s, bool) or not 0.01 <= ttl_s < float("inf"):
        raise ConfigError(f"leases ttl_s must be a finite number >= 0.01, got {ttl_s!r}")


class HeldTokens:
    """The fencing token of each lease this process took (what every `Leases` keeps locally)."""

    _tokens: dict[str, int]

    def token(self, session_id: str) -> int | None:
        """The fencing token of our acquisition of `session_id` (None: not ours)."""
        return self._tokens.get(session_id)

    def tokens(self) -> Mapping[str, int]:
        """Every token we hold, by session (a live view: do not change it)."""
        return self._tokens

    def forget(self, session_id: str) -> bool:
        """Drop our local record of the lease (and its token); True if we had one."""
        return self._tokens.pop(session_id, None) is not None


class RedisLeases(HeldTokens):
    """The leases one process (`owner_id`) holds."""

    def __init__(self, redis: aioredis.Redis, owner_id: str, *, ttl_s: float,
                 layout: keys.KeyLayout | None = None) -> None:
        check_lease_settings(owner_id, ttl_s)
        self.redis = redis
        self.layout = layout_for(redis, layout)  # the default for the client when not given
        self.owner_id = owner_id
        self.ttl_s = float(ttl_s)
        self._ttl_ms = max(1, int(self.ttl_s * 1000))
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._renew = redis.register_script(RENEW_LUA)
        self._release = redis.register_script(RELEASE_LUA)
        self._tokens: dict[str, int] = {}  # session → the fencing token of our acquisition
        self._renewal_keys: dict[str, tuple[str, str]] = {}  # the last renewal's sessions: (lease, fence) key
        self.round_trips = 0
        self.lost = 0  # leases found taken or expired at renewal
        self.malformed = 0  # lease or fence values of the wrong kind, replaced at acquisition

    async def _call(self, script: Any, what: str, keys_: list[str], args: list[Any]) -> Any:
        self.round_trips += 1
        try:
            return await script(keys=keys_, args=args)
        except RedisError as err:
            raise StoreError(f"redis failed during lease {what}: {type(err).__name__}: {err}") from err

    async def acquire(self, session_id: str) -> bool:
        """Take the lease if it is free (or already ours, which extends it) with a new fencing
        token (`token()`). True if held."""
        reply = await self._call(self._acquire, f"acquire of {check_session_id(session_id)!r}",
                                 [self.layout.lease_key(session_id), self.layout.fence_key(session_id)],
                                 [self.owner_id, self._ttl_ms])
        for note in reply[2:]:
            self.malformed += 1
            log.warning("redis_value_replaced", session_id=session_id, detail=reply_text(note))
        if int(reply[0]) == 1:
            self._tokens[session_id] = int(reply[1])
            return True
        self.forget(session_id)
        return False

    async def renew(self, session_ids: Iterable[str], tokens: Mapping[str, int] | None = None) -> set[str]:
        """Extend those of `session_ids` we still own, with the fencing token we took
        (`tokens`, default our own acquisitions'); return them. The rest are forgotten
        locally (counted in `lost` if we thought we held them). One script call per chunk of
        RENEW_CHUNK sessions of one shard."""
        tokens = self._tokens if tokens is None else tokens
        known, keys_of = self._renewal_keys, {}
        for session_id in session_ids:  # a session's keys are named (and its id checked) once, not every round
            if session_id not in keys_of:
                keys_of[session_id] = known.get(session_id) or self._keys_of(session_id)
        self._renewal_keys = keys_of  # what the next round asks again, and no more
        by_shard: dict[int, list[str]] = {}
        if self.layout.is_sharded:
            for session_id in keys_of:
                by_shard.setdefault(self.layout.shard_of(session_id), []).append(session_id)
        elif keys_of:
            by_shard[0] = list(keys_of)
        held: set[str] = set()
        for wanted in by_shard.values():
            held |= await self._renew_shard(wanted, tokens, keys_of)
        return held

    def _keys_of(self, session_id: str) -> tuple[str, str]:
        check_session_id(session_id)
        return self.layout.lease_key(session_id), self.layout.fence_key(session_id)

    async def _renew_shard(self, wanted: list[str], tokens: Mapping[str, int],
                           keys_of: Mapping[str, tuple[str, str]]) -> set[str]:
        held: set[str] = set()
        for start in range(0, len(wanted), RENEW_CHUNK):
            chunk = wanted[start:start + RENEW_CHUNK]
            pairs = [key for s in chunk for key in keys_of[s]]
            checked = [str(tokens[s]) if s in tokens else "" for s in chunk]
            indexes = await self._call(self._renew, f"renew of {len(chunk)} sessions",
                                       pairs, [self.owner_id, self._ttl_ms, *checked])
            renewed = {chunk[int(i) - 1] for i in indexes}
            if len(renewed) < len(chunk):  # some are lost: only then look for which
                for session_id in chunk:
                    if session_id not in renewed and self.forget(session_id):
                        self.lost += 1
            held |= renewed
        return held

    async def release(self, session_id: str) -> bool:
        """Give the lease up if it is still ours; True if a key was deleted."""
        self.forget(check_session_id(session_id))
        deleted = await self._call(self._release, f"release of {session_id!r}",
                                   [self.layout.lease_key(session_id)], [self.owner_id])
        return int(deleted) == 1
