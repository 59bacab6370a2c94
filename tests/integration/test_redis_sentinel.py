"""The service's Redis clients against a real primary, replica and three sentinels
(`sentinel_group`): writes follow the primary across a failover (SIGKILL of the primary),
and `redis_replica_waits` makes a write wait for its replica (WAIT) or fail when it cannot;
its cost per write is measured (`reports/service/redis-wait-cost.json`).

Timings are judged per step from what was measured in the same run: the sentinels'
failover time (kill → the sentinels name the new primary) is measured, and the store must
write on the new primary within one retry of that.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from service.ports import new_update
from service.core import Status
from service.errors import StoreError
from service.lease import RedisLeases
from service.redis_connect import RedisOptions, open_client, parse_redis_url
from service.store import RedisStatusStore
from tests.fixtures.redis_ha import SentinelGroup

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RETRY_S = 0.1  # the test's own retry pace, standing in for the callers'
REPORT = Path(__file__).resolve().parents[2] / "reports" / "service" / "redis-wait-cost.json"


def _client(group: SentinelGroup, **options: int) -> object:
    return open_client(parse_redis_url(group.url()), RedisOptions(max_connections=8, pool_wait_s=5.0,
                                                                  timeout_s=2.0, **options))


async def _write_until_accepted(store: RedisStatusStore, session_id: str, deadline_s: float) -> tuple[float, int]:
    """Retry one status write every RETRY_S until it is accepted: (when, failures before)."""
    failures = 0
    loop = asyncio.get_running_loop()
    while True:
        try:
            await store.set_status(session_id, Status.ACTIVE, outbox_update=new_update(session_id, Status.ACTIVE))
            return time.monotonic(), failures
        except StoreError:
            failures += 1
            if loop.time() > deadline_s:
                raise
            await asyncio.sleep(RETRY_S)


async def test_writes_follow_the_primary_the_sentinels_promote(sentinel_group: SentinelGroup) -> None:
    client = _client(sentinel_group)
    store = RedisStatusStore(client)
    lease = RedisLeases(client, "owner-a", ttl_s=30)
    try:
        assert await lease.acquire("s1")
        await store.set_status("s1", Status.CONNECTING, fence=lease.token("s1"))
        old = sentinel_group.primary_address()
        assert old == ("127.0.0.1", sentinel_group.primary.port)
        sentinel_group.primary.kill()  # SIGKILL by PID
        killed_at = time.monotonic()
        writer = asyncio.create_task(_write_until_accepted(store, "s2", asyncio.get_running_loop().time() + 60))
        new, _ = await asyncio.to_thread(sentinel_group.wait_for_new_primary, old, 60.0)
        promoted_at = time.monotonic()
        accepted_at, failures = await writer
        assert new == ("127.0.0.1", sentinel_group.replica.port)
        assert failures >= 1, "a write while the primary was down did not fail: it went somewhere else"
        # measured per step: the sentinels took (promoted_at - killed_at); the store wrote on the
        # new primary within one retry (plus one socket timeout for the dead connection) after that
        assert accepted_at - promoted_at <= RETRY_S + 2.0 + 0.5, (
            f"failover took {promoted_at - killed_at:.2f} s, the store wrote {accepted_at - promoted_at:.2f} s later")
        # every connection follows: the lease (same pool) renews on the new primary, the data replicated
        assert await lease.renew(["s1"]) == {"s1"}
        assert await store.get_status("s1") is Status.CONNECTING
        assert await store.get_status("s2") is Status.ACTIVE
        with sentinel_group.replica.client() as direct:
            assert direct.get("rl:status:s2") == b"active"
    finally:
        await client.aclose()


async def test_replica_waits_make_a_write_wait_for_its_replica(sentinel_group: SentinelGroup) -> None:
    client = _client(sentinel_group, replica_waits=1, wait_timeout_ms=2000)
    store = RedisStatusStore(client)
    lease = RedisLeases(client, "owner-a", ttl_s=30)
    try:
        assert await lease.acquire("s1")
        with sentinel_group.replica.client() as direct:
            assert direct.get("rl:fence:s1") is not None, "the acquisition returned before its replica had it"
            for n in range(20):
                update = new_update("s1", Status.ACTIVE)
                await store.set_status("s1", Status.ACTIVE, outbox_update=update, fence=lease.token("s1"))
                assert direct.get(f"rl:outbox:id:{update.update_id}") is not None, f"write {n} not on the replica"
    finally:
        await client.aclose()


async def test_a_write_fails_when_fewer_replicas_acknowledge_than_asked(sentinel_group: SentinelGroup) -> None:
    client = _client(sentinel_group, replica_waits=2, wait_timeout_ms=200)  # the group has one replica
    store = RedisStatusStore(client)
    lease = RedisLeases(client, "owner-a", ttl_s=30)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="redis_replica_waits"):
            await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s1", Status.ACTIVE))
        assert time.monotonic() - started >= 0.2  # it waited its timeout for the missing replica
        with pytest.raises(StoreError, match="redis_replica_waits"):
            await lease.acquire("s1")
    finally:
        await client.aclose()


def _waits_sent(group: SentinelGroup) -> int:
    with group.primary.client() as direct:
        return int(direct.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


async def test_replica_waits_cost_one_wait_per_write_measured(sentinel_group: SentinelGroup) -> None:
    """Each fenced write with waits on is one WAIT more on the same connection; the latency
    per write with and without is measured in this run and written to the report."""
    writes = 300
    latency_ms: dict[int, float] = {}
    for waits in (0, 1):
        client = _client(sentinel_group, replica_waits=waits, wait_timeout_ms=2000)
        store = RedisStatusStore(client)
        try:
            await store.set_status("warm", Status.ACTIVE)
            sent_before = _waits_sent(sentinel_group)
            times = []
            for n in range(writes):
                started = time.perf_counter()
                await store.set_status(f"s{n}", Status.ACTIVE, outbox_update=new_update(f"s{n}", Status.ACTIVE))
                times.append(time.perf_counter() - started)
            assert _waits_sent(sentinel_group) - sent_before == (writes if waits else 0)
            latency_ms[waits] = sorted(times)[len(times) // 2] * 1000
        finally:
            await client.aclose()
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({
        "writes": writes, "what": "one fenced status write with its outbox append (set_status), one at a time, "
                                  "primary and one replica on loopback",
        "median_ms_waits_0": round(latency_ms[0], 3), "median_ms_waits_1": round(latency_ms[1], 3),
        "ratio": round(latency_ms[1] / latency_ms[0], 2), "round_trips_per_write": {"waits_0": 1, "waits_1": 2},
    }, indent=2) + "\n")
