"""The neonize transport with real neonize clients dialing through real faults, offline.

Path of every dial: neonize worker process → Toxiproxy proxy (127.0.0.1) → the test's
SOCKS5 server (127.0.0.1), which refuses WhatsApp's hosts (nothing leaves loopback).
So the real client's dial path fails for real, and the transport must classify it; the
core (`SessionMachine`, scaled policy, `whatsmeow` table) decides what happens next.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chaos.toxiproxy import Proxy, Toxiproxy
from service.core import SessionMachine, State, Status, build_policy
from service.core.events import (
    BackoffElapsed, Closed, CloseSocket, Command, Drop, Event, Opened, OpenSocket, ScheduleReconnect,
    SetStatus, Start, StartFailed, Validate, Validated,
)
from service.errors import LinkFailed
from service.ports import Link, Secret, Transport
from service.transports.neonize_transport import NeonizeLink, NeonizeTransport
from tests.fixtures.socks5 import REPLY_NOT_ALLOWED, Socks5Server

pytestmark = pytest.mark.integration

POLICY = build_policy({"time_scale": 0.05, "codes": "whatsmeow"})  # delays 0.1…1.6 s, connect 1 s
WARM_UP_S = 30.0
PROXY_PASSWORD = "pw-" + uuid.uuid4().hex


@pytest.fixture
def socks_proxy(toxiproxy: Toxiproxy, socks5_server: Socks5Server) -> Proxy:
    """A Toxiproxy proxy in front of the SOCKS5 server: the dial path's fault point."""
    return toxiproxy.create_proxy(f"neonize-socks-{uuid.uuid4().hex[:8]}", upstream=f"127.0.0.1:{socks5_server.port}")


@pytest.fixture
async def transport(socks_proxy: Proxy) -> AsyncIterator[NeonizeTransport]:
    proxy_url = f"socks5://lab:{PROXY_PASSWORD}@127.0.0.1:{socks_proxy.listen_port}"
    transport = NeonizeTransport(proxy_url, spare_workers=1, clients_per_worker=8, stop_grace_s=1.0,
                                 worker_log_level="DEBUG")
    ready = await transport.warm_up(WARM_UP_S)
    assert ready == 1, "neonize workers did not start (is neonize installed?)"
    try:
        yield transport
    finally:
        await transport.aclose()


@pytest.fixture
def store(tmp_path: Path) -> Secret:
    return Secret(str(tmp_path / f"store-{uuid.uuid4().hex}.db"))


def released(transport: NeonizeTransport, link: NeonizeLink) -> bool:
    """True when no worker holds a slot for the link's client any more."""
    return all(link.client_id not in worker._routes for worker in transport.fleet.workers)


def gone(pid: int | None) -> bool:
    """True when the process no longer exists (it was reaped)."""
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@dataclass
class LoopLag:
    """Measures how late a 5 ms sleep wakes up: the event loop's responsiveness."""

    interval_s: float = 0.005
    max_lag_s: float = 0.0
    samples: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def _run(self, started: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            started.set()
            await asyncio.sleep(self.interval_s)
            self.max_lag_s = max(self.max_lag_s, loop.time() - before - self.interval_s)
            self.samples += 1

    async def __aenter__(self) -> LoopLag:
        started = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(started))
        await started.wait()  # measuring from here on, before the code under test runs
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class Driver:
    """A minimal shell: runs the core's commands with the real transport (no Redis, no back office)."""

    machine: SessionMachine
    transport: Transport
    credentials: Secret
    opens_s: list[float] = field(default_factory=list)  # loop time of each OpenSocket
    failures_s: list[float] = field(default_factory=list)  # loop time each open() failed
    failures: list[LinkFailed] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    dropped: str | None = None
    link: Link | None = None

    async def run(self, limit_s: float) -> None:
        loop = asyncio.get_running_loop()
        events: list[Event] = [Start()]
        async with asyncio.timeout(limit_s):
            while events and self.dropped is None:
                for command in self.machine.handle(events.pop(0), loop.time()):
                    events += await self._execute(command, loop)

    async def _execute(self, command: Command, loop: asyncio.AbstractEventLoop) -> list[Event]:
        if isinstance(command, OpenSocket):
            self.opens_s.append(loop.time())
            self.link = self.transport.new_link(self.machine.session_id, self.credentials)
            try:
                await self.link.open(self.machine.policy.timeouts.connect_timeout_s)
            except LinkFailed as err:
                self.failures_s.append(loop.time())
                self.failures.append(err)
                return [StartFailed(reason=err.reason, code=err.code)]
            return [Opened()]
        if isinstance(command, CloseSocket) and self.link is not None:
            await self.link.close()
        elif isinstance(command, ScheduleReconnect):
            await asyncio.sleep(command.delay_s)  # the service's reconnect timer
            return [BackoffElapsed()]
        elif isinstance(command, Validate):
            return [Validated(ok=True)]
        elif isinstance(command, SetStatus):
            self.statuses.append(command.status)
        elif isinstance(command, Drop):
            self.dropped = command.reason
        return []


