"""The status store against a real redis-server and a real back-office stand-in over HTTP:
R1 truth table, validity cache (R3, TTL), invalid-wins and outage rules (R4), garbage in
Redis, atomic status + outbox write, reconnect bookkeeping and SCAN (B5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from service import keys
from service.backoffice import HttpBackOffice
from service.core import Priority, Status
from service.errors import MalformedInput, StoreError
from service.outbox import new_update
from service.ports import Secret
from service.store import PendingReconnect, StatusStore
from tests.fixtures.process import free_port

pytestmark = pytest.mark.integration


class ManualClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
async def aredis(redis_client: redis.Redis, redis_server) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port, socket_timeout=5.0)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def dead_backoffice() -> AsyncIterator[HttpBackOffice]:
    """A real client aimed at a loopback port nobody listens on: every call is refused."""
    client = HttpBackOffice(f"http://127.0.0.1:{free_port()}", Secret("tok-dead"), timeout_s=2.0)
    try:
        yield client
    finally:
        await client.aclose()


async def test_get_status_round_trip_and_absent(aredis: aioredis.Redis, dead_backoffice: HttpBackOffice) -> None:
    store = StatusStore(aredis, dead_backoffice, cache_ttl_s=5.0)
    assert await store.get_status("s1") is None
    for status in Status:
        assert await store.set_status("s1", status) is None
        assert await store.get_status("s1") is status
    assert await aredis.get(keys.status_key("s1")) == b"inactive"


@pytest.mark.parametrize("raw", [b"banana", b"\xff\xfe", b"", b"ACTIVE"])
async def test_garbage_status_is_counted_not_guessed(aredis: aioredis.Redis, dead_backoffice: HttpBackOffice,
                                                     raw: bytes) -> None:
    store = StatusStore(aredis, dead_backoffice, cache_ttl_s=5.0)
    await aredis.set(keys.status_key("bad"), raw)
    await aredis.set(keys.status_key("good"), "active")
    with pytest.raises(MalformedInput, match="from redis") as caught:
        await store.get_status("bad")
    assert caught.value.source == "redis"
    assert store.malformed == 1
    assert await store.is_session_active("bad", for_reconnect=True) is False
    assert store.malformed == 2
    assert dead_backoffice.requests == 0  # failed closed before asking the back office
    assert await store.get_status("good") is Status.ACTIVE  # other sessions unaffected


async def test_status_and_outbox_written_in_one_round_trip(aredis: aioredis.Redis,
                                                           dead_backoffice: HttpBackOffice) -> None:
    store = StatusStore(aredis, dead_backoffice, cache_ttl_s=5.0)
    update = new_update("s1", Status.CONNECTING, Priority.NORMAL)
    before = store.round_trips
    stored = await store.set_status("s1", Status.CONNECTING, outbox_update=update,
                                    pending=PendingReconnect(attempt=1, due_at_epoch_s=1234.5))
    assert store.round_trips - before == 1
    assert stored is not None and stored.seq == 1 and stored.update_id == update.update_id
    assert await aredis.get(keys.status_key("s1")) == b"connecting"
    entries = await aredis.xrange(keys.OUTBOX_KEY)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"update_id"] == update.update_id.encode() and fields[b"seq"] == b"1"
    assert fields[b"status"] == b"connecting" and fields[b"session_id"] == b"s1"
    assert await store.pending("s1") == PendingReconnect(1, 1234.5)
    second = await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s1", Status.ACTIVE),
                                    clear_pending=True)
    assert second is not None and second.seq == 2
    assert await store.pending("s1") is None


async def test_failed_transaction_writes_neither(aredis: aioredis.Redis, dead_backoffice: HttpBackOffice) -> None:
    """The seq counter holds a non-integer, so the append fails inside EXEC: the status
    write must not have happened either (Redis does not roll a MULTI back, so both live
    in one script; a status written without its update would be a silent divergence)."""
    store = StatusStore(aredis, dead_backoffice, cache_ttl_s=5.0)
    await aredis.set(keys.status_key("s1"), "active")
    await aredis.set(keys.seq_key("s1"), "not-a-number")
    with pytest.raises(StoreError, match="rejected"):
        await store.set_status("s1", Status.INACTIVE, outbox_update=new_update("s1", Status.INACTIVE))
    assert await aredis.xlen(keys.OUTBOX_KEY) == 0
    assert await aredis.get(keys.status_key("s1")) == b"active"


async def test_mismatched_update_is_refused(aredis: aioredis.Redis, dead_backoffice: HttpBackOffice) -> None:
    store = StatusStore(aredis, dead_backoffice, cache_ttl_s=5.0)
    with pytest.raises(ValueError, match="outbox_update"):
        await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s2", Status.ACTIVE))
    assert await aredis.get(keys.status_key("s1")) is None


async def test_backoffice_outage_uses_redis_answer_and_counts(aredis: aioredis.Redis,
                                                               dead_backoffice: HttpBackOffice) -> None:
    store = StatusStore(aredis, dead_backoffice, cache_ttl_s=5.0)
    await store.set_status("s1", Status.CONNECTING)
    assert await store.is_session_active("s1", for_reconnect=True) is True
    assert await store.is_session_active("s1") is False  # R1 still applies
    assert store.backoffice_unreachable == 1
    assert await store.is_session_active("s1", for_reconnect=True) is True
    assert store.backoffice_unreachable == 2  # not cached: asked again
    assert dead_backoffice.requests == 2


async def test_pending_bookkeeping_and_garbage(aredis: aioredis.Redis, dead_backoffice: HttpBackOffice) -> None:
    store = StatusStore(aredis, dead_backoffice, cache_ttl_s=5.0)
    assert await store.pending("s1") is None
    await store.save_pending("s1", 3, 1700000000.25)
    assert await store.pending("s1") == PendingReconnect(3, 1700000000.25)
    await store.clear_pending("s1")
    assert await store.pending("s1") is None
    await aredis.hset(keys.session_key("s2"), mapping={"attempt": "three", "due_at_s": "1"})
    with pytest.raises(MalformedInput, match="s2"):
        await store.pending("s2")
    assert store.malformed == 1


async def test_sessions_with_status_scans_in_batches(aredis: aioredis.Redis, dead_backoffice: HttpBackOffice) -> None:
    store = StatusStore(aredis, dead_backoffice, cache_ttl_s=5.0)
    async with aredis.pipeline(transaction=False) as pipe:
        for i in range(1000):
            pipe.set(keys.status_key(f"s{i:04d}"), ["active", "connecting", "inactive"][i % 3])
        pipe.set(keys.status_key("weird:id with spaces"), "connecting")
        pipe.set(keys.status_key("junk"), b"\xff")
        pipe.set(keys.status_key("").encode() + b"\xfe\xff", "connecting")
        pipe.set("unrelated", "connecting")
        await pipe.execute()
    before = store.round_trips
    connecting = await store.sessions_with_status(Status.CONNECTING, scan_count=100)
    expected = sorted([f"s{i:04d}" for i in range(1000) if i % 3 == 1] + ["weird:id with spaces"])
    assert connecting == expected
    assert store.round_trips - before >= 10  # bounded batches, not one giant call
    assert store.malformed == 2  # the junk value and the non-UTF-8 key


async def test_unknown_status_value_on_scan_does_not_stop_it(aredis: aioredis.Redis,
                                                             dead_backoffice: HttpBackOffice) -> None:
    store = StatusStore(aredis, dead_backoffice, cache_ttl_s=5.0)
    await aredis.set(keys.status_key("a"), json.dumps({"status": "active"}))
    await aredis.set(keys.status_key("b"), "active")
    assert await store.sessions_with_status(Status.ACTIVE) == ["b"]
