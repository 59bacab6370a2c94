"""The production WhatsApp transport: neonize 0.5.2 clients, each in its own worker process.

Owns the supervisor side: spawning workers (`python -m service.transports.neonize_worker`,
handled through `neonize_worker.supervisor.WorkerProcess`; a warm spare kept ready so a reconnect does not wait for neonize's import), sending them
`connect`/`stop`, turning their messages into `LinkFailed`/`LinkClosed`, and enforcing
every deadline from here: a worker that has not opened by `timeout_s` is killed by its PID
(`LinkFailed("connect_timeout")`), one that does not exit within `stop_grace_s` of `stop`
is killed. neonize can abort the whole process and blocks in `connect()`/`stop()` while a
dial hangs, so no neonize code runs in the service process, and one client's crash or hang
touches no other session. All I/O here is asyncio pipes: the event loop never blocks.
Must not: decide about reconnects (the core does), import neonize, or log the store
path/DSN (the session's credentials) or the proxy URL (both `Secret`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import sys
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from service.config_checks import check_proxy_url
from service.core import CloseReason, FailReason
from service.errors import ConfigError, LinkFailed
from service.ports import LinkClosed, Secret
from service.transports.neonize_worker.supervisor import Exited, WorkerProcess, secret_parts

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger(__name__)
KEEPALIVE_CODE = CloseReason.KEEPALIVE_TIMEOUT  # the Link protocol's code for a dead link
STORE_PLACEHOLDER = "{session_id}"
WORKER_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # worker stderr is logged here at DEBUG


class NeonizeTransport:
    """Makes `NeonizeLink`s; keeps `spare_workers` worker processes started ahead of need.

    `credentials` of a link is its neonize session store (sqlite path or postgres DSN);
    `{session_id}` in it is replaced by the session's id (one store per session: neonize
    resumes the first account of a store, so sessions must not share one).
    `dead_link_after_s`: a link reporting `KeepAliveTimeout` for this long is closed with
    code "keepalive_timeout" (pass the policy's `timeouts.dead_link_after_s`); None leaves
    it to whatsmeow, which forces a reconnect (a `Disconnected`) after about 3 minutes.
    `allow_event_injection`: tests only, see `NeonizeLink.inject_event`.
    """

    def __init__(self, proxy_url: str | None = None, *, pairing: bool = False, spare_workers: int = 1,
                 stop_grace_s: float = 2.0, dead_link_after_s: float | None = None,
                 python: str = sys.executable, worker_log_level: str = "WARNING",
                 allow_event_injection: bool = False) -> None:
        self.proxy_url = None if proxy_url is None else Secret(_check_proxy(proxy_url))
        if isinstance(spare_workers, bool) or not isinstance(spare_workers, int) or spare_workers < 0:
            raise ConfigError(f"spare_workers must be a whole number >= 0, got {spare_workers!r}")
        _check_seconds("stop_grace_s", stop_grace_s)
        if dead_link_after_s is not None:
            _check_seconds("dead_link_after_s", dead_link_after_s)
        if worker_log_level not in WORKER_LOG_LEVELS:
            raise ConfigError(f"worker_log_level must be one of {WORKER_LOG_LEVELS}, got {worker_log_level!r}")
        self.worker_log_level = worker_log_level
        self.allow_event_injection = bool(allow_event_injection)
        self.pairing = bool(pairing)
        self.spare_workers = spare_workers
        self.stop_grace_s = float(stop_grace_s)
        self.dead_link_after_s = None if dead_link_after_s is None else float(dead_link_after_s)
        self.python = python
        self.workers_started = 0
        self._proxy_secrets = () if self.proxy_url is None else tuple(secret_parts(self.proxy_url.reveal()))
        self._spares: list[WorkerProcess] = []
        self._workers: set[WorkerProcess] = set()  # every live worker, held strongly until it exits
        self._refill: asyncio.Task[None] | None = None
        self._links: weakref.WeakSet[NeonizeLink] = weakref.WeakSet()
        self._closed = False

    def __repr__(self) -> str:
        proxy = "none" if self.proxy_url is None else "***"
        return f"NeonizeTransport(proxy={proxy}, spare_workers={self.spare_workers})"

    def new_link(self, session_id: str, credentials: Secret) -> NeonizeLink:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty string, got {session_id!r}")
        link = NeonizeLink(self, session_id, store_for(credentials, session_id))
        self._links.add(link)
        return link

    async def warm_up(self, timeout_s: float = 30.0) -> int:
        """Start the spare workers now; return how many are ready within `timeout_s`."""
        await self._fill_spares(wait_ready=False)
        spares = list(self._spares)
        try:
            async with asyncio.timeout(timeout_s):
                return sum(await asyncio.gather(*(spare.wait_ready() for spare in spares)))
        except TimeoutError:
            return 0

    async def aclose(self) -> None:
        """Close every link, then stop the spares; kill any worker left. Idempotent."""
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        await asyncio.gather(*(link.close() for link in list(self._links)))
        spares, self._spares = self._spares, []
        await asyncio.gather(*(spare.stop(self.stop_grace_s) for spare in spares))
        for worker in list(self._workers):
            worker.kill()
            await worker.wait_exited()
        self._workers.clear()

    async def _take_worker(self) -> WorkerProcess:
        if self._closed:
            raise LinkFailed("transport_closed")
        worker = None
        while self._spares and worker is None:
            candidate = self._spares.pop(0)
            worker = candidate if candidate.running else None
        if worker is None:
            worker = await self._spawn()
        if self.spare_workers and (self._refill is None or self._refill.done()):
            self._refill = asyncio.create_task(self._fill_spares())
        return worker

    async def _spawn(self) -> WorkerProcess:
        self.workers_started += 1
        self._workers = {worker for worker in self._workers if worker.running}
        args = ("--log-level", self.worker_log_level) + (("--allow-inject",) if self.allow_event_injection else ())
        try:
            worker = await WorkerProcess.spawn(self.python, self._proxy_secrets, args)
        except OSError as err:
            raise LinkFailed("worker_start_failed") from err
        self._workers.add(worker)
        return worker

    async def _fill_spares(self, wait_ready: bool = True) -> None:
        # One at a time, each ready before the next: a burst of reconnects must not turn
        # into a burst of neonize imports competing for the CPU with live dials.
        self._spares = [spare for spare in self._spares if spare.running]
        while not self._closed and len(self._spares) < self.spare_workers:
            spare = await self._spawn()
            self._spares.append(spare)
            if wait_ready:
                await spare.wait_ready()

class NeonizeLink:
    """One session's neonize client in its own worker process. Single use: a reconnect
    makes a new link (and a new worker, and a new neonize uuid)."""

    def __init__(self, transport: NeonizeTransport, session_id: str, credentials: Secret) -> None:
        self.session_id = session_id
        self._transport = transport
        self._credentials = credentials
        self._uuid = f"{session_id}-{uuid.uuid4().hex}"  # neonize keys Go-side maps by it
        self._worker: WorkerProcess | None = None
        self._used = False
        self._result: asyncio.Future[LinkClosed] | None = None
        self._watch: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"NeonizeLink(session_id={self.session_id!r}, worker_pid={self.worker_pid})"

    @property
    def worker_pid(self) -> int | None:
        return None if self._worker is None else self._worker.pid

    @property
    def is_open(self) -> bool:
        return self._watch is not None and self._result is not None and not self._result.done()

    async def open(self, timeout_s: float) -> None:
        """Start a worker and dial; `LinkFailed` on a failed dial, a rejection (with its
        close code), a crashed worker, or after `timeout_s` (the worker is killed)."""
        if self._used:
            raise LinkFailed("already_used")
        _check_seconds("timeout_s", timeout_s)
        self._used = True
        self._result = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await self._dial()
        except TimeoutError:
            await self._abort(FailReason.CONNECT_TIMEOUT, kill=True)
            raise LinkFailed(FailReason.CONNECT_TIMEOUT) from None
        except LinkFailed as err:
            await self._abort(err.reason, kill=False)
            raise
        except BaseException:  # cancelled: no await allowed to outlive us, so kill at once
            self._finish(LinkClosed(code=None, reason="open_cancelled"))
            if self._worker is not None:
                self._worker.kill()
            raise

    async def _dial(self) -> None:
        self._worker = worker = await self._transport._take_worker()
        worker.add_secret(self._credentials.reveal())
        if not await worker.wait_ready():
            raise LinkFailed("worker_start_failed")
        proxy = self._transport.proxy_url
        worker.send("connect", store=self._credentials.reveal(), uuid=self._uuid,
                    proxy=None if proxy is None else proxy.reveal(), pairing=self._transport.pairing)
        while True:
            message = await worker.next_message()
            if isinstance(message, Exited):
                self._log_unexpected(message, "while dialing")
                raise LinkFailed("worker_exited")
            kind = message["kind"]
            if kind == "open":
                self._watch = asyncio.create_task(self._watch_worker(worker))
                return
            if kind == "closed":
                raise LinkFailed("rejected", message["code"], message["wait_s"])
            if kind == "failed":
                log.info("session %s: dial failed (%s): %s", self.session_id, message["reason"],
                         worker.redact(message["detail"]))
                raise LinkFailed(message["reason"])
            self._log_unexpected(message, "while dialing")

    def inject_event(self, event_name: str, data: bytes) -> None:
        """Tests only: have the worker hand `data` (a serialized neonize event, e.g.
        `Disconnected`) to neonize's real dispatch path, as Go would. Needs
        `allow_event_injection=True` and a worker that has been sent `connect`."""
        if not self._transport.allow_event_injection or self._worker is None:
            raise RuntimeError("event injection needs allow_event_injection=True and an opening or open link")
        self._worker.send("inject", event=event_name, data=base64.b64encode(data).decode())

    async def wait_closed(self) -> LinkClosed:
        """How the link ended: a close event (code from the whatsmeow table), a dead link
        ("keepalive_timeout"), a crashed worker (code None), or our own `close()`."""
        if self._result is None:
            raise RuntimeError("wait_closed() before open(): this link was never opened")
        return await asyncio.shield(self._result)

    async def close(self) -> None:
        """Stop the client and its worker (killed after `stop_grace_s`); idempotent, never raises."""
        self._used = True
        self._finish(LinkClosed(code=None, reason="closed_by_service"))
        watch, self._watch = self._watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
        if self._worker is not None:
            try:
                await self._worker.stop(self._transport.stop_grace_s)
            except Exception as err:  # noqa: BLE001 - close never raises (R7)
                log.warning("session %s: stopping worker %d failed: %r", self.session_id, self._worker.pid, err)

    async def _watch_worker(self, worker: WorkerProcess) -> None:
        degraded_at: float | None = None
        dead_after_s = self._transport.dead_link_after_s
        loop = asyncio.get_running_loop()
        while True:
            wait_s = None if degraded_at is None or dead_after_s is None else degraded_at + dead_after_s - loop.time()
            try:
                message = await asyncio.wait_for(worker.next_message(), wait_s)
            except TimeoutError:
                self._finish(LinkClosed(code=KEEPALIVE_CODE, reason=f"KeepAliveTimeout for {dead_after_s:.1f}s"))
                break
            if isinstance(message, Exited):
                self._finish(LinkClosed(code=None, reason=f"worker_exited:{message.returncode}"))
                return
            if message["kind"] == "closed":
                self._finish(LinkClosed(message["code"], message["wait_s"], message["reason"]))
                break
            if message["kind"] == "keepalive":
                degraded_at = None if message["ok"] else (degraded_at or loop.time())
                log.info("session %s: %s (errors %d)", self.session_id, message["code"], message["error_count"])
            elif message["kind"] == "stopped":
                self._finish(LinkClosed(code=None, reason="client_stopped"))
                break
            else:
                self._log_unexpected(message, "while open")
        await worker.stop(self._transport.stop_grace_s)  # the worker already stop()s its client on a close

    async def _abort(self, reason: str, kill: bool) -> None:
        self._finish(LinkClosed(code=None, reason=reason))
        worker = self._worker
        if worker is None:
            return
        if kill:
            worker.kill()
            await worker.wait_exited()
        else:  # the stop (and its grace kill) runs on; close() awaits it before any new link (R7)
            worker.begin_stop(self._transport.stop_grace_s)

    def _finish(self, closed: LinkClosed) -> None:
        if self._result is not None and not self._result.done():
            self._result.set_result(closed)

    def _log_unexpected(self, message: dict[str, Any] | Exited, when: str) -> None:
        if isinstance(message, Exited):
            log.warning("session %s: neonize worker exited with %s %s", self.session_id, message.returncode, when)
        else:
            detail = str(message.get("detail", ""))[:300]
            detail = self._worker.redact(detail) if self._worker is not None else "(hidden)"
            log.info("session %s: worker said %s %s %s", self.session_id, message["kind"], when, detail)


def build_transport(settings: Settings, keepalive_interval_s: float, keepalive_misses: int) -> NeonizeTransport:
    """The transport for `service.runtime.app.make_transport` (setting transport = "neonize"):
    the `neonize_*` settings; the dead-link deadline is the policy's keepalive one."""
    return NeonizeTransport(settings.neonize_proxy_url.reveal() or None, spare_workers=settings.neonize_spare_workers,
                            pairing=settings.neonize_pairing, dead_link_after_s=keepalive_interval_s * keepalive_misses)


def store_for(credentials: Secret | str, session_id: str) -> Secret:
    """The session's store: `credentials`, with `{session_id}` replaced by the id."""
    if not isinstance(credentials, (str, Secret)) or not credentials:
        raise ConfigError(f"credentials of session {session_id!r} must be its neonize store path or DSN "
                          f"(e.g. /var/lib/gateway/stores/{STORE_PLACEHOLDER}.db)")
    text = credentials.reveal() if isinstance(credentials, Secret) else credentials
    if STORE_PLACEHOLDER not in text:
        return Secret(credentials)
    if "/" in session_id or session_id in (".", ".."):
        raise ConfigError(f"session id {session_id!r} cannot name a store file: no '/', '.' or '..'")
    return Secret(text.replace(STORE_PLACEHOLDER, session_id))


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be > 0 seconds, got {value!r}")


def _check_proxy(url: str | Secret) -> str:
    text = url.reveal() if isinstance(url, Secret) else url
    if not isinstance(text, str):
        raise ConfigError(f"neonize proxy_url must be a string, got {type(url).__name__}")
    try:
        return check_proxy_url(text)
    except ValueError as err:
        raise ConfigError(f"neonize proxy_url {err}; socks5h and socks4 are rejected by neonize") from None
