"""The neonize fleet: many real neonize clients per worker process, and what a worker's
death does to them.

Every client dials for real (worker → Toxiproxy → the loopback SOCKS5 server, whose
answer is held back so the dial stays in flight) and is then opened by handing its
worker the `Connected` event Go would send (WhatsApp cannot be reached here). A worker
killed with SIGKILL, or aborting (SIGABRT, what a Go fatal error inside neonize does),
must close exactly its own sessions' links; those sessions back off as the core says and
reconnect on another worker; the other worker's sessions see nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chaos.toxiproxy import Proxy, Toxiproxy
from service.core import SessionMachine, State
from service.core.events import BackoffElapsed, Closed, Opened, OpenSocket, ScheduleReconnect, Start, Validated
from service.errors import LinkFailed
from service.ports import Secret
from service.transports.neonize_transport import NeonizeLink, NeonizeTransport
from service.transports.neonize_worker.worker import WORKER_NICE
from tests.fixtures.socks5 import Socks5Server
from tests.integration.test_neonize_transport import POLICY, WARM_UP_S, gone, pb, wait_for_condition  # noqa: F401 - pb: a fixture

pytestmark = pytest.mark.integration

CLIENTS_PER_WORKER = 3
SESSIONS = 2 * CLIENTS_PER_WORKER  # two full workers


@pytest.fixture
async def fleet(toxiproxy: Toxiproxy, socks5_server: Socks5Server) -> AsyncIterator[NeonizeTransport]:
    """Workers of 3 clients, two workers' worth of slots kept warm, dials held in flight."""
    proxy: Proxy = toxiproxy.create_proxy(f"fleet-socks-{uuid.uuid4().hex[:8]}",
                                          upstream=f"127.0.0.1:{socks5_server.port}")
    proxy.add_toxic("timeout", stream="upstream", timeout=0)  # greeting swallowed: the dial stays in flight
    transport = NeonizeTransport(f"socks5://127.0.0.1:{proxy.listen_port}", clients_per_worker=CLIENTS_PER_WORKER,
                                 spare_workers=2, stop_grace_s=0.5, allow_event_injection=True)
    assert await transport.warm_up(WARM_UP_S) == 2
    try:
        yield transport
    finally:
        await transport.aclose()


async def open_injected(transport: NeonizeTransport, socks5_server: Socks5Server, session_id: str,
                        store: Secret, pb: object) -> NeonizeLink:
    """A link whose real dial reached the SOCKS5 server, opened by its worker's `Connected`."""
    dials = socks5_server.accepted
    link = transport.new_link(session_id, store)
    opening = asyncio.create_task(link.open(10.0))
    await wait_for_condition(lambda: socks5_server.accepted > dials, timeout_s=10.0, what=f"{session_id} dialing")
    link.inject_event("Connected", pb.Connected(status=True).SerializeToString())  # type: ignore[attr-defined]
    await asyncio.wait_for(opening, timeout=10.0)
    return link


async def reconnect(machine: SessionMachine, closed_code: str | None, transport: NeonizeTransport,
                    socks5_server: Socks5Server, store: Secret, pb: object) -> tuple[float, NeonizeLink]:
    """Feed the close to the core and carry out what it says until it opens again: the
    backoff it scheduled, its validation (valid), then a new link. Returns (delay, link)."""
    loop = asyncio.get_running_loop()
    commands = machine.handle(Closed(closed_code), now=loop.time())
    [schedule] = [c for c in commands if isinstance(c, ScheduleReconnect)]
    assert machine.state is State.BACKOFF
    await asyncio.sleep(schedule.delay_s)  # the reconnect timer
    machine.handle(BackoffElapsed(), now=loop.time())
    commands = machine.handle(Validated(ok=True), now=loop.time())
    assert any(isinstance(c, OpenSocket) for c in commands)
    link = await open_injected(transport, socks5_server, machine.session_id, store, pb)
    machine.handle(Opened(), now=loop.time())
    return schedule.delay_s, link


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT], ids=["SIGKILL", "SIGABRT"])
async def test_a_dead_worker_takes_down_only_its_own_sessions_which_back_off_and_reconnect(
        fleet: NeonizeTransport, socks5_server: Socks5Server, tmp_path: Path, pb: object, sig: signal.Signals) -> None:
    loop = asyncio.get_running_loop()
    stores = {f"s{n}": Secret(str(tmp_path / f"s{n}.db")) for n in range(SESSIONS)}
    machines = {sid: SessionMachine(sid, POLICY) for sid in stores}
    links: dict[str, NeonizeLink] = {}
    for sid, store in stores.items():
        machines[sid].handle(Start(), now=loop.time())
        links[sid] = await open_injected(fleet, socks5_server, sid, store, pb)
        machines[sid].handle(Opened(), now=loop.time())
    by_worker: dict[int | None, list[str]] = {}
    for sid, link in links.items():
        by_worker.setdefault(link.worker_pid, []).append(sid)
    assert sorted(len(sids) for sids in by_worker.values()) == [CLIENTS_PER_WORKER, CLIENTS_PER_WORKER]
    victim_pid = links["s0"].worker_pid
    [bystander_pid] = [pid for pid in by_worker if pid != victim_pid]
    assert victim_pid is not None and bystander_pid is not None

    os.kill(victim_pid, sig)
    victims, bystanders = by_worker[victim_pid], by_worker[bystander_pid]
    closes = await asyncio.wait_for(asyncio.gather(*(links[sid].wait_closed() for sid in victims)), timeout=10.0)
    assert {(c.code, c.reason) for c in closes} == {(None, f"worker_exited:{-sig}")}
    assert gone(victim_pid)

    reconnected = await asyncio.wait_for(asyncio.gather(*(
        reconnect(machines[sid], None, fleet, socks5_server, stores[sid], pb) for sid in victims)), timeout=30.0)
    first_delay_s = POLICY.backoff.schedule_s()[0]
    for sid, (delay_s, link) in zip(victims, reconnected, strict=True):
        assert delay_s == first_delay_s, f"{sid} must back off as the policy says"
        assert machines[sid].state is State.OPEN and link.is_open
        assert link.worker_pid not in (victim_pid, bystander_pid)  # a warm worker, not the dead or the full one
        await asyncio.wait_for(links[sid].close(), timeout=5.0)  # the dead link's close returns at once
    # the other worker's sessions saw nothing: same worker, open, not one message
    for sid in bystanders:
        link = links[sid]
        assert link.worker_pid == bystander_pid and link.is_open and machines[sid].state is State.OPEN
        assert link._route is not None and link._route.messages.empty()
    assert not gone(bystander_pid)


