"""The lab: the shared real servers a chaos run drives — Redis, Toxiproxy, the two stand-ins.

Owns the `Lab` value (addresses, admin clients, Redis stop/start) that the runner uses,
and `started_lab`, which starts all three servers (`chaos.servers`) on free loopback
ports for `python -m chaos run` and always stops them. The pytest plugin attaches its
session's servers instead (`Lab.attach`). Must not know scenarios.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chaos.process import ManagedProcess, wait_until
from chaos.servers import (HOST, MissingToolError, RedisServer, Standins, start_redis, start_standins,
                           start_toxiproxy)
from chaos.standins.admin import BackOfficeAdmin, WhatsAppAdmin
from chaos.toxiproxy import Toxiproxy
from service.ports import Secret


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
    stop_redis: Callable[[], None]  # the data is lost
    stop_redis_saving: Callable[[], None]  # the data is kept for the next start
    start_redis: Callable[[], None]
    redis_running: Callable[[], bool]

    @classmethod
    def attach(cls, redis_server: RedisServer, standins: Standins, toxiproxy: Toxiproxy) -> Lab:
        """The lab over running servers (the CLI's own, or the pytest plugin's session servers)."""
        return cls(
            toxiproxy=toxiproxy, redis_address=(redis_server.host, redis_server.port),
            whatsapp_address=(HOST, standins.ports["whatsapp_port"]),
            backoffice_address=(HOST, standins.ports["backoffice_port"]),
            whatsapp=standins.whatsapp, backoffice=standins.backoffice, backoffice_token=standins.backoffice_token,
            stop_redis=redis_server.stop, stop_redis_saving=redis_server.stop_saving, start_redis=redis_server.start,
            redis_running=lambda: redis_server.running,
        )

    def reset(self) -> None:
        """Toxiproxy `/reset` and both stand-ins reset: only between runs, never during one."""
        self.toxiproxy.reset()
        self.whatsapp.reset()
        self.backoffice.reset()


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
    try:
        redis_server = start_redis(work_dir, work_dir / "redis-data")
        procs.append(redis_server.process)
        toxiproxy = start_toxiproxy(work_dir)
        procs.append(toxiproxy.process)
        standins = start_standins(work_dir, work_dir / "standins.json", redis_server.url)
        procs.append(standins.process)
    except MissingToolError as exc:
        raise LabError(str(exc)) from None
    return Lab.attach(redis_server, standins, toxiproxy.api)
