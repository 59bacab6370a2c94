"""service/README.md's claim about a close event's path, checked: the files under `service/`
whose functions run from the moment the `wire` transport reports a close (code 503, link
open) until the session's status write has landed in Redis (its reply read and checked) and
the backoff timer is armed are traced (`sys.setprofile`), and those that are not excluded by
the README's counting rule must be exactly the README's list — a new hop, or a listed file
the close no longer passes, turns this red.

One session on the service's own parts (the app's Redis client and transport, a leased
runner with its fencing token, the Redis store, its per-tick pipeline and the timers) against
a real redis-server and the real WhatsApp stand-in; nothing else of a service runs (no
gateway loops, outbox flusher, GC pacer or probes), so every traced function is the close's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from service import keys
from service.backoffice import HttpBackOffice
from service.config import load_settings
from service.core.events import Start
from service.lease import RedisLeases
from service.logging import get_logger
from service.metrics import ServiceMetrics
from service.ports import Secret
from service.redis_outbox import RedisOutbox
from service.redis_scripts import load_scripts
from service.runtime import app
from service.runtime.context import RunnerContext
from service.runtime.runner import SessionRunner
from service.runtime.timeline import TimelineWriter
from service.runtime.drivers import ReconnectTimers
from service.store import RedisStatusStore, ValidityCache
from service.validity import ValidityChain
from tests.fixtures.close_path import readme_claim
from tests.fixtures.service import settings_overrides
from tests.fixtures.standins import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LANDED = RedisStatusStore._checked.__code__  # reads and checks a fenced write's reply: the write has landed


class PathTrace:
    """Files under service/ with a function called, until the fenced write's reply is checked."""

    def __init__(self) -> None:
        self.files: dict[str, set[str]] = {}
        self.landed = False
        self._service = str(ROOT / "service") + "/"

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if self.landed:
            return
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(self._service):
            self.files.setdefault(code.co_filename[len(str(ROOT)) + 1:], set()).add(code.co_qualname)
        elif event == "return" and code is LANDED:
            self.landed = True


async def test_a_close_event_touches_exactly_the_files_the_readme_lists(redis_server, redis_client, standins_clean,
                                                                       tmp_path) -> None:
    s = standins_clean
    s.backoffice.add_account("s0")
    # the note's delays ten times over: the backoff timer (20 s) cannot fire inside the traced window
    settings = load_settings(environ={}, overrides=settings_overrides(redis_server, s, tmp_path, sessions="s0",
                                                                      time_scale=10.0))
    policy = settings.build_policy()
    redis = app.redis_client(settings, 4)
    timers = ReconnectTimers()
    backoffice = HttpBackOffice(settings.backoffice_url, settings.backoffice_token, timeout_s=2.0)
    outbox = RedisOutbox(redis, backoffice, batch_size=100, flush_interval_s=60.0, retry_base_s=0.1,
                         retry_cap_s=1.0, due_work=timers)  # not started: its flusher would run beside the close
    cache = ValidityCache(5.0)
    store = RedisStatusStore(redis, cache=cache, outbox=outbox, due_work=timers)
    transport = app.make_transport(settings, policy.timeouts.keepalive_interval_s, policy.timeouts.keepalive_misses,
                                   due_work=timers)
    lease = RedisLeases(redis, "close-path", ttl_s=60.0)
    ctx = RunnerContext(store=store, validity=ValidityChain(store, backoffice, cache), transport=transport,
                        policy=policy, metrics=ServiceMetrics(), timeline=TimelineWriter(None),
                        log=get_logger(component="close-path"), timers=timers)
    runner = None
    try:
        await load_scripts(redis)
        assert await lease.acquire("s0")
        runner = SessionRunner("s0", Secret(""), ctx, fence=lease.token("s0"))
        await runner.deliver(Start())
        await eventually(lambda: runner.machine.state.value == "open" and not runner.has_unwritten, 10, "s0 open")
        assert runner.timer_due is None
        trace = PathTrace()
        sys.setprofile(trace)
        try:
            s.whatsapp.close("s0", 503)
            await eventually(lambda: trace.landed, 10, "the close's status write landed")
        finally:
            sys.setprofile(None)
        assert runner.timer_due is not None, "the write landed before the backoff timer was armed"
        assert runner.machine.state.value == "backoff" and runner.status.value == "connecting"
        assert redis_client.get(keys.status_key("s0")) == b"connecting"
    finally:
        if runner is not None:
            await runner.aclose()
        await store.aclose()
        await transport.aclose()
        await backoffice.aclose()
        await redis.aclose()
    hops, excluded = readme_claim()
    traced = set(trace.files)
    on_path = traced - excluded
    detail = "\n".join(f"{f}: {sorted(trace.files[f])}" for f in sorted(traced))
    assert "service/transports/wire_link.py" in traced, f"the trace started after the transport:\n{detail}"
    assert on_path == hops, (f"service/README.md lists {sorted(hops)} on a close event's path; traced beyond its "
                             f"exclusions: {sorted(on_path)} (new: {sorted(on_path - hops)}, not passed: "
                             f"{sorted(hops - on_path)})\n{detail}")
