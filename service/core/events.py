"""What the shells tell a session's machine (events, past tense) and what it tells them
back (commands, imperative). Plain frozen values; no behaviour, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.core.codes import CloseCode
from service.core.statuses import Priority, Status
from service.core.timeline import TimelineRecord
from service.core.vocabulary import DropReason, FailReason, ReleaseReason, ScheduleReason

_new = object.__new__

# ---- events -----------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The gateway wants this session online (first start, or a new owner took it over)."""


@dataclass(frozen=True)
class Opened:
    """The socket opened and the session is logged in."""


@dataclass(frozen=True)
class Closed:
    """The link closed with `code` (an int close code, a client event name, or None).

    `wait_s` is the seconds until a temporary ban expires, when the close carries one.
    """

    code: CloseCode = None
    wait_s: float | None = None


@dataclass(frozen=True)
class StartFailed:
    """Opening the socket failed (refused, timed out, bad handshake): a close again."""

    reason: str = FailReason.START_FAILED
    code: CloseCode = None


@dataclass(frozen=True)
class KeepaliveMissed:
    """The link stopped carrying keepalives for the dead-link deadline (half-open link)."""


@dataclass(frozen=True)
class BackoffElapsed:
    """The reconnect timer fired."""


@dataclass(frozen=True)
class Validated:
    """The answer to `Validate`: is the session still valid for a reconnect (R4)?"""

    ok: bool


@dataclass(frozen=True)
class ValidationFailed:
    """`Validate` could not be answered: the check itself failed (an error no source
    explains, not a verdict and not an unreachable Redis, which is asked again). The
    policy counts it as a failed attempt: the next one is scheduled, or the session gives up."""

    reason: str = FailReason.VALIDATION_FAILED


@dataclass(frozen=True)
class Resumed:
    """A restarted gateway found this session `connecting` with a reconnect pending (B5).
    Shells do not build it: `service.core.recovery.first_event` derives it from what they found.

    `counted`: `attempt` is the counted attempt due (a new delay is drawn when `remaining_s`
    is None). Not counted: an uncounted wait (a temporary ban) was pending after `attempt`
    counted attempts were spent. `remaining_s` is what was left of the lost timer.
    """

    attempt: int = 1
    remaining_s: float | None = None
    counted: bool = True


@dataclass(frozen=True)
class Released:
    """This process lets the session go (lease lost, shutdown): stop locally, status untouched."""

    reason: str = ReleaseReason.RELEASED


Event = (Start | Opened | Closed | StartFailed | KeepaliveMissed | BackoffElapsed | Validated | ValidationFailed
         | Resumed | Released)

# ---- commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClearCache:
    """Forget the cached validity answer and any pending QR state for this session (R3)."""


@dataclass(frozen=True)
class SetStatus:
    """Write the status to Redis and queue it for the back office with this priority."""

    status: Status
    priority: Priority = Priority.NORMAL


@dataclass(frozen=True)
class ScheduleReconnect:
    """Start the one reconnect timer: deliver `BackoffElapsed` after `delay_s`.

    `counted`: the timer is for counted attempt `attempt` (reason `backoff`); uncounted
    timers (`reconnect_now`, e.g. Baileys' 515, `temporary_ban`, or a `resumed` uncounted
    wait) reopen with the attempts spent so far, `attempt`, and spend none.
    """

    delay_s: float
    attempt: int
    reason: ScheduleReason = ScheduleReason.BACKOFF

    @property
    def counted(self) -> bool:
        """True if the timer is for a counted attempt (`ScheduleReason.counted`)."""
        return ScheduleReason(self.reason).counted


# ---- crash bookkeeping (B5) -------------------------------------------------------
# What a restarted process needs (`service.core.recovery`) is kept in one record per session,
# beside its status. A shell may carry a command of this group together with the command
# next to it in one atomic write, and must not split these pairs (the core orders them so):
#   SetStatus followed by RecordPending or ClearPending — the status and the record;
#   MarkStarted followed by Validate — the attempt is spent in its validation's round trip.
# Any other of these commands is a write of its own, in order with the session's other writes.


@dataclass(frozen=True)
class RecordPending:
    """Replace the session's pending record: reconnect `attempt` is due at `due_at_s` (the
    `now` the core is given), not started. `counted` False: an uncounted wait after `attempt`
    counted attempts (see `ScheduleReconnect.counted`)."""

    attempt: int
    due_at_s: float
    counted: bool = True


@dataclass(frozen=True)
class MarkStarted:
    """Counted attempt `attempt` starts at `at_s`: replace the record with "`attempt` started"
    (a restart then goes on with the next one, never repeating it)."""

    attempt: int
    at_s: float


@dataclass(frozen=True)
class ClearPending:
    """No reconnect is pending any more (the session opened, or ended): delete the record."""


@dataclass(frozen=True)
class CancelReconnect:
    """Cancel the pending reconnect timer, if any."""


@dataclass(frozen=True)
class Validate:
    """Ask fresh sources (Redis, then the back office) if the session is valid; answer with `Validated`."""

    for_reconnect: bool = True


@dataclass(frozen=True)
class CloseSocket:
    """Close the current socket, ignoring errors while closing (R7)."""


@dataclass(frozen=True)
class OpenSocket:
    """Open a new socket; answer with `Opened`, `Closed` or `StartFailed`. attempt 0 is a first start."""

    attempt: int


@dataclass(frozen=True)
class Drop:
    """Forget the session in this process; nothing more will be scheduled for it.

    A `DropReason` when the core settled it, the `Released` reason when its process let it go."""

    reason: DropReason | ReleaseReason | str


@dataclass(frozen=True)
class Emit:
    """Log this structured step and append it to the timeline (R8)."""

    record: TimelineRecord

    @classmethod
    def trusted(cls, record: TimelineRecord) -> Emit:
        """`Emit(record)` without the frozen dataclass's `__init__` (the core makes one per step)."""
        emit = _new(cls)
        emit.__dict__["record"] = record
        return emit


Command = (ClearCache | SetStatus | ScheduleReconnect | CancelReconnect | Validate | CloseSocket
           | OpenSocket | Drop | Emit | RecordPending | MarkStarted | ClearPending)

_WRITTEN_WITH: dict[type, tuple[type, ...]] = {SetStatus: (RecordPending, ClearPending), MarkStarted: (Validate,)}
WRITTEN_FIRST = frozenset(_WRITTEN_WITH)  # the kinds a pair starts with: `written_with` is None for any other


def written_with(commands: list[Command], index: int) -> Command | None:
    """The command a shell carries out in one write with `commands[index]` (the crash
    bookkeeping pairs above: it is the next one), or None."""
    follow = _WRITTEN_WITH.get(type(commands[index]))
    if follow is None or index + 1 >= len(commands):
        return None
    following = commands[index + 1]
    return following if isinstance(following, follow) else None
