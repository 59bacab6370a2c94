"""The lab: the shared real servers a chaos run drives — Redis, Toxiproxy, the two stand-ins.

Owns the `Lab` value (addresses, admin clients, Redis stop/start) that the runner uses,
a small `Proc` (one server process: start and wait until ready under a deadline, stop
by PID with SIGTERM then SIGKILL, or kill), and `started_lab`, which starts all three
servers on free loopback ports for `python -m chaos run` and always stops them. Tests
attach fixtures' servers instead (`tests/chaos/conftest.py`). Must not know scenarios.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from chaos.standins.admin import BackOfficeAdmin, WhatsAppAdmin
from chaos.toxiproxy import Toxiproxy
from service.ports import Secret

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.02


class LabError(RuntimeError):
    """A lab server could not start or answer; the message names it and its log."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, poll_s: float = POLL_S) -> None:
    """Poll `check` (exceptions count as "not yet") until true; raise TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - a probe that fails means "not yet"
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s:.1f}s")
        time.sleep(poll_s)


class Proc:
    """One child process with its output in `log_path`; `start` returns once `ready()` is true."""

    def __init__(self, name: str, argv: Sequence[str], ready: Callable[[], bool], log_path: Path,
                 env: dict[str, str] | None = None, start_timeout_s: float = 30.0, stop_timeout_s: float = 10.0):
        self.name, self.argv, self.ready, self.log_path = name, list(argv), ready, Path(log_path)
        self.env, self.start_timeout_s, self.stop_timeout_s = env, start_timeout_s, stop_timeout_s
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.name}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env={**os.environ, **(self.env or {})}, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._popen.poll() is not None:
                raise LabError(f"{self.name} exited with {self._popen.returncode} before it was ready; "
                               f"log {self.log_path}:\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if self.ready():
                    return
            if time.monotonic() >= deadline:
                self.stop()
                raise LabError(f"{self.name} not ready after {self.start_timeout_s}s; log {self.log_path}:\n"
                               f"{self.log_tail()}")
            time.sleep(POLL_S)

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL; no-op when not running."""
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
        """SIGKILL at once, as a crash would."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            popen.kill()
            popen.wait(timeout=self.stop_timeout_s)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Lab:
    """Where the shared servers are and how to act on them."""

    toxiproxy: Toxiproxy
    redis_address: tuple[str, int]
    whatsapp_address: tuple[str, int]  # the stand-in's WebSocket port
    backoffice_address: tuple[str, int]  # the stand-in's API port
    whatsapp: WhatsAppAdmin
    backoffice: BackOfficeAdmin
    backoffice_token: Secret
    stop_redis: Callable[[], None]
    start_redis: Callable[[], None]
    redis_running: Callable[[], bool]

    def reset(self) -> None:
        """Toxiproxy `/reset` and both stand-ins reset: only between runs, never during one."""
        self.toxiproxy.reset()
        self.whatsapp.reset()
        self.backoffice.reset()


def _binary(name: str, env_var: str, local: Path) -> str:
    found = os.environ.get(env_var) or (str(local) if os.access(local, os.X_OK) else shutil.which(name))
    if not found:
        raise LabError(f"{name} not found (looked at ${env_var}, {local}, PATH): run `make tools`")
    return found


@contextlib.contextmanager
def started_lab(work_dir: Path) -> Iterator[Lab]:
    """Start Redis, Toxiproxy and the stand-ins on free loopback ports; stop them all on exit."""
    work_dir.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        yield _start_all(work_dir, procs)
    finally:
        for proc in reversed(procs):
            proc.stop()


def _start_all(work_dir: Path, procs: list[Proc]) -> Lab:
    import redis  # the lab's own probe; the service has its own client

    redis_port, toxi_port = free_port(), free_port()
    data_dir = work_dir / "redis-data"
    data_dir.mkdir(exist_ok=True)
    redis_proc = Proc("redis-server", [_binary("redis-server", "REDIS_SERVER", Path("/nonexistent")), "--port",
                                       str(redis_port), "--bind", HOST, "--save", "", "--appendonly", "no",
                                       "--dir", str(data_dir)],
                      lambda: redis.Redis(host=HOST, port=redis_port, socket_timeout=0.5).ping(),
                      work_dir / "redis.log")
    procs.append(redis_proc)
    redis_proc.start()
    toxiproxy = Toxiproxy(HOST, toxi_port, timeout_s=5.0)
    toxi_bin = _binary("toxiproxy-server", "TOXIPROXY_SERVER", REPO_ROOT / "tools" / "bin" / "toxiproxy-server")
    toxi_proc = Proc("toxiproxy-server", [toxi_bin, "-host", HOST, "-port", str(toxi_port)],
                     lambda: bool(Toxiproxy(HOST, toxi_port, timeout_s=0.5).version()), work_dir / "toxiproxy.log")
    procs.append(toxi_proc)
    toxi_proc.start()
    token = Secret(secrets.token_urlsafe(24))
    ready_file = work_dir / "standins.json"
    ready_file.unlink(missing_ok=True)
    standins = Proc("standins", [sys.executable, "-m", "chaos", "standins", "--ready-file", str(ready_file),
                                 "--backoffice-token-env", "RL_BACKOFFICE_TOKEN",
                                 "--redis-url", f"redis://{HOST}:{redis_port}/0"],
                    ready_file.exists, work_dir / "standins.log",
                    env={"RL_BACKOFFICE_TOKEN": token.reveal(), "PYTHONPATH": str(REPO_ROOT)})
    procs.append(standins)
    standins.start()
    ports = json.loads(ready_file.read_text())
    return Lab(toxiproxy, (HOST, redis_port), (HOST, ports["whatsapp_port"]), (HOST, ports["backoffice_port"]),
               WhatsAppAdmin(f"http://{HOST}:{ports['whatsapp_admin_port']}"),
               BackOfficeAdmin(f"http://{HOST}:{ports['backoffice_admin_port']}"), token,
               stop_redis=redis_proc.stop, start_redis=redis_proc.start, redis_running=lambda: redis_proc.running)
