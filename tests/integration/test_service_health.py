"""/healthz tells the truth: unhealthy (503, with a reason) while a session is stuck in a
bounded step or back-office delivery is stalled while the back office answers, and healthy
again once that ends. Real Redis, real stand-ins, the service's own HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis

from service.runtime.app import Service
from tests.fixtures.redis_cluster import SERVICE_ON_BOTH, RedisView
from tests.fixtures.service import run_service, statuses
from tests.fixtures.standins import eventually

pytestmark = pytest.mark.integration

IDS = ["s0", "s1"]
STUCK_AFTER_S = 1.0
STALL_S = 1.0


async def healthz(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3.0)) as client:
        async with client.get(f"http://127.0.0.1:{port}/healthz") as reply:
            return reply.status, json.loads(await reply.text())


async def eventually_health(port: int, want_status: int, timeout_s: float, what: str) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        status, report = await healthz(port)
        if status == want_status:
            return report
        if loop.time() >= deadline:
            raise TimeoutError(f"{what}: /healthz {status} {report} after {timeout_s:.1f}s")
        await asyncio.sleep(0.05)


def all_active(redis_: redis.Redis | RedisView, ids=IDS) -> bool:
    return set(statuses(redis_, ids).values()) == {"active"}


async def test_a_session_stuck_validating_makes_healthz_unhealthy_until_it_moves(
        service_settings, standins_clean, redis_client) -> None:
    s = standins_clean
    s.backoffice.add_accounts(IDS)
    settings = service_settings(sessions=",".join(IDS), health_stuck_after_s=STUCK_AFTER_S)
    async with run_service(settings) as service:
        await eventually(lambda: all_active(redis_client), 10, "all active")
        port = service.server.port
        assert (await healthz(port))[0] == 200
        validity = service.validity
        real = validity.is_session_active
        release = asyncio.Event()

        async def hangs(session_id: str, **kwargs) -> bool:  # a validation with no deadline: a hang
            if session_id == "s0":
                await release.wait()
            return await real(session_id, **kwargs)
        validity.is_session_active = hangs  # type: ignore[method-assign]
        s.whatsapp.close("s0", 503)
        report = await eventually_health(port, 503, 10, "stuck session reported")
        assert report["stuck"] == 1 and report["stuck_sample"] == ["s0"]
        assert any("validating or connecting" in reason for reason in report["reasons"])
        release.set()
        await eventually(lambda: s.whatsapp.session("s0")["connects"] == 2 and all_active(redis_client), 10,
                         "s0 reconnected once the validation moved")
        report = await eventually_health(port, 200, 5, "healthy again")
        assert report["stuck"] == 0 and report["reasons"] == []


@contextlib.asynccontextmanager
async def started_and_delivered(service_settings, standins, r: RedisView) -> AsyncIterator[Service]:
    """The service with every session active and its start-up updates delivered."""
    standins.backoffice.add_accounts(IDS)
    settings = service_settings(sessions=",".join(IDS), health_outbox_stall_s=STALL_S)
    async with run_service(settings) as service:
        await eventually(lambda: all_active(r), 10, "all active")
        await eventually(lambda: r.outbox_length() == 0, 5, "start-up updates delivered")
        yield service


@SERVICE_ON_BOTH  # the outbox's oldest entry: of one stream, or of every shard's
async def test_stalled_delivery_while_the_back_office_answers_is_unhealthy_until_it_drains(
        service_settings, standins_clean, service_redis) -> None:
    s, r = standins_clean, service_redis
    async with started_and_delivered(service_settings, s, r) as service:
        port = service.server.port
        # the back office answers every status batch, with a reply the service cannot use
        s.backoffice.set_mode("wrong_types", endpoints=["status_batch"])
        s.whatsapp.close("s0", 503)
        report = await eventually_health(port, 503, 10, "stalled delivery reported")
        assert report["outbox_oldest_age_s"] > STALL_S
        assert any("delivery stalled" in reason for reason in report["reasons"])
        assert report["stuck"] == 0
        s.backoffice.set_mode("ok")
        await eventually(lambda: r.outbox_length() == 0, 10, "drained")
        report = await eventually_health(port, 200, 5, "healthy again")
        assert report["reasons"] == []


@SERVICE_ON_BOTH
async def test_a_back_office_that_is_down_is_not_a_stall_of_this_process(
        service_settings, standins_clean, service_redis) -> None:
    s, r = standins_clean, service_redis
    async with started_and_delivered(service_settings, s, r) as service:
        port = service.server.port
        s.backoffice.set_mode("error500", endpoints=["status_batch"])
        s.whatsapp.close("s0", 503)
        await eventually(lambda: r.outbox_length() > 0, 5, "updates waiting")
        # wait past the bound by the outbox's own clock (its oldest entry), then past the reply window
        await eventually(lambda: service.outbox.retries >= 3, 10, "several refused batches")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * STALL_S + 5
        while True:
            status, report = await healthz(port)
            assert status == 200, report
            if report["outbox_oldest_age_s"] > 2 * STALL_S:
                break
            assert loop.time() < deadline, "the outbox never aged past the bound"
            await asyncio.sleep(0.05)
        s.backoffice.set_mode("ok")
        await eventually(lambda: r.outbox_length() == 0, 10, "drained")
