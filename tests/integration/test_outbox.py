"""The durable outbox (B6) against a real redis-server and a real Redis Cluster (`any_redis`; the
outage tests on the server only) and the real back-office stand-in:
outages of every kind with nothing lost and per-session order kept, duplicates recognised
by the receiver, large batches, immediate `high` flushes, and a flusher killed mid-flight
whose successor delivers everything."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chaos.toxiproxy import Toxiproxy
from service.keys import SINGLE, KeyLayout
from service.backoffice import HttpBackOffice
from service.core import Priority, Status
from service.redis_outbox import RedisOutbox
from service.ports import StatusUpdate, new_update
from service.store import RedisStatusStore
from tests.fixtures.due_work import DueWorkProbe
from tests.fixtures.redis_cluster import RedisUnderTest
from tests.fixtures.standins import Standins, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def aredis(any_redis: RedisUnderTest) -> aioredis.Redis:  # this module's tests: single server and cluster
    return any_redis.client

STATUSES = [Status.CONNECTING, Status.ACTIVE, Status.INACTIVE]


@contextlib.asynccontextmanager
async def http_backoffice(url: str, standins: Standins, timeout_s: float = 1.0) -> AsyncIterator[HttpBackOffice]:
    client = HttpBackOffice(url, standins.backoffice_token, timeout_s=timeout_s)
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def running(outbox: RedisOutbox) -> AsyncIterator[RedisOutbox]:
    outbox.start()
    try:
        yield outbox
    finally:
        await outbox.stop()


def make_outbox(aredis: aioredis.Redis, backoffice: HttpBackOffice, **overrides: float) -> RedisOutbox:
    options = {"batch_size": 100, "flush_interval_s": 0.2, "retry_base_s": 0.05, "retry_cap_s": 0.4, **overrides}
    return RedisOutbox(aredis, backoffice, **options)  # type: ignore[arg-type]


async def append(aredis: aioredis.Redis, update: StatusUpdate) -> StatusUpdate:
    """Append `update` the way the service does: with its session's status write."""
    stored = await RedisStatusStore(aredis).set_status(update.session_id, update.status, outbox_update=update)
    assert stored is not None
    return stored