# ---- a failing dial, classified -------------------------------------------------------


async def test_a_real_dial_through_the_proxies_fails_and_is_classified(
        transport: NeonizeTransport, socks5_server: Socks5Server, store: Secret) -> None:
    link = transport.new_link("s-refused", store)
    assert isinstance(transport, Transport) and isinstance(link, Link)
    with pytest.raises(LinkFailed) as failure:
        await link.open(timeout_s=10.0)
    assert (failure.value.reason, failure.value.code) == ("proxy_refused_target", None)
    # the real client asked the SOCKS server (through Toxiproxy) for WhatsApp, and was refused
    [request] = socks5_server.requests
    assert (request.host, request.port, request.reply) == ("web.whatsapp.com", 443, REPLY_NOT_ALLOWED)
    await link.close()
    assert released(transport, link) and not gone(link.worker_pid)  # the worker hosts the next client


@pytest.mark.parametrize("fault,reasons", [
    ("disabled", {"connection_refused"}),
    ("reset_peer", {"connection_reset", "proxy_closed"}),
])
async def test_proxy_faults_are_classified(transport: NeonizeTransport, socks_proxy: Proxy,
                                           socks5_server: Socks5Server, store: Secret,
                                           fault: str, reasons: set[str]) -> None:
    if fault == "disabled":
        socks_proxy.disable()
    else:
        socks_proxy.add_toxic("reset_peer", stream="upstream", timeout=0)
    link = transport.new_link("s-fault", store)
    with pytest.raises(LinkFailed) as failure:
        await link.open(timeout_s=10.0)
    assert failure.value.reason in reasons
    assert socks5_server.requests == []  # the fault struck before the SOCKS handshake
    await link.close()


# ---- the core drives five failed attempts to inactive --------------------------------------


# every attempt finds the warm worker: on a loaded 2-CPU machine a fresh worker's neonize
# import alone can take a second, the scaled connect deadline
async def test_five_failed_attempts_with_the_policys_delays_then_inactive(
        transport: NeonizeTransport, socks5_server: Socks5Server, store: Secret) -> None:
    machine = SessionMachine("s-outage", POLICY)
    driver = Driver(machine, transport, store)
    async with LoopLag() as lag:
        await driver.run(limit_s=30.0)
    assert lag.max_lag_s < 0.1, f"event loop blocked for {lag.max_lag_s:.3f}s"

    assert driver.dropped == "max_attempts" and machine.state is State.DROPPED
    assert driver.statuses == [Status.CONNECTING, Status.INACTIVE]
    assert {f.reason for f in driver.failures} == {"proxy_refused_target"}
    delays_s = POLICY.backoff.schedule_s()  # 0.1, 0.2, 0.4, 0.8, 1.6
    assert len(driver.opens_s) == 1 + POLICY.backoff.max_attempts == 6
    for n, delay_s in enumerate(delays_s, start=1):
        gap_s = driver.opens_s[n] - driver.failures_s[n - 1]
        assert delay_s - 0.005 <= gap_s <= delay_s + 0.05, f"attempt {n}: waited {gap_s:.3f}s, policy {delay_s}s"
    # every attempt really dialed, soon after the core asked for it
    dials_s = [r.at_s for r in socks5_server.requests]
    assert len(dials_s) == 6
    for n, (open_s, dial_s) in enumerate(zip(driver.opens_s, dials_s, strict=True)):
        assert 0.0 <= dial_s - open_s <= 0.5, f"attempt {n}: dialed {dial_s - open_s:.3f}s after OpenSocket"


# ---- a hung dial is cut off by the service's deadline ----------------------------------------


