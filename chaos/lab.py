"""The lab: the shared real servers a chaos run drives — Redis, Toxiproxy, the two stand-ins.

Owns the `Lab` value (addresses, admin clients, Redis stop/start) that the runner uses,
and `started_lab`, which starts all three servers (`chaos.process.ManagedProcess`) on
free loopback ports for `python -m chaos run` and always stops them. Tests
attach fixtures' servers instead (`tests/chaos/conftest.py`). Must not know scenarios.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chaos.process import ManagedProcess, free_port, wait_until
from chaos.standins.admin import BackOfficeAdmin, WhatsAppAdmin
from chaos.toxiproxy import Toxiproxy
from service.config import BACKOFFICE_TOKEN_ENV
from service.ports import Secret

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]


class LabError(RuntimeError):
    """A lab server could not start or answer; the message names it and its log."""


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `check` (an exception counts as "not yet") until true; TimeoutError after `timeout_s`."""
    wait_until(check, timeout_s, what, probe_errors_mean_not_yet=True)


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
    procs: list[ManagedProcess] = []
    try:
        yield _start_all(work_dir, procs)
    finally:
        for proc in reversed(procs):
            proc.stop()


def _start_all(work_dir: Path, procs: list[ManagedProcess]) -> Lab:
    import redis  # the lab's own probe; the service has its own client

    redis_port, toxi_port = free_port(), free_port()
    data_dir = work_dir / "redis-data"
    data_dir.mkdir(exist_ok=True)
    redis_proc = ManagedProcess("redis", [_binary("redis-server", "REDIS_SERVER", Path("/nonexistent")), "--port",
                                          str(redis_port), "--bind", HOST, "--save", "", "--appendonly", "no",
                                          "--dir", str(data_dir)],
                                ready=lambda: redis.Redis(host=HOST, port=redis_port, socket_timeout=0.5).ping(),
                                log_dir=work_dir, start_timeout_s=30.0, stop_timeout_s=10.0)
    procs.append(redis_proc)
    redis_proc.start()
    toxiproxy = Toxiproxy(HOST, toxi_port, timeout_s=5.0)
    toxi_bin = _binary("toxiproxy-server", "TOXIPROXY_SERVER", REPO_ROOT / "tools" / "bin" / "toxiproxy-server")
    toxi_proc = ManagedProcess("toxiproxy", [toxi_bin, "-host", HOST, "-port", str(toxi_port)],
                               ready=lambda: bool(Toxiproxy(HOST, toxi_port, timeout_s=0.5).version()),
                               log_dir=work_dir, start_timeout_s=30.0, stop_timeout_s=10.0)
    procs.append(toxi_proc)
    toxi_proc.start()
    token = Secret(secrets.token_urlsafe(24))
    ready_file = work_dir / "standins.json"
    ready_file.unlink(missing_ok=True)
    standins = ManagedProcess("standins", [sys.executable, "-m", "chaos", "standins", "--ready-file", str(ready_file),
                                           "--redis-url", f"redis://{HOST}:{redis_port}/0"],
                              ready=ready_file.exists, log_dir=work_dir, start_timeout_s=30.0, stop_timeout_s=10.0,
                              env={BACKOFFICE_TOKEN_ENV: token.reveal(), "PYTHONPATH": str(REPO_ROOT)})
    procs.append(standins)
    standins.start()
    ports = json.loads(ready_file.read_text())
    return Lab(toxiproxy, (HOST, redis_port), (HOST, ports["whatsapp_port"]), (HOST, ports["backoffice_port"]),
               WhatsAppAdmin(f"http://{HOST}:{ports['whatsapp_admin_port']}"),
               BackOfficeAdmin(f"http://{HOST}:{ports['backoffice_admin_port']}"), token,
               stop_redis=redis_proc.stop, start_redis=redis_proc.start, redis_running=lambda: redis_proc.running)