async def append_many(store: RedisStatusStore, n_updates: int, n_sessions: int) -> list[StatusUpdate]:
    """`n_updates` status writes round-robin over `n_sessions`, each with its outbox update."""
    stored = []
    for i in range(n_updates):
        session_id = f"sess-{i % n_sessions:03d}"
        status = STATUSES[(i // n_sessions) % len(STATUSES)]
        update = await store.set_status(session_id, status, outbox_update=new_update(session_id, status))
        assert update is not None
        stored.append(update)
    return stored


def assert_history_matches(received: list[dict], appended: list[StatusUpdate],
                           layout: KeyLayout = SINGLE) -> None:
    """The receiver's first-arrival history is exactly what was appended: nothing lost,
    nothing invented, every session's updates in append order with seq 1, 2, 3, …"""
    assert len(received) == len(appended)
    by_session: dict[str, list[dict]] = {}
    for record in received:
        by_session.setdefault(record["session_id"], []).append(record)
    expected: dict[str, list[StatusUpdate]] = {}
    for update in appended:
        expected.setdefault(update.session_id, []).append(update)
    assert by_session.keys() == expected.keys()
    for session_id, updates in expected.items():
        got = by_session[session_id]
        assert [r["update_id"] for r in got] == [u.update_id for u in updates], session_id
        assert [r["status"] for r in got] == [u.status.value for u in updates], session_id
        assert [r["seq"] for r in got] == list(range(1, len(updates) + 1)), session_id
    if not layout.is_sharded:  # one global FIFO; on a cluster, one per shard: the order per session holds
        assert [r["update_id"] for r in received] == [u.update_id for u in appended]


@contextlib.contextmanager
def outage(kind: str, standins: Standins, proxy) -> Iterator[None]:
    """The back office unreachable or misbehaving in one of four ways, until the block ends."""
    if kind == "proxy_disabled":
        proxy.disable()
    elif kind == "slow":  # handler runs, the reply comes after the client's timeout
        standins.backoffice.set_mode("slow", delay_s=1.5)
    else:
        standins.backoffice.set_mode(kind)
    try:
        yield
    finally:
        standins.backoffice.set_mode("ok")
        if kind == "proxy_disabled":
            proxy.enable()


@pytest.mark.parametrize("kind", ["error500", "garbage", "slow", "proxy_disabled"])
# 1,000 updates through each of 4 outages: on the single server only (CI time)
@pytest.mark.parametrize("any_redis", ["single"], indirect=True)
async def test_outage_loses_nothing_and_keeps_order(aredis: aioredis.Redis, standins_clean: Standins,
                                                     toxiproxy: Toxiproxy, kind: str) -> None:
    proxy = toxiproxy.create_proxy(f"backoffice-{uuid.uuid4().hex[:8]}",
                                   upstream=f"127.0.0.1:{standins_clean.ports['backoffice_port']}")
    url = f"http://{proxy.listen}"
    async with http_backoffice(url, standins_clean, timeout_s=0.5) as backoffice:
        outbox = make_outbox(aredis, backoffice)
        store = RedisStatusStore(aredis, outbox=outbox)
        async with running(outbox):
            with outage(kind, standins_clean, proxy):
                appended = await append_many(store, 1000, 50)
                await eventually(lambda: outbox.retries >= 3, 15.0, "the flusher failing against the outage")
                assert await outbox.depth() > 0
                assert await outbox.oldest_age_s() > 0.0
            await eventually_async(lambda: outbox.depth(), 0, 20.0, "outbox drained after the outage")
    history = standins_clean.backoffice.updates()
    assert_history_matches(history["updates"], appended)
    assert outbox.acked_updates == 1000
    if kind == "slow":  # batches the stand-in recorded but whose replies timed out came again
        assert history["duplicates"] > 0
    assert outbox.sent_updates - outbox.acked_updates >= 0


async def eventually_async(read, expected: object, timeout_s: float, what: str) -> None:
    """Poll an async reader until it returns `expected`; bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (value := await read()) != expected:
        if loop.time() >= deadline:
            raise TimeoutError(f"{what}: still {value!r} after {timeout_s:.1f}s")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("any_redis", ["single"], indirect=True)  # Toxiproxy in front of one server
async def test_redis_outage_is_retried_and_loses_nothing(aredis: aioredis.Redis, standins_clean: Standins,
                                                         redis_proxy) -> None:
    """The flusher reaches Redis through Toxiproxy; Redis vanishes (proxy disabled) with
    updates waiting, then comes back: they are delivered, in order, once."""
    host, port = redis_proxy.address
    proxied = aioredis.Redis(host=host, port=port, socket_timeout=1.0, socket_connect_timeout=1.0,
                             retry=Retry(NoBackoff(), 1))  # fail fast; the outbox does the retrying
    try:
        async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
            writer = RedisStatusStore(aredis)
            appended = await append_many(writer, 200, 10)
            outbox = make_outbox(proxied, backoffice)
            redis_proxy.disable()
            try:
                async with running(outbox):
                    await eventually(lambda: outbox.retries >= 2, 15.0, "the flusher failing against Redis")
                    assert "redis" in outbox.last_error.lower() or "connect" in outbox.last_error.lower()
                    redis_proxy.enable()
                    await eventually_async(lambda: aredis.xlen(SINGLE.outbox_key()), 0, 20.0, "drained after Redis")
            finally:
                redis_proxy.enable()
    finally:
        await proxied.aclose()
    history = standins_clean.backoffice.updates()
    assert_history_matches(history["updates"], appended)
    assert history["duplicates"] == 0


async def test_batches_are_large_when_the_interval_allows(aredis: aioredis.Redis, layout: KeyLayout,
                                                          standins_clean: Standins) -> None:
    async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
        outbox = make_outbox(aredis, backoffice, flush_interval_s=1.0)
        store = RedisStatusStore(aredis, outbox=outbox)
        async with running(outbox):
            appended = await append_many(store, 1000, 50)
            await eventually_async(lambda: outbox.depth(), 0, 20.0, "outbox drained")
    history = standins_clean.backoffice.updates()
    assert_history_matches(history["updates"], appended, layout)
    assert history["duplicates"] == 0
    assert 1000 / history["batches"] >= 50, history["batches"]


async def test_high_priority_flushes_at_once(aredis: aioredis.Redis, standins_clean: Standins) -> None:
    """The interval is far longer than the test: only the `high` update can cause the send.
    The normal update queued before it goes first, in the same batch."""
    async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
        outbox = make_outbox(aredis, backoffice, flush_interval_s=60.0)
        store = RedisStatusStore(aredis, outbox=outbox)
        async with running(outbox):
            await eventually(lambda: outbox.flushes["start"] == 1, 5.0, "start-up flush")
            normal = await store.set_status("s1", Status.CONNECTING,
                                            outbox_update=new_update("s1", Status.CONNECTING))
            assert outbox.flushes["high"] == 0 and await outbox.depth() == 1
            high = await store.set_status("s1", Status.INACTIVE,
                                          outbox_update=new_update("s1", Status.INACTIVE, Priority.HIGH))
            await eventually_async(lambda: outbox.depth(), 0, 5.0, "high update delivered")
    received = standins_clean.backoffice.updates()["updates"]
    assert [r["update_id"] for r in received] == [normal.update_id, high.update_id]
    assert received[0]["batch"] == received[1]["batch"] == 1
    assert outbox.flushes == {"start": 1, "high": 1, "full": 0, "interval": 0}


async def test_each_batch_yields_between_its_stretches(aredis: aioredis.Redis, standins_clean: Standins) -> None:
    """`due_work` is handed on after the stream is read, after the entries are decoded and after the back
    office answered: three times a batch, so a caller's due work runs inside a long flush."""
    steps: list[int] = []
    async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
        outbox = RedisOutbox(aredis, backoffice, batch_size=100, flush_interval_s=60.0, retry_base_s=0.05,
                        retry_cap_s=0.4, due_work=DueWorkProbe(lambda: steps.append(outbox.sent_batches)))
        store = RedisStatusStore(aredis, outbox=outbox)
        await append_many(store, 250, 10)
        await outbox.drain()
    assert standins_clean.backoffice.updates()["batches"] == 3
    # batches of 100, 100 and 50 (a short batch ends the drain); the count moves after each reply
    assert steps == [0, 0, 0, 1, 1, 1, 2, 2, 2], steps


async def test_killed_flusher_successor_delivers_everything(aredis: aioredis.Redis, layout: KeyLayout,
                                                            standins_clean: Standins) -> None:
    """A batch is in flight (the stand-in recorded it, its reply is delayed) when the
    flusher is cancelled; a new outbox on the same Redis delivers all, duplicates dropped."""
    admin = standins_clean.backoffice
    async with http_backoffice(standins_clean.backoffice_url, standins_clean, timeout_s=5.0) as backoffice:
        first = make_outbox(aredis, backoffice)
        store = RedisStatusStore(aredis, outbox=first)
        appended = await append_many(store, 300, 20)
        admin.set_mode("slow", delay_s=3.0)
        first.start()
        await eventually(lambda: admin.updates()["batches"] >= 1, 10.0, "first batch in flight")
        await first.stop()  # the kill: no reply processed, nothing deleted
        assert await first.depth() == 300
        admin.set_mode("ok")
        second = make_outbox(aredis, backoffice)
        async with running(second):
            await eventually_async(lambda: second.depth(), 0, 20.0, "successor drained the outbox")
    history = admin.updates()
    assert_history_matches(history["updates"], appended, layout)
    assert history["duplicates"] == 100  # the in-flight batch, delivered twice, recognised


async def test_stop_always_ends_the_flusher(aredis: aioredis.Redis, layout: KeyLayout,
                                            standins_clean: Standins) -> None:
    """Cancel the flusher at many different points of its Redis and HTTP calls; every stop
    must end it (redis-py can swallow a cancellation inside a command, see RedisOutbox.stop)."""
    async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
        outbox = make_outbox(aredis, backoffice, batch_size=5, flush_interval_s=0.01)
        store = RedisStatusStore(aredis, outbox=outbox)
        appended = []
        for round_no in range(60):
            outbox.start()
            for _ in range(round_no % 7):
                appended.append(await store.set_status("s1", Status.ACTIVE,
                                                       outbox_update=new_update("s1", Status.ACTIVE)))
            for _ in range(round_no % 11):
                await asyncio.sleep(0)
            assert await outbox.stop(timeout_s=5.0), f"round {round_no}: flusher still running"
            assert not outbox.running
        await outbox.drain()
    assert_history_matches(standins_clean.backoffice.updates()["updates"], appended, layout)


async def test_undecodable_entry_is_quarantined_not_sent(aredis: aioredis.Redis, layout: KeyLayout,
                                                         standins_clean: Standins) -> None:
    async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
        outbox = make_outbox(aredis, backoffice)
        first = await append(aredis, new_update("s1", Status.CONNECTING))
        await aredis.xadd(layout.outbox_of("s1"), {"update_id": "x", "session_id": "s1", "status": "banana"})
        second = await append(aredis, new_update("s1", Status.ACTIVE))
        await outbox.drain()
    assert [r["update_id"] for r in standins_clean.backoffice.updates()["updates"]] == [
        first.update_id, second.update_id]
    assert outbox.malformed == 1
    assert await aredis.xlen(layout.dead_key(layout.shard_of("s1"))) == 1
    assert await outbox.depth() == 0