async def test_a_hung_dial_is_killed_at_the_deadline_and_counts_as_a_failed_attempt(
        transport: NeonizeTransport, socks_proxy: Proxy, socks5_server: Socks5Server, store: Secret) -> None:
    socks_proxy.add_toxic("timeout", stream="upstream", timeout=0)  # greeting swallowed, socket kept open
    machine = SessionMachine("s-hung", POLICY)
    machine.handle(Start(), now=0.0)
    timeout_s = POLICY.timeouts.connect_timeout_s
    loop = asyncio.get_running_loop()
    link = transport.new_link("s-hung", store)
    async with LoopLag() as lag:
        started_s = loop.time()
        with pytest.raises(LinkFailed) as failure:
            await link.open(timeout_s)
        elapsed_s = loop.time() - started_s
    assert failure.value.reason == "connect_timeout"
    assert timeout_s <= elapsed_s <= timeout_s + 0.5
    # neonize's stop() blocks while the dial hangs: the worker is killed after the grace
    await asyncio.wait_for(link.close(), timeout=transport.stop_grace_s + 5.0)
    assert gone(link.worker_pid), "a worker whose client cannot be stopped must be killed"
    assert socks5_server.accepted >= 1 and socks5_server.requests == []  # reached the proxy, never answered
    assert lag.samples >= 50 and lag.max_lag_s < 0.1, f"event loop blocked for {lag.max_lag_s:.3f}s"

    commands = machine.handle(StartFailed(reason=failure.value.reason, code=failure.value.code), now=elapsed_s)
    assert machine.state is State.BACKOFF and machine.attempts == 1
    assert any(isinstance(c, ScheduleReconnect) and c.delay_s == POLICY.backoff.schedule_s()[0] for c in commands)


async def test_close_during_a_hung_dial_ends_the_worker(
        transport: NeonizeTransport, socks_proxy: Proxy, socks5_server: Socks5Server, store: Secret) -> None:
    socks_proxy.add_toxic("timeout", stream="upstream", timeout=0)
    link = transport.new_link("s-close", store)
    opening = asyncio.create_task(link.open(30.0))
    await wait_for_condition(lambda: socks5_server.accepted >= 1, timeout_s=5.0, what="dial in flight")
    await asyncio.wait_for(link.close(), timeout=5.0)  # stop() blocks in a dial: the grace kill ends it
    with pytest.raises(LinkFailed):
        await asyncio.wait_for(opening, timeout=5.0)
    assert gone(link.worker_pid)
    assert (await link.wait_closed()).reason == "closed_by_service"


# ---- secrets and bad input -----------------------------------------------------------------


async def test_store_and_proxy_credentials_never_logged(
        transport: NeonizeTransport, store: Secret, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="service.transports.neonize_transport")
    link = transport.new_link("s-secret", store)
    with pytest.raises(LinkFailed) as failure:
        await link.open(timeout_s=10.0)
    await link.close()
    assert "neonize worker" in caplog.text  # the worker's own (debug) log did come through
    shown = caplog.text + repr(transport) + repr(link) + str(failure.value)
    assert PROXY_PASSWORD not in shown and store.reveal() not in shown


async def test_a_link_is_single_use(transport: NeonizeTransport, store: Secret) -> None:
    link: NeonizeLink = transport.new_link("s-once", store)
    with pytest.raises(LinkFailed):
        await link.open(timeout_s=10.0)
    with pytest.raises(LinkFailed, match="already_used"):
        await link.open(timeout_s=10.0)
    await link.close()
    await link.close()  # idempotent


