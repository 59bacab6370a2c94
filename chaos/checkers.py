"""Checkers over a recorded history: pure functions, one per invariant, each named after it.

Each takes the `History` and the (scaled) `ChaosScenario` that states the policy the
gateway must follow, the expected outcome and the timing tolerance, and returns a
`CheckResult(name, ok, violations, evidence, notes)`. A violation says which session,
when, and what was wrong; `evidence` says what the verdict rests on: `black-box` (the
stand-ins' link events, Redis, the back office's received updates), `timeline` (the
gateway's own records, when it writes them) or `not judged` (attempts hidden from the
stand-in and no timeline). Timing is judged per step (`chaos.observed.Step`); the drift
from the first fault is a note. Must not do I/O or change the history.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Iterable

from chaos.checkers_timing import attempt_times_match_policy, reconnects_as_expected
from chaos.history import BackOfficeUpdate, History
from chaos.observed import observed_episodes
from chaos.scenario import ChaosScenario
from chaos.verdicts import (ATTEMPT_TIMES_MATCH_POLICY, ATTEMPTS_WITHIN_MAX, BACKOFFICE_COMPLETE_ORDERED, BLACK_BOX,
                            DROP_EVENTS, EPISODE_STARTS, FINAL_STATUS_AS_EXPECTED, GIVE_UP_EVENTS, MAX_LISTED,
                            NO_CONNECT_AFTER_END, NONE_LEFT_CONNECTING, NOT_JUDGED, ONE_LIVE_SOCKET,
                            RECONNECTS_AS_EXPECTED, WHITE_BOX, CheckResult, attempt_evidence, is_counted_schedule,
                            is_dropped, missing_kinds, not_judged, result)
from service.core import Action, LogEvent, Status, TimelineRecord

__all__ = ["ATTEMPT_TIMES_MATCH_POLICY", "ATTEMPTS_WITHIN_MAX", "BACKOFFICE_COMPLETE_ORDERED", "BLACK_BOX",
           "CHECKERS", "CheckResult", "DROP_EVENTS", "FINAL_STATUS_AS_EXPECTED", "MAX_LISTED", "NO_CONNECT_AFTER_END",
           "NONE_LEFT_CONNECTING", "NOT_JUDGED", "ONE_LIVE_SOCKET", "RECONNECTS_AS_EXPECTED", "WHITE_BOX",
           "attempt_times_match_policy", "check_all", "is_dropped", "reconnects_as_expected"]
_result = result  # the name the checkers' own tests use

ACCOUNT_FAULTS = ("account_deleted", "account_deactivated")

# ---- helpers over one session's records ---------------------------------------------------


def episodes(records: list[TimelineRecord]) -> list[list[TimelineRecord]]:
    """Disconnection episodes: from a close to the next open or drop (a resume continues one)."""
    found: list[list[TimelineRecord]] = []
    current: list[TimelineRecord] | None = None
    for record in records:
        if current is None and record.event in EPISODE_STARTS:
            current = []
            found.append(current)
        if current is not None:
            current.append(record)
            if record.event == LogEvent.SESSION_OPEN or record.event in DROP_EVENTS:
                current = None
    return found


def reconnect_starts(records: Iterable[TimelineRecord]) -> list[TimelineRecord]:
    """The `session_starting` records of reconnects (attempt >= 1): each opened a socket."""
    return [r for r in records if r.event == LogEvent.SESSION_STARTING and r.attempt >= 1]


_ATTEMPT_ENDS = (LogEvent.RECONNECT_FAILED, LogEvent.SESSION_CLOSED, LogEvent.SESSION_STARTING)


def attempt_outcomes(records: list[TimelineRecord]) -> list[tuple[float, int, str]]:
    """(time, attempt, outcome) per reconnect socket: `open`, `failed` or `pending`."""
    out: list[tuple[float, int, str]] = []
    for index, record in enumerate(records):
        if record.event != LogEvent.SESSION_STARTING or record.attempt < 1:
            continue
        outcome = "pending"
        for later in records[index + 1:]:
            if later.event == LogEvent.SESSION_OPEN:
                outcome = "open"
                break
            if later.event in _ATTEMPT_ENDS or later.event in DROP_EVENTS:
                outcome = "failed"
                break
        out.append((record.t, record.attempt, outcome))
    return out


def gateway_statuses(records: list[TimelineRecord]) -> list[str]:
    """The statuses the service set, in order, collapsed; a give-up ends with `inactive`."""
    seen: list[str] = []
    for record in records:
        if record.status is not None and (not seen or seen[-1] != record.status):
            seen.append(record.status)
        if record.event in GIVE_UP_EVENTS and (not seen or seen[-1] != Status.INACTIVE.value):
            seen.append(Status.INACTIVE.value)
    return seen


def final_status_of(history: History, session_id: str) -> str | None:
    """The session's final status: Redis's when recorded, else what its timeline implies."""
    if session_id in history.final_status:
        return history.final_status[session_id]
    statuses = gateway_statuses(history.records_of(session_id))
    return statuses[-1] if statuses else None


# ---- the invariants ------------------------------------------------------------------------


def attempts_per_episode_within_max(history: History, scenario: ChaosScenario) -> CheckResult:
    """No disconnection episode counts more reconnect attempts than the policy's max (none: no cap)."""
    max_attempts = scenario.policy().backoff.max_attempts
    if max_attempts is None:
        max_attempts = math.inf  # an uncapped policy (e.g. preset whatsmeow) gives up by deadline or never
    evidence = attempt_evidence(history, scenario)
    if evidence == NOT_JUDGED:
        return not_judged(ATTEMPTS_WITHIN_MAX)
    violations = []
    if evidence == BLACK_BOX:
        for session_id in history.sessions:
            for episode in observed_episodes(history.link_events_of(session_id)):
                if len(episode.attempts) > max_attempts:
                    violations.append(f"{session_id}: episode from t={episode.start_s:.3f}s made "
                                      f"{len(episode.attempts)} connects; the policy allows at most {max_attempts}")
        return _result(ATTEMPTS_WITHIN_MAX, violations)
    violations = missing_kinds(history, scenario)
    for session_id in history.sessions:
        for episode in episodes(history.records_of(session_id)):
            counted = {r.attempt for r in episode if r.attempt >= 1 and (
                r.event == LogEvent.SESSION_STARTING or is_counted_schedule(r))}
            if counted and (len(counted) > max_attempts or max(counted) > max_attempts):
                violations.append(f"{session_id}: episode from t={episode[0].t:.3f}s made attempts "
                                  f"{sorted(counted)}; the policy allows at most {max_attempts}")
    return _result(ATTEMPTS_WITHIN_MAX, violations, WHITE_BOX)


