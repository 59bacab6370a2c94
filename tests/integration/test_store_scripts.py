"""The fenced write and the status read are sent by their SHA (EVALSHA), not their text (the
write's is 2 KB), against a real redis-server: no status write or read sends its script, and a script cache Redis lost (a restart,
`SCRIPT FLUSH`) is loaded again and the write goes through, alone or with a tick's others.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from service.keys import KeyLayout
from service.ports import new_update
from service.core import Status
from service.pending import PendingReconnect
from service.redis_scripts import WRITE_LUA, WRITE_SHA
from service.store import RedisStatusStore
from service.redis_connect import is_cluster_client
from tests.fixtures.redis_cluster import RedisUnderTest, mget, outbox_length

pytestmark = pytest.mark.integration


@pytest.fixture
def aredis(any_redis: RedisUnderTest) -> aioredis.Redis:  # this module's tests: single server and cluster
    return any_redis.client


IDS = [f"w{i}" for i in range(40)]


@pytest.fixture
async def store(aredis: aioredis.Redis) -> AsyncIterator[RedisStatusStore]:
    store = RedisStatusStore(aredis)
    yield store
    await store.aclose()


async def calls(redis: aioredis.Redis) -> dict[str, int]:
    """Script commands the server ran (on a cluster: every primary's, summed)."""
    if is_cluster_client(redis):
        per_node = [await redis.info("commandstats", target_nodes=node) for node in redis.get_primaries()]
    else:
        per_node = [await redis.info("commandstats")]
    return {name: sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for stats in per_node)
            for name in ("eval", "evalsha", "script|load")}


async def write_all(store: RedisStatusStore, status: Status) -> None:
    await asyncio.gather(*(
        store.set_status(sid, status, outbox_update=new_update(sid, status),
                         pending=PendingReconnect(1, 1700000000.0 + i) if status is Status.CONNECTING else None,
                         clear_pending=status is not Status.CONNECTING)
        for i, sid in enumerate(IDS)))


async def test_status_writes_name_the_script_by_sha(store: RedisStatusStore, aredis: aioredis.Redis) -> None:
    assert await aredis.script_exists(WRITE_SHA) == [True]  # loaded at start
    before = await calls(aredis)
    await write_all(store, Status.CONNECTING)
    await store.set_status("w0", Status.ACTIVE, clear_pending=True)
    await store.save_pending("w1", PendingReconnect(2, 1700000100.0))
    assert await store.get_status("w0") is Status.ACTIVE
    used = {name: n - before[name] for name, n in (await calls(aredis)).items()}
    assert used["eval"] == 0, f"a status write or read sent its script: {used} ({len(WRITE_LUA)} characters)"
    # a cluster sends each script call alone; a single Redis one batch call a tick (BATCH_LUA)
    assert used["evalsha"] == (len(IDS) + 3 if is_cluster_client(aredis) else 4), used
    assert store.round_trips == 4


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "direct"])
async def test_a_lost_script_cache_is_loaded_again(store: RedisStatusStore, aredis: aioredis.Redis, layout: KeyLayout,
                                                   batched: bool) -> None:
    await aredis.script_flush()
    if batched:
        await write_all(store, Status.CONNECTING)
    else:
        for sid in IDS[:3]:
            await store.set_status(sid, Status.CONNECTING, outbox_update=new_update(sid, Status.CONNECTING))
    written = IDS if batched else IDS[:3]
    assert await mget(aredis, [layout.status_key(sid) for sid in written]) == [b"connecting"] * len(written)
    assert await outbox_length(aredis, layout) == len(written), "a resent write must not append twice"
    assert (await calls(aredis))["script|load"] >= 1
    # loaded once: later writes need no reload
    before = store.round_trips
    await store.set_status(IDS[0], Status.ACTIVE, clear_pending=True)
    assert store.round_trips == before + 1


async def test_a_status_read_after_a_lost_script_cache_loads_it_again(store: RedisStatusStore,
                                                                      aredis: aioredis.Redis) -> None:
    await store.set_status(IDS[0], Status.CONNECTING)
    await aredis.script_flush()
    before = store.round_trips
    assert await asyncio.gather(store.get_status(IDS[0]), store.get_status(IDS[1])) == [Status.CONNECTING, None]
    assert store.round_trips == before + 3  # the pipeline, the load, the pipeline again
    assert store._tick.script_reloads == 1


async def test_a_script_lost_between_ticks_costs_one_reload(store: RedisStatusStore, aredis: aioredis.Redis,
                                                            layout: KeyLayout) -> None:
    await write_all(store, Status.CONNECTING)
    await aredis.script_flush()
    before = store.round_trips
    await write_all(store, Status.ACTIVE)
    assert await mget(aredis, [layout.status_key(sid) for sid in IDS]) == [b"active"] * len(IDS)
    assert store.round_trips == before + 3  # the pipeline, the load, the pipeline again
    assert store._tick.script_reloads == 1
