"""One session's ordered Redis writes (`OrderedWrites`) against a real redis-server: the
writes land in the order queued, and `due_work` (due reconnect timers) is handed on before
every write and again as the writer resumes after one (in a storm thousands of writers resume
in one loop pass).
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from service.keys import KeyLayout
from service.logging import get_logger
from service.metrics import ServiceMetrics
from service.retry import RetryPolicy
from service.store import OrderedWrites
from tests.fixtures.due_work import DueWorkProbe
from tests.fixtures.redis_cluster import RedisUnderTest

pytestmark = pytest.mark.integration


@pytest.fixture
def aredis(any_redis: RedisUnderTest) -> aioredis.Redis:  # this module's tests: single server and cluster
    return any_redis.client


async def test_writes_land_in_order_with_the_hook_around_each(aredis: aioredis.Redis) -> None:
    trail: list[str] = []

    def write(n: int):
        async def go() -> None:
            trail.append(f"write {n}")
            await aredis.rpush("ordered", n)
        return go

    writes = OrderedWrites(asyncio.get_running_loop().create_task, get_logger(component="test"), ServiceMetrics(),
                           retries=2, retry=RetryPolicy(0.01, 0.01), due_work=DueWorkProbe(lambda: trail.append("hook")))
    for n in range(3):
        writes.queue(f"write {n}", write(n))
    assert await writes.flush(5.0) is True
    assert trail == ["hook", "write 0", "hook", "hook", "write 1", "hook", "hook", "write 2", "hook"]
    assert await aredis.lrange("ordered", 0, -1) == [b"0", b"1", b"2"]


async def test_a_fenced_write_drops_every_queued_write_and_is_reported_once(aredis: aioredis.Redis,
                                                                            layout: KeyLayout) -> None:
    """B9: a write refused because the lease moved is never retried, and nothing queued after
    it is written: none of it is this process's to make any more."""
    from service.core import Status
    from service.store import RedisStatusStore

    store = RedisStatusStore(aredis)
    await aredis.set(layout.fence_key("s1"), "8")  # another process acquired s1 after our token 7
    reported: list[tuple[str, str]] = []
    writes = OrderedWrites(asyncio.get_running_loop().create_task, get_logger(component="test"), ServiceMetrics(),
                           retries=3, retry=RetryPolicy(0.01, 0.01), on_fenced=lambda what, err: reported.append((what, err.token_now)))
    writes.queue("set_status", lambda: store.set_status("s1", Status.INACTIVE, fence=7))
    writes.queue("later", lambda: aredis.set("later", "written"))
    assert await writes.flush(5.0) is True
    assert reported == [("set_status", "8")]
    assert not writes.has_unwritten and not writes.needs_repair
    assert await aredis.get(layout.status_key("s1")) is None and await aredis.get("later") is None
    assert store.fenced == 1
