"""The service's handle on one neonize worker process: spawn, messages, stop, kill.

Owns one child process (`python -m service.transports.neonize_worker`) started by the
supervisor, which alone may kill it, by its PID. Reads the worker's messages and log
lines from asyncio pipes, so the event loop never blocks; a malformed line is counted
and logged, never trusted. Must not: import neonize, interpret events (the link does),
or log anything unredacted from the worker (its stderr may mention a store path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import urllib.parse
from collections.abc import Iterable
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


class WorkerProcess:
    """The supervisor's handle on one worker process, which it started and alone may kill."""

    def __init__(self, proc: asyncio.subprocess.Process, secrets: Iterable[str] = ()) -> None:
        self._proc = proc
        self._secrets: list[str] = []
        for secret in secrets:
            self.add_secret(secret)
        self._messages: asyncio.Queue[dict[str, Any] | Exited] = asyncio.Queue()
        self._stopping: asyncio.Future[None] | None = None
        self._ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pid: int = proc.pid
        self.malformed_lines = 0
        self._readers = (asyncio.create_task(self._read_messages()), asyncio.create_task(self._read_log()))

    @classmethod
    async def spawn(cls, python: str, secrets: Iterable[str] = (), worker_args: tuple[str, ...] = ()) -> WorkerProcess:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _PROJECT_ROOT + (os.pathsep + path if path else "")}
        proc = await asyncio.create_subprocess_exec(
            python, "-m", WORKER_MODULE, *worker_args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, limit=2 * MAX_LINE_BYTES, start_new_session=True)
        return cls(proc, secrets)

    def add_secret(self, secret: str) -> None:
        """Redact `secret` (and a URL's password in it) from everything logged about this worker."""
        for part in secret_parts(secret):
            if part and part not in self._secrets:
                self._secrets.append(part)
        self._secrets.sort(key=len, reverse=True)  # a URL before its password

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @property
    def running(self) -> bool:
        return self._proc.returncode is None

    async def wait_ready(self) -> bool:
        """True once neonize is imported in the worker; False if it exited or failed first."""
        return await asyncio.shield(self._ready)

    async def next_message(self) -> dict[str, Any] | Exited:
        """The next message; `Exited` once the process is gone (and for every later call)."""
        message = await self._messages.get()
        if isinstance(message, Exited):
            self._messages.put_nowait(message)
        return message

    def send(self, op: str, **fields: Any) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing() or not self.running:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            stdin.write(encode_op(op, **fields))

    def kill(self) -> None:
        """SIGKILL by PID, at once: for a worker past its deadline or hung in a dial."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def stop(self, grace_s: float) -> None:
        """Ask the client to stop; kill the process if it has not exited within `grace_s`."""
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
        self.send("stop")
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
        while True:
            try:
                line = await self._proc.stdout.readline()
            except ValueError:  # a line past the limit: dropped by the reader, counted here
                self._malformed("line too long")
                continue
            if not line:
                break
            try:
                message = decode_message(line)
            except MalformedInput as err:
                self._malformed(err.detail)
                continue
            if self._ready.done():
                self._messages.put_nowait(message)
            elif message["kind"] in ("ready", "error"):
                if message["kind"] == "error":
                    log.warning("neonize worker %d failed to start: %s", self.pid, self.redact(message["detail"]))
                self._ready.set_result(message["kind"] == "ready")
        returncode = await self._proc.wait()
        if not self._ready.done():
            self._ready.set_result(False)
        self._messages.put_nowait(Exited(returncode))

    def _malformed(self, detail: str) -> None:
        self.malformed_lines += 1
        log.warning("neonize worker %d sent a malformed message: %s", self.pid, self.redact(detail)[:200])

    async def _read_log(self) -> None:
        assert self._proc.stderr is not None
        while True:
            try:
                line = await self._proc.stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            log.debug("neonize worker %d: %s", self.pid, self.redact(line.decode(errors="replace").rstrip()))


def secret_parts(secret: str) -> list[str]:
    """A secret and, when it is a URL or DSN with credentials, its user:password and password."""
    parts = [secret]
    with contextlib.suppress(ValueError):
        url = urllib.parse.urlsplit(secret)
        if url.password:
            parts += [f"{url.username}:{url.password}", url.password]
    return parts
