"""Reports of chaos runs: a timeline chart per scenario and one Markdown summary per run.

The chart (matplotlib, Agg) shades the fault windows, draws each session's status as a
coloured lane, and marks every reconnect attempt (opened, failed, pending) and drop;
below, how many sessions are in each status over time. The summary is a table of
scenarios with their verdict, then each failed check and prediction difference.
Must not run anything or decide verdicts: it draws and writes what it is given.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.patches import Patch  # noqa: E402

from chaos.checkers import CheckResult, DROP_EVENTS, attempt_outcomes, final_status_of  # noqa: E402
from chaos.history import History  # noqa: E402
from chaos.prediction import PredictionReport  # noqa: E402
from service.core import GIVE_UP_EVENTS, LogEvent  # noqa: E402

MAX_LANES = 12
STATUS_COLOURS = {"active": "#2e9e44", "connecting": "#f0a202", "inactive": "#c0392b", None: "#d0d0d0"}
FAULT_COLOURS = {"whatsapp": "#e74c3c", "redis": "#8e44ad", "backoffice": "#2980b9", "service": "#555555"}
ATTEMPT_MARKS = {"open": ("^", "#1b7a30"), "failed": ("x", "#b03020"), "pending": ("o", "#777777")}


@dataclass
class ScenarioRun:
    """What one scenario run came to, for the summary."""

    name: str
    scale: float
    status: str  # passed, failed, error, interrupted
    checks: list[CheckResult] = field(default_factory=list)
    prediction: PredictionReport | None = None
    run_dir: Path | None = None
    chart: Path | None = None
    journal: Path | None = None
    duration_s: float = 0.0
    error: str | None = None
    expected: str = ""
    # a broken-service proof: these checks (any check, when empty) must fail; None: an ordinary run
    intended: tuple[str, ...] | None = None

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    @property
    def violations(self) -> dict[str, list[str]]:
        """Each failed check's name → what it saw (the prediction's differences under `prediction`)."""
        found = {c.name: list(c.violations) for c in self.failed_checks}
        if self.prediction is not None and self.prediction.compared and not self.prediction.ok:
            found["prediction"] = self.prediction.differences
        return found

    def explain(self) -> str:
        """Everything that went wrong in the run, for an assertion message."""
        lines = [f"{self.name} ×{self.scale:g}: {self.verdict}" + (f" ({self.error})" if self.error else "")]
        lines += self.missed_intents() + [str(c) for c in self.failed_checks]
        if self.prediction is not None and not self.prediction.ok:
            lines += ["prediction differs:", *self.prediction.differences[:10]]
        return "\n".join(lines)

    def missed_intents(self) -> list[str]:
        """Why an intended failure did not show (empty when it did, or for an ordinary run)."""
        if self.intended is None:
            return []
        if self.status in ("error", "interrupted"):
            return [f"the run did not complete ({self.error or self.status}), so nothing was shown"]
        failed = {check_key(c.name) for c in self.failed_checks}
        if not self.intended:
            diverged = self.prediction is not None and self.prediction.compared and not self.prediction.ok
            return [] if failed or diverged else ["every check passed: the broken service was not caught"]
        known = {check_key(c.name) for c in self.checks}
        return [f"{name!r} did not fail" if check_key(name) in known else
                f"no check named {name!r} (checks: {', '.join(c.name for c in self.checks)})"
                for name in self.intended if check_key(name) not in failed]

    @property
    def verdict(self) -> str:
        """passed / failed / error / interrupted; for a broken-service proof: caught / not caught."""
        if self.intended is None or self.status == "interrupted":
            return self.status
        return "not caught" if self.missed_intents() else "caught"

    @property
    def ok(self) -> bool:
        """True when CI should be green about this run: it passed, or a proof caught its broken service."""
        return self.verdict in ("passed", "caught")

    @property
    def is_intended_failure(self) -> bool:
        return self.verdict == "caught"


def check_key(name: str) -> str:
    """A check's name as a command-line word: `attempts per episode ≤ max` → `attempts-per-episode-max`."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ---- chart ---------------------------------------------------------------------------------


def status_intervals(history: History, session_id: str, end_s: float) -> list[tuple[float, float, str | None]]:
    """(start, end, status) spans of one session, the last one ending at `end_s` with its final status."""
    spans: list[tuple[float, float, str | None]] = []
    current, since_s = None, 0.0
    for record in history.records_of(session_id):
        status = record.status
        if record.event in GIVE_UP_EVENTS:
            status = "inactive"
        if status != current:
            if current is not None:
                spans.append((since_s, record.t, current))
            current, since_s = status, record.t
    final = final_status_of(history, session_id)
    if current is not None and final is not None and final != current:
        last_t = max((r.t for r in history.records_of(session_id)), default=since_s)
        spans.append((since_s, last_t, current))
        current, since_s = final, last_t
    if current is not None:
        spans.append((since_s, max(end_s, since_s), current))
    return spans


