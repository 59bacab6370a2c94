"""The run journal: the experiment, then one record per activity, in Chaos Toolkit's phases.

Not a Chaos Toolkit journal: the phases (steady state before → method → steady state after →
rollbacks) follow Chaos Toolkit's, but its activities have no providers and its tools
(`chaos report`) do not read it; `format` says whose it is. Owns the record of what the
runner did: steady-state probes before and after, the method's actions, the rollbacks
(always run), each with start, end, duration, status and output; then the checks, the
prediction and the run's status. Written as JSON. Must not decide anything: the runner says
what happened, the journal writes it down.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import platform
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("before", "method", "after", "rollbacks")
JOURNAL_FORMAT = "reconnect-lab chaos journal 1"
RUN_STATUSES = ("completed", "failed", "aborted", "interrupted")


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Activity:
    """One probe or action: filled in by `Journal.activity`; `output` is set by the caller."""

    name: str
    kind: str  # "probe" or "action"
    phase: str
    start_s: float
    end_s: float | None = None
    status: str = "running"
    output: Any = None
    exception: str | None = None
    at_s: float | None = None  # scheduled time on the scenario's clock, for method actions

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "activity": {"type": self.kind, "name": self.name},
            "status": self.status,
            "start": _iso(self.start_s),
            "end": None if self.end_s is None else _iso(self.end_s),
            "duration": None if self.end_s is None else round(self.end_s - self.start_s, 6),
            "output": self.output,
        }
        if self.at_s is not None:
            record["activity"]["scheduled_at_s"] = self.at_s
        if self.exception is not None:
            record["exception"] = self.exception
        return record


@dataclass
class Journal:
    """The journal of one scenario run."""

    experiment: dict[str, Any]
    clock: Callable[[], float] = time.time
    start_s: float = field(default=0.0)
    end_s: float | None = None
    status: str = "running"
    deviated: bool = False
    activities: list[Activity] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    prediction: dict[str, Any] | None = None
    artifacts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.start_s:
            self.start_s = self.clock()

    @contextlib.contextmanager
    def activity(self, name: str, *, kind: str = "action", phase: str = "method",
                 at_s: float | None = None, reraise: bool = True) -> Iterator[Activity]:
        """Record the block as one activity: `succeeded`, `failed` (with the error) or `interrupted`.

        With `reraise=False` a failure is recorded and swallowed (rollbacks go on); an
        interrupt (Ctrl-C) is always re-raised.
        """
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        record = Activity(name, kind, phase, self.clock(), at_s=at_s)
        self.activities.append(record)
        try:
            yield record
        except KeyboardInterrupt:
            record.status, record.exception = "interrupted", "KeyboardInterrupt"
            raise
        except Exception as exc:  # recorded whatever it is; re-raised unless told otherwise
            record.status = "failed"
            record.exception = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if reraise:
                raise
        else:
            record.status = "succeeded"
        finally:
            record.end_s = self.clock()

    def phase(self, phase: str) -> list[Activity]:
        return [a for a in self.activities if a.phase == phase]

    def finish(self, status: str, *, deviated: bool = False) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {RUN_STATUSES}, got {status!r}")
        self.status, self.deviated, self.end_s = status, deviated, self.clock()

    def to_dict(self) -> dict[str, Any]:
        def steady(phase: str) -> dict[str, Any]:
            probes = self.phase(phase)
            return {"steady_state_met": bool(probes) and all(p.status == "succeeded" and p.output is not False
                                                             for p in probes),
                    "probes": [p.to_dict() for p in probes]}

        return {
            "format": JOURNAL_FORMAT,
            "platform": platform.platform(),
            "node": platform.node(),
            "experiment": self.experiment,
            "start": _iso(self.start_s),
            "end": None if self.end_s is None else _iso(self.end_s),
            "duration": None if self.end_s is None else round(self.end_s - self.start_s, 3),
            "status": self.status,
            "deviated": self.deviated,
            "steady_states": {"before": steady("before"), "after": steady("after"), "during": []},
            "run": [a.to_dict() for a in self.phase("method")],
            "rollbacks": [a.to_dict() for a in self.phase("rollbacks")],
            "checks": self.checks,
            "prediction": self.prediction,
            "artifacts": self.artifacts,
        }

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        return path