async def test_workers_run_behind_the_service_in_its_scheduling_group(fleet: NeonizeTransport) -> None:
    """Linux schedules each session as one group (autogroup): a worker in a session of its own
    took the CPU on par with the service's event loop whatever its nice value (a 1,000-session
    storm's reconnect timers were 341-486 ms late at p99). In the service's session, its nice
    puts it behind the loop; in a process group of its own, a terminal's Ctrl-C misses it."""
    service_nice = os.getpriority(os.PRIO_PROCESS, 0)
    own_autogroup = Path("/proc/self/autogroup")
    assert len(fleet.fleet.workers) == 2
    for worker in fleet.fleet.workers:
        assert os.getsid(worker.pid) == os.getsid(0), "a worker must stay in the service's session"
        assert os.getpgid(worker.pid) == worker.pid != os.getpgid(0)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, service_nice + WORKER_NICE)
        if own_autogroup.exists():  # kernels with autogroup scheduling
            # the file reads empty for a task whose group is a cgroup's, not an autogroup (containers)
            group = Path(f"/proc/{worker.pid}/autogroup").read_text().split()[:1]
            assert group == own_autogroup.read_text().split()[:1]


async def test_a_worker_past_max_connects_takes_no_new_client_and_exits_once_its_last_is_gone(
        toxiproxy: Toxiproxy, socks5_server: Socks5Server, tmp_path: Path) -> None:
    """neonize leaks a file and memory per connect: a worker is replaced after `worker_max_connects`."""
    proxy = toxiproxy.create_proxy(f"fleet-max-{uuid.uuid4().hex[:8]}", upstream=f"127.0.0.1:{socks5_server.port}")
    transport = NeonizeTransport(f"socks5://127.0.0.1:{proxy.listen_port}", clients_per_worker=2,
                                 worker_max_connects=2, spare_workers=1, stop_grace_s=1.0)
    try:
        assert await transport.warm_up(WARM_UP_S) == 1
        pids = []
        for n in range(3):  # every dial is refused at the SOCKS5 server: a failed attempt
            link = transport.new_link(f"s{n}", Secret(str(tmp_path / f"s{n}.db")))
            with pytest.raises(LinkFailed):
                await link.open(10.0)
            await link.close()
            pids.append(link.worker_pid)
        assert pids[0] == pids[1] != pids[2], "the third client must go to a fresh worker"
        await wait_for_condition(lambda: gone(pids[0]), timeout_s=10.0, what="the used-up worker exited")
        assert not gone(pids[2])
    finally:
        await transport.aclose()


def test_a_worker_starts_in_its_own_process_group_on_uvloop() -> None:
    """The service's default loop is uvloop, which refuses `create_subprocess_exec`'s
    `process_group`: the worker must still start (it took a `ValueError` on every dial once)
    and still leave the service's process group, not its session."""
    import sys

    import uvloop

    from service.transports.neonize_worker.supervisor import WorkerProcess

    async def spawn_and_stop() -> tuple[bool, int, int]:
        worker = await WorkerProcess.spawn(sys.executable)
        try:
            ready = await asyncio.wait_for(worker.wait_ready(), 60)
            return ready, os.getpgid(worker.pid), os.getsid(worker.pid)
        finally:
            await worker.stop(grace_s=10)

    ready, group, session = uvloop.run(spawn_and_stop())
    assert ready
    assert group != os.getpgid(0)
    assert session == os.getsid(0)
