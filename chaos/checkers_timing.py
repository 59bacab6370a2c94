"""The timing checkers: backoffs as the policy says, reconnects when the scenario says, per step.

Attempt n is judged against the end of the step before it (the close that began the
episode, or attempt n-1's refusal) plus its delay, within the scenario's tolerance plus
the validation time measured for that step when the timeline has it, so one slow step
does not fail every later one; the drift from the first fault is reported as a note.
From the timeline when the gateway writes one, else from the stand-in's link events when
every attempt reaches it. Must not do I/O.
"""

from __future__ import annotations

from chaos.history import FaultWindow, History
from chaos.observed import Step, observed_episodes
from chaos.scenario import ChaosScenario
from chaos.verdicts import (ATTEMPT_TIMES_MATCH_POLICY, BLACK_BOX, DROP_EVENTS, EPISODE_STARTS, NOT_JUDGED,
                            RECONNECTS_AS_EXPECTED, WHITE_BOX, CheckResult, attempt_evidence, is_counted_schedule,
                            is_dropped, missing_kinds, not_judged, result)
from service.core import LogEvent, TimelineRecord

DEPENDENCIES = ("redis", "backoffice")  # upstreams a validation waits on


def attempt_times_match_policy(history: History, scenario: ChaosScenario) -> CheckResult:
    """Each backoff lasts what the policy says for its attempt (within tolerance), and no timer is lost."""
    backoff, tol_s = scenario.policy().backoff, scenario.allowed_error_s
    evidence = attempt_evidence(history, scenario)
    if evidence == NOT_JUDGED:
        return not_judged(ATTEMPT_TIMES_MATCH_POLICY)
    if evidence == BLACK_BOX:
        return _observed_attempt_times(history, scenario)
    end_s = max((r.t for r in history.timeline), default=0.0)
    violations = missing_kinds(history, scenario)
    for session_id in history.sessions:
        records = history.records_of(session_id)
        previous_s: float | None = None
        for index, record in enumerate(records):
            if record.event == LogEvent.SESSION_OPEN:
                previous_s = None
            if not is_counted_schedule(record):
                continue
            scheduled_s = float(record.detail.get("backoff_ms", 0.0)) / 1000
            resumed = index > 0 and records[index - 1].event == LogEvent.SESSION_RESUMED
            low_s, high_s = backoff.bounds_s(record.attempt, previous_s) if record.attempt >= 1 else (0.0, 0.0)
            previous_s = scheduled_s
            if resumed:  # the rest of a lost timer (B5), not a fresh backoff
                continue
            if not low_s - 1e-6 <= scheduled_s <= high_s + 1e-6:
                violations.append(f"{session_id}: attempt {record.attempt} scheduled {scheduled_s:.3f}s of backoff "
                                  f"at t={record.t:.3f}s; the policy says {_span(low_s, high_s)}")
            fired = _next_event(records[index + 1:], LogEvent.RECONNECT_RUNNING,
                                stop=(*EPISODE_STARTS, *DROP_EVENTS))
            if fired is None:
                if record.t + high_s + tol_s < end_s and not _interrupted(records[index + 1:]):
                    violations.append(f"{session_id}: the timer of attempt {record.attempt} (due "
                                      f"t={record.t + scheduled_s:.3f}s) never fired")
                continue
            waited_s = fired.t - record.t
            if not low_s - tol_s <= waited_s <= high_s + tol_s:
                violations.append(f"{session_id}: attempt {record.attempt} ran {waited_s:.3f}s after its close; "
                                  f"the policy says {_span(low_s, high_s)} ± {tol_s:.3f}s")
    return result(ATTEMPT_TIMES_MATCH_POLICY, violations, WHITE_BOX)


def _observed_attempt_times(history: History, scenario: ChaosScenario) -> CheckResult:
    """Black-box: each connect at the stand-in comes its attempt's delay after the previous step ended
    (the live socket's close for attempt 1, the previous attempt's refusal after that). Validation is
    invisible from outside: while a Redis or back-office fault lasts, only earliness is judged."""
    backoff, tol_s = scenario.policy().backoff, scenario.allowed_error_s
    dependency_faults = [f for f in history.faults if f.target in DEPENDENCIES]
    violations, notes = [], []
    for session_id in history.sessions:
        for episode in observed_episodes(history.link_events_of(session_id)):
            anchor_s, due_s = episode.start_s, episode.start_s
            for attempt in episode.attempts:
                low_s, high_s = backoff.bounds_s(min(attempt.number, backoff.max_attempts or attempt.number))
                slowed = any(_overlaps(f, anchor_s, attempt.connect_s) for f in dependency_faults)
                step = Step(attempt.number, attempt.connect_s, anchor_s, low_s, high_s,
                            excused_s=float("inf") if slowed else 0.0)
                problem = step.error(tol_s)
                if problem:
                    violations.append(f"{session_id}: attempt {attempt.number} at t={attempt.connect_s:.3f}s {problem}")
                due_s += high_s
                notes.append(f"{session_id}: attempt {attempt.number} drifted {attempt.connect_s - due_s:+.3f}s "
                             f"from the episode's start plus its delays"
                             + (" (lateness not judged: a Redis/back-office fault overlapped)" if slowed else ""))
                if attempt.end_s is None:
                    break
                anchor_s = attempt.end_s
    return result(ATTEMPT_TIMES_MATCH_POLICY, violations, BLACK_BOX, notes)


