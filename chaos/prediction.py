"""Prediction: run the scenario through the model (the twin) and compare with the run.

`predict` runs `sim.replay.replay` (the population model's per-session engine) on the
scenario's prediction schedule and policy, with zero latency or — calibrated — with the
validation and connect latencies measured in the run's own timeline (`measured_latencies`);
`compare` matches each session's reconnect attempts (time relative to the first fault,
outcome) and final status with the recorded history, within the scenario's tolerance, and
reports |predicted − observed| per attempt number in ms, uncalibrated and calibrated.
An attempt predicted within tolerance of a fault's edge may honestly go either way: if
its outcome differs, the session is marked diverged there and not compared further (a
report line, not a failure). Must not do I/O.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from chaos.checkers import attempt_outcomes, final_status_of, is_dropped
from chaos.history import History
from chaos.scenario import ChaosScenario, action_end_s, action_start_s, replay_id
from service.core import LogEvent
from sim.replay import Latencies, ReplayResult, replay
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
    latencies: Latencies | None = None  # what the calibrated prediction was fed
    calibrated: list[SessionComparison] = field(default_factory=list)

    @property
    def differences(self) -> list[str]:
        return [d for s in self.sessions for d in s.differences]

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def error_ms(self) -> dict[int, dict[str, float]]:
        """Per attempt number: max and mean |predicted − observed| in ms (zero-latency twin)."""
        return attempt_errors_ms(self.sessions)

    @property
    def calibrated_error_ms(self) -> dict[int, dict[str, float]]:
        """The same for the twin fed the run's measured latencies."""
        return attempt_errors_ms(self.calibrated)

    def to_dict(self) -> dict[str, Any]:
        shown = self.sessions[:20]
        return {
            "scenario": self.scenario, "compared": self.compared, "ok": self.ok, "note": self.note,
            "tolerance_s": self.tolerance_s, "differences": self.differences[:50],
            "error_ms": {str(n): e for n, e in self.error_ms.items()},
            "calibrated_error_ms": {str(n): e for n, e in self.calibrated_error_ms.items()},
            "latencies": None if self.latencies is None else self.latencies.to_dict(),
            "diverged": {s.session_id: s.diverged_at for s in self.sessions if s.diverged_at is not None},
            "sessions": {s.session_id: {"predicted": s.predicted, "observed": s.observed,
                                        "predicted_final": s.predicted_final, "observed_final": s.observed_final}
                         for s in shown},
        }


def predict(scenario: ChaosScenario, *, seed: int = 0, latencies: Latencies | None = None) -> ReplayResult | None:
    """The model's run of this scenario (at its scale), or None when the model cannot say."""
    schedule = scenario.prediction_schedule()
    if schedule is None:
        return None
    return replay(schedule, scenario.policy(), sessions=scenario.sessions, seed=seed, latencies=latencies)


def measured_latencies(history: History) -> Latencies:
    """Median validation (reconnect_running → session_starting) and connect (session_starting →
    its outcome) times of the run's reconnect attempts; 0 where the run has none."""
    validation_s, connect_s = [], []
    for session_id in history.sessions:
        records = history.records_of(session_id)
        for index, record in enumerate(records):
            following = records[index + 1:]
            if record.event == LogEvent.RECONNECT_RUNNING:
                start = next((r for r in following if r.event == LogEvent.SESSION_STARTING), None)
                if start is not None and start.t - record.t >= 0:
                    validation_s.append(start.t - record.t)
            elif record.event == LogEvent.SESSION_STARTING and record.attempt >= 1:
                end = next((r for r in following if r.event in _CONNECT_ENDS), None)
                if end is not None:
                    connect_s.append(end.t - record.t)
    return Latencies(validation_s=statistics.median(validation_s) if validation_s else 0.0,
                     connect_s=statistics.median(connect_s) if connect_s else 0.0)


_CONNECT_ENDS = (LogEvent.SESSION_OPEN, LogEvent.RECONNECT_FAILED, LogEvent.SESSION_CLOSED)


def attempt_errors_ms(sessions: list[SessionComparison]) -> dict[int, dict[str, float]]:
    """Per attempt number: max and mean |predicted − observed| in ms over the sessions, up to
    where each session diverged or differed in outcome."""
    errors: dict[int, list[float]] = {}
    for comparison in sessions:
        for want, got in zip(comparison.predicted, comparison.observed):
            if want[1] != got[1] or want[2] != got[2]:
                break
            errors.setdefault(got[1], []).append(abs(got[0] - want[0]) * 1000)
    return {n: {"max": round(max(e), 1), "mean": round(statistics.fmean(e), 1)} for n, e in sorted(errors.items())}


def compare(history: History, scenario: ChaosScenario, predicted: ReplayResult | None,
            calibrated: ReplayResult | None = None, latencies: Latencies | None = None) -> PredictionReport:
    """Per session: attempts (time, outcome) and final status, observed vs predicted; the verdict
    is the zero-latency twin's, the calibrated one (when given) is reported as its errors."""
    tol_s = scenario.allowed_error_s
    if predicted is None:
        return PredictionReport(scenario.name, False, tol_s,
                                note="not compared: the simulation does not model this scenario's faults")
    schedule = scenario.prediction_schedule()
    assert schedule is not None
    predicted_origin_s = scenario.first_fault_s
    observed_origin_s = min((f.start_s for f in history.faults), default=predicted_origin_s)
    edges = _edges_s(schedule, predicted_origin_s)
    report = PredictionReport(scenario.name, True, tol_s, latencies=latencies)
    for session_id in history.sessions:
        origins = (predicted_origin_s, observed_origin_s)
        comparison = _session_comparison(history, session_id, predicted, origins)
        _compare_session(comparison, edges, tol_s)
        sim_id, records = replay_id(session_id), history.records_of(session_id)
        if comparison.diverged_at is None and is_dropped(records) != (sim_id in predicted.dropped):
            comparison.differences.append(f"{session_id}: {'dropped' if is_dropped(records) else 'kept'}, "
                                          f"predicted {'dropped' if sim_id in predicted.dropped else 'kept'}")
        report.sessions.append(comparison)
        if calibrated is not None:
            report.calibrated.append(_session_comparison(history, session_id, calibrated, origins))
    return report


def _session_comparison(history: History, session_id: str, predicted: ReplayResult,
                        origins: tuple[float, float]) -> SessionComparison:
    sim_id = replay_id(session_id)
    sim_records = sorted((r for r in predicted.timeline if r.session_id == sim_id), key=lambda r: r.t)
    final = predicted.final_status.get(sim_id)
    return SessionComparison(
        session_id,
        predicted=[(t - origins[0], n, o) for t, n, o in attempt_outcomes(sim_records)],
        observed=[(t - origins[1], n, o) for t, n, o in attempt_outcomes(history.records_of(session_id))],
        predicted_final=None if final is None else final.value,
        observed_final=final_status_of(history, session_id),
    )


def predict_and_compare(history: History, scenario: ChaosScenario, *, seed: int = 0) -> PredictionReport:
    """Compare the run with the zero-latency twin (the verdict) and with the twin fed its latencies."""
    latencies = measured_latencies(history)
    return compare(history, scenario, predict(scenario, seed=seed),
                   predict(scenario, seed=seed, latencies=latencies), latencies)


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
