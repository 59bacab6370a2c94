"""The service's handle on one neonize worker process: spawn, route messages, stop, kill.

Owns one child process (`python -m service.transports.neonize_worker`) started by the
transport, which alone may kill it, by its PID. Reads the worker's messages and log
lines from asyncio pipes, so the event loop never blocks, and routes each message to the
`Route` of the client it names; when the process ends, every route hears `Exited`. A
malformed line is counted and logged, never trusted. `on_message` (the runtime's due-work
hand-on) is called before each message is routed. Must not: import neonize, interpret
events (the link does), or log anything unredacted from the worker (its stderr may
mention a store path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import MalformedInput
from service.transports.neonize_worker.protocol import MAX_LINE_BYTES, decode_message, encode_op

log = logging.getLogger("service.transports.neonize_transport")  # one logger for the whole transport
WORKER_MODULE = "service.transports.neonize_worker"
_PROJECT_ROOT = str(Path(__file__).resolve().parents[3])
_REAP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Exited:
    """The worker process is gone; a negative return code is the signal that ended it."""

    returncode: int | None


class Route:
    """One client's messages; `gone` is done once the worker said `stopped` for it or exited."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[dict[str, Any] | Exited] = asyncio.Queue()
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def next_message(self) -> dict[str, Any] | Exited:
        """The next message; `Exited` once the process is gone (and for every later call)."""
        message = await self.messages.get()
        if isinstance(message, Exited):
            self.messages.put_nowait(message)
        return message

    def deliver(self, message: dict[str, Any] | Exited) -> None:
        self.messages.put_nowait(message)
        if (isinstance(message, Exited) or message["kind"] == "stopped") and not self.gone.done():
            self.gone.set_result(None)


