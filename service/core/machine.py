"""One session's reconnect state machine: `handle(event, now) -> list[Command]`.

Implements R1–R7 of the spec and the close → reconnect flow; every decision about
backoff, attempts, terminal codes and validation is made here and nowhere else. Must
not do I/O or read a clock: `now` is passed in, randomness is the injected `rng`.
An event the table below does not allow raises `IllegalTransition` and changes nothing.

Crash bookkeeping (B5) is decided here too: what must survive a crash is a command —
`RecordPending` with every scheduled reconnect, `MarkStarted` as a counted attempt starts
(before its validation), `ClearPending` with the status that ends a disconnection (and with
a fresh start) — so a shell only persists what it is told, and `service.core.recovery`
reads it back. The pairs a shell writes at once are next to each other (see `events`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from types import MappingProxyType
from typing import Any

from service.core.codes import Action, CloseCode
from service.core.errors import CoreError, IllegalTransition
from service.core.events import (
    BackoffElapsed, CancelReconnect, ClearCache, ClearPending, Closed, CloseSocket, Command, Drop,
    Emit, Event, KeepaliveMissed, MarkStarted, Opened, OpenSocket, RecordPending, Released, Resumed,
    ScheduleReconnect, SetStatus, Start, StartFailed, Validate, Validated, ValidationFailed,
)
from service.core.policy import Policy
from service.core.statuses import Priority, Status
from service.core.timeline import TimelineRecord
from service.core.vocabulary import CloseReason, Connection, DropReason, GiveUpLimit, LogEvent, ScheduleReason


class State(str, Enum):
    """Where one session's reconnect logic is (not its Redis status)."""

    IDLE = "idle"  # known, no socket, nothing pending
    CONNECTING = "connecting"  # a socket is opening
    OPEN = "open"  # logged in
    BACKOFF = "backoff"  # the one reconnect timer is pending
    VALIDATING = "validating"  # timer fired; waiting for the validity answer
    DROPPED = "dropped"  # final: forgotten by this process


# immediate (uncounted) reconnects allowed in a row when the policy has no attempt cap
IMMEDIATE_STREAK = 5
_SUM_TERMS = 1_000  # schedule terms summed when estimating a resumed disconnection's start
# commands are frozen values: those a storm repeats are made once, for every session
_CLEAR_PENDING, _CLEAR_CACHE, _CLOSE_SOCKET, _VALIDATE = ClearPending(), ClearCache(), CloseSocket(), Validate(True)
_SET_STATUS = {(status, priority): SetStatus(status, priority) for status in Status for priority in Priority}
# the texts of members (an enum's `.value` is a Python-level property: a dict is ~8x faster)
_EVENT_TEXT = {event: event.value for event in LogEvent}
_STATUS_TEXT = {status: status.value for status in Status}

_I, _C, _O, _B, _V, _D = State.IDLE, State.CONNECTING, State.OPEN, State.BACKOFF, State.VALIDATING, State.DROPPED

# state → event type → states the event may lead to. Anything absent is illegal.
TRANSITIONS: Mapping[State, Mapping[type, frozenset[State]]] = MappingProxyType({
    _I: {Start: frozenset({_C}), Resumed: frozenset({_B, _D}), Released: frozenset({_D})},
    _C: {Opened: frozenset({_O}), Closed: frozenset({_B, _D}), StartFailed: frozenset({_B, _D}),
         Released: frozenset({_D})},
    _O: {Closed: frozenset({_B, _D}), KeepaliveMissed: frozenset({_B, _D}), Released: frozenset({_D})},
    # a repeated close while a reconnect is pending never stacks a second timer
    _B: {BackoffElapsed: frozenset({_V}), Closed: frozenset({_B, _D}), Released: frozenset({_D})},
    _V: {Validated: frozenset({_C, _D}), ValidationFailed: frozenset({_B, _D}), Closed: frozenset({_V, _D}),
         Released: frozenset({_D})},
    _D: {},
})


@dataclass(slots=True)
class _Vars:
    state: State = State.IDLE
    status: Status | None = None
    attempts: int = 0  # counted reconnect attempts in this disconnection episode
    immediate_streak: int = 0  # uncounted immediate reconnects since the last open
    has_socket: bool = False
    previous_delay_s: float | None = None
    episode_start_s: float | None = None  # the close that began this disconnection (give-up deadline)
    counted_timer: bool = False  # the pending timer is for counted attempt `attempts`

    def copy(self) -> _Vars:
        return _Vars(self.state, self.status, self.attempts, self.immediate_streak,
                     self.has_socket, self.previous_delay_s, self.episode_start_s, self.counted_timer)