def final_status_as_expected(history: History, scenario: ChaosScenario) -> CheckResult:
    """Every session ends in one of the statuses the scenario expects."""
    allowed = sorted(s.value for s in scenario.expected.final_statuses)
    violations = []
    for session_id in history.sessions:
        status = final_status_of(history, session_id)
        if status not in allowed:
            violations.append(f"{session_id}: final status {status!r}, expected {' or '.join(allowed)}")
    return _result(FINAL_STATUS_AS_EXPECTED, violations)


def one_live_socket_per_session(history: History, scenario: ChaosScenario) -> CheckResult:
    """At the WhatsApp stand-in, no session ever holds two opened, unclosed sockets (R7)."""
    violations = []
    for session_id in history.sessions:
        live: set[str] = set()
        for event in sorted(history.link_events_of(session_id), key=lambda e: e.t):
            if event.kind == "open":
                live.add(event.conn_id)
                if len(live) > 1:
                    violations.append(f"{session_id}: {len(live)} live sockets at t={event.t:.3f}s "
                                      f"({', '.join(sorted(live))})")
            elif event.kind in ("close", "reject"):
                live.discard(event.conn_id)
    for report in history.meta.get("standin_r7_violations", []):
        if report.get("session_id") in history.sessions:
            violations.append(f"{report['session_id']}: the stand-in saw {report.get('live')} live sockets")
    return _result(ONE_LIVE_SOCKET, violations)


def no_connect_after_terminal_or_deletion(history: History, scenario: ChaosScenario) -> CheckResult:
    """After a terminal close code or an account deletion/deactivation, no socket is opened."""
    codes = scenario.policy().codes
    grace_s = scenario.overhead_s
    violations = missing_kinds(history, scenario)
    for session_id in history.sessions:
        ends = _end_times(history, session_id, codes.action_for)
        if not ends:
            continue
        cutoff_s, why = min(ends)
        for event in history.link_events_of(session_id):
            if event.kind == "connect" and event.t > cutoff_s + grace_s:
                violations.append(f"{session_id}: socket {event.conn_id} connected at t={event.t:.3f}s, "
                                  f"after {why} at t={cutoff_s:.3f}s")
        for record in history.records_of(session_id):
            if record.event == LogEvent.SESSION_STARTING and record.t > cutoff_s + grace_s:
                violations.append(f"{session_id}: the service started attempt {record.attempt} at "
                                  f"t={record.t:.3f}s, after {why} at t={cutoff_s:.3f}s")
    return _result(NO_CONNECT_AFTER_END, violations)


def _end_times(history: History, session_id: str,
               action_for: Callable[[object], Action]) -> list[tuple[float, str]]:
    ends = [(r.t, f"terminal code {r.detail.get('code')}") for r in history.records_of(session_id)
            if r.event == LogEvent.SESSION_TERMINAL]
    ends += [(e.t, f"terminal code {e.code} from WhatsApp") for e in history.link_events_of(session_id)
             if e.kind in ("close", "reject") and e.code is not None and action_for(e.code) is Action.TERMINAL]
    for kind in ACCOUNT_FAULTS:
        for fault in history.faults_of(kind):
            targets = fault.detail.get("sessions")
            if targets is None or session_id in targets:
                ends.append((fault.start_s, kind.replace("_", " ")))
    return ends


