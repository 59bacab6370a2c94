"""One session's ordered Redis writes (`OrderedWrites`) against a real redis-server: the
writes land in the order queued, and the `before_each` hook runs before every write and
again as the writer resumes after one (in a storm thousands of writers resume in one loop
pass; the runner hands due reconnect timers on in that hook).
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from service.logging import get_logger
from service.metrics import ServiceMetrics
from service.runtime.writes import OrderedWrites

pytestmark = pytest.mark.integration


async def test_writes_land_in_order_with_the_hook_around_each(aredis: aioredis.Redis) -> None:
    trail: list[str] = []

    def write(n: int):
        async def go() -> None:
            trail.append(f"write {n}")
            await aredis.rpush("ordered", n)
        return go

    writes = OrderedWrites(asyncio.get_running_loop().create_task, get_logger(component="test"), ServiceMetrics(),
                           retries=2, retry_s=0.01, before_each=lambda: trail.append("hook"))
    for n in range(3):
        writes.queue(f"write {n}", write(n))
    assert await writes.flush(5.0) is True
    assert trail == ["hook", "write 0", "hook", "hook", "write 1", "hook", "hook", "write 2", "hook"]
    assert await aredis.lrange("ordered", 0, -1) == [b"0", b"1", b"2"]
