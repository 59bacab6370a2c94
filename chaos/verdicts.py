"""One invariant's verdict (`CheckResult`), the invariants' names, and what a verdict rests on.

Owns the result value every checker returns, the names the report and tests use, and
`attempt_evidence`: whether attempt checks read the gateway's timeline, the stand-in's
link events (black-box), or cannot judge (attempts hidden from the stand-in, no timeline).
Must not judge anything itself: `checkers.py` and `checkers_timing.py` do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from chaos.history import History
from chaos.observed import attempts_observable
from chaos.scenario import ChaosScenario
from service.core import DROP_EVENTS, GIVE_UP_EVENTS, LogEvent, ScheduleReason, TimelineRecord

MAX_LISTED = 25  # violations listed per check; the rest are counted
EPISODE_STARTS = (LogEvent.SESSION_CLOSED, LogEvent.SESSION_RESUMED)  # a disconnection begins or goes on

ATTEMPTS_WITHIN_MAX = "attempts per episode ≤ max"
ATTEMPT_TIMES_MATCH_POLICY = "attempt times match the policy"
FINAL_STATUS_AS_EXPECTED = "final status per session as expected"
ONE_LIVE_SOCKET = "one live socket per session at all times"
NO_CONNECT_AFTER_END = "no connect after a terminal code or a deletion"
BACKOFFICE_COMPLETE_ORDERED = "back office's history complete and ordered"
NONE_LEFT_CONNECTING = "no session left connecting"
RECONNECTS_AS_EXPECTED = "reconnects as the scenario expects"
BLACK_BOX, WHITE_BOX, NOT_JUDGED = "black-box", "timeline", "not judged"



@dataclass(frozen=True)
class CheckResult:
    """One invariant's verdict over a history."""

    name: str
    ok: bool
    violations: list[str] = field(default_factory=list)
    evidence: str = BLACK_BOX
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{'PASS' if self.ok else 'FAIL'} {self.name}"
        return head if self.ok else head + "".join(f"\n  - {v}" for v in self.violations)


def result(name: str, violations: list[str], evidence: str = BLACK_BOX, notes: list[str] | None = None) -> CheckResult:
    listed = violations[:MAX_LISTED]
    if len(violations) > MAX_LISTED:
        listed.append(f"… and {len(violations) - MAX_LISTED} more")
    return CheckResult(name, not violations, listed, evidence, (notes or [])[:MAX_LISTED])


def attempt_evidence(history: History, scenario: ChaosScenario) -> str:
    """What attempt checks rest on: the timeline when there is one, else the link events when
    every attempt reaches the stand-in, else nothing."""
    if history.timeline:
        return WHITE_BOX
    return BLACK_BOX if attempts_observable(scenario) else NOT_JUDGED


def not_judged(name: str) -> CheckResult:
    return CheckResult(name, True, [], NOT_JUDGED,
                       ["attempts are hidden from the stand-in here (a WhatsApp proxy fault) and there is no timeline"])


def is_dropped(records: Iterable[TimelineRecord]) -> bool:
    return any(r.event in DROP_EVENTS for r in records)


# What a timeline must show at least once before a white-box check may pass: each entry is a set of
# alternatives, one of which must appear. Without it a renamed (or never written) event would make a
# checker count zero attempts and pass.
STARTS = (frozenset({LogEvent.SESSION_STARTING}),)
RECONNECTS = (frozenset(EPISODE_STARTS), frozenset({LogEvent.RECONNECT_SCHEDULED}),
              frozenset({LogEvent.RECONNECT_RUNNING}), frozenset({LogEvent.SESSION_STARTING}))


def missing_kinds(history: History, scenario: ChaosScenario,
                  needs: tuple[frozenset[LogEvent], ...] = STARTS) -> list[str]:
    """Violations for each kind in `needs` (plus `RECONNECTS` when the scenario expects a reconnect)
    that the timeline never holds at all; nothing for a black-box history (no timeline)."""
    if not history.timeline:
        return []
    wanted = needs + (RECONNECTS if scenario.expected.reconnects_min >= 1 else ())
    seen = {record.event for record in history.timeline}
    unknown = sorted(kind for kind in seen if kind not in _KNOWN)
    hint = f"; it holds kinds no checker knows: {', '.join(unknown)}" if unknown else ""
    violations = []
    for kinds in dict.fromkeys(wanted):
        if kinds.isdisjoint(seen):
            names = " or ".join(f"`{kind}`" for kind in sorted(kinds))
            violations.append(f"the timeline has no {names} record at all, so this check would judge nothing "
                              f"(an event renamed or never written?{hint})")
    return violations


_KNOWN = frozenset(LogEvent)


def is_counted_schedule(record: TimelineRecord) -> bool:
    """A `reconnect_scheduled` record of a counted attempt (a backoff; not an immediate or ban wait)."""
    return (record.event == LogEvent.RECONNECT_SCHEDULED
            and record.detail.get("reason", ScheduleReason.BACKOFF) == ScheduleReason.BACKOFF)
