"""The status store's per-tick batching against a real redis-server: what many sessions ask
in one event-loop tick costs one round trip, each request still gets its own answer or its
own error, and the pending record written with a validation (B5) replaces the old one whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from service.keys import KeyLayout
from service.backoffice import HttpBackOffice
from service.core import Status
from service.errors import FencedWrite, StoreError
from service.redis_scripts import WRITE_SHA
from service.tick_batch import ScriptBatch, TickBatcher
from service.ports import Secret, new_update
from service.pending import PendingReconnect
from service.store import RedisStatusStore, ValidityCache
from service.validity import ValidityChain
from service.validity_batch import BatchedValidity
from tests.fixtures.due_work import DueWorkProbe
from tests.fixtures.process import free_port
from tests.fixtures.redis_cluster import RedisUnderTest, mget, mset, outbox_length
from tests.fixtures.standins import Standins

pytestmark = pytest.mark.integration


@pytest.fixture
def aredis(any_redis: RedisUnderTest) -> aioredis.Redis:  # this module's tests: single server and cluster
    return any_redis.client


IDS = [f"b{i}" for i in range(50)]
ANSWER_TIMEOUT_S = 10.0


@pytest.fixture
async def dead_backoffice() -> AsyncIterator[HttpBackOffice]:
    """A real client aimed at a loopback port nobody listens on: every call is refused, so
    the Redis answer stands (and is what these tests look at)."""
    client = HttpBackOffice(f"http://127.0.0.1:{free_port()}", Secret("tok-dead"), timeout_s=2.0)
    try:
        yield client
    finally:
        await client.aclose()


async def test_writes_of_one_tick_share_one_round_trip(aredis: aioredis.Redis, layout: KeyLayout,
                                                       dead_backoffice: HttpBackOffice) -> None:
    store = RedisStatusStore(aredis)
    stored = await asyncio.gather(*(
        store.set_status(sid, Status.CONNECTING, outbox_update=new_update(sid, Status.CONNECTING),
                                 pending=PendingReconnect(1, 1700000000.0 + i))
        for i, sid in enumerate(IDS)))
    assert store.round_trips == 1
    assert [u.seq for u in stored] == [1] * len(IDS)
    assert await mget(aredis, [layout.status_key(sid) for sid in IDS]) == [b"connecting"] * len(IDS)
    assert await outbox_length(aredis, layout) == len(IDS)
    assert await store.pending("b7") == PendingReconnect(1, 1700000007.0)


async def test_one_bad_request_fails_alone(aredis: aioredis.Redis, layout: KeyLayout,
                                           dead_backoffice: HttpBackOffice) -> None:
    """b3's write carries a fencing token that has moved on: it is refused alone, the others commit."""
    store = RedisStatusStore(aredis)
    await aredis.set(layout.status_key("b3"), "active")
    await mset(aredis, {layout.fence_key(sid): "7" for sid in IDS[:6]})
    await aredis.set(layout.fence_key("b3"), "8")  # another process took b3 over
    results = await asyncio.gather(*(
        store.set_status(sid, Status.CONNECTING, outbox_update=new_update(sid, Status.CONNECTING), fence=7)
        for sid in IDS[:6]), return_exceptions=True)
    assert store.round_trips == 1
    assert isinstance(results[3], FencedWrite) and "refused" in str(results[3])
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 3)
    assert await aredis.get(layout.status_key("b3")) == b"active", "the refused script wrote nothing"
    assert await aredis.get(layout.status_key("b4")) == b"connecting"
    assert await outbox_length(aredis, layout) == 5 and store.fenced == 1


async def test_a_script_call_that_fails_fails_alone(aredis: aioredis.Redis, layout: KeyLayout) -> None:
    """A call whose script raises (here a TTL that is no number, after its outbox entry) answers
    its own error; the tick's other requests commit, in the same round trip (on a single Redis
    the tick is one batch call: each call runs in its own pcall)."""
    store = RedisStatusStore(aredis)
    script_keys = layout.write_keys("b1", "u-bad")

    def bad(pipe) -> None:
        pipe.execute_command("EVALSHA", WRITE_SHA, len(script_keys), *script_keys, "", "active", "keep", "", "", "",
                             "u-bad", "b1", "normal", "1.0", "not-a-ttl", "")
    results = await asyncio.gather(
        store.set_status("b0", Status.ACTIVE, outbox_update=new_update("b0", Status.ACTIVE)),
        store._tick.run(bad, scripted=True),
        store.set_status("b2", Status.ACTIVE, outbox_update=new_update("b2", Status.ACTIVE)), return_exceptions=True)
    assert isinstance(results[1], ResponseError) and "integer" in str(results[1]), results[1]
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception), results
    assert (store.round_trips, store._tick.split_batches) == (1, 0)
    assert await mget(aredis, [layout.status_key(sid) for sid in ("b0", "b1", "b2")]) == [b"active", None, b"active"]


