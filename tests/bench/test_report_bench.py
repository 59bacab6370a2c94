"""Benchmark: CPU of what a storm's session events leave behind — the core's steps and each
record's timeline line, R8 log line and metrics (`SessionReport`), as the runtime carries them
out — for one session through the `wire` storm's episode (a 503 close, attempt 1 validated,
opened and refused with 503, attempt 2 validated and open: 7 events, 13 records).

Measures (never asserts time): this process's CPU µs per session for the core alone and for
the reports, best of REPORT_BENCH_ROUNDS rounds (default 5) of REPORT_BENCH_SESSIONS sessions
(default 2,000), lines written to files and flushed once per loop tick as in the service, the
cyclic GC off (the service freezes it in a storm). Writes `reports/service/session-report.json`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from pathlib import Path

import pytest

from service.core import Policy, SessionMachine, Status
from service.core.events import BackoffElapsed, Closed, Emit, Opened, ScheduleReconnect, SetStatus, Start, Validated
from service.logging import configure_logging, get_logger
from service.metrics import ServiceMetrics
from service.runtime.report import SessionReport
from service.runtime.timeline import TimelineWriter

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]

REPORT_DIR = Path(__file__).resolve().parents[2] / "reports" / "service"
SESSIONS = int(os.environ.get("REPORT_BENCH_SESSIONS", "2000"))
ROUNDS = int(os.environ.get("REPORT_BENCH_ROUNDS", "5"))
STORM = [Closed(code=503), BackoffElapsed(), Validated(True), Closed(code=503), BackoffElapsed(), Validated(True),
         Opened()]


async def one_round(tmp_path: Path, metrics: ServiceMetrics) -> tuple[float, float, int]:
    """CPU seconds of the core and of the reports over SESSIONS sessions' storms; records made."""
    timeline, log = TimelineWriter(tmp_path / "timeline.jsonl"), get_logger(component="bench")
    machines, reports, statuses = [], [], {}
    for i in range(SESSIONS):
        machine = SessionMachine(f"s{i}", Policy(), status=Status.ACTIVE)
        machine.handle(Start(), 0.0)
        machine.handle(Opened(), 0.0)
        machines.append(machine)
        reports.append(SessionReport(timeline, metrics, log.bind(session_id=f"s{i}")))
    core_s = reports_s = 0.0
    records = 0
    for step, event in enumerate(STORM):
        now_s = time.time() + step
        started = time.process_time()
        steps = [machine.handle(event, now_s) for machine in machines]
        handled = time.process_time()
        for i, commands in enumerate(steps):
            for command in commands:  # what the runtime does with them, but for the I/O
                kind = type(command)
                if kind is Emit:
                    reports[i].emit(command.record)
                    records += 1
                elif kind is SetStatus:
                    metrics.status_changed(statuses.get(i), command.status)
                    statuses[i] = command.status
                elif kind is ScheduleReconnect:
                    metrics.backoff.observe(command.delay_s)
        await asyncio.sleep(0)  # the tick's lines are written
        core_s += handled - started
        reports_s += time.process_time() - handled
    timeline.close()
    return core_s, reports_s, records


def test_what_a_storm_session_leaves_behind(tmp_path, capsys) -> None:
    metrics = ServiceMetrics()
    with (tmp_path / "log.jsonl").open("w", encoding="utf-8") as stream:
        configure_logging(stream, "info")
        gc.disable()
        try:
            rounds = [asyncio.run(one_round(tmp_path, metrics)) for _ in range(ROUNDS)]
        finally:
            gc.enable()
            configure_logging(stream=None, level="info")
    assert all(records == 13 * SESSIONS for _, _, records in rounds)
    assert (tmp_path / "log.jsonl").read_text(encoding="utf-8").count("\n") == 13 * SESSIONS * ROUNDS
    core_us = min(core for core, _, _ in rounds) * 1e6 / SESSIONS
    reports_us = min(reports for _, reports, _ in rounds) * 1e6 / SESSIONS
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "session-report.json").write_text(json.dumps({
        "sessions": SESSIONS, "rounds": ROUNDS, "events_per_session": len(STORM), "records_per_session": 13,
        "core_us_per_session": round(core_us, 2), "reports_us_per_session": round(reports_us, 2),
        "reports_us_per_record": round(reports_us / 13, 3)}, indent=2) + "\n", encoding="utf-8")
    with capsys.disabled():
        print(f"\nper storm session (7 events, 13 records), best of {ROUNDS} x {SESSIONS}: core {core_us:.1f} µs, "
              f"reports {reports_us:.1f} µs ({reports_us / 13:.2f} µs a record: timeline line, log line, metrics)")