async def wait_for_condition(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline_s = loop.time() + timeout_s
    while not check():
        if loop.time() >= deadline_s:
            raise TimeoutError(f"{what}: not true after {timeout_s}s")
        await asyncio.sleep(0.01)


# ---- after open: events through the worker's real dispatch path ------------------------------
# WhatsApp cannot be reached, so Go never fires Connected/Disconnected here. The worker is
# started with --allow-inject and handed the serialized events Go would send; they go through
# neonize's own callback, the worker's handlers and main thread, the pipe, and the link.

DEAD_LINK_S = 0.3


@pytest.fixture
def pb() -> object:
    from neonize.proto import Neonize_pb2  # imported during setup: pytest's log handlers are in place

    return Neonize_pb2


@pytest.fixture
async def injecting(socks_proxy: Proxy) -> AsyncIterator[NeonizeTransport]:
    """A transport whose dials hang (so no real failure interferes) and whose workers accept events."""
    socks_proxy.add_toxic("timeout", stream="upstream", timeout=0)
    transport = NeonizeTransport(f"socks5://127.0.0.1:{socks_proxy.listen_port}", spare_workers=1,
                                 stop_grace_s=0.5, dead_link_after_s=DEAD_LINK_S, allow_event_injection=True)
    assert await transport.warm_up(WARM_UP_S) == 1
    try:
        yield transport
    finally:
        await transport.aclose()


async def open_by_injection(transport: NeonizeTransport, socks5_server: Socks5Server, store: Secret,
                            pb: object) -> NeonizeLink:
    link = transport.new_link("s-injected", store)
    opening = asyncio.create_task(link.open(10.0))
    await wait_for_condition(lambda: socks5_server.accepted >= 1, timeout_s=5.0, what="dial in flight")
    link.inject_event("Connected", pb.Connected(status=True).SerializeToString())  # type: ignore[attr-defined]
    await asyncio.wait_for(opening, timeout=5.0)
    assert link.is_open
    return link


async def test_disconnected_after_open_closes_the_link_and_the_core_backs_off(
        injecting: NeonizeTransport, socks5_server: Socks5Server, store: Secret, pb: object) -> None:
    machine = SessionMachine("s-injected", POLICY)
    machine.handle(Start(), now=0.0)
    link = await open_by_injection(injecting, socks5_server, store, pb)
    machine.handle(Opened(), now=0.1)
    link.inject_event("Disconnected", pb.Disconnected(status=True).SerializeToString())  # type: ignore[attr-defined]
    closed = await asyncio.wait_for(link.wait_closed(), timeout=5.0)
    assert closed.code == "Disconnected"
    # the worker stop()s its client at once; stop() blocks in this hung dial, so the grace kill ends it
    await asyncio.wait_for(link.close(), timeout=5.0)
    assert gone(link.worker_pid)
    machine.handle(Closed(closed.code, closed.wait_s), now=0.2)
    assert machine.state is State.BACKOFF and machine.attempts == 1


async def test_keepalive_timeout_closes_only_after_the_dead_link_deadline(
        injecting: NeonizeTransport, socks5_server: Socks5Server, store: Secret, pb: object) -> None:
    link = await open_by_injection(injecting, socks5_server, store, pb)
    timeout_event = pb.KeepAliveTimeout(ErrorCount=1, LastSuccess=1).SerializeToString()  # type: ignore[attr-defined]
    link.inject_event("KeepAliveTimeout", timeout_event)
    link.inject_event("KeepAliveRestored", pb.KeepAliveRestored().SerializeToString())  # type: ignore[attr-defined]
    with pytest.raises(TimeoutError):  # restored in time: the deadline is off
        await asyncio.wait_for(link.wait_closed(), timeout=3 * DEAD_LINK_S)
    loop = asyncio.get_running_loop()
    degraded_s = loop.time()
    link.inject_event("KeepAliveTimeout", timeout_event)
    closed = await asyncio.wait_for(link.wait_closed(), timeout=5.0)
    assert closed.code == "keepalive_timeout"
    assert loop.time() - degraded_s >= DEAD_LINK_S
    await link.close()


@pytest.mark.parametrize("event,make,code,wait_s,state", [
    ("ConnectFailure", lambda pb: pb.ConnectFailure(Reason=2, Message="m", Raw=pb.Node(Tag="failure")),
     "ConnectFailure:401", None, State.DROPPED),
    ("TemporaryBan", lambda pb: pb.TemporaryBan(Code=1, Expire=7), "TemporaryBan", 7.0, State.BACKOFF),
    ("StreamReplaced", lambda pb: pb.StreamReplaced(), "StreamReplaced", None, State.DROPPED),
])
async def test_a_rejection_while_opening_is_a_failed_start_with_its_close_code(
        injecting: NeonizeTransport, socks5_server: Socks5Server, store: Secret, pb: object,
        event: str, make: Callable[[object], object], code: str, wait_s: float | None, state: State) -> None:
    machine = SessionMachine("s-rejected", POLICY)
    machine.handle(Start(), now=0.0)
    link = injecting.new_link("s-rejected", store)
    opening = asyncio.create_task(link.open(10.0))
    await wait_for_condition(lambda: socks5_server.accepted >= 1, timeout_s=5.0, what="dial in flight")
    link.inject_event(event, make(pb).SerializeToString())  # type: ignore[attr-defined]
    with pytest.raises(LinkFailed) as failure:
        await asyncio.wait_for(opening, timeout=5.0)
    assert (failure.value.reason, failure.value.code, failure.value.wait_s) == ("rejected", code, wait_s)
    await asyncio.wait_for(link.close(), timeout=5.0)  # R7: the worker is gone before a new link opens
    assert gone(link.worker_pid)
    machine.handle(Closed(failure.value.code, failure.value.wait_s), now=0.1)
    assert machine.state is state


async def test_a_worker_crash_after_open_is_a_close_without_code(
        injecting: NeonizeTransport, socks5_server: Socks5Server, store: Secret, pb: object) -> None:
    link = await open_by_injection(injecting, socks5_server, store, pb)
    assert link.worker_pid is not None
    os.kill(link.worker_pid, signal.SIGABRT)
    closed = await asyncio.wait_for(link.wait_closed(), timeout=5.0)
    assert closed.code is None and closed.reason == f"worker_exited:{-signal.SIGABRT}"
    await link.close()


async def test_injection_is_refused_unless_enabled(transport: NeonizeTransport, store: Secret) -> None:
    link = transport.new_link("s-no-inject", store)
    with pytest.raises(RuntimeError, match="allow_event_injection"):
        link.inject_event("Connected", b"")
