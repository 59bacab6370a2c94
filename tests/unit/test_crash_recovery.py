"""Crash bookkeeping (B5) in the core: `first_event` pinned case by case, and a property test
that crashes a model shell at every write boundary and checks no counted attempt is lost or
repeated across crashes and recorded due times survive.

The model shell carries out the machine's commands one write at a time against a persisted
record (status + pending record), as the asyncio shell does against Redis: the pairs
`service.core.events` documents (SetStatus with the record command after it, MarkStarted
with its Validate) are one atomic write; every other command is a write of its own. A crash
drops the rest of the step and every timer; a new machine is built from what was persisted,
through `first_event`, after a restart delay.

What the test observes is the world's side, not the bookkeeping: a counted attempt starts when
its validation is carried out after its timer fired (the start is what a budget counts), and a
disconnection ends when `active` is persisted (before that, a crash kills the new link too).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
import hypothesis
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core import SessionMachine, State, Status, build_policy
from service.core.events import (
    BackoffElapsed, CancelReconnect, ClearPending, Closed, Command, Event, MarkStarted, Opened, OpenSocket,
    RecordPending, Resumed, ScheduleReconnect, SetStatus, Start, StartFailed, Validate, Validated,
    ValidationFailed,
)
from service.core.recovery import PendingRecord, first_event

# ---- first_event, case by case --------------------------------------------------------------


@pytest.mark.parametrize(("status", "pending", "expected"), [
    (Status.INACTIVE, PendingRecord(2, 50.0), None),
    (Status.ACTIVE, PendingRecord(2, 50.0), Start()),
    (None, None, Start()),
    (Status.CONNECTING, None, Start()),
    (Status.CONNECTING, PendingRecord(2, 103.5), Resumed(2, 3.5)),
    (Status.CONNECTING, PendingRecord(2, 90.0), Resumed(2, 0.0)),  # overdue: at once
    (Status.CONNECTING, PendingRecord(2, 90.0, started_at_s=91.0), Resumed(3, None)),
    (Status.CONNECTING, PendingRecord(0, 100.0), Resumed(1, 0.0)),
    (Status.CONNECTING, PendingRecord(1, 130.0, counted=False), Resumed(1, 30.0, counted=False)),
    (Status.CONNECTING, PendingRecord(-4, 130.0, started_at_s=1.0), Resumed(1, None)),
    (Status.CONNECTING, PendingRecord(2, math.inf), Resumed(2, None)),
    (Status.CONNECTING, PendingRecord(2, math.nan), Resumed(2, None)),
    (Status.CONNECTING, PendingRecord(2, math.nan, counted=False), Resumed(2, 0.0, counted=False)),
])
def test_first_event_from_what_a_crashed_owner_left(status, pending, expected):
    assert first_event(status, pending, now=100.0) == expected


# ---- the model shell ---------------------------------------------------------------------------

SID = "s"
_PAIRED = {SetStatus: (RecordPending, ClearPending), MarkStarted: (Validate,)}


def write_units(commands: list[Command]) -> list[list[Command]]:
    """The commands as the writes a shell makes: documented pairs together, the rest alone."""
    units, index = [], 0
    while index < len(commands):
        command, follow = commands[index], _PAIRED.get(type(commands[index]), ())
        if index + 1 < len(commands) and isinstance(commands[index + 1], follow):
            units.append([command, commands[index + 1]])
            index += 2
        else:
            units.append([command])
            index += 1
    return units


@dataclass
class World:
    """What the links and the back office answer, in order; when a list runs out, links open,
    stay up, and the session is valid."""

    opens: list[object]  # "ok", or the code the open fails with
    validations: list[bool | None]  # None: the check itself failed (ValidationFailed)
    closes: list[tuple[object, float | None, float]]  # (code, ban wait_s, seconds the link stays up)
    restarts_s: list[float]

    def next_of(self, name: str, default):
        values = getattr(self, name)
        return values.pop(0) if values else default


@dataclass
class Observer:
    """The world's view: counted attempts started in the current disconnection, and when each was
    first recorded due."""

    started: list[int] = field(default_factory=list)
    due_s: dict[int, float] = field(default_factory=dict)

    def reset(self) -> None:
        self.started, self.due_s = [], {}


class ModelShell:
    def __init__(self, policy_settings: dict, world: World, crash_at: set[int], seed: int,
                 found: tuple[Status | None, PendingRecord | None, list[int]] = (None, None, [])) -> None:
        """`found`: what the process finds at its start (status, record) and the counted attempts
        of the current disconnection that the world saw start before."""
        self.policy = build_policy(policy_settings)
        self.world = world
        self.crash_at = crash_at
        self.rng = random.Random(seed)
        self.status, self.record, started = found  # persisted
        self.machine = SessionMachine(SID, self.policy, self.rng)
        self.queue: list[tuple[float, int, Event, int]] = []  # (at_s, order, event, process)
        self.process = 0  # a crash makes every queued event of the dead process stale
        self.timer: tuple[int, ScheduleReconnect] | None = None  # (its order, the command)
        self.fired: ScheduleReconnect | None = None  # the timer whose BackoffElapsed was handed on
        self.boundary = 0
        self.seq = 0
        self.now = 0.0
        self.seen = Observer(list(started))
        if self.record is not None and self.record.counted and self.record.started_at_s is None:
            self.seen.due_s[self.record.attempt] = self.record.due_at_s
        self.crashes = 0
        self.settled = False
        self.resumed_from: PendingRecord | None = None  # the record the last recovery resumed
        self.resumes = 0

    # -- the loop --
    def run(self) -> None:
        self.recover()
        for _ in range(5_000):
            if not self.queue or self.settled or self.machine.state is State.DROPPED:
                return
            self.queue.sort(key=lambda item: (item[0], item[1]))
            at_s, order, event, process = self.queue.pop(0)
            if process != self.process or not self.machine.accepts(event):
                continue
            if isinstance(event, BackoffElapsed):
                if self.timer is None or self.timer[0] != order:
                    continue  # cancelled or replaced
                self.fired, self.timer = self.timer[1], None
            self.now = at_s
            self.step(event)
        raise AssertionError("the model run did not end")

    def later(self, delay_s: float, event: Event) -> None:
        self.seq += 1
        self.queue.append((self.now + delay_s, self.seq, event, self.process))

    def step(self, event: Event) -> None:
        for unit in write_units(self.machine.handle(event, self.now)):
            if self.boundary in self.crash_at:
                self.boundary += 1
                self.crash()
                return
            self.boundary += 1
            for command in unit:
                self.carry_out(command)

    def crash(self) -> None:
        """The process dies: the rest of the step and every timer are lost; a new one starts."""
        self.crashes += 1
        self.process += 1
        self.queue, self.timer, self.fired = [], None, None
        self.now += self.world.next_of("restarts_s", 0.0)
        self.recover()

    def recover(self) -> None:
        """A process starts: a new machine, told what the core derives from what was persisted."""
        self.machine = SessionMachine(SID, self.policy, self.rng, status=self.status)
        event = first_event(self.status, self.record, self.now)
        if event is None:
            self.settled = True
            return
        self.resumes += isinstance(event, Resumed)
        self.resumed_from = self.record if isinstance(event, Resumed) and self.record.started_at_s is None else None
        self.step(event)
        self.resumed_from = None

    # -- commands --
    def carry_out(self, command: Command) -> None:
        kind = type(command)
        if kind is SetStatus:
            self.status = command.status
            if command.status is Status.ACTIVE:
                self.seen.reset()  # the disconnection is over, for the world too
        elif kind is RecordPending:
            self.record = PendingRecord(command.attempt, command.due_at_s, counted=command.counted)
            if command.counted:
                self.seen.due_s.setdefault(command.attempt, command.due_at_s)
        elif kind is MarkStarted:
            self.record = PendingRecord(command.attempt, command.at_s, started_at_s=command.at_s)
        elif kind is ClearPending:
            self.record = None
        elif kind is ScheduleReconnect:
            self.check_resumed_due(command)
            self.later(command.delay_s, BackoffElapsed())
            self.timer = (self.seq, command)
        elif kind is CancelReconnect:
            self.timer = None
        elif kind is Validate:
            self.attempt_starts()
            ok = self.world.next_of("validations", True)
            self.later(0.0, ValidationFailed() if ok is None else Validated(ok=ok))
        elif kind is OpenSocket:
            self.open_socket()

    def open_socket(self) -> None:
        outcome = self.world.next_of("opens", "ok")
        if outcome != "ok":
            self.later(0.0, StartFailed("refused", code=outcome))
            return
        self.later(0.0, Opened())
        close = self.world.next_of("closes", None)
        if close is not None:
            code, wait_s, up_s = close
            self.later(up_s, Closed(code=code, wait_s=wait_s))

    # -- the checks --
    def attempt_starts(self) -> None:
        fired, self.fired = self.fired, None
        if fired is None or not fired.counted:
            return
        attempt, started = fired.attempt, self.seen.started
        assert attempt not in started, f"counted attempt {attempt} started twice: {started} then {attempt}"
        assert attempt == len(started) + 1, f"counted attempts skipped: {started} then {attempt}"
        due_s = self.seen.due_s.get(attempt)
        assert due_s is None or self.now >= due_s - 1e-9, f"attempt {attempt} started at {self.now}, due {due_s}"
        started.append(attempt)

    def check_resumed_due(self, command: ScheduleReconnect) -> None:
        record, self.resumed_from = self.resumed_from, None
        if record is None:
            return
        assert (command.attempt, command.counted) == (max(1, record.attempt) if record.counted else record.attempt,
                                                      record.counted), (record, command)
        assert math.isclose(self.now + command.delay_s, max(record.due_at_s, self.now), abs_tol=1e-9), (
            f"due {record.due_at_s} resumed as {self.now + command.delay_s}")

    def check_end(self) -> None:
        """Never stuck: the session ends open, dropped or settled, and what is persisted says so."""
        state = self.machine.state
        assert self.settled or state in (State.OPEN, State.DROPPED), f"left {state.value} with nothing pending"
        if self.settled:
            assert self.status is Status.INACTIVE
        elif state is State.OPEN:
            assert (self.status, self.record) == (Status.ACTIVE, None)
        else:
            assert self.status is Status.INACTIVE and self.record is None, (self.status, self.record)


CODES = [None, 500, 401, 515, "TemporaryBan", "Disconnected", "StreamReplaced"]

policies = st.fixed_dictionaries({
    "max_attempts": st.integers(1, 7),
    "jitter": st.sampled_from(["none", "full", "equal", "decorrelated", "proportional"]),
    "codes": st.sampled_from(["original", "baileys", "whatsmeow"]),
})

worlds = st.builds(
    World,
    opens=st.lists(st.sampled_from(["ok", None, None, 500, 515, "TemporaryBan", 401]), max_size=20),
    validations=st.lists(st.sampled_from([True, True, True, None, False]), max_size=10),
    closes=st.lists(st.tuples(st.sampled_from(CODES), st.sampled_from([None, 0.0, 7.5, 300.0]),
                              st.sampled_from([0.0, 0.5, 40.0])), max_size=4),
    restarts_s=st.lists(st.sampled_from([0.0, 0.3, 1.0, 5.0, 100.0]), max_size=4),
)


# what a process may find at its start, and the counted attempts the world saw start before
FOUND = [
    (None, None, []),
    (Status.ACTIVE, None, []),
    (Status.ACTIVE, PendingRecord(3, 5.0, started_at_s=4.0), []),  # stale: the back office wrote `active`
    (Status.CONNECTING, None, []),
    (Status.CONNECTING, PendingRecord(2, 3.0), [1]),
    (Status.CONNECTING, PendingRecord(2, 1.0, started_at_s=1.0), [1, 2]),
    (Status.CONNECTING, PendingRecord(1, 50.0, counted=False), [1]),
    (Status.INACTIVE, PendingRecord(2, 3.0), []),
]


@settings(max_examples=500, deadline=None)
@given(policies, worlds, st.sets(st.integers(0, 30), min_size=1, max_size=5), st.integers(0, 2**32),
       st.sampled_from(FOUND))
def test_crash_at_any_write_boundary_loses_and_repeats_no_counted_attempt(policy_settings, world, crash_at, seed,
                                                                          found):
    shell = ModelShell(policy_settings, world, crash_at, seed, found)
    shell.run()
    shell.check_end()
    hypothesis.event(f"crashes: {min(shell.crashes, 2)}+, resumed: {shell.resumes > 0}")


@pytest.mark.parametrize("preset", ["note", "whatsmeow"])
@pytest.mark.parametrize("resumed", [Resumed(10**12, None), Resumed(10**12, 5.0), Resumed(10**12, 5.0, counted=False)])
def test_a_huge_attempt_number_in_a_record_is_answered_at_once(preset, resumed):
    """A record is input: an attempt number of 10^12 (garbage, or a hand edit) must not make the
    machine sum 10^12 schedule terms before it answers (bounded work, like any other record)."""
    machine = SessionMachine(SID, build_policy({"preset": preset}), random.Random(1), status=Status.CONNECTING)
    commands = machine.handle(resumed, 100.0)
    assert [c for c in commands if isinstance(c, ScheduleReconnect | SetStatus)], commands