async def test_a_batched_write_stores_what_the_same_command_alone_stores(aredis: aioredis.Redis,
                                                                         layout: KeyLayout) -> None:
    """Arguments of every type a command takes (text beyond ASCII, bytes, int, float,
    memoryview) reach the script as the bytes a command alone would send: the tick's batch
    (one MessagePack array on a single Redis) and a plain EVALSHA leave the same keys."""
    store = RedisStatusStore(aredis)

    def args(sid: str) -> list:
        return [*layout.write_keys(sid, f"u-ünï-{sid}"), b"", "active", "set", 3, 1700000000.5, memoryview(b"1.25"),
                f"u-ünï-{sid}", sid, b"normal", 1.0, 60, "0"]

    def batched(pipe) -> None:
        pipe.execute_command("EVALSHA", WRITE_SHA, 7, *args("b1"))
    await store._tick.run(batched, scripted=True)
    await aredis.evalsha(WRITE_SHA, 7, *args("b2"))
    for sid in ("b1", "b2"):
        assert await aredis.get(layout.status_key(sid)) == b"active"
        assert await aredis.hgetall(layout.session_key(sid)) == {
            b"attempt": b"3", b"due_at_s": b"1700000000.5", b"started_at_s": b"1.25", b"counted": b"0"}
        assert 0 < await aredis.ttl(layout.write_keys(sid, f"u-ünï-{sid}")[5]) <= 60
    entries = await aredis.xrange(layout.write_keys("b1", "u")[3]) + (
        [] if layout.write_keys("b1", "u")[3] == layout.write_keys("b2", "u")[3]
        else await aredis.xrange(layout.write_keys("b2", "u")[3]))
    assert sorted(fields[b"update_id"] for _, fields in entries) == ["u-ünï-b1".encode(), "u-ünï-b2".encode()]
    assert {fields[b"at_s"] for _, fields in entries} == {b"1.0"}


def test_a_scripted_request_queues_only_batched_scripts() -> None:
    with pytest.raises(ValueError, match="only EVALSHA of a batched script, got SET"):
        ScriptBatch().execute_command("SET", "rl:status:b0", 1)
    with pytest.raises(ValueError, match="got EVALSHA 0{40}"):
        ScriptBatch().execute_command("EVALSHA", "0" * 40, 0)


async def test_validations_of_one_tick_share_one_round_trip(aredis: aioredis.Redis, layout: KeyLayout,
                                                            dead_backoffice: HttpBackOffice) -> None:
    store = RedisStatusStore(aredis)
    await mset(aredis, {layout.status_key(sid): "connecting" for sid in IDS[:40]})
    await mset(aredis, {layout.status_key(sid): "inactive" for sid in IDS[40:45]})
    await aredis.hset(layout.status_key("b45"), mapping={"not": "a string"})  # a hash: malformed, not a failed read
    chain = ValidityChain(store, dead_backoffice, ValidityCache(5.0))
    answers = await asyncio.gather(*(chain.is_session_active(sid, for_reconnect=True) for sid in IDS[:46]))
    assert store.round_trips == 1
    assert answers == [True] * 40 + [False] * 6  # R1: connecting is valid for a reconnect only
    assert store.malformed == 1
    strict = await asyncio.gather(*(chain.is_session_active(sid) for sid in IDS[:3]))
    assert strict == [False] * 3  # strict: connecting is not active


