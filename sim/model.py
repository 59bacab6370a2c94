"""One block of the population model: SimPy's clock driving `service.core` machines.

A block is a set of sessions that share nothing with other blocks (whole IP groups),
so blocks run in any order or process and merge into the same result. Each *unit* is
one `SessionMachine` standing for `count` identical sessions: `count` is 1 in the
per-session engine; the cohort engine (no jitter, no per-session chance) starts with one
unit per IP group and splits a unit only when an upstream treats its members apart (a
rate limit admitting some of them). Every reconnect decision is the core's; this shell
only carries out commands against modelled upstreams and counts. Must not do I/O.

Why callbacks on `Timeout` instead of a process per session: see
shared/reference/simpy-performance.md (no `Process`/`Initialize` events, ~40 % faster).
"""

from __future__ import annotations

import random

import simpy
from simpy.events import Timeout

from service.core import Policy, SessionMachine, Status
from service.core.events import (
    BackoffElapsed, CancelReconnect, ClearCache, CloseSocket, Drop, Emit, Opened,
    OpenSocket, Released, Resumed, ScheduleReconnect, SetStatus, Start, StartFailed, Validate,
    Validated,
)
from service.core.statuses import Priority, is_valid_status
from service.core.vocabulary import DropReason, FailReason, ReleaseReason
from sim.params import ModelParams
from sim.population import PopulationScenario
from sim.tally import TICKS_PER_S, Tally, bins_for
from sim.pushback import Upstreams
from sim.upstreams import WhatsApp

RATE_LIMIT_CODE = 429  # what WhatsApp's refusal looks like to the close-code table
_OPENED, _ELAPSED = Opened(), BackoffElapsed()
_VALID, _INVALID = Validated(ok=True), Validated(ok=False)
_REFUSED = StartFailed(reason=FailReason.REFUSED)
_TIMED_OUT = StartFailed(reason=FailReason.CONNECT_TIMEOUT)
_RATE_LIMITED = StartFailed(reason=FailReason.RATE_LIMITED, code=RATE_LIMIT_CODE)
_FINAL_DROPS = {DropReason.MAX_ATTEMPTS: "inactive", DropReason.TERMINAL: "inactive",
                DropReason.INVALID: "cancelled"}


class Unit:
    """One machine and the sessions it stands for, with their modelled link and account."""

    __slots__ = ("machine", "count", "ip", "proc", "socket_open", "timer_token", "timer_due_s", "wait_token",
                 "pending_attempt", "episode_s", "disrupted", "opening_attempt", "acct_times",
                 "acct_locked_until_s", "link_down", "deleted", "dropped", "status")

    def __init__(self, machine: SessionMachine, count: int, ip: int, proc: int) -> None:
        self.machine, self.count, self.ip, self.proc = machine, count, ip, proc
        self.socket_open = False
        self.timer_token = 0
        self.wait_token = 0  # a reply in flight (pushback) is delivered only if this has not moved
        self.timer_due_s = 0.0
        self.pending_attempt = 0
        self.episode_s: float | None = None  # when the current disruption began
        self.disrupted = False
        self.opening_attempt = 0
        self.acct_times: list[float] = []  # recent admitted connects (per-account window)
        self.acct_locked_until_s = -1.0
        self.link_down = False  # this session's own link (flaky links)
        self.deleted = False
        self.dropped: str | None = None
        self.status: Status | None = None  # the session's status in (modelled) Redis

    def split(self, count: int) -> Unit:
        """A twin standing for `count` of this unit's sessions, in exactly the same state."""
        twin = type(self)(self.machine.fork(), count, self.ip, self.proc)  # same state, same random stream
        for name in Unit.__slots__[3:]:
            setattr(twin, name, getattr(self, name))
        twin.acct_times = list(self.acct_times)
        self.count -= count
        return twin