class SessionMachine:
    """The reconnect logic of one session. Feed it events; carry out the commands it returns."""

    def __init__(self, session_id: str, policy: Policy, rng: random.Random | None = None,
                 status: Status | None = None, trace: bool = True, persist: bool = True) -> None:
        """`trace=False` skips `Emit` commands (large simulations that keep their own tallies);
        `persist=False` skips the crash bookkeeping (`RecordPending`, `MarkStarted`,
        `ClearPending`) for shells that never resume from a persisted record (the simulation)."""
        self.session_id = session_id
        self.policy = policy
        self.trace = trace
        self.persist = persist
        self._rng = rng if rng is not None else random.Random(0)
        self._vars = _Vars(status=status)
        self._now = 0.0
        self._out: list[Command] = []

    # ---- read-only view ----
    @property
    def state(self) -> State:
        return self._vars.state

    @property
    def status(self) -> Status | None:
        return self._vars.status

    @property
    def attempts(self) -> int:
        return self._vars.attempts

    @property
    def has_socket(self) -> bool:
        return self._vars.has_socket

    @property
    def is_reconnecting(self) -> bool:
        return self._vars.state in (State.BACKOFF, State.VALIDATING) or (
            self._vars.state is State.CONNECTING and self._vars.attempts > 0)

    def fork(self, session_id: str | None = None) -> SessionMachine:
        """A machine in this one's exact state that shares its policy and random stream
        (a simulation cohort splitting in two keeps drawing from one stream)."""
        twin = SessionMachine(session_id or self.session_id, self.policy, self._rng, trace=self.trace,
                              persist=self.persist)
        twin._vars = self._vars.copy()
        return twin

    def state_key(self) -> tuple:
        """Every variable that decides this machine's future, as a hashable value, except the
        last jittered delay: machines with equal keys (and policy) answer every event alike
        but for the delays they draw. For shells that draw delays themselves and merge
        identical machines (the simulation's histogram engine). Without a give-up deadline
        the episode's start decides nothing, so it is left out too."""
        names = _KEY_VARS if self.policy.backoff.max_elapsed_s is not None else _KEY_VARS_NO_DEADLINE
        return tuple(getattr(self._vars, name) for name in names)

    def accepts(self, event: Event) -> bool:
        """True if `event` is legal in the current state."""
        return type(event) in TRANSITIONS[self._vars.state]

    # ---- the one entry point ----
    def handle(self, event: Event, now: float) -> list[Command]:
        """Apply `event` at time `now` (seconds, the shell's clock); return the commands to run."""
        allowed = TRANSITIONS[self._vars.state].get(type(event))
        if allowed is None:
            raise IllegalTransition(self.session_id, self._vars.state.value, type(event).__name__)
        before = self._vars.copy()
        self._now, self._out = now, []
        try:
            _HANDLERS[type(event)](self, event)
        except Exception:
            self._vars = before
            raise
        if self._vars.state not in allowed:
            target = self._vars.state
            self._vars = before
            raise CoreError(f"core bug: {type(event).__name__} led {before.state.value} → {target.value}")
        out, self._out = self._out, []
        return out

    # ---- handlers (one per event type) ----
    def _on_Start(self, event: Start) -> None:
        self._set_status(Status.CONNECTING, Priority.NORMAL)
        if self.persist:  # a record left by an earlier owner is not this start's
            self._out.append(_CLEAR_PENDING)
        self._open(attempt=0)

    def _on_Opened(self, event: Opened) -> None:
        self._emit(LogEvent.CONNECTION_UPDATE, connection=Connection.OPEN)
        self._vars.state = State.OPEN
        self._vars.attempts = 0
        self._vars.immediate_streak = 0
        self._vars.previous_delay_s = None
        self._vars.episode_start_s = None
        self._set_status(Status.ACTIVE, Priority.NORMAL)
        if self.persist:
            self._out.append(_CLEAR_PENDING)
        self._emit(LogEvent.SESSION_OPEN)

    def _on_Closed(self, event: Closed) -> None:
        self._close(event.code, event.wait_s)

    def _on_StartFailed(self, event: StartFailed) -> None:
        self._close(event.code, None, reason=event.reason)

    def _on_KeepaliveMissed(self, event: KeepaliveMissed) -> None:
        self._close(CloseReason.KEEPALIVE_TIMEOUT, None)

    def _on_BackoffElapsed(self, event: BackoffElapsed) -> None:
        self._emit(LogEvent.RECONNECT_RUNNING)
        self._vars.state = State.VALIDATING
        if self._vars.counted_timer:  # spent from now on: a restart must not run it again
            self._vars.counted_timer = False
            if self.persist:
                self._out.append(MarkStarted(attempt=self._vars.attempts, at_s=self._now))
        self._cmd(_VALIDATE)

    def _on_Validated(self, event: Validated) -> None:
        if event.ok:
            self._open(attempt=self._vars.attempts)
            return
        # B10: a session that ends, ends: its last word is `inactive`, never the `connecting`
        # its close wrote (over the back office's own `inactive`, when it deleted the account)
        self._end(Status.INACTIVE)
        self._emit(LogEvent.RECONNECT_CANCELLED, reason=DropReason.INVALID)
        self._drop(DropReason.INVALID)

    def _on_ValidationFailed(self, event: ValidationFailed) -> None:
        # no socket was opened: the attempt failed before its start, and counts as failed
        self._emit(LogEvent.RECONNECT_FAILED, reason=event.reason)
        self._schedule_counted(None)  # the next attempt, or a give-up when a limit is spent

    def _on_Resumed(self, event: Resumed) -> None:
        self._vars.status = Status.CONNECTING
        self._cmd(_CLEAR_CACHE)
        self._emit(LogEvent.SESSION_RESUMED, pending_attempt=event.attempt)
        delay_s = None if event.remaining_s is None else max(0.0, event.remaining_s)
        # the crashed process knew when the disconnection began; the un-jittered schedule estimates it
        if not event.counted:  # an uncounted wait (a ban) after `attempt` counted attempts
            spent = max(0, event.attempt)
            self._vars.attempts = spent
            self._vars.episode_start_s = self._now - self._schedule_until_s(spent)
            self._schedule(delay_s or 0.0, spent, reason=ScheduleReason.RESUMED)
            return
        attempt = max(1, event.attempt)
        self._vars.attempts = attempt - 1
        due_s = self._now + (delay_s if delay_s is not None else self.policy.backoff.exponential_s(attempt))
        self._vars.episode_start_s = due_s - self._schedule_until_s(attempt)
        self._schedule_counted(delay_s)

    def _schedule_until_s(self, attempt: int) -> float:
        """Un-jittered seconds from a disconnection to counted attempt `attempt` (0: none), in
        bounded work for any attempt number a record may hold: past `_SUM_TERMS` attempts the
        delay is taken as that of the last term (a schedule has reached its cap long before)."""
        backoff = self.policy.backoff
        terms = min(attempt, _SUM_TERMS)
        total_s = sum(backoff.exponential_s(n) for n in range(1, terms + 1))
        return total_s + (attempt - terms) * backoff.exponential_s(terms) if attempt > terms else total_s

    def _on_Released(self, event: Released) -> None:
        if self._vars.state is State.BACKOFF:
            self._cmd(CancelReconnect())
        self._emit(LogEvent.SESSION_RELEASED, reason=event.reason)
        self._drop(event.reason)

    # ---- the close path (R3, R5, R2, B1) ----
    def _close(self, code: CloseCode, wait_s: float | None, reason: str | None = None) -> None:
        self._cmd(_CLEAR_CACHE)  # R3: first, whatever the reason
        state = self._vars.state
        self._emit(LogEvent.CONNECTION_UPDATE, connection=Connection.CLOSE)
        if state is State.CONNECTING and self._vars.attempts > 0:
            self._emit(LogEvent.RECONNECT_FAILED, code=code, reason=reason)
        self._emit(LogEvent.SESSION_CLOSED, code=code, reason=reason)
        if self._vars.episode_start_s is None:
            self._vars.episode_start_s = self._now
        action = self.policy.codes.action_for(code)
        if action is Action.TERMINAL:
            if state is State.BACKOFF:
                self._cmd(CancelReconnect())
            self._end(Status.INACTIVE)
            self._emit(LogEvent.SESSION_TERMINAL, code=code)
            self._drop(DropReason.TERMINAL)
            return
        if state in (State.BACKOFF, State.VALIDATING):
            self._emit(LogEvent.DUPLICATE_CLOSE_IGNORED, code=code)
            return
        streak_spent = self._vars.immediate_streak >= (self.policy.backoff.max_attempts or IMMEDIATE_STREAK)
        if action is Action.RECONNECT_NOW and not streak_spent:
            self._vars.immediate_streak = self._vars.immediate_streak + 1
            self._schedule(0.0, self._vars.attempts, reason=ScheduleReason.RECONNECT_NOW)
        elif action is Action.WAIT_UNTIL:
            ban_s = self.policy.timeouts.default_ban_wait_s if wait_s is None else max(0.0, wait_s)
            self._schedule(ban_s, self._vars.attempts, reason=ScheduleReason.TEMPORARY_BAN)
        else:
            self._schedule_counted(None)

    def _schedule_counted(self, delay_s: float | None) -> None:
        """Schedule the next counted attempt, or give up (attempt cap first, then the deadline)."""
        attempt = self._vars.attempts + 1
        backoff = self.policy.backoff
        if backoff.max_attempts is not None and attempt > backoff.max_attempts:
            self._give_up(GiveUpLimit.MAX_ATTEMPTS)
            return
        if delay_s is None:
            delay_s = backoff.delay_s(attempt, self._rng, self._vars.previous_delay_s)
        if self._vars.episode_start_s is None:
            self._vars.episode_start_s = self._now
        if not backoff.allows(attempt, self._now + delay_s - self._vars.episode_start_s):
            self._give_up(GiveUpLimit.MAX_ELAPSED_S)
            return
        self._vars.attempts = attempt
        self._vars.previous_delay_s = delay_s
        self._schedule(delay_s, attempt, reason=ScheduleReason.BACKOFF)

    def _schedule(self, delay_s: float, attempt: int, reason: ScheduleReason) -> None:
        """The one reconnect timer; its record goes with the status (one write for a shell)."""
        self._set_status(Status.CONNECTING, Priority.NORMAL)
        if self.persist:
            self._out.append(RecordPending(attempt=attempt, due_at_s=self._now + delay_s, counted=reason.counted))
        self._vars.state = State.BACKOFF
        self._vars.counted_timer = reason.counted
        if self.trace:
            self._emit(LogEvent.RECONNECT_SCHEDULED, attempt=attempt,
                       max_attempts=self.policy.backoff.max_attempts,
                       backoff_ms=round(delay_s * 1000, 3), reason=reason)
        self._cmd(ScheduleReconnect(delay_s=delay_s, attempt=attempt, reason=reason))

    def _give_up(self, limit: GiveUpLimit) -> None:
        """Mark inactive and drop; `limit` says which ran out (the drop reason stays "max_attempts")."""
        self._end(Status.INACTIVE)
        self._emit(LogEvent.MAX_ATTEMPTS_REACHED, max_attempts=self.policy.backoff.max_attempts,
                   limit=limit, max_elapsed_s=self.policy.backoff.max_elapsed_s)
        self._drop(DropReason.MAX_ATTEMPTS)

    # ---- sockets (R7) ----
    def _open(self, attempt: int) -> None:
        if self._vars.has_socket:
            self._cmd(_CLOSE_SOCKET)
        self._vars.state = State.CONNECTING
        self._vars.has_socket = True
        self._emit(LogEvent.SESSION_STARTING, attempt=attempt)
        self._cmd(OpenSocket(attempt=attempt))

    def _drop(self, reason: DropReason | str) -> None:
        if self._vars.has_socket:
            self._cmd(_CLOSE_SOCKET)
        self._vars.state = State.DROPPED
        self._vars.has_socket = False
        self._cmd(Drop(reason=reason))

    # ---- small helpers ----
    def _end(self, status: Status) -> None:
        """The session ends here (B10): its final status, and no record left for a restart."""
        self._set_status(status, Priority.HIGH)
        if self.persist:
            self._out.append(_CLEAR_PENDING)

    def _set_status(self, status: Status, priority: Priority) -> None:
        if self._vars.status is not status:
            self._vars.status = status
            self._cmd(_SET_STATUS[status, priority])

    def _cmd(self, command: Command) -> None:
        if command.__class__ is CloseSocket:
            self._vars.has_socket = False
        self._out.append(command)

    def _emit(self, event: LogEvent, attempt: int | None = None, **detail: Any) -> None:
        if not self.trace:
            return
        if None in detail.values():  # else the keywords' own fresh dict is the detail, as it is
            detail = {k: v for k, v in detail.items() if v is not None}
        status = self._vars.status
        record = TimelineRecord.trusted(self._now, self.session_id, _EVENT_TEXT[event],
                                        self._vars.attempts if attempt is None else attempt,
                                        None if status is None else _STATUS_TEXT[status], detail)
        self._out.append(Emit.trusted(record))


_KEY_VARS = tuple(f.name for f in fields(_Vars) if f.name != "previous_delay_s")
_KEY_VARS_NO_DEADLINE = tuple(name for name in _KEY_VARS if name != "episode_start_s")

_HANDLERS = {
    event_type: getattr(SessionMachine, f"_on_{event_type.__name__}")
    for transitions in TRANSITIONS.values() for event_type in transitions
}