async def test_mark_started_rides_on_the_validation_and_replaces_the_record(
        aredis: aioredis.Redis, dead_backoffice: HttpBackOffice) -> None:
    store = RedisStatusStore(aredis)
    await store.set_status("b0", Status.CONNECTING, pending=PendingReconnect(1, 1700000002.0))
    before = store.round_trips
    mark = PendingReconnect(1, 1700000002.0, started_at_s=1700000002.5)
    chain = ValidityChain(store, dead_backoffice, ValidityCache(5.0))
    assert await chain.is_session_active("b0", for_reconnect=True, mark_started=mark) is True
    assert store.round_trips == before + 1
    assert await store.pending("b0") == mark
    # a later record of the next attempt must not inherit the start mark
    await store.save_pending("b0", PendingReconnect(2, 1700000007.0))
    assert await store.pending("b0") == PendingReconnect(2, 1700000007.0)
    await store.set_status("b0", Status.CONNECTING, pending=PendingReconnect(3, 1700000015.0))
    assert await store.pending("b0") == PendingReconnect(3, 1700000015.0)
    await store.save_pending("b0", PendingReconnect(4, 1700000031.0))
    assert await store.pending("b0") == PendingReconnect(4, 1700000031.0)
    with pytest.raises(ValueError, match="attempt"):
        await store.save_pending("b0", PendingReconnect(-1, 1.0))


async def test_attempts_started_in_one_tick_share_one_round_trip_and_one_validity_request(
        aredis: aioredis.Redis, layout: KeyLayout, standins_clean: Standins) -> None:
    """The storm's shape: N sessions' attempts start in one tick, each saving its start (B5)
    with its validation's read. Every read and mark goes in one pipeline, then every question
    in one back-office request (a mark sent as a request of its own fell into the next tick's
    pipeline: two round trips, and the questions split over two requests)."""
    standins_clean.backoffice.add_accounts(IDS)
    await mset(aredis, {layout.status_key(sid): "connecting" for sid in IDS})
    marks = {sid: PendingReconnect(2, 1700000006.0 + i, started_at_s=1700000006.5 + i) for i, sid in enumerate(IDS)}
    async with HttpBackOffice(standins_clean.backoffice_url, standins_clean.backoffice_token,
                              timeout_s=2.0) as http:
        store, batched = RedisStatusStore(aredis), BatchedValidity(http)
        chain = ValidityChain(store, batched, ValidityCache(5.0))
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            answers = await asyncio.gather(*(chain.is_session_active(sid, for_reconnect=True, mark_started=mark)
                                             for sid, mark in marks.items()))
    assert answers == [True] * len(IDS)
    assert (store.round_trips, batched.requests, batched.questions) == (1, 1, len(IDS))
    assert [await store.pending(sid) for sid in IDS] == list(marks.values())


async def test_a_failed_round_trip_fails_every_request_of_it(redis_server, dead_backoffice: HttpBackOffice) -> None:
    """Redis unreachable: each waiter gets a `StoreError` naming its own operation."""
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        store = RedisStatusStore(client)
        chain = ValidityChain(store, dead_backoffice, ValidityCache(5.0))
        results = await asyncio.gather(store.set_status("b0", Status.ACTIVE),
                                       chain.is_session_active("b1"), return_exceptions=True)
        assert isinstance(results[0], StoreError) and "'b0'" in str(results[0])
        assert isinstance(results[1], StoreError) and "'b1'" in str(results[1])
    finally:
        await client.aclose()


async def test_pipelines_in_flight_are_limited_and_each_stretch_yields(aredis: aioredis.Redis,
                                                                       layout: KeyLayout) -> None:
    """`due_work` is handed on as each pipeline starts and once its reply is read; with one pipeline in
    flight they alternate, so the caller's due work runs between every two pipelines."""
    def batcher(max_pipelines: int, trail: list[str]) -> TickBatcher:
        return TickBatcher(aredis, on_round_trip=lambda: None, max_requests=1, max_pipelines=max_pipelines,
                           due_work=DueWorkProbe(lambda: trail.append("step")))

    def build(trail: list[str], sid: str):
        def queue(pipe) -> None:
            trail.append(f"build {sid}")
            pipe.set(layout.status_key(sid), "active")
        return queue

    one: list[str] = []
    limited = batcher(1, one)
    await asyncio.gather(*(limited.run(build(one, sid)) for sid in IDS[:3]))
    assert one == ["step", "build b0", "step", "step", "build b1", "step", "step", "build b2", "step"]

    three: list[str] = []
    wide = batcher(3, three)
    await asyncio.gather(*(wide.run(build(three, sid)) for sid in IDS[:3]))
    assert three[:6] == ["step", "build b0", "step", "build b1", "step", "build b2"]  # all sent at once
    assert three.count("step") == 6
    assert await mget(aredis, [layout.status_key(sid) for sid in IDS[:3]]) == [b"active"] * 3


def test_batcher_rejects_a_bad_pipeline_limit(aredis: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="max_pipelines must be an int >= 1, got 0"):
        TickBatcher(aredis, on_round_trip=lambda: None, max_pipelines=0)
