"""The real servers a chaos run or a test needs — Redis, Toxiproxy, the stand-ins — as handles.

Owns starting each one as a `ManagedProcess` on a free loopback port (`start_redis`,
`start_toxiproxy`, `start_standins`), the handles tests and the lab act through
(`RedisServer`, `ToxiproxyHandle`, `Standins`), and where the binaries are found
(`$REDIS_SERVER`/`$TOXIPROXY_SERVER`, the checkout's tools/bin, PATH). Shared by
`chaos.lab` (`python -m chaos run`) and `chaos.pytest_plugin`. Must not import pytest,
install anything (that is `make tools`) or log the back-office token.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.process import ManagedProcess, free_port
from chaos.standins.admin import BackOfficeAdmin, WhatsAppAdmin
from chaos.standins.run import PORT_NAMES
from chaos.toxiproxy import Toxiproxy
from service.config import BACKOFFICE_TOKEN_ENV
from service.ports import Secret

HOST = "127.0.0.1"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the checkout, or site-packages when installed
LOCAL_TOOLS = PACKAGE_ROOT / "tools" / "bin"
TOKEN_ENV = BACKOFFICE_TOKEN_ENV
HELLO_TIMEOUT_S = 5.0
START_TIMEOUT_S = 30.0
SNAPSHOT_FILE = "dump.rdb"  # where SHUTDOWN SAVE writes and a start loads (`--dbfilename`)


class MissingToolError(RuntimeError):
    """A server binary is not installed; the message says where it looked and what to run."""


def find_binary(name: str, env_var: str) -> str:
    """`$env_var`, else the checkout's tools/bin/`name`, else `name` on PATH."""
    from_env = os.environ.get(env_var)
    if from_env:
        if not os.access(from_env, os.X_OK):
            raise MissingToolError(f"{env_var}={from_env} is not an executable file")
        return from_env
    local = LOCAL_TOOLS / name
    if os.access(local, os.X_OK):
        return str(local)
    on_path = shutil.which(name)
    if on_path is None:
        raise MissingToolError(f"{name} not found (looked at ${env_var}, {local}, PATH): "
                               "install it (in this repository: `make tools`)")
    return on_path


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a `python -m chaos|service` child: this package importable, plus `extra`."""
    return {"PYTHONPATH": str(PACKAGE_ROOT), **extra}


# ---- Redis ---------------------------------------------------------------------------


def redis_answers_ping(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when a Redis server at host:port replies +PONG (not -LOADING etc.)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")


@dataclass
class RedisServer:
    """A redis-server on loopback. Stop/start/restart keep the same port; the PID changes.

    No persistence of its own (`--save ""`, no AOF): `stop()` loses the data, `stop_saving()`
    keeps it for the next `start()`, as a Redis with persistence does across a restart."""

    host: str
    port: int
    process: ManagedProcess
    data_dir: Path | None = None  # where a snapshot is kept between `stop_saving()` and `start()`

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.running

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        """SIGTERM: the data is lost, and so is the snapshot an earlier `stop_saving()` left."""
        self.process.stop()
        if self.data_dir is not None:
            (self.data_dir / SNAPSHOT_FILE).unlink(missing_ok=True)

    def stop_saving(self) -> None:
        """SHUTDOWN SAVE: the snapshot and the exit are one command, so no write lands between
        them and the next `start()` has every write acknowledged before the stop."""
        if not self.running:
            return
        # redis-py's default retry would reconnect to the stopped server for seconds (1, 2, 4 s
        # backoffs), stretching the restart's downtime: one try, the connection's end is the answer.
        client = self.client(retry=Retry(NoBackoff(), 0))
        try:
            client.shutdown(save=True)
        finally:
            client.close()
        self.process.stop()  # waits for the exit (a SIGTERM then finds the snapshot written)

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, **kwargs: object) -> redis.Redis:
        options: dict[str, object] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0, **kwargs}
        return redis.Redis(host=self.host, port=self.port, **options)


def start_redis(log_dir: Path, data_dir: Path) -> RedisServer:
    """A redis-server without persistence of its own on a free port (the caller stops it)."""
    binary = find_binary("redis-server", "REDIS_SERVER")
    port = free_port(HOST)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--dir", str(data_dir), "--dbfilename", SNAPSHOT_FILE]
    process = ManagedProcess(f"redis-server-{port}", argv, ready=lambda: redis_answers_ping(HOST, port),
                             log_dir=log_dir, start_timeout_s=START_TIMEOUT_S, stop_timeout_s=10.0)
    process.start()
    return RedisServer(HOST, port, process, data_dir)


# ---- Toxiproxy -----------------------------------------------------------------------


@dataclass(frozen=True)
class ToxiproxyHandle:
    """A Toxiproxy server process and the facade on its API."""

    process: ManagedProcess
    api: Toxiproxy


def start_toxiproxy(log_dir: Path) -> ToxiproxyHandle:
    """toxiproxy-server on 127.0.0.1 and a free API port (the caller stops it)."""
    port = free_port(HOST)
    probe = Toxiproxy(HOST, port, timeout_s=0.5)
    argv = [find_binary("toxiproxy-server", "TOXIPROXY_SERVER"), "-host", HOST, "-port", str(port)]
    process = ManagedProcess(f"toxiproxy-server-{port}", argv, ready=lambda: bool(probe.version()),
                             log_dir=log_dir, start_timeout_s=START_TIMEOUT_S, stop_timeout_s=10.0)
    process.start()
    return ToxiproxyHandle(process, Toxiproxy(HOST, port, timeout_s=5.0))


# ---- the stand-ins -------------------------------------------------------------------


@dataclass
class Standins:
    """The running stand-ins: URLs, the back-office token and admin clients."""

    process: ManagedProcess
    ports: dict[str, int]
    backoffice_token: Secret
    redis_url: str | None

    @property
    def whatsapp_ws_url(self) -> str:
        return f"ws://{HOST}:{self.ports['whatsapp_port']}"

    @property
    def whatsapp_admin_url(self) -> str:
        return f"http://{HOST}:{self.ports['whatsapp_admin_port']}"

    @property
    def backoffice_url(self) -> str:
        return f"http://{HOST}:{self.ports['backoffice_port']}"

    @property
    def backoffice_admin_url(self) -> str:
        return f"http://{HOST}:{self.ports['backoffice_admin_port']}"

    @property
    def whatsapp(self) -> WhatsAppAdmin:
        return WhatsAppAdmin(self.whatsapp_admin_url)

    @property
    def backoffice(self) -> BackOfficeAdmin:
        return BackOfficeAdmin(self.backoffice_admin_url)

    def reset(self) -> None:
        self.whatsapp.reset()
        self.backoffice.reset()


def standins_argv(ready_file: Path, ports: dict[str, int] | None, redis_url: str | None) -> list[str]:
    ports = ports or {}
    # no --backoffice-token-env: the stand-ins read the service's variable (TOKEN_ENV) by default
    argv = [sys.executable, "-m", "chaos", "standins", "--ready-file", str(ready_file),
            "--hello-timeout-s", str(HELLO_TIMEOUT_S)]
    for name in PORT_NAMES:
        argv += ["--" + name.replace("_", "-"), str(ports.get(name, 0))]
    if redis_url is not None:
        argv += ["--redis-url", redis_url]
    return argv


def read_ready_file(ready_file: Path) -> dict[str, int] | None:
    try:
        data = json.loads(ready_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def start_standins(log_dir: Path, ready_file: Path, redis_url: str | None, name: str = "standins") -> Standins:
    """Start the stand-ins on free ports (a later `process.restart()` keeps them); the caller stops it."""
    token = Secret(secrets.token_urlsafe(24))
    ready_file.unlink(missing_ok=True)

    def ready() -> bool:
        ports = read_ready_file(ready_file)
        if ports is None:
            return False
        return (WhatsAppAdmin(f"http://{HOST}:{ports['whatsapp_admin_port']}", 0.5).healthy()
                and BackOfficeAdmin(f"http://{HOST}:{ports['backoffice_admin_port']}", 0.5).healthy())

    process = ManagedProcess(name, standins_argv(ready_file, None, redis_url), ready=ready, log_dir=log_dir,
                             env=subprocess_env(**{TOKEN_ENV: token.reveal()}), start_timeout_s=START_TIMEOUT_S,
                             stop_timeout_s=10.0)
    process.start()
    ports = read_ready_file(ready_file)
    if ports is None:
        process.stop()
        raise RuntimeError(f"stand-ins were ready but {ready_file} names no ports")
    process.argv = standins_argv(ready_file, ports, redis_url)  # restarts keep the same ports
    return Standins(process, {name: int(ports[name]) for name in PORT_NAMES}, token, redis_url)
