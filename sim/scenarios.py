"""The scenario vocabulary: pure, timed fault schedules shared by the simulation and chaos.

A scenario is a frozen value: which faults happen when (relative to the scenario's
start, in seconds), and what the spec says must come of it. `sim` replays it on a
virtual clock; `chaos` binds each fault to a real action (a Toxiproxy toxic, a stand-in
admin call, a kill) and runs the same value against the real service. Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from service.core import Status


class ScenarioError(ValueError):
    """A scenario is malformed or unknown; the message names it."""


@dataclass(frozen=True)
class LinkDown:
    """The WhatsApp link is down in [start_s, end_s): open sockets close, new ones are refused."""

    start_s: float
    end_s: float

    def scaled(self, k: float) -> LinkDown:
        return LinkDown(self.start_s * k, self.end_s * k)


@dataclass(frozen=True)
class CloseWith:
    """WhatsApp closes the session's socket with `code` at `at_s` (e.g. 401, 440, 515)."""

    at_s: float
    code: int | str | None

    def scaled(self, k: float) -> CloseWith:
        return CloseWith(self.at_s * k, self.code)


@dataclass(frozen=True)
class AccountDeleted:
    """The back office deletes the account at `at_s` (and, sharing Redis, marks it inactive)."""

    at_s: float

    def scaled(self, k: float) -> AccountDeleted:
        return AccountDeleted(self.at_s * k)


Fault = LinkDown | CloseWith | AccountDeleted


@dataclass(frozen=True)
class Expected:
    """What the spec says must come of a scenario for each session.

    `attempt_offsets_s` are the reconnect attempts' times relative to the first fault;
    `sockets_opened` counts reconnect sockets (not the first start).
    """

    final_status: Status | None
    attempt_offsets_s: tuple[float, ...] = ()
    sockets_opened: int | None = None
    dropped: bool = False

    def scaled(self, k: float) -> Expected:
        return replace(self, attempt_offsets_s=tuple(t * k for t in self.attempt_offsets_s))


@dataclass(frozen=True)
class Scenario:
    """A named, timed fault schedule for one session, with its expected outcome."""

    name: str
    description: str
    faults: tuple[Fault, ...]
    duration_s: float
    expected: Expected
    time_scale: float = 1.0
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ScenarioError(f"scenario {self.name!r}: duration_s must be > 0")
        for fault in self.faults:
            if isinstance(fault, LinkDown) and not 0 <= fault.start_s < fault.end_s:
                raise ScenarioError(f"scenario {self.name!r}: link-down window {fault} is empty or negative")

    @property
    def first_fault_s(self) -> float:
        """When the first fault starts: the origin of `expected.attempt_offsets_s`."""
        return min(_fault_start_s(f) for f in self.faults)

    def scaled(self, k: float) -> Scenario:
        """The same scenario with every time multiplied by `k` (pair with `Policy.scaled(k)`)."""
        if k <= 0:
            raise ScenarioError(f"time scale must be > 0, got {k!r}")
        return replace(self, faults=tuple(f.scaled(k) for f in self.faults),
                       duration_s=self.duration_s * k, expected=self.expected.scaled(k),
                       time_scale=self.time_scale * k)


def _fault_start_s(fault: Fault) -> float:
    return fault.start_s if isinstance(fault, LinkDown) else fault.at_s


# The design note's three scenarios, at its real timings (default policy).
FLAKY_WIFI = Scenario(
    name="flaky_wifi",
    description="S1: the WhatsApp link is down 5 s; attempt 1 at +2 s fails, attempt 2 at +6 s succeeds",
    faults=(LinkDown(start_s=1.0, end_s=6.0),),
    duration_s=12.0,
    expected=Expected(final_status=Status.ACTIVE, attempt_offsets_s=(2.0, 6.0), sockets_opened=2),
    tags=("note",),
)

LONG_OUTAGE = Scenario(
    name="long_outage",
    description="S2: the link is down 2 minutes; attempts at +2, +6, +14, +30, +62 s fail; inactive, nothing after",
    faults=(LinkDown(start_s=1.0, end_s=121.0),),
    duration_s=130.0,
    expected=Expected(final_status=Status.INACTIVE, attempt_offsets_s=(2.0, 6.0, 14.0, 30.0, 62.0),
                      sockets_opened=5, dropped=True),
    tags=("note",),
)

DELETED_MID_RETRY = Scenario(
    name="deleted_mid_retry",
    description="S3: the account is deleted while the session waits for its backoff; no socket opened",
    faults=(LinkDown(start_s=1.0, end_s=6.0), AccountDeleted(at_s=2.0)),
    duration_s=8.0,
    expected=Expected(final_status=Status.INACTIVE, attempt_offsets_s=(), sockets_opened=0, dropped=True),
    tags=("note",),
)

TERMINAL_401 = Scenario(
    name="terminal_401",
    description="WhatsApp closes the session with 401: inactive at once, high priority, never retried",
    faults=(CloseWith(at_s=1.0, code=401),),
    duration_s=6.0,
    expected=Expected(final_status=Status.INACTIVE, sockets_opened=0, dropped=True),
)

SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {s.name: s for s in (FLAKY_WIFI, LONG_OUTAGE, DELETED_MID_RETRY, TERMINAL_401)}
)


def scenario(name: str) -> Scenario:
    """A named scenario; an unknown name raises listing the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}") from None
