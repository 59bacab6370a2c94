"""The words every shell shares with the core: event names, drop, schedule and close reasons.

One spelling of each, as `StrEnum`s whose values are the strings the timelines, logs,
Redis and `chaos/CONTRACT.md` already carry (a member equals, hashes and prints as its
string, so records read back from JSON compare equal to members). Service, sim and chaos
import these instead of re-spelling the strings: a renamed member then breaks loudly
instead of making a checker count nothing. Must not do I/O.
"""

from __future__ import annotations

from enum import StrEnum


class LogEvent(StrEnum):
    """Names of the structured log events and timeline records (R8)."""

    CONNECTION_UPDATE = "connection_update"
    SESSION_CLOSED = "session_closed"
    RECONNECT_SCHEDULED = "reconnect_scheduled"
    RECONNECT_RUNNING = "reconnect_running"
    SESSION_STARTING = "session_starting"
    SESSION_OPEN = "session_open"
    RECONNECT_FAILED = "reconnect_failed"
    MAX_ATTEMPTS_REACHED = "max_attempts_reached"
    RECONNECT_CANCELLED = "reconnect_cancelled"
    SESSION_TERMINAL = "session_terminal"
    DUPLICATE_CLOSE_IGNORED = "duplicate_close_ignored"
    SESSION_RESUMED = "session_resumed"
    SESSION_RELEASED = "session_released"


# the events after which a session is gone from the process that logged them
DROP_EVENTS = frozenset({LogEvent.MAX_ATTEMPTS_REACHED, LogEvent.RECONNECT_CANCELLED,
                         LogEvent.SESSION_TERMINAL, LogEvent.SESSION_RELEASED})
# the drops that end a session for good (its status is `inactive`), not a hand-over
GIVE_UP_EVENTS = frozenset({LogEvent.MAX_ATTEMPTS_REACHED, LogEvent.SESSION_TERMINAL})


class Connection(StrEnum):
    """`detail.connection` of a `connection_update` record."""

    OPEN = "open"
    CLOSE = "close"


class DropReason(StrEnum):
    """Why the core dropped a session for good (`Drop.reason`); its status is then `inactive`.

    A session let go by its process instead (`Released`) is dropped with a `ReleaseReason`.
    """

    TERMINAL = "terminal"  # a close code that is never retried (R5)
    MAX_ATTEMPTS = "max_attempts"  # a reconnect limit ran out (attempt cap or give-up deadline, R2)
    INVALID = "invalid"  # validation said the session is no longer valid (R4)


class ReleaseReason(StrEnum):
    """Why a process let a session go without settling it (`Released.reason`); status untouched."""

    RELEASED = "released"
    SHUTDOWN = "shutdown"  # the gateway stops gracefully
    LEASE_LOST = "lease_lost"  # another process owns the session now (B4)
    DEPLOY = "deploy"  # a rolling deploy restarts the process (simulation)


class GiveUpLimit(StrEnum):
    """Which reconnect limit ran out (`detail.limit` of `max_attempts_reached`)."""

    MAX_ATTEMPTS = "max_attempts"
    MAX_ELAPSED_S = "max_elapsed_s"


class ScheduleReason(StrEnum):
    """Why a reconnect timer was started (`ScheduleReconnect.reason`, `detail.reason`)."""

    BACKOFF = "backoff"  # a counted attempt, delayed by the backoff policy
    RECONNECT_NOW = "reconnect_now"  # at once, not counted (e.g. Baileys 515 restart required)
    TEMPORARY_BAN = "temporary_ban"  # after a ban's expiry, not counted
    RESUMED = "resumed"  # an uncounted wait (a ban) a crashed process left, resumed; not counted (B5)

    @property
    def counted(self) -> bool:
        """True if the attempt this timer starts counts against the attempt cap."""
        return self is ScheduleReason.BACKOFF


class CloseReason(StrEnum):
    """Close codes the shells themselves produce (beside the client libraries' codes)."""

    KEEPALIVE_TIMEOUT = "keepalive_timeout"  # the link stopped answering keepalives (B3)


class FailReason(StrEnum):
    """Default and well-known reasons of `StartFailed` / `ValidationFailed` (shells may pass others,
    such as an exception's type name)."""

    START_FAILED = "start_failed"
    CONNECT_TIMEOUT = "connect_timeout"  # the connect timeout passed (B3)
    MALFORMED = "malformed"  # the peer answered with a frame that is not the protocol
    REFUSED = "refused"  # the connection was refused (simulation)
    RATE_LIMITED = "rate_limited"  # WhatsApp refused the login for its rate limit (simulation)
    VALIDATION_FAILED = "validation_failed"
