"""Prediction: replay the scenario through the core on a virtual clock and compare with the run.

`predict` runs `sim.replay.replay` on the scenario's prediction schedule and policy;
`compare` matches each session's reconnect attempts (time relative to the first fault,
outcome) and final status with the recorded history, within the scenario's tolerance.
An attempt predicted within tolerance of a fault's edge may honestly go either way: if
its outcome differs, the session is marked diverged there and not compared further (a
report line, not a failure). Must not do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chaos.checkers import attempt_outcomes, final_status_of, is_dropped
from chaos.history import History
from chaos.scenario import ChaosScenario, action_end_s, action_start_s, replay_id
from sim.replay import ReplayResult, replay
from sim.scenarios import Scenario

Attempt = tuple[float, int, str]  # (offset from the first fault in s, attempt number, outcome)


@dataclass
class SessionComparison:
    """Predicted and observed attempts of one session, and what differed."""

    session_id: str
    predicted: list[Attempt]
    observed: list[Attempt]
    predicted_final: str | None
    observed_final: str | None
    differences: list[str] = field(default_factory=list)
    diverged_at: int | None = None  # index of an ambiguous attempt whose outcome differed


@dataclass
class PredictionReport:
    """The comparison of one run with its prediction; `ok` unless a difference exceeded tolerance."""

    scenario: str
    compared: bool
    tolerance_s: float
    sessions: list[SessionComparison] = field(default_factory=list)
    note: str = ""

    @property
    def differences(self) -> list[str]:
        return [d for s in self.sessions for d in s.differences]

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        shown = self.sessions[:20]
        return {
            "scenario": self.scenario, "compared": self.compared, "ok": self.ok, "note": self.note,
            "tolerance_s": self.tolerance_s, "differences": self.differences[:50],
            "diverged": {s.session_id: s.diverged_at for s in self.sessions if s.diverged_at is not None},
            "sessions": {s.session_id: {"predicted": s.predicted, "observed": s.observed,
                                        "predicted_final": s.predicted_final, "observed_final": s.observed_final}
                         for s in shown},
        }


def predict(scenario: ChaosScenario, *, seed: int = 0) -> ReplayResult | None:
    """The replay of this scenario (at its scale), or None when the replay cannot model it."""
    schedule = scenario.prediction_schedule()
    if schedule is None:
        return None
    return replay(schedule, scenario.policy(), sessions=scenario.sessions, seed=seed)


def compare(history: History, scenario: ChaosScenario, predicted: ReplayResult | None) -> PredictionReport:
    """Per session: attempts (time, outcome) and final status, observed vs predicted."""
    tol_s = scenario.allowed_error_s
    if predicted is None:
        return PredictionReport(scenario.name, False, tol_s,
                                note="not compared: the simulation does not model this scenario's faults")
    schedule = scenario.prediction_schedule()
    assert schedule is not None
    predicted_origin_s = scenario.first_fault_s
    observed_origin_s = min((f.start_s for f in history.faults), default=predicted_origin_s)
    edges = _edges_s(schedule, predicted_origin_s)
    report = PredictionReport(scenario.name, True, tol_s)
    for session_id in history.sessions:
        sim_id = replay_id(session_id)
        sim_records = sorted((r for r in predicted.timeline if r.session_id == sim_id), key=lambda r: r.t)
        records = history.records_of(session_id)
        final = predicted.final_status.get(sim_id)
        comparison = SessionComparison(
            session_id,
            predicted=[(t - predicted_origin_s, n, o) for t, n, o in attempt_outcomes(sim_records)],
            observed=[(t - observed_origin_s, n, o) for t, n, o in attempt_outcomes(records)],
            predicted_final=None if final is None else final.value,
            observed_final=final_status_of(history, session_id),
        )
        _compare_session(comparison, edges, tol_s)
        if comparison.diverged_at is None and is_dropped(records) != (sim_id in predicted.dropped):
            comparison.differences.append(f"{session_id}: {'dropped' if is_dropped(records) else 'kept'}, "
                                          f"predicted {'dropped' if sim_id in predicted.dropped else 'kept'}")
        report.sessions.append(comparison)
    return report


def predict_and_compare(history: History, scenario: ChaosScenario, *, seed: int = 0) -> PredictionReport:
    return compare(history, scenario, predict(scenario, seed=seed))


def _edges_s(schedule: Scenario, origin_s: float) -> list[float]:
    """Every moment a fault starts or ends, relative to the first fault."""
    edges = set()
    for fault in schedule.faults:
        edges.add(action_start_s(fault) - origin_s)
        edges.add(action_end_s(fault) - origin_s)
    return sorted(edges)


def _compare_session(comparison: SessionComparison, edges: list[float], tol_s: float) -> None:
    sid, diffs = comparison.session_id, comparison.differences
    for index, (want, got) in enumerate(zip(comparison.predicted, comparison.observed)):
        want_s, attempt, want_outcome = want
        got_s, got_attempt, got_outcome = got
        if abs(got_s - want_s) > tol_s:
            diffs.append(f"{sid}: attempt {got_attempt} at +{got_s:.3f}s, predicted attempt {attempt} at "
                         f"+{want_s:.3f}s (± {tol_s:.3f}s)")
            return
        if got_outcome != want_outcome:
            if any(abs(want_s - edge_s) <= tol_s for edge_s in edges):
                comparison.diverged_at = index  # on a fault's edge: either outcome is honest
                return
            diffs.append(f"{sid}: attempt {got_attempt} at +{got_s:.3f}s {got_outcome}, predicted {want_outcome}")
            return
    if len(comparison.observed) != len(comparison.predicted):
        diffs.append(f"{sid}: {len(comparison.observed)} reconnect attempt(s), predicted "
                     f"{len(comparison.predicted)}")
        return
    if comparison.observed_final != comparison.predicted_final:
        diffs.append(f"{sid}: final status {comparison.observed_final!r}, predicted {comparison.predicted_final!r}")