def backoffice_history_complete_and_ordered(history: History, scenario: ChaosScenario) -> CheckResult:
    """Per session the back office got every status change, in order, none lost, and ends where the gateway does.

    Black-box (no timeline), "where the gateway ends" is Redis's final status, except for a
    session whose account the back office itself deleted or deactivated (it wrote that status)."""
    violations = missing_kinds(history, scenario)
    for session_id in history.sessions:
        violations += _backoffice_violations(history, session_id)
    return _result(BACKOFFICE_COMPLETE_ORDERED, violations, WHITE_BOX if history.timeline else BLACK_BOX)


def _ended_by_backoffice(history: History, session_id: str) -> bool:
    return any(session_id in fault.detail.get("sessions", [session_id])
               for kind in ACCOUNT_FAULTS for fault in history.faults_of(kind))


def _backoffice_violations(history: History, session_id: str) -> list[str]:
    violations, first_of = [], {}
    for update in history.updates_of(session_id):
        original = first_of.setdefault(update.update_id, update)
        if (original.status, original.seq) != (update.status, update.seq):
            violations.append(f"{session_id}: update {update.update_id} arrived twice with different content")
    unique = list(first_of.values())
    seqs = [u.seq for u in unique]
    # One request is one arrival: the receiver orders a batch by seq (`StatusUpdate.seq`);
    # a later request must never carry an older update of the session.
    requests: list[list[BackOfficeUpdate]] = []
    for update in unique:
        if requests and _same_request(requests[-1][0], update):
            requests[-1].append(update)
        else:
            requests.append([update])
    for before, after in zip(requests, requests[1:]):
        newest, oldest = max(before, key=lambda u: u.seq), min(after, key=lambda u: u.seq)
        if oldest.seq <= newest.seq:
            violations.append(f"{session_id}: update seq {oldest.seq} ({oldest.status}) arrived at t={oldest.t:.3f}s, "
                              f"after seq {newest.seq} ({newest.status})")
    missing = sorted(set(range(min(seqs), max(seqs) + 1)) - set(seqs)) if seqs else []
    if missing:
        violations.append(f"{session_id}: updates with seq {missing} never arrived")
    received = _collapse(u.status for u in sorted(unique, key=lambda u: u.seq))
    expected = gateway_statuses(history.records_of(session_id))
    if not history.timeline:  # black-box: the back office must end where Redis ends
        final = history.final_status.get(session_id)
        expected = [final] if final is not None and not _ended_by_backoffice(history, session_id) else []
    if not _is_subsequence(expected, received):
        violations.append(f"{session_id}: the gateway set {expected} but the back office got {received}")
    elif expected and received and received[-1] != expected[-1]:
        violations.append(f"{session_id}: the back office ends at {received[-1]!r}, the gateway at {expected[-1]!r}")
    return violations


def _same_request(first: BackOfficeUpdate, other: BackOfficeUpdate) -> bool:
    if first.batch is not None and other.batch is not None:
        return first.batch == other.batch
    return first.t == other.t


def _collapse(statuses: Iterable[str]) -> list[str]:
    out: list[str] = []
    for status in statuses:
        if not out or out[-1] != status:
            out.append(status)
    return out


def _is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    remaining = iter(haystack)
    return all(any(item == candidate for candidate in remaining) for item in needle)


def no_session_left_connecting(history: History, scenario: ChaosScenario) -> CheckResult:
    """When the run is over, no session is still `connecting` (none stuck mid-reconnect)."""
    violations = []
    for session_id in history.sessions:
        status = final_status_of(history, session_id)
        if status == Status.CONNECTING.value:
            last = history.records_of(session_id)
            where = f"; its last step was {last[-1].event} at t={last[-1].t:.3f}s" if last else ""
            violations.append(f"{session_id}: still connecting at the end{where}")
    return _result(NONE_LEFT_CONNECTING, violations)


CHECKERS: tuple[Callable[[History, ChaosScenario], CheckResult], ...] = (
    attempts_per_episode_within_max,
    attempt_times_match_policy,
    final_status_as_expected,
    one_live_socket_per_session,
    no_connect_after_terminal_or_deletion,
    backoffice_history_complete_and_ordered,
    no_session_left_connecting,
    reconnects_as_expected,
)


def check_all(history: History, scenario: ChaosScenario) -> list[CheckResult]:
    """Every checker over the history, in a fixed order."""
    return [checker(history, scenario) for checker in CHECKERS]


def failed(results: Iterable[CheckResult]) -> list[CheckResult]:
    return [r for r in results if not r.ok]