def _overlaps(fault: FaultWindow, start_s: float, end_s: float) -> bool:
    fault_end_s = fault.start_s if fault.end_s is None else fault.end_s
    return fault.start_s <= end_s and start_s <= fault_end_s


def _span(low_s: float, high_s: float) -> str:
    return f"{low_s:.3f}s" if abs(high_s - low_s) < 1e-9 else f"{low_s:.3f}–{high_s:.3f}s"


def _next_event(records: list[TimelineRecord], event: str, stop: tuple[str, ...]) -> TimelineRecord | None:
    for record in records:
        if record.event == event:
            return record
        if record.event in stop:
            return None
    return None


def _interrupted(records: list[TimelineRecord]) -> bool:
    return any(r.event in EPISODE_STARTS or r.event in DROP_EVENTS for r in records)


def reconnects_as_expected(history: History, scenario: ChaosScenario) -> CheckResult:
    """The scenario's stated outcome: how many reconnects, when, dropped or not.

    Times are judged per step: reconnect 1 against the first fault plus its expected offset,
    reconnect k against reconnect k-1's end plus the expected gap between them (a slow step
    does not fail the later ones); the drift from the first fault is a note."""
    outcome, evidence = scenario.expected, attempt_evidence(history, scenario)
    origin_s = min((f.start_s for f in history.faults), default=scenario.first_fault_s)
    violations: list[str] = missing_kinds(history, scenario) if evidence == WHITE_BOX else []
    notes: list[str] = []
    for session_id in history.sessions:
        if evidence == WHITE_BOX:
            records = history.records_of(session_id)
            steps = _timeline_steps(records)
            if outcome.dropped is not None and is_dropped(records) != outcome.dropped:
                violations.append(f"{session_id}: {'dropped' if is_dropped(records) else 'kept'}, expected "
                                  f"{'dropped' if outcome.dropped else 'kept'}")
        elif evidence == BLACK_BOX:
            steps = [(a.connect_s, a.end_s, 0.0) for e in observed_episodes(history.link_events_of(session_id))
                     for a in e.attempts]
        else:
            continue
        violations += _count_violations(session_id, len(steps), outcome.reconnects_min, outcome.reconnects_max)
        if outcome.attempt_offsets_s is not None:
            found, drift = _offset_violations(session_id, steps, outcome.attempt_offsets_s, origin_s,
                                              scenario.allowed_error_s)
            violations += found
            notes += drift
    if evidence == NOT_JUDGED:
        notes.append("reconnect count and times not judged: attempts hidden from the stand-in, no timeline")
    return result(RECONNECTS_AS_EXPECTED, violations, evidence, notes)


def _timeline_steps(records: list[TimelineRecord]) -> list[tuple[float, float | None, float]]:
    """(start, end, measured validation) per reconnect socket, from the gateway's timeline."""
    steps: list[tuple[float, float | None, float]] = []
    running_s: float | None = None
    for index, record in enumerate(records):
        if record.event == LogEvent.RECONNECT_RUNNING:
            running_s = record.t
        if record.event != LogEvent.SESSION_STARTING or record.attempt < 1:
            continue
        validation_s = record.t - running_s if running_s is not None else 0.0
        end = next((r.t for r in records[index + 1:] if r.event in (LogEvent.RECONNECT_FAILED, LogEvent.SESSION_CLOSED,
                                                                    LogEvent.SESSION_OPEN)), None)
        steps.append((record.t, end, max(0.0, validation_s)))
        running_s = None
    return steps


def _count_violations(session_id: str, count: int, low: int, top: int | None) -> list[str]:
    if count >= low and (top is None or count <= top):
        return []
    want = low if top == low else f"{low}..{'∞' if top is None else top}"
    return [f"{session_id}: {count} reconnect socket(s), expected {want}"]


def _offset_violations(session_id: str, steps: list[tuple[float, float | None, float]],
                       offsets_s: tuple[float, ...], origin_s: float, tol_s: float) -> tuple[list[str], list[str]]:
    violations, notes = [], []
    anchor_s, previous_offset_s = origin_s, 0.0
    for index, (want_s, (start_s, end_s, measured_s)) in enumerate(zip(offsets_s, steps), start=1):
        gap_s = want_s - previous_offset_s
        problem = Step(index, start_s, anchor_s, gap_s, gap_s, measured_s).error(tol_s)
        if problem:
            violations.append(f"{session_id}: reconnect {index} at +{start_s - origin_s:.3f}s {problem}")
        notes.append(f"{session_id}: reconnect {index} at +{start_s - origin_s:.3f}s, "
                     f"{start_s - origin_s - want_s:+.3f}s from the expected +{want_s:.3f}s")
        if end_s is None:
            break
        anchor_s, previous_offset_s = end_s, want_s
    return violations, notes
