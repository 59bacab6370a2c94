"""A server process owned by a lab or a test suite, in the manner of pytest-xprocess.

Owns: starting one command with its output in a log file, waiting for a readiness
check under a deadline, and stopping it by PID (SIGTERM, then SIGKILL). Every
instance is remembered in `ALL_PROCESSES` so a failed test session can keep the logs.
Used by `chaos.lab`/`chaos.runner` and by the test fixtures (`tests/fixtures/process.py`).
Must not: know what the server is (the readiness check is passed in) or pick ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

POLL_INTERVAL_S = 0.02

ALL_PROCESSES: list[ManagedProcess] = []


class ProcessStartError(RuntimeError):
    """The process exited, or never became ready, before its start deadline."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, *,
               probe_errors_mean_not_yet: bool = False) -> None:
    """Poll `check` until it returns True; raise TimeoutError after `timeout_s`. With
    `probe_errors_mean_not_yet`, an exception from `check` counts as "not yet"."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except Exception:
            if not probe_errors_mean_not_yet:
                raise
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s:.1f}s")
        time.sleep(POLL_INTERVAL_S)


class ManagedProcess:
    """One external server process. `start()` returns once `ready()` is true.

    The log file is appended to across restarts, so one file tells the whole story
    of a server that chaos tests stopped and started again.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ready: Callable[[], bool],
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        start_timeout_s: float = 15.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready = ready
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = env
        self.cwd = cwd
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._popen: subprocess.Popen[bytes] | None = None
        ALL_PROCESSES.append(self)

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, log={str(self.log_path)!r})"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        """Start the command and wait until it is ready; no-op if already running."""
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(self.argv)}\n".encode())
            log.flush()
            env = None if self.env is None else {**os.environ, **self.env}
            # Own session: a Ctrl-C to pytest does not race our own stop().
            self._popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=self.cwd, start_new_session=True,
            )
        self._wait_ready()

    def stop(self) -> None:
        """SIGTERM, wait up to `stop_timeout_s`, then SIGKILL. No-op if not running."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=self.stop_timeout_s)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would (no graceful shutdown)."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            popen.kill()
            popen.wait(timeout=self.stop_timeout_s)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self) -> None:
        assert self._popen is not None
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            code = self._popen.poll()
            if code is not None:
                raise ProcessStartError(
                    f"{self.name} exited with code {code} before it was ready: {self.argv}\n"
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self._ready_quietly():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise ProcessStartError(
                    f"{self.name} not ready after {self.start_timeout_s:.1f}s: {self.argv}\n"
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _ready_quietly(self) -> bool:
        try:
            return bool(self.ready())
        except Exception:  # noqa: BLE001 - any failure of the probe means "not yet"
            return False
