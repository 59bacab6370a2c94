"""The log stream (`service.logging.TickFlushedStream`): R8 lines of one event-loop tick go out
in one write once the tick is done, a structlog line goes out at once behind them (the order
kept), nothing is held outside a running loop, and what is held at exit is written."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.logging import EventLog, configure_logging, get_logger

ROOT = Path(__file__).resolve().parents[2]


class CountingStream:
    def __init__(self) -> None:
        self.text = ""
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def events(self) -> list[str]:
        return [json.loads(line)["event"] for line in self.text.splitlines()]


@pytest.fixture
def stream():
    out = CountingStream()
    configure_logging(out, "info")
    try:
        yield out
    finally:
        configure_logging(stream=None, level="info")


async def test_a_ticks_lines_go_out_in_one_write_once_the_tick_is_done(stream) -> None:
    log = EventLog(get_logger().bind(session_id="s1"))
    for attempt in range(100):
        log.log("info", "reconnect_scheduled", attempt=attempt)
    assert stream.writes == 0
    await asyncio.sleep(0)
    assert stream.writes == 1
    assert stream.events() == ["reconnect_scheduled"] * 100


async def test_a_line_written_at_once_goes_behind_the_held_ones(stream) -> None:
    bound = get_logger().bind(session_id="s1")
    EventLog(bound).log("info", "session_closed")
    bound.warning("store_retry")  # structlog: written and flushed at once
    EventLog(bound).log("info", "reconnect_scheduled")
    assert stream.events() == ["session_closed", "store_retry"]
    await asyncio.sleep(0)
    assert stream.events() == ["session_closed", "store_retry", "reconnect_scheduled"]


def test_outside_a_loop_nothing_is_held(stream) -> None:
    EventLog(get_logger().bind(session_id="s1")).log("info", "session_closed")
    assert stream.events() == ["session_closed"]


def test_lines_held_when_the_process_exits_are_written() -> None:
    script = """
import asyncio, sys
from service.logging import EventLog, configure_logging, get_logger
configure_logging(sys.stdout, "info")
async def main():
    EventLog(get_logger().bind(session_id="s1")).log("info", "session_released")
    asyncio.get_running_loop().stop()  # this pass's callbacks are the last: the flush queued after them never runs
loop = asyncio.new_event_loop()
loop.run_until_complete(main())
sys.exit(0)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["event"] for line in done.stdout.splitlines()] == ["session_released"]
