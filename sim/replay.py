"""Replay a named scenario through `service.core` on SimPy's virtual clock.

The prediction the chaos runner compares reality with: each session starts at t=0, the
scenario's faults happen at their times, and every command the machine returns is
carried out against a modelled link, Redis status and back office with zero latency.
Owns no reconnect rule: every decision is the core's. Must not touch the network.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import simpy

from service.core import Policy, SessionMachine, Status, TimelineRecord
from service.core.events import (
    BackoffElapsed, CancelReconnect, ClearCache, Closed, CloseSocket, Command, Drop, Emit,
    Event, Opened, OpenSocket, ScheduleReconnect, SetStatus, Start, StartFailed, Validate,
    Validated,
)
from service.core.statuses import Priority, is_valid_status
from sim.scenarios import AccountDeleted, CloseWith, LinkDown, Scenario


@dataclass
class ReplayResult:
    """What a replay produced: the timeline, status writes and sockets opened per session."""

    scenario: str
    timeline: list[TimelineRecord] = field(default_factory=list)
    status_updates: list[tuple[float, str, Status, Priority]] = field(default_factory=list)
    sockets_opened: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    final_status: dict[str, Status | None] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    def attempt_times_s(self, session_id: str) -> list[float]:
        """Times of the reconnect sockets (attempt ≥ 1) of one session."""
        return [t for t, attempt in self.sockets_opened.get(session_id, []) if attempt >= 1]


class _ReplaySession:
    """Carries out one machine's commands on the SimPy clock."""

    def __init__(self, env: simpy.Environment, world: _World, machine: SessionMachine) -> None:
        self.env, self.world, self.machine = env, world, machine
        self.socket_open = False
        self.timer: simpy.Process | None = None
        world.result.sockets_opened[machine.session_id] = []

    def feed(self, event: Event) -> None:
        if self.machine.session_id in self.world.result.dropped:
            return
        pending = list(self.machine.handle(event, self.env.now))
        while pending:
            follow_up = self._run(pending.pop(0))
            if follow_up is not None:
                pending.extend(self.machine.handle(follow_up, self.env.now))

    def _run(self, command: Command) -> Event | None:
        sid, result = self.machine.session_id, self.world.result
        if isinstance(command, Emit):
            result.timeline.append(command.record)
        elif isinstance(command, SetStatus):
            self.world.status[sid] = command.status
            result.status_updates.append((self.env.now, sid, command.status, command.priority))
        elif isinstance(command, ScheduleReconnect):
            self.timer = self.env.process(self._timer(command.delay_s))
        elif isinstance(command, CancelReconnect):
            if self.timer is not None and self.timer.is_alive:
                self.timer.interrupt()
            self.timer = None
        elif isinstance(command, Validate):
            status = self.world.status.get(sid)
            ok = sid not in self.world.deleted and status is not None and is_valid_status(
                status, for_reconnect=command.for_reconnect)
            return Validated(ok=ok)
        elif isinstance(command, CloseSocket):
            self.socket_open = False
        elif isinstance(command, OpenSocket):
            result.sockets_opened[sid].append((self.env.now, command.attempt))
            if self.world.link_down:
                return StartFailed(reason="refused")
            self.socket_open = True
            return Opened()
        elif isinstance(command, Drop):
            result.dropped[sid] = command.reason
        elif not isinstance(command, ClearCache):  # the replay keeps no validity cache
            raise TypeError(f"replay cannot carry out {command!r}")
        return None

    def _timer(self, delay_s: float):
        try:
            yield self.env.timeout(delay_s)
        except simpy.Interrupt:
            return
        self.timer = None
        self.feed(BackoffElapsed())


@dataclass
class _World:
    result: ReplayResult
    status: dict[str, Status] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    link_down: bool = False


def replay(scenario: Scenario, policy: Policy, *, sessions: int = 1, seed: int = 0) -> ReplayResult:
    """Run `scenario` for `sessions` sessions (ids s0, s1, …) and return what happened."""
    env = simpy.Environment()
    world = _World(result=ReplayResult(scenario=scenario.name))
    rng = random.Random(seed)
    shells = [
        _ReplaySession(env, world, SessionMachine(f"s{i}", policy, random.Random(rng.getrandbits(64))))
        for i in range(sessions)
    ]
    for shell in shells:
        shell.feed(Start())
    for fault in scenario.faults:
        env.process(_fault(env, world, shells, fault))
    env.run(until=scenario.duration_s)
    for shell in shells:
        world.result.final_status[shell.machine.session_id] = world.status.get(shell.machine.session_id)
    return world.result


def _fault(env: simpy.Environment, world: _World, shells: list[_ReplaySession], fault):
    if isinstance(fault, LinkDown):
        yield env.timeout(fault.start_s)
        world.link_down = True
        for shell in shells:
            if shell.socket_open:
                shell.socket_open = False
                shell.feed(Closed(code=None))
        yield env.timeout(fault.end_s - fault.start_s)
        world.link_down = False
    elif isinstance(fault, CloseWith):
        yield env.timeout(fault.at_s)
        for shell in shells:
            if shell.socket_open:
                shell.socket_open = False
                shell.feed(Closed(code=fault.code))
    elif isinstance(fault, AccountDeleted):
        yield env.timeout(fault.at_s)
        for shell in shells:
            sid = shell.machine.session_id
            world.deleted.add(sid)
            world.status[sid] = Status.INACTIVE  # the back office shares Redis
    else:
        raise TypeError(f"replay does not know fault {fault!r}")
