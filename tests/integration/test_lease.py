"""Ownership leases (B4) against a real redis-server and a real Redis Cluster (`any_redis`):
exclusivity, renewal, release, handover."""

from __future__ import annotations

import asyncio
import time

import math
from collections import Counter

import pytest
import redis.asyncio as aioredis

from service.errors import ConfigError
from service.lease import RENEW_CHUNK, RedisLeases
from tests.fixtures.redis_cluster import RedisUnderTest

pytestmark = pytest.mark.integration


def leases(r: RedisUnderTest, owner_id: str, ttl_s: float) -> RedisLeases:
    return RedisLeases(r.client, owner_id, ttl_s=ttl_s, layout=r.layout)


async def test_two_owners_never_hold_one_session(any_redis: RedisUnderTest) -> None:
    r = any_redis
    a = leases(r, "gw-a", 5.0)
    b = leases(r, "gw-b", 5.0)
    results = await asyncio.gather(*[m.acquire(f"s{i}") for i in range(50) for m in (a, b)])
    assert sum(results) == 50  # each of 50 sessions: exactly one winner
    assert set(a.tokens()).isdisjoint(b.tokens())
    assert set(a.tokens()) | set(b.tokens()) == {f"s{i}" for i in range(50)}
    for session_id in a.tokens():
        assert await r.client.get(r.layout.lease_key(session_id)) == b"gw-a"


async def test_acquire_again_by_owner_is_true_and_extends(any_redis: RedisUnderTest) -> None:
    r = any_redis
    a = leases(r, "gw-a", 2.0)
    assert await a.acquire("s1")
    await r.client.pexpire(r.layout.lease_key("s1"), 100)
    assert await a.acquire("s1")
    assert await r.client.pttl(r.layout.lease_key("s1")) > 1000


async def test_renew_keeps_own_and_reports_lost(any_redis: RedisUnderTest) -> None:
    r = any_redis
    a = leases(r, "gw-a", 5.0)
    assert await a.acquire("s1") and await a.acquire("s2")
    await r.client.set(r.layout.lease_key("s2"), "gw-b")  # another process took s2 over
    held = await a.renew(["s1", "s2", "s3"])
    assert held == {"s1"}
    assert set(a.tokens()) == {"s1"}
    assert a.lost == 1
    assert await r.client.get(r.layout.lease_key("s2")) == b"gw-b"  # renew never touched it


async def test_renew_many_in_chunks(any_redis: RedisUnderTest) -> None:
    r = any_redis
    a = leases(r, "gw-a", 5.0)
    ids = [f"s{i}" for i in range(1200)]
    for start in range(0, len(ids), 50):
        assert all(await asyncio.gather(*[a.acquire(s) for s in ids[start:start + 50]]))
    before = a.round_trips
    assert await a.renew(ids) == set(ids)
    per_shard = Counter(r.layout.shard_of(s) for s in ids)
    assert a.round_trips - before == sum(math.ceil(n / RENEW_CHUNK) for n in per_shard.values())
    assert a.round_trips - before == (3 if r.mode == "single" else r.layout.shards)  # chunks of 500 per shard


async def test_renewals_of_changing_sets_name_each_session_right(any_redis: RedisUnderTest) -> None:
    """A renewal names a session's keys from the round before (ids checked when first seen):
    sets that shrink, grow, repeat an id or lose a lease between rounds renew exactly what is
    ours, and a bad id is refused whenever it comes."""
    r = any_redis
    a = leases(r, "gw-a", 5.0)
    assert all([await a.acquire(s) for s in ("s1", "s2", "s3")])
    assert await a.renew(["s1", "s2", "s1"]) == {"s1", "s2"}
    assert await a.renew(["s1"]) == {"s1"}
    await r.client.set(r.layout.lease_key("s2"), "gw-b")  # another process took s2 over
    assert await a.renew(["s3", "s2", "s1"]) == {"s1", "s3"} and a.lost == 1
    assert 4000 < await r.client.pttl(r.layout.lease_key("s3")) <= 5000
    with pytest.raises(ValueError, match="session_id"):
        await a.renew(["s1", ""])
    assert await a.renew(["s3", "s1"]) == {"s1", "s3"}


async def test_release_only_by_owner(any_redis: RedisUnderTest) -> None:
    r = any_redis
    a = leases(r, "gw-a", 5.0)
    b = leases(r, "gw-b", 5.0)
    assert await a.acquire("s1")
    assert not await b.release("s1")
    assert await r.client.get(r.layout.lease_key("s1")) == b"gw-a"
    assert await a.release("s1")
    assert a.token("s1") is None
    assert await b.acquire("s1")


async def test_handover_after_owner_stops_renewing(any_redis: RedisUnderTest) -> None:
    r = any_redis
    ttl_s = 0.3
    a = leases(r, "gw-a", ttl_s)
    b = leases(r, "gw-b", ttl_s)
    assert await a.acquire("s1")
    assert not await b.acquire("s1")
    stopped_at = time.monotonic()
    deadline = stopped_at + ttl_s + 2.0
    while not await b.acquire("s1"):  # a stopped renewing: b must get it within the ttl
        assert time.monotonic() < deadline, "b never acquired the abandoned lease"
        await asyncio.sleep(0.01)
    assert time.monotonic() - stopped_at <= ttl_s + 0.2
    assert await a.renew(["s1"]) == set()
    assert a.token("s1") is None and a.lost == 1


async def test_renewing_owner_keeps_lease_past_ttl(any_redis: RedisUnderTest) -> None:
    r = any_redis
    ttl_s = 0.3
    a = leases(r, "gw-a", ttl_s)
    b = leases(r, "gw-b", ttl_s)
    assert await a.acquire("s1")
    end = time.monotonic() + 3 * ttl_s
    while time.monotonic() < end:
        assert await a.renew(["s1"]) == {"s1"}
        assert not await b.acquire("s1")
        await asyncio.sleep(ttl_s / 4)
    assert set(a.tokens()) == {"s1"}


def test_bad_parameters_are_named(redis_server) -> None:
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    with pytest.raises(ConfigError, match="owner_id"):
        RedisLeases(client, "", ttl_s=1.0)
    with pytest.raises(ConfigError, match="ttl_s"):
        RedisLeases(client, "gw", ttl_s=0)