class WorkerProcess:
    """The transport's handle on one worker process, which it started and alone may kill."""

    def __init__(self, proc: asyncio.subprocess.Process, secrets: Iterable[str] = (),
                 on_message: Callable[[], None] | None = None) -> None:
        self._proc = proc
        self._secrets: list[str] = []  # longest first
        self._secret_set: set[str] = set()
        for secret in secrets:
            self.add_secret(secret)
        self._routes: dict[str, Route] = {}
        self._on_message = on_message
        self._stopping: asyncio.Future[None] | None = None
        self._ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pid: int = proc.pid
        self.malformed_lines = 0
        self.stray_messages = 0  # messages for a client no route waits for
        self.connects = 0  # clients ever attached
        self.retiring = False  # takes no new client; shut down once its last one is gone
        self._readers = (asyncio.create_task(self._read_messages()), asyncio.create_task(self._read_log()))

    @classmethod
    async def spawn(cls, python: str, secrets: Iterable[str] = (), worker_args: tuple[str, ...] = (),
                    on_message: Callable[[], None] | None = None) -> WorkerProcess:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _PROJECT_ROOT + (os.pathsep + path if path else "")}
        # The service's session: Linux schedules each session as one group (autogroup), so a
        # worker in a session of its own would take the CPU on par with the service whatever its
        # nice value (`worker.WORKER_NICE`); in the service's, its nice puts it behind the loop.
        # The worker moves to a process group of its own as it starts (`worker.main`): uvloop,
        # the default loop, refuses `process_group`, and `preexec_fn` is unsafe with threads.
        proc = await asyncio.create_subprocess_exec(
            python, "-m", WORKER_MODULE, *worker_args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, limit=2 * MAX_LINE_BYTES)
        return cls(proc, secrets, on_message)

    def add_secret(self, secret: str) -> None:
        """Redact `secret` (and a URL's password in it) from everything logged about this worker.
        Called for every dial: sorts only when a part is new."""
        new = [part for part in secret_parts(secret) if part and part not in self._secret_set]
        if new:
            self._secret_set.update(new)
            self._secrets.extend(new)
            self._secrets.sort(key=len, reverse=True)  # a URL before its password

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @property
    def running(self) -> bool:
        return self._proc.returncode is None and not self._readers[0].done()

    @property
    def clients(self) -> int:
        return len(self._routes)

    @property
    def is_ready(self) -> bool:
        return self._ready.done() and self._ready.result()

    async def wait_ready(self) -> bool:
        """True once neonize is imported in the worker; False if it exited or failed first."""
        return await asyncio.shield(self._ready)

    def attach(self, client_id: str) -> Route:
        """A route for `client_id`'s messages (held until `detach`); counts a connect."""
        route = self._routes[client_id] = Route()
        self.connects += 1
        if not self.running:
            route.deliver(Exited(self._proc.returncode))
        return route

    def detach(self, client_id: str) -> None:
        self._routes.pop(client_id, None)

    def send(self, op: str, **fields: Any) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing() or not self.running:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            stdin.write(encode_op(op, **fields))

    def kill(self) -> None:
        """SIGKILL by PID, at once: for a worker past a deadline (hung)."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def stop(self, grace_s: float) -> None:
        """Shut every client down; kill the process if it has not exited within `grace_s`."""
        await asyncio.shield(self.begin_stop(grace_s))

    def begin_stop(self, grace_s: float) -> asyncio.Future[None]:
        """Start `stop` without waiting for it; every later `stop` awaits the same one."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace_s))
        return self._stopping

    async def wait_exited(self, timeout_s: float = _REAP_TIMEOUT_S) -> int | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._proc.wait(), timeout_s)
        return self._proc.returncode

    async def _stop(self, grace_s: float) -> None:
        self.retiring = True
        self.send("shutdown")
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), grace_s)
        except TimeoutError:
            log.info("neonize worker %d did not stop within %.1fs: killing it", self.pid, grace_s)
            self.kill()
            await self.wait_exited()

    async def _read_messages(self) -> None:
        assert self._proc.stdout is not None
        while line := await self._read_line(self._proc.stdout):
            if self._on_message is not None:
                self._on_message()
            try:
                message = decode_message(line)
            except MalformedInput as err:
                self._malformed(err.detail)
                continue
            self._dispatch(message)
        returncode = await self._proc.wait()
        if not self._ready.done():
            self._ready.set_result(False)
        for route in list(self._routes.values()):
            route.deliver(Exited(returncode))

    async def _read_line(self, stream: asyncio.StreamReader) -> bytes:
        while True:
            try:
                return await stream.readline()
            except ValueError:  # a line past the limit: dropped by the reader, counted here
                self._malformed("line too long")

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        if kind in ("ready", "error") and not self._ready.done():
            if kind == "error":
                log.warning("neonize worker %d failed to start: %s", self.pid, self.redact(message["detail"]))
            self._ready.set_result(kind == "ready")
            return
        route = self._routes.get(message.get("client") or "")
        if route is not None:
            route.deliver(message)
        elif kind == "error":
            log.warning("neonize worker %d: %s", self.pid, self.redact(message["detail"])[:300])
        elif kind != "stopped":  # a late "stopped" for a client whose link gave up waiting is expected
            self.stray_messages += 1

    def _malformed(self, detail: str) -> None:
        self.malformed_lines += 1
        log.warning("neonize worker %d sent a malformed message: %s", self.pid, self.redact(detail)[:200])

    async def _read_log(self) -> None:
        assert self._proc.stderr is not None
        while line := await self._read_line_quietly(self._proc.stderr):
            log.debug("neonize worker %d: %s", self.pid, self.redact(line.decode(errors="replace").rstrip()))

    @staticmethod
    async def _read_line_quietly(stream: asyncio.StreamReader) -> bytes:
        while True:
            try:
                return await stream.readline()
            except ValueError:
                continue


def secret_parts(secret: str) -> list[str]:
    """A secret and, when it is a URL or DSN with credentials, its user:password and password."""
    parts = [secret]
    with contextlib.suppress(ValueError):
        url = urllib.parse.urlsplit(secret)
        if url.password:
            parts += [f"{url.username}:{url.password}", url.password]
    return parts