class BlockModel:
    """Sessions [first, first + n) of a run, simulated in their own SimPy environment."""

    def __init__(self, params: ModelParams, scenario: PopulationScenario, block: int,
                 first: int, n: int, *, cohort: bool, trace: bool = False, policy: Policy | None = None) -> None:
        self.params, self.scenario, self.block, self.cohort = params, scenario, block, cohort
        self.env = simpy.Environment()
        self.policy = params.policy() if policy is None else policy  # a given policy: the twin's, as chaos runs it
        self.rng = random.Random(f"{params.seed}:{block}:jitter")
        self.fault_rng = random.Random(f"{params.seed}:{block}:faults")
        self.tally = Tally(n_bins=bins_for(params.until_s, params.bin_s))
        self.whatsapp = WhatsApp(params)
        self.trace = trace
        self.timeline: list = []
        self.down_depth = 0  # > 0 while a shared link-down window is open
        self.warming = False
        self.units = self._make_units(first, n)
        self.upstreams = (Upstreams(params, n / params.sessions, random.Random(f"{params.seed}:{block}:latency"))
                          if params.pushes_back else None)
        self._wait_s = 0.0  # what the commands of the current step waited for, in order
        self._do = {SetStatus: self._set_status, ScheduleReconnect: self._schedule,
                    ClearCache: self._clear_cache, Validate: self._validate,
                    OpenSocket: self._open_socket, CloseSocket: self._close_socket,
                    CancelReconnect: self._cancel, Drop: self._drop, Emit: self._emit}

    def _make_units(self, first: int, n: int) -> list[Unit]:
        spi, procs = self.params.sessions_per_ip, _processes(self.scenario)
        units = []
        if self.cohort:
            ip = first // spi
            end = first + n
            while ip * spi < end:
                lo, hi = max(first, ip * spi), min(end, (ip + 1) * spi)
                units.append(Unit(self._machine(f"ip{ip}"), hi - lo, ip, ip % procs))
                ip += 1
        else:
            for i in range(first, first + n):
                units.append(Unit(self._machine(f"s{i}"), 1, i // spi, (i // spi) % procs))
        return units

    def _machine(self, session_id: str, status: Status | None = None) -> SessionMachine:
        # a modelled process never crashes (a deploy hands its units over itself): no bookkeeping
        return SessionMachine(session_id, self.policy, self.rng, status=status, trace=self.trace, persist=False)

    # ---- running ----
    def run(self) -> Tally:
        from sim import faults  # the fault processes live beside the model

        self.warming = True
        for unit in self.units:  # the population starts online (warm): not counted as load
            self.feed(unit, Start())
        self.warming = False
        faults.install(self)
        self.env.run(until=self.params.until_s)
        self._final_outcomes()
        self.tally.units = len(self.units)
        return self.tally

    def _final_outcomes(self) -> None:
        outcomes = self.tally.outcomes
        for unit in self.units:
            if unit.dropped in _FINAL_DROPS:
                outcomes[_FINAL_DROPS[unit.dropped]] += unit.count
            elif unit.dropped is None and unit.socket_open:
                outcomes["recovered" if unit.disrupted else "undisturbed"] += unit.count
            else:
                outcomes["reconnecting"] += unit.count

    def feed(self, unit: Unit, event) -> None:
        """Hand `event` to the unit's machine and carry out every command it returns."""
        tally = self.tally
        tally.core_events += unit.count
        tally.handle_calls += 1
        commands = unit.machine.handle(event, self.env.now)
        do = self._do
        self._wait_s = 0.0
        for command in commands:
            follow_up = do[type(command)](unit, command)
            if follow_up is None:
                continue
            if self._wait_s > 0:
                self._reply_later(unit, follow_up, self._wait_s)
            else:
                if follow_up is _OPENED:
                    self._opened(unit)
                self.feed(unit, follow_up)

    def _reply_later(self, unit: Unit, event, delay_s: float) -> None:
        """An upstream answers after `delay_s`: deliver `event` then, unless the session moved on."""
        unit.wait_token += 1
        Timeout(self.env, delay_s, (unit, unit.wait_token, event)).callbacks.append(self._on_reply)

    def _on_reply(self, timeout: Timeout) -> None:
        unit, token, event = timeout.value
        if token != unit.wait_token or unit.dropped is not None or not unit.machine.accepts(event):
            return
        if event is _OPENED:
            self._opened(unit)
        self.feed(unit, event)

    def disrupt(self, unit: Unit, event) -> None:
        """Close an open session (a fault): the start of a disruption episode."""
        unit.wait_token += 1  # a connect in flight is lost with the link
        unit.socket_open = False
        unit.episode_s = self.env.now
        unit.disrupted = True
        self.feed(unit, event)

    def redis_op(self, count: int) -> None:
        """Count `count` Redis operations now (per bin, and per tick for 1 s sliding-window rates)."""
        self.tally.redis_ops[self.bin()] += count
        self.tally.redis_ticks[int(self.env.now * TICKS_PER_S)] += count
        if self.upstreams is not None and not self.warming:
            self._wait_s += self.upstreams.redis.wait_s(self.env.now + self._wait_s, count)

    def bin(self) -> int:
        index = int(self.env.now / self.params.bin_s)
        return index if index < self.tally.n_bins else self.tally.n_bins - 1

    # ---- commands ----
    def _set_status(self, unit: Unit, command: SetStatus) -> None:
        unit.status = command.status
        if self.warming:
            return
        self.redis_op(unit.count)
        now = self.env.now
        if self.upstreams is not None:  # the outbox does not hold the session, but occupies the back office
            self.upstreams.backoffice.occupy(now, unit.count / self.params.backoffice_batch)
        if command.priority is Priority.HIGH:
            self.tally.high_updates[now] += unit.count
        else:
            flush_s = self.params.backoffice_flush_s
            self.tally.normal_updates[-int(-now // flush_s)] += unit.count  # next flush

    def _clear_cache(self, unit: Unit, command: ClearCache) -> None:
        if not self.warming:
            self.redis_op(unit.count)

    def _validate(self, unit: Unit, command: Validate) -> Validated:
        self.tally.redis_ops[self.bin()] += unit.count
        self.tally.redis_ticks[int(self.env.now * TICKS_PER_S)] += unit.count
        if self.upstreams is not None:
            self._wait_s += self.upstreams.validation_s(self.env.now + self._wait_s, unit.count)
        ok = (not unit.deleted and unit.status is not None
              and is_valid_status(unit.status, for_reconnect=command.for_reconnect))
        return _VALID if ok else _INVALID

    def _schedule(self, unit: Unit, command: ScheduleReconnect) -> None:
        unit.timer_token += 1
        unit.timer_due_s = self.env.now + command.delay_s
        unit.pending_attempt = command.attempt
        Timeout(self.env, command.delay_s, (unit, unit.timer_token)).callbacks.append(self._on_timer)

    def _on_timer(self, event: Timeout) -> None:
        unit, token = event.value
        self.tally.timer_events += 1
        if token == unit.timer_token and unit.dropped is None:
            self.feed(unit, _ELAPSED)

    def _cancel(self, unit: Unit, command: CancelReconnect) -> None:
        unit.timer_token += 1

    def _close_socket(self, unit: Unit, command: CloseSocket) -> None:
        unit.socket_open = False

    def _drop(self, unit: Unit, command: Drop) -> None:
        unit.dropped = command.reason
        unit.socket_open = False

    def _emit(self, unit: Unit, command: Emit) -> None:
        self.timeline.append(command.record)

    def _open_socket(self, unit: Unit, command: OpenSocket):
        unit.opening_attempt = command.attempt
        if self.warming:
            return _OPENED
        count, index, tally = unit.count, self.bin(), self.tally
        tally.connects[index] += count
        tally.connect_ticks[int(self.env.now * TICKS_PER_S)] += count
        if command.attempt > 0:
            tally.attempts[index] += count
        if self.upstreams is not None:
            connect_s = self.upstreams.whatsapp.wait_s(self.env.now + self._wait_s, count)
            if connect_s > self.upstreams.connect_timeout_s:  # the handshake still occupies WhatsApp
                self._wait_s += self.upstreams.connect_timeout_s
                tally.timed_out[index] += count
                return _TIMED_OUT
            self._wait_s += connect_s
        if self.down_depth or unit.link_down:
            return _REFUSED
        now = self.env.now
        admitted = self.whatsapp.admit(unit, now)
        if admitted < count:
            tally.rate_limited[index] += count - admitted
            if admitted == 0:
                return _RATE_LIMITED
            twin = unit.split(count - admitted)
            self.units.append(twin)
            self.feed(twin, _RATE_LIMITED)
        self.whatsapp.admitted(unit, now)
        return _OPENED

    def _opened(self, unit: Unit) -> Opened:
        unit.socket_open = True
        if not self.warming:
            self.tally.opened[self.bin()] += unit.count
        if unit.episode_s is not None and not self.warming:
            self.tally.recovery_s.append(self.env.now - unit.episode_s)
            self.tally.recovery_weight.append(unit.count)
            self.tally.recovered_on_attempt[unit.opening_attempt] += unit.count
        unit.episode_s = None
        return _OPENED

    # ---- hand-over (rolling deploy) ----
    def release(self, unit: Unit) -> tuple[bool, float, int] | None:
        """Let a unit go (its process restarts); returns what the next owner needs, or None."""
        if unit.dropped is not None:
            return None
        was_open = unit.socket_open
        if was_open:
            unit.episode_s = self.env.now
            unit.disrupted = True
        remaining_s = max(0.0, unit.timer_due_s - self.env.now)
        self.feed(unit, Released(reason=ReleaseReason.DEPLOY))
        unit.dropped = ReleaseReason.RELEASED
        return was_open, remaining_s, unit.pending_attempt

    def release_process(self, process: int) -> list[tuple[Unit, tuple[bool, float, int]]]:
        """Release every unit of gateway process `process`: (unit, handover) for each one to take over."""
        released = [(unit, self.release(unit)) for unit in list(self.units) if unit.proc == process]
        return [(unit, handover) for unit, handover in released if handover is not None]

    def take_over(self, unit: Unit, handover: tuple[bool, float, int]) -> None:
        """A new process takes the unit over: start it again, or resume its pending attempt (B5)."""
        was_open, remaining_s, attempt = handover
        if unit.dropped != ReleaseReason.RELEASED:
            return
        unit.machine = self._machine(unit.machine.session_id, status=unit.status)
        unit.dropped = None
        if was_open:
            self.feed(unit, Start())
        else:
            self.feed(unit, Resumed(attempt=attempt, remaining_s=remaining_s))


def _processes(scenario: PopulationScenario) -> int:
    from sim.population import RollingDeploy

    return max([f.processes for f in scenario.faults if isinstance(f, RollingDeploy)] or [1])
