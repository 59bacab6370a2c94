"""The recorded history of one chaos run (Jepsen's habit: record first, check after).

Owns the history's shape and its files: the service's timeline records, the WhatsApp
stand-in's socket events (`GET /admin/events`), the back office's received updates
(`GET /admin/updates`), the fault windows as executed, the final statuses read from
Redis, and run metadata. Every time is seconds since the run's origin (the moment the
scenario's clock started); adapters convert the sources' epoch times. Also builds a
history from a `sim.replay` result, so checkers can be tested on simulated runs.
Must not talk to servers (the runner fetches, this module shapes and stores).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.core import Connection, LogEvent, TimelineRecord, read_jsonl, write_jsonl
from sim.replay import ReplayResult
from sim.scenarios import AccountDeleted, CloseWith, LinkDown, Scenario

LINK_EVENT_KINDS = ("connect", "reject", "open", "close")
FILES = {"timeline": "timeline.jsonl", "link_events": "link_events.jsonl",
         "backoffice_updates": "backoffice_updates.jsonl", "faults": "faults.jsonl", "meta": "meta.json"}


class HistoryError(ValueError):
    """A history file or source record is malformed; the message names the file, line and field."""


@dataclass(frozen=True)
class LinkEvent:
    """One step of one socket at the WhatsApp stand-in: connect, reject (code), open, close."""

    t: float
    session_id: str
    kind: str
    conn_id: str
    code: int | str | None = None

    def __post_init__(self) -> None:
        if self.kind not in LINK_EVENT_KINDS:
            raise HistoryError(f"link event kind must be one of {LINK_EVENT_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class BackOfficeUpdate:
    """One status update as the back office received it; `batch` numbers the request it came in."""

    t: float
    session_id: str
    status: str
    priority: str
    seq: int
    update_id: str
    batch: int | None = None


@dataclass(frozen=True)
class FaultWindow:
    """A fault as executed: `kind` on `target` from `start_s` to `end_s` (None: instant or never ended)."""

    kind: str
    target: str
    start_s: float
    end_s: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", dict(self.detail))

    def covers(self, t: float, margin_s: float = 0.0) -> bool:
        end_s = self.start_s if self.end_s is None else self.end_s
        return self.start_s - margin_s <= t <= end_s + margin_s


@dataclass
class History:
    """Everything a run recorded. `sessions` lists every session the run started."""

    scenario: str
    sessions: list[str]
    timeline: list[TimelineRecord] = field(default_factory=list)
    link_events: list[LinkEvent] = field(default_factory=list)
    backoffice_updates: list[BackOfficeUpdate] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    final_status: dict[str, str | None] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def records_of(self, session_id: str) -> list[TimelineRecord]:
        """One session's timeline records in time order (stable for equal times)."""
        return sorted((r for r in self.timeline if r.session_id == session_id), key=lambda r: r.t)

    def link_events_of(self, session_id: str) -> list[LinkEvent]:
        return [e for e in self.link_events if e.session_id == session_id]

    def updates_of(self, session_id: str) -> list[BackOfficeUpdate]:
        return [u for u in self.backoffice_updates if u.session_id == session_id]

    def faults_of(self, kind: str) -> list[FaultWindow]:
        return [f for f in self.faults if f.kind == kind]

    # ---- files ----
    def save(self, run_dir: Path | str) -> Path:
        """Write the history as JSON lines plus meta.json under `run_dir`; returns the dir."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / FILES["timeline"], "w", encoding="utf-8") as stream:
            write_jsonl(stream, sorted(self.timeline, key=lambda r: r.t))
        _write_lines(run_dir / FILES["link_events"], (asdict(e) for e in self.link_events))
        _write_lines(run_dir / FILES["backoffice_updates"], (asdict(u) for u in self.backoffice_updates))
        _write_lines(run_dir / FILES["faults"], (asdict(f) for f in self.faults))
        meta = {"scenario": self.scenario, "sessions": self.sessions, "final_status": self.final_status,
                **self.meta}
        (run_dir / FILES["meta"]).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n",
                                             encoding="utf-8")
        return run_dir

    @classmethod
    def load(cls, run_dir: Path | str) -> History:
        """Read a history written by `save`; a bad line raises naming the file and line."""
        run_dir = Path(run_dir)
        meta_path = run_dir / FILES["meta"]
        if not meta_path.exists():
            raise HistoryError(f"{meta_path} not found: not a chaos run directory")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        with open(run_dir / FILES["timeline"], encoding="utf-8") as stream:
            timeline = list(read_jsonl(stream))
        history = cls(
            scenario=meta.pop("scenario"), sessions=list(meta.pop("sessions")),
            timeline=timeline,
            link_events=_read_lines(run_dir / FILES["link_events"], LinkEvent),
            backoffice_updates=_read_lines(run_dir / FILES["backoffice_updates"], BackOfficeUpdate),
            faults=_read_lines(run_dir / FILES["faults"], FaultWindow),
            final_status=dict(meta.pop("final_status", {})),
        )
        history.meta = meta
        return history


def _write_lines(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row, sort_keys=True, default=str) + "\n")


def _read_lines(path: Path, kind: type) -> list[Any]:
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                rows.append(kind(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                raise HistoryError(f"{path}:{number}: not a {kind.__name__} record ({exc})") from exc
    return rows


# ---- adapters from the sources' raw records -------------------------------------------


def timeline_from_service(records: Iterable[TimelineRecord], offset_s: float,
                          sessions: Iterable[str] | None = None) -> list[TimelineRecord]:
    """The service's records on the run's clock (`t + offset_s`), only the run's sessions."""
    wanted = None if sessions is None else set(sessions)
    return [r.shifted(offset_s) for r in records if wanted is None or r.session_id in wanted]


