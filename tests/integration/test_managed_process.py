"""ManagedProcess: readiness with a deadline, early exit, stop by SIGTERM then SIGKILL."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.process import ManagedProcess, ProcessStartError, wait_until

pytestmark = pytest.mark.integration

PY = sys.executable


def test_waits_for_readiness_then_stops(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    script = f"import pathlib, time; print('hello'); pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    process = ManagedProcess("sleeper", [PY, "-c", script], ready=marker.exists, log_dir=tmp_path)

    process.start()

    assert process.running and process.pid is not None
    process.stop()
    assert not process.running
    wait_until(lambda: "hello" in process.log_tail(), 5.0, "child output reaches the log")


def test_early_exit_raises_with_log_tail(tmp_path: Path) -> None:
    script = "import sys; print('bad config line 3'); sys.exit(3)"
    process = ManagedProcess("crasher", [PY, "-c", script], ready=lambda: False, log_dir=tmp_path)

    with pytest.raises(ProcessStartError, match=r"(?s)exited with code 3.*bad config line 3"):
        process.start()


def test_never_ready_raises_after_deadline_and_is_stopped(tmp_path: Path) -> None:
    process = ManagedProcess(
        "hanger", [PY, "-c", "import time; time.sleep(60)"], ready=lambda: False,
        log_dir=tmp_path, start_timeout_s=0.5,
    )

    with pytest.raises(ProcessStartError, match="not ready after 0.5s"):
        process.start()

    assert not process.running


def test_sigterm_ignored_then_killed(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    script = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    )
    process = ManagedProcess(
        "stubborn", [PY, "-c", script], ready=marker.exists, log_dir=tmp_path, stop_timeout_s=0.5
    )
    process.start()
    started = time.monotonic()

    process.stop()

    assert not process.running
    assert time.monotonic() - started < 5.0


