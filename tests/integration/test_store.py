"""The status store against a real redis-server and a real Redis Cluster (`any_redis`), and a
real back-office stand-in over HTTP:
R1 truth table, validity cache (R3, TTL), invalid-wins and outage rules (R4), garbage in
Redis, atomic status + outbox write, reconnect bookkeeping (B5). The validity rules are
`service.validity.ValidityChain` over the Redis store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from service.keys import KeyLayout
from service.backoffice import HttpBackOffice
from service.core import Priority, Status
from service.errors import MalformedInput, StoreError
from service.ports import Secret, new_update
from service.pending import PendingReconnect
from service.ports import BackOffice
from service.store import RedisStatusStore, ValidityCache
from service.validity import ValidityChain
from service.validity_batch import BatchedValidity
from tests.fixtures.process import free_port
from tests.fixtures.redis_cluster import RedisUnderTest, share_with_backoffice

pytestmark = pytest.mark.integration


@pytest.fixture
def aredis(any_redis: RedisUnderTest) -> aioredis.Redis:  # this module's tests: single server and cluster
    return any_redis.client


class ManualClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def validated(aredis: aioredis.Redis, backoffice: BackOffice, cache_ttl_s: float = 5.0,
              clock: Callable[[], float] | None = None) -> tuple[RedisStatusStore, ValidityChain]:
    """The Redis store and the validity chain over it, sharing one cache, as the service builds them."""
    cache = ValidityCache(cache_ttl_s) if clock is None else ValidityCache(cache_ttl_s, clock)
    store = RedisStatusStore(aredis, cache=cache)
    return store, ValidityChain(store, backoffice, cache)


@pytest.fixture
async def dead_backoffice() -> AsyncIterator[HttpBackOffice]:
    """A real client aimed at a loopback port nobody listens on: every call is refused."""
    client = HttpBackOffice(f"http://127.0.0.1:{free_port()}", Secret("tok-dead"), timeout_s=2.0)
    try:
        yield client
    finally:
        await client.aclose()


async def test_get_status_round_trip_and_absent(aredis: aioredis.Redis, layout: KeyLayout,
                                                dead_backoffice: HttpBackOffice) -> None:
    store = RedisStatusStore(aredis)
    assert await store.get_status("s1") is None
    for status in Status:
        assert await store.set_status("s1", status) is None
        assert await store.get_status("s1") is status
    assert await aredis.get(layout.status_key("s1")) == b"inactive"


@pytest.mark.parametrize("raw", [b"banana", b"\xff\xfe", b"", b"ACTIVE"])
async def test_garbage_status_is_counted_not_guessed(aredis: aioredis.Redis, layout: KeyLayout,
                                                     dead_backoffice: HttpBackOffice,
                                                     raw: bytes) -> None:
    store, chain = validated(aredis, dead_backoffice)
    await aredis.set(layout.status_key("bad"), raw)
    await aredis.set(layout.status_key("good"), "active")
    with pytest.raises(MalformedInput, match="from redis") as caught:
        await store.get_status("bad")
    assert caught.value.source == "redis"
    assert store.malformed == 1
    assert await chain.is_session_active("bad", for_reconnect=True) is False
    assert store.malformed == 2
    assert dead_backoffice.requests == 0  # failed closed before asking the back office
    assert await store.get_status("good") is Status.ACTIVE  # other sessions unaffected


async def test_status_and_outbox_written_in_one_round_trip(aredis: aioredis.Redis, layout: KeyLayout,
                                                           dead_backoffice: HttpBackOffice) -> None:
    store = RedisStatusStore(aredis)
    update = new_update("s1", Status.CONNECTING, Priority.NORMAL)
    before = store.round_trips
    stored = await store.set_status("s1", Status.CONNECTING, outbox_update=update,
                                    pending=PendingReconnect(attempt=1, due_at_s=1234.5))
    assert store.round_trips - before == 1
    assert stored is not None and stored.seq == 1 and stored.update_id == update.update_id
    assert await aredis.get(layout.status_key("s1")) == b"connecting"
    entries = await aredis.xrange(layout.outbox_of("s1"))
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"update_id"] == update.update_id.encode() and fields[b"seq"] == b"1"
    assert fields[b"status"] == b"connecting" and fields[b"session_id"] == b"s1"
    assert await store.pending("s1") == PendingReconnect(1, 1234.5)
    second = await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s1", Status.ACTIVE),
                                    clear_pending=True)
    assert second is not None and second.seq == 2
    assert await store.pending("s1") is None


async def test_a_non_numeric_seq_counter_is_replaced_and_counted(aredis: aioredis.Redis, layout: KeyLayout,
                                                                   dead_backoffice: HttpBackOffice) -> None:
    """The seq counter holds a non-integer: the write still goes through (before, the append
    failed inside the script and the session's status was never written again), its seq
    restarts at Redis's clock in ms, above any count, and the replacement is counted."""
    store = RedisStatusStore(aredis)
    await aredis.set(layout.status_key("s1"), "active")
    await aredis.set(layout.seq_key("s1"), "not-a-number")
    stored = await store.set_status("s1", Status.INACTIVE, outbox_update=new_update("s1", Status.INACTIVE))
    assert stored is not None and stored.seq >= 1_600_000_000_000
    assert await aredis.xlen(layout.outbox_of("s1")) == 1
    assert await aredis.get(layout.status_key("s1")) == b"inactive"
    assert store.malformed == 1
    again = await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s1", Status.ACTIVE))
    assert again is not None and again.seq == stored.seq + 1


async def test_mismatched_update_is_refused(aredis: aioredis.Redis, layout: KeyLayout,
                                            dead_backoffice: HttpBackOffice) -> None:
    store = RedisStatusStore(aredis)
    with pytest.raises(ValueError, match="outbox_update"):
        await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s2", Status.ACTIVE))
    assert await aredis.get(layout.status_key("s1")) is None


async def test_backoffice_outage_uses_redis_answer_and_counts(aredis: aioredis.Redis,
                                                               dead_backoffice: HttpBackOffice) -> None:
    store, chain = validated(aredis, dead_backoffice)
    await store.set_status("s1", Status.CONNECTING)
    assert await chain.is_session_active("s1", for_reconnect=True) is True
    assert await chain.is_session_active("s1") is False  # R1 still applies
    assert chain.backoffice_unreachable == 1
    assert await chain.is_session_active("s1", for_reconnect=True) is True
    assert chain.backoffice_unreachable == 2  # not cached: asked again
    assert dead_backoffice.requests == 2


async def test_pending_bookkeeping_and_garbage(aredis: aioredis.Redis, layout: KeyLayout,
                                               dead_backoffice: HttpBackOffice) -> None:
    store = RedisStatusStore(aredis)
    assert await store.pending("s1") is None
    await store.save_pending("s1", PendingReconnect(3, 1700000000.25))
    assert await store.pending("s1") == PendingReconnect(3, 1700000000.25)
    await store.set_status("s1", Status.ACTIVE, clear_pending=True)
    assert await store.pending("s1") is None
    await aredis.hset(layout.session_key("s2"), mapping={"attempt": "three", "due_at_s": "1"})
    with pytest.raises(MalformedInput, match="s2"):
        await store.pending("s2")
    assert store.malformed == 1


# -- against the back-office stand-in ------------------------------------------------------


@pytest.fixture
async def backoffice(standins_clean) -> AsyncIterator[HttpBackOffice]:
    client = HttpBackOffice(standins_clean.backoffice_url, standins_clean.backoffice_token, timeout_s=2.0)
    try:
        yield client
    finally:
        await client.aclose()


# (Redis value, account in the back office, for_reconnect) -> valid?   R1 + R4 + invalid-wins;
# no status in Redis during a reconnect (Redis lost its data): the back office decides.
TRUTH_TABLE = [
    (None, "active", False, False), (None, "active", True, True), (None, "unknown", True, False),
    ("active", "active", False, True), ("active", "active", True, True),
    ("connecting", "active", False, False), ("connecting", "active", True, True),
    ("inactive", "active", False, False), ("inactive", "active", True, False),
    ("active", "deactivated", False, False), ("active", "deactivated", True, False),
    ("connecting", "deactivated", True, False),
    ("active", "unknown", False, False), ("connecting", "unknown", True, False),
    ("banana", "active", False, False), ("banana", "active", True, False),
]


@pytest.mark.parametrize("validity", ["single", "batch"])
@pytest.mark.parametrize("redis_value, account, for_reconnect, expected", TRUTH_TABLE)
async def test_r1_truth_table(aredis: aioredis.Redis, layout: KeyLayout, standins_clean, backoffice: HttpBackOffice,
                              redis_value: str | None, account: str, for_reconnect: bool, expected: bool,
                              validity: str) -> None:
    admin = standins_clean.backoffice
    if account != "unknown":
        admin.add_account("s1", active=account == "active")
    if redis_value is not None:
        await aredis.set(layout.status_key("s1"), redis_value)
    asked = backoffice if validity == "single" else BatchedValidity(backoffice)
    store, chain = validated(aredis, asked)
    assert await chain.is_session_active("s1", for_reconnect=for_reconnect) is expected
    redis_valid = redis_value in ("active", "connecting") and (redis_value == "active" or for_reconnect)
    assert backoffice.requests == int(redis_valid or (redis_value is None and for_reconnect))
    assert chain.backoffice_vetoes == int(redis_valid and account != "active")


async def test_cache_answers_until_cleared_or_expired(aredis: aioredis.Redis, layout: KeyLayout, standins_clean,
                                                      backoffice: HttpBackOffice) -> None:
    standins_clean.backoffice.add_account("s1")
    clock = ManualClock()
    store, chain = validated(aredis, backoffice, clock=clock)
    await aredis.set(layout.status_key("s1"), "active")
    assert await chain.is_session_active("s1")
    await aredis.set(layout.status_key("s1"), "inactive")  # changed behind the cache's back
    clock.now_s += 4.9
    assert await chain.is_session_active("s1")  # still cached
    assert chain.cache_hits == 1 and backoffice.requests == 1
    clock.now_s += 0.2
    assert not await chain.is_session_active("s1")  # TTL over: fresh sources
    await aredis.set(layout.status_key("s1"), "active")
    assert await chain.is_session_active("s1")  # the negative answer was not cached
    await aredis.set(layout.status_key("s1"), "inactive")
    store.clear_cache("s1")  # R3
    assert not await chain.is_session_active("s1")
    assert backoffice.requests == 2


async def test_reconnect_answer_never_serves_a_strict_question(aredis: aioredis.Redis, standins_clean,
                                                               backoffice: HttpBackOffice) -> None:
    standins_clean.backoffice.add_account("s1")
    store, chain = validated(aredis, backoffice)
    await store.set_status("s1", Status.CONNECTING)
    assert await chain.is_session_active("s1", for_reconnect=True)
    assert await chain.is_session_active("s1", for_reconnect=True)
    assert chain.cache_hits == 1
    assert not await chain.is_session_active("s1")


async def test_set_status_drops_the_cached_answer(aredis: aioredis.Redis, standins_clean,
                                                  backoffice: HttpBackOffice) -> None:
    standins_clean.backoffice.add_account("s1")
    store, chain = validated(aredis, backoffice, 60.0)
    await store.set_status("s1", Status.ACTIVE)
    assert await chain.is_session_active("s1")
    await store.set_status("s1", Status.INACTIVE)
    assert not await chain.is_session_active("s1", for_reconnect=True)


async def test_account_deleted_while_waiting_for_backoff(any_redis: RedisUnderTest, aredis: aioredis.Redis,
                                                         standins_clean, backoffice: HttpBackOffice) -> None:
    """S3: the session waits for its backoff; the back office deletes the account (and
    writes `inactive` to the shared Redis, at its layout's key); the close already cleared
    the cache (R3), so the R4 validation sees fresh sources and fails."""
    share_with_backoffice(standins_clean, any_redis)
    admin = standins_clean.backoffice
    admin.add_account("s1")
    store, chain = validated(aredis, backoffice, 60.0)
    await store.set_status("s1", Status.ACTIVE)
    assert await chain.is_session_active("s1")
    store.clear_cache("s1")  # the close
    await store.set_status("s1", Status.CONNECTING)
    assert admin.delete_account("s1")["redis"] == "inactive"
    assert not await chain.is_session_active("s1", for_reconnect=True)
    assert await store.get_status("s1") is Status.INACTIVE


async def test_backoffice_says_gone_while_redis_says_active(aredis: aioredis.Redis, layout: KeyLayout, standins_clean,
                                                            backoffice: HttpBackOffice) -> None:
    """The back office's own Redis write was lost (or Redis was restored from an old
    snapshot): Redis still says `active`, the back office says deleted. Invalid wins."""
    admin = standins_clean.backoffice
    admin.add_account("s1")
    admin.delete_account("s1")
    await aredis.set(layout.status_key("s1"), "active")
    store, chain = validated(aredis, backoffice, 60.0)
    assert not await chain.is_session_active("s1", for_reconnect=True)
    assert chain.backoffice_vetoes == 1


@pytest.mark.parametrize("mode", ["error500", "garbage", "slow"])
async def test_backoffice_failing_modes_use_redis_answer(any_redis: RedisUnderTest, aredis: aioredis.Redis,
                                                         standins_clean, mode: str) -> None:
    share_with_backoffice(standins_clean, any_redis)
    admin = standins_clean.backoffice
    admin.add_account("s1")
    admin.set_mode(mode, delay_s=1.0 if mode == "slow" else None)
    async with HttpBackOffice(standins_clean.backoffice_url, standins_clean.backoffice_token,
                              timeout_s=0.3) as backoffice:
        store, chain = validated(aredis, backoffice, 60.0)
        await store.set_status("s1", Status.CONNECTING)
        assert await chain.is_session_active("s1", for_reconnect=True)
        assert chain.backoffice_unreachable == 1
        admin.set_mode("ok")
        admin.deactivate("s1")  # also writes inactive to Redis
        assert await store.get_status("s1") is Status.INACTIVE  # at the key the store reads
        assert not await chain.is_session_active("s1", for_reconnect=True)  # nothing stale was cached
        assert chain.backoffice_vetoes == 0  # Redis's answer decided, not the back office's veto