def link_events_from_standin(raw_events: Iterable[Mapping[str, Any]], origin_epoch_s: float,
                             sessions: Iterable[str] | None = None) -> list[LinkEvent]:
    """The WhatsApp stand-in's `/admin/events` rows (epoch `t`) as link events on the run's clock."""
    wanted = None if sessions is None else set(sessions)
    events = []
    for row in raw_events:
        try:
            session_id, kind = str(row["session_id"]), str(row["event"])
            if wanted is not None and session_id not in wanted:
                continue
            events.append(LinkEvent(float(row["t"]) - origin_epoch_s, session_id, kind,
                                    str(row["conn_id"]), row.get("code")))
        except (KeyError, TypeError, ValueError) as exc:
            raise HistoryError(f"stand-in event {dict(row)!r} lacks or mangles a field: {exc}") from exc
    return events


def updates_from_standin(raw_updates: Iterable[Mapping[str, Any]], origin_epoch_s: float,
                         sessions: Iterable[str] | None = None) -> list[BackOfficeUpdate]:
    """The back-office stand-in's `/admin/updates` rows as updates on the run's clock.

    Accepts `t` or `received_at` (epoch seconds) for the arrival time.
    """
    wanted = None if sessions is None else set(sessions)
    updates = []
    for row in raw_updates:
        try:
            session_id = str(row["session_id"])
            if wanted is not None and session_id not in wanted:
                continue
            arrived = row["t"] if "t" in row else row["received_at"]
            batch = row.get("batch")
            updates.append(BackOfficeUpdate(float(arrived) - origin_epoch_s, session_id, str(row["status"]),
                                            str(row.get("priority", "normal")), int(row["seq"]),
                                            str(row["update_id"]), None if batch is None else int(batch)))
        except (KeyError, TypeError, ValueError) as exc:
            raise HistoryError(f"back-office update {dict(row)!r} lacks or mangles a field: {exc}") from exc
    return updates


# ---- a history from the simulation ---------------------------------------------------------


def fault_windows(scenario: Scenario) -> list[FaultWindow]:
    """The sim scenario's faults as windows (what a perfect runner would have recorded)."""
    windows = []
    for fault in scenario.faults:
        if isinstance(fault, LinkDown):
            windows.append(FaultWindow("link_down", "whatsapp", fault.start_s, fault.end_s))
        elif isinstance(fault, CloseWith):
            windows.append(FaultWindow("close_with", "whatsapp", fault.at_s, None, {"code": fault.code}))
        elif isinstance(fault, AccountDeleted):
            windows.append(FaultWindow("account_deleted", "backoffice", fault.at_s, None))
    return windows


def from_replay(result: ReplayResult, scenario: Scenario, *, sessions: Iterable[str] | None = None,
                meta: Mapping[str, Any] | None = None) -> History:
    """A history as a perfect world would have recorded the replay (its latencies, no noise).

    Link events come from the replay's socket opens and the closes in its timeline; the
    back office receives every status write at once, numbered per session.
    """
    session_list = sorted(result.sockets_opened) if sessions is None else list(sessions)
    history = History(scenario=result.scenario, sessions=session_list, timeline=list(result.timeline),
                      faults=fault_windows(scenario), meta=dict(meta or {}))
    for session_id in session_list:
        history.link_events.extend(_replay_link_events(result, session_id))
    seqs: dict[str, int] = {}
    for t, session_id, status, priority in result.status_updates:
        seqs[session_id] = seqs.get(session_id, 0) + 1
        history.backoffice_updates.append(BackOfficeUpdate(t, session_id, status.value, priority.value,
                                                           seqs[session_id], f"{session_id}:{seqs[session_id]}",
                                                           len(history.backoffice_updates) + 1))
    history.final_status = {sid: (s.value if s is not None else None) for sid, s in result.final_status.items()}
    return history


def _replay_link_events(result: ReplayResult, session_id: str) -> list[LinkEvent]:
    """Sockets from the replay: each OpenSocket connects; it opens or is refused; a close ends it."""
    events: list[LinkEvent] = []
    opened = iter(result.sockets_opened.get(session_id, []))
    live: str | None = None
    count = 0
    for record in sorted((r for r in result.timeline if r.session_id == session_id), key=lambda r: r.t):
        if record.event == LogEvent.SESSION_STARTING:
            t, _attempt = next(opened, (record.t, record.attempt))
            if live is not None:  # the machine closed the old socket first (R7)
                events.append(LinkEvent(t, session_id, "close", live))
                live = None
            count += 1
            conn = f"{session_id}#{count}"
            events.append(LinkEvent(t, session_id, "connect", conn))
            live = conn
        elif record.event == LogEvent.SESSION_OPEN and live is not None:
            events.append(LinkEvent(record.t, session_id, "open", live))
        elif (record.event == LogEvent.CONNECTION_UPDATE and record.detail.get("connection") == Connection.CLOSE
              and live):
            events.append(LinkEvent(record.t, session_id, "close", live))
            live = None
    return events