def timeline_chart(history: History, path: Path | str, *, title: str = "", end_s: float | None = None) -> Path:
    """Draw the run: fault windows shaded, status lanes, attempts and drops marked; returns the PNG path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    last_t = max([r.t for r in history.timeline] + [f.end_s or f.start_s for f in history.faults] + [1.0])
    end_s = max(end_s or 0.0, last_t * 1.02)
    lanes = history.sessions[:MAX_LANES]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 2.2 + 0.45 * len(lanes) + 2.2), sharex=True,
                                      gridspec_kw={"height_ratios": [max(2, len(lanes)), 2.5]})
    try:
        _shade_faults(history, (top, bottom))
        _draw_lanes(history, top, lanes, end_s)
        _draw_counts(history, bottom, end_s)
        top.set_title(title or history.scenario, loc="left", fontsize=11)
        bottom.set_xlabel("seconds since the scenario started")
        bottom.set_xlim(0, end_s)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def _shade_faults(history: History, axes: tuple[Any, ...]) -> None:
    for fault in history.faults:
        colour = FAULT_COLOURS.get(fault.target, "#999999")
        for ax in axes:
            if fault.end_s is not None and fault.end_s > fault.start_s:
                ax.axvspan(fault.start_s, fault.end_s, color=colour, alpha=0.13, lw=0)
            else:
                ax.axvline(fault.start_s, color=colour, ls="--", lw=1.2)
        label = fault.kind.replace("_", " ") + ("" if fault.target in fault.kind else f" ({fault.target})")
        axes[0].annotate(label, (fault.start_s, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                         color=colour, va="top", ha="left", xytext=(2, -2), textcoords="offset points")


def _draw_lanes(history: History, ax: Any, lanes: list[str], end_s: float) -> None:
    for row, session_id in enumerate(lanes):
        y = len(lanes) - 1 - row
        for start_s, stop_s, status in status_intervals(history, session_id, end_s):
            ax.barh(y, stop_s - start_s, left=start_s, height=0.5, color=STATUS_COLOURS.get(status, "#d0d0d0"),
                    edgecolor="none")
        records = history.records_of(session_id)
        for t, attempt, outcome in attempt_outcomes(records):
            marker, colour = ATTEMPT_MARKS[outcome]
            ax.plot(t, y + 0.38, marker=marker, color=colour, ms=7, mew=2, ls="none")
            ax.annotate(str(attempt), (t, y + 0.38), fontsize=7, xytext=(4, -3), textcoords="offset points")
        for record in records:
            if record.event in DROP_EVENTS:
                ax.plot(record.t, y, marker="X", color="black", ms=8, ls="none")
    ax.set_yticks(range(len(lanes)), list(reversed(lanes)), fontsize=8)
    ax.set_ylim(-0.7, len(lanes) - 0.2 + 0.5)
    handles = [Patch(color=c, label=s) for s, c in STATUS_COLOURS.items() if s]
    handles += [plt.Line2D([], [], marker=m, color=c, ls="none", mew=2, label=f"attempt {o}")
                for o, (m, c) in ATTEMPT_MARKS.items()]
    handles.append(plt.Line2D([], [], marker="X", color="black", ls="none", label="dropped"))
    handles += [Patch(color=c, alpha=0.3, label=f"fault: {u}") for u, c in FAULT_COLOURS.items()
                if any(f.target == u for f in history.faults)]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if len(history.sessions) > len(lanes):
        ax.set_ylabel(f"first {len(lanes)} of {len(history.sessions)} sessions", fontsize=8)


def _draw_counts(history: History, ax: Any, end_s: float) -> None:
    steps = 400
    times = [end_s * i / steps for i in range(steps)]
    spans = {sid: status_intervals(history, sid, end_s) for sid in history.sessions}
    for status in ("active", "connecting", "inactive"):
        counts = [sum(1 for s in spans.values() for a, b, st in s if st == status and a <= t < b) for t in times]
        ax.step(times, counts, where="post", color=STATUS_COLOURS[status], label=status, lw=1.6)
    attempts = [r.t for r in history.timeline if r.event == LogEvent.SESSION_STARTING and r.attempt >= 1]
    if attempts:
        twin = ax.twinx()
        bin_s = end_s / 120
        twin.hist(attempts, bins=120, range=(0, end_s), color="#34495e", alpha=0.45)
        twin.set_ylabel(f"reconnects per {bin_s:.2g} s", fontsize=8)
    ax.set_ylabel("sessions", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.06, 1.0), frameon=False)


# ---- summary -------------------------------------------------------------------------------


def _prediction_cell(prediction: PredictionReport | None) -> str:
    """`match` or the difference count, then the worst per-attempt error, zero-latency and calibrated."""
    if prediction is None or not prediction.compared:
        return "–"
    cell = "match" if prediction.ok else f"{len(prediction.differences)} difference(s)"
    worst = [max((e["max"] for e in errors.values()), default=None)
             for errors in (prediction.error_ms, prediction.calibrated_error_ms)]
    if worst[0] is not None:
        cell += f"; max error {worst[0]:.0f} ms" + ("" if worst[1] is None else f", calibrated {worst[1]:.0f} ms")
    return cell


def summary_markdown(runs: list[ScenarioRun], *, title: str = "Chaos run") -> str:
    """A short Markdown page: one table row per scenario, then real failures apart from intended ones."""
    passed = sum(r.verdict == "passed" for r in runs)
    intended = [r for r in runs if r.is_intended_failure]
    real = [r for r in runs if not r.ok]
    lines = [f"# {title}", "",
             f"{passed} of {len(runs)} scenario(s) passed; {len(intended)} failed as intended (broken-service "
             f"proofs); **{len(real)} real failure(s)**.", "",
             "| scenario | scale | verdict | checks | prediction | time | chart | journal |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        checks = f"{sum(c.ok for c in run.checks)}/{len(run.checks)}" if run.checks else "–"
        prediction = _prediction_cell(run.prediction)
        lines.append(f"| {run.name} | {run.scale:g} | **{run.verdict}** | {checks} | {prediction} | "
                     f"{run.duration_s:.1f} s | {_link(run.chart, 'png')} | {_link(run.journal, 'json')} |")
    lines += _evidence_table(runs)
    for heading, group in (("Real failures", real), ("Intended failures (broken-service proofs)", intended)):
        if group:
            lines += ["", f"## {heading}"]
        for run in group:
            intent = "" if run.intended is None else (
                " — intended to fail: " + (", ".join(run.intended) if run.intended else "any check"))
            lines += ["", f"### {run.name}: {run.verdict}{intent}", "", f"Expected: {run.expected}", "",
                      *[f"- {why}" for why in run.missed_intents()], *_failure_notes(run)]
    return "\n".join(lines) + "\n"


def _evidence_table(runs: list[ScenarioRun]) -> list[str]:
    """Which checks were judged black-box (stand-ins, Redis, back office), which needed the timeline."""
    rows = []
    for run in runs:
        by_kind: dict[str, list[str]] = {}
        for check in run.checks:
            by_kind.setdefault(check.evidence, []).append(check.name)
        rows.append(f"| {run.name} | " + " | ".join(str(len(by_kind.get(kind, []))) for kind in _EVIDENCE)
                    + " | " + "; ".join(by_kind.get("timeline", []) + by_kind.get("not judged", [])) + " |")
    return ["", "| scenario | black-box checks | from the timeline | not judged | which not black-box |",
            "|---|---|---|---|---|", *rows] if any(run.checks for run in runs) else []


_EVIDENCE = ("black-box", "timeline", "not judged")


def _link(path: Path | None, label: str) -> str:
    if path is None:
        return "–"
    return f"[{label}]({path.as_posix()})"


def _failure_notes(run: ScenarioRun) -> list[str]:
    notes = []
    if run.error:
        notes.append(f"- error: {run.error}")
    for check in run.failed_checks:
        notes.append(f"- **{check.name}** violated ({check.evidence}):")
        notes += [f"  - {v}" for v in check.violations]
    if run.prediction is not None and run.prediction.compared and not run.prediction.ok:
        notes.append("- the prediction differs:")
        notes += [f"  - {d}" for d in run.prediction.differences[:25]]
    return notes


def write_summary(report_dir: Path | str, runs: list[ScenarioRun], *, title: str = "Chaos run") -> Path:
    """Write `summary.md` in `report_dir`, with links relative to it."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    relative = [ScenarioRun(**{**r.__dict__, "chart": _rel(r.chart, report_dir),
                               "journal": _rel(r.journal, report_dir)}) for r in runs]
    path = report_dir / "summary.md"
    path.write_text(summary_markdown(relative, title=title), encoding="utf-8")
    return path


def _rel(path: Path | None, base: Path) -> Path | None:
    if path is None:
        return None
    try:
        return Path(os.path.relpath(path, base))
    except ValueError:
        return path
