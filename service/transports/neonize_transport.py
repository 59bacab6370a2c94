"""The production WhatsApp transport: neonize 0.5.2 clients, many to a worker process.

Owns the service side of a link: attaching its client to a worker of the `Fleet`
(`neonize_fleet.py`), sending the worker `connect`/`stop` for it, turning the worker's
messages into `LinkFailed`/`LinkClosed`, and enforcing every deadline from here: a link
not open by `timeout_s` fails (`LinkFailed("connect_timeout")`) and its client is
stopped; a client not stopped within `stop_grace_s` (neonize blocks `stop()` while a
dial hangs) gets its whole worker killed by its PID, so no socket of a closed link
outlives its `close()` (R7) — the worker's other sessions see their links close and
back off. neonize can abort its whole process, so no neonize code runs in the service
process: a crash or kill of one worker touches only that worker's sessions. All I/O
here is asyncio pipes: the event loop never blocks.
Must not: decide about reconnects (the core does), import neonize, or log the store
path/DSN (the session's credentials) or the proxy URL (both `Secret`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from service.config_checks import check_proxy_url
from service.core import CloseReason, FailReason
from service.due_work import DueWork
from service.errors import ConfigError, LinkFailed
from service.ports import LinkClosed, Secret
from service.transports.neonize_fleet import Fleet
from service.transports.neonize_worker.supervisor import Exited, Route, WorkerProcess, secret_parts

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger(__name__)
KEEPALIVE_CODE = CloseReason.KEEPALIVE_TIMEOUT  # the Link protocol's code for a dead link
STORE_PLACEHOLDER = "{session_id}"
WORKER_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # worker stderr is logged here at DEBUG


class NeonizeTransport:
    """Makes `NeonizeLink`s; their clients live in worker processes of `clients_per_worker` each.

    `credentials` of a link is its neonize session store (sqlite path or postgres DSN);
    `{session_id}` in it is replaced by the session's id (one store per session: neonize
    resumes the first account of a store, so sessions must not share one).
    `spare_workers`: workers' worth of free client slots kept started ahead of need.
    `worker_max_connects`: clients a worker takes before it is replaced.
    `dead_link_after_s`: a link reporting `KeepAliveTimeout` for this long is closed with
    code "keepalive_timeout" (pass the policy's `timeouts.dead_link_after_s`); None leaves
    it to whatsmeow, which forces a reconnect (a `Disconnected`) after about 3 minutes.
    `due_work` (`service.due_work`): handed on first whenever a worker's message arrives (the
    runtime's due reconnect timers, as `WireTransport` does in its socket callbacks).
    `allow_event_injection`: tests only, see `NeonizeLink.inject_event`.
    """

    def __init__(self, proxy_url: str | None = None, *, pairing: bool = False, spare_workers: int = 1,
                 clients_per_worker: int = 100, worker_max_connects: int = 500, stop_grace_s: float = 2.0,
                 dead_link_after_s: float | None = None, python: str = sys.executable,
                 worker_log_level: str = "WARNING", due_work: DueWork | None = None,
                 allow_event_injection: bool = False) -> None:
        self.proxy_url = None if proxy_url is None else Secret(_check_proxy(proxy_url))
        _check_count("spare_workers", spare_workers, minimum=0)
        _check_count("clients_per_worker", clients_per_worker, minimum=1)
        _check_count("worker_max_connects", worker_max_connects, minimum=1)
        _check_seconds("stop_grace_s", stop_grace_s)
        if dead_link_after_s is not None:
            _check_seconds("dead_link_after_s", dead_link_after_s)
        if worker_log_level not in WORKER_LOG_LEVELS:
            raise ConfigError(f"worker_log_level must be one of {WORKER_LOG_LEVELS}, got {worker_log_level!r}")
        self.allow_event_injection = bool(allow_event_injection)
        self.pairing = bool(pairing)
        self.stop_grace_s = float(stop_grace_s)
        self.dead_link_after_s = None if dead_link_after_s is None else float(dead_link_after_s)
        args = ("--log-level", worker_log_level) + (("--allow-inject",) if self.allow_event_injection else ())
        secrets = () if self.proxy_url is None else tuple(secret_parts(self.proxy_url.reveal()))
        self.fleet = Fleet(python=python, worker_args=args, secrets=secrets, clients_per_worker=clients_per_worker,
                           spare_workers=spare_workers, max_connects=worker_max_connects,
                           stop_grace_s=self.stop_grace_s,
                           on_message=None if due_work is None else due_work.run_due_now)
        self._links: weakref.WeakSet[NeonizeLink] = weakref.WeakSet()

    def __repr__(self) -> str:
        proxy = "none" if self.proxy_url is None else "***"
        return (f"NeonizeTransport(proxy={proxy}, clients_per_worker={self.fleet.clients_per_worker}, "
                f"spare_workers={self.fleet.spare_workers})")

    @property
    def workers_started(self) -> int:
        return self.fleet.workers_started

    def new_link(self, session_id: str, credentials: Secret) -> NeonizeLink:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty string, got {session_id!r}")
        link = NeonizeLink(self, session_id, store_for(credentials, session_id))
        self._links.add(link)
        return link

    async def warm_up(self, timeout_s: float = 30.0) -> int:
        """Start the warm workers now; return how many workers are ready within `timeout_s`."""
        return await self.fleet.warm_up(timeout_s)

    async def aclose(self) -> None:
        """Close every link, then shut the workers down (killed after the grace). Idempotent."""
        await asyncio.gather(*(link.close() for link in list(self._links)))
        await self.fleet.aclose()


class NeonizeLink:
    """One session's neonize client, hosted by a worker process. Single use: a reconnect
    makes a new link (a new client, with a new neonize uuid)."""

    def __init__(self, transport: NeonizeTransport, session_id: str, credentials: Secret) -> None:
        self.session_id = session_id
        self._transport = transport
        self._credentials = credentials
        self.client_id = f"{session_id}-{uuid.uuid4().hex}"  # also its neonize uuid (Go-side map key)
        self._worker: WorkerProcess | None = None
        self._route: Route | None = None
        self._used = False
        self._result: asyncio.Future[LinkClosed] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._release: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"NeonizeLink(session_id={self.session_id!r}, worker_pid={self.worker_pid})"

    @property
    def worker_pid(self) -> int | None:
        return None if self._worker is None else self._worker.pid

    @property
    def is_open(self) -> bool:
        return self._watch is not None and self._result is not None and not self._result.done()

    async def open(self, timeout_s: float) -> None:
        """Attach a client to a worker and dial; `LinkFailed` on a failed dial, a rejection
        (with its close code), a crashed worker, or after `timeout_s`."""
        if self._used:
            raise LinkFailed("already_used")
        _check_seconds("timeout_s", timeout_s)
        self._used = True
        self._result = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await self._dial()
        except TimeoutError:
            self._end(LinkClosed(code=None, reason=FailReason.CONNECT_TIMEOUT))
            raise LinkFailed(FailReason.CONNECT_TIMEOUT) from None
        except LinkFailed as err:
            self._end(LinkClosed(code=None, reason=err.reason))
            raise
        except BaseException:  # cancelled: the client's stop (and its grace kill) runs on
            self._end(LinkClosed(code=None, reason="open_cancelled"))
            raise

    async def _dial(self) -> None:
        self._worker, self._route = worker, route = await self._transport.fleet.take(self.client_id)
        worker.add_secret(self._credentials.reveal())
        if not await worker.wait_ready():
            raise LinkFailed("worker_start_failed")
        proxy = self._transport.proxy_url
        worker.send("connect", client=self.client_id, store=self._credentials.reveal(),
                    proxy=None if proxy is None else proxy.reveal(), pairing=self._transport.pairing)
        while True:
            message = await route.next_message()
            if isinstance(message, Exited):
                self._log_unexpected(message, "while dialing")
                raise LinkFailed("worker_exited")
            kind = message["kind"]
            if kind == "open":
                self._watch = asyncio.create_task(self._watch_client(route))
                return
            if kind == "closed":
                raise LinkFailed("rejected", message["code"], message["wait_s"])
            if kind == "failed":
                log.info("session %s: dial failed (%s): %s", self.session_id, message["reason"],
                         worker.redact(message["detail"]))
                raise LinkFailed(message["reason"])
            if kind == "stopped":
                raise LinkFailed("client_stopped")
            self._log_unexpected(message, "while dialing")

    def inject_event(self, event_name: str, data: bytes) -> None:
        """Tests only: have the worker hand `data` (a serialized neonize event, e.g.
        `Disconnected`) to neonize's real dispatch path for this link's client, as Go
        would. Needs `allow_event_injection=True` and a link that has been sent `connect`."""
        if not self._transport.allow_event_injection or self._worker is None:
            raise RuntimeError("event injection needs allow_event_injection=True and an opening or open link")
        self._worker.send("inject", client=self.client_id, event=event_name, data=base64.b64encode(data).decode())

    async def wait_closed(self) -> LinkClosed:
        """How the link ended: a close event (code from the whatsmeow table), a dead link
        ("keepalive_timeout"), a crashed worker (code None), or our own `close()`."""
        if self._result is None:
            raise RuntimeError("wait_closed() before open(): this link was never opened")
        return await asyncio.shield(self._result)

    async def close(self) -> None:
        """Stop the client (its worker killed if it does not stop within `stop_grace_s`);
        returns once it is stopped; idempotent, never raises."""
        self._used = True
        watch, self._watch = self._watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
        self._end(LinkClosed(code=None, reason="closed_by_service"))
        if self._release is not None:
            try:
                await asyncio.shield(self._release)
            except Exception as err:  # noqa: BLE001 - close never raises (R7)
                log.warning("session %s: stopping its client failed: %r", self.session_id, err)

    async def _watch_client(self, route: Route) -> None:
        degraded_at: float | None = None
        dead_after_s = self._transport.dead_link_after_s
        loop = asyncio.get_running_loop()
        while True:
            wait_s = None if degraded_at is None or dead_after_s is None else degraded_at + dead_after_s - loop.time()
            try:
                message = await asyncio.wait_for(route.next_message(), wait_s)
            except TimeoutError:
                self._end(LinkClosed(code=KEEPALIVE_CODE, reason=f"KeepAliveTimeout for {dead_after_s:.1f}s"))
                return
            if isinstance(message, Exited):
                self._end(LinkClosed(code=None, reason=f"worker_exited:{message.returncode}"))
                return
            if message["kind"] == "closed":  # the worker stops the client itself
                self._end(LinkClosed(message["code"], message["wait_s"], message["reason"]))
                return
            if message["kind"] == "keepalive":
                degraded_at = None if message["ok"] else (degraded_at or loop.time())
                log.info("session %s: %s (errors %d)", self.session_id, message["code"], message["error_count"])
            elif message["kind"] == "stopped":
                self._end(LinkClosed(code=None, reason="client_stopped"))
                return
            else:
                self._log_unexpected(message, "while open")

    def _end(self, closed: LinkClosed) -> None:
        """Record how the link ended (first call wins) and start stopping its client."""
        if self._result is not None and not self._result.done():
            self._result.set_result(closed)
        if self._release is None and self._worker is not None:
            self._release = asyncio.ensure_future(self._stop_client(self._worker, self._route))

    async def _stop_client(self, worker: WorkerProcess, route: Route | None) -> None:
        try:
            if route is not None and not route.gone.done():
                worker.send("stop", client=self.client_id)
                try:
                    await asyncio.wait_for(asyncio.shield(route.gone), self._transport.stop_grace_s)
                except TimeoutError:
                    log.warning("session %s: its neonize client did not stop within %.1fs: killing worker %d "
                                "(and its other sessions' links)", self.session_id, self._transport.stop_grace_s,
                                worker.pid)
                    worker.kill()
                    await worker.wait_exited()
        finally:
            self._transport.fleet.release(worker, self.client_id)

    def _log_unexpected(self, message: dict[str, Any] | Exited, when: str) -> None:
        if isinstance(message, Exited):
            log.warning("session %s: neonize worker exited with %s %s", self.session_id, message.returncode, when)
        else:
            detail = str(message.get("detail", ""))[:300]
            detail = self._worker.redact(detail) if self._worker is not None else "(hidden)"
            log.info("session %s: worker said %s %s %s", self.session_id, message["kind"], when, detail)


def build_transport(settings: Settings, keepalive_interval_s: float, keepalive_misses: int, *,
                    due_work: DueWork | None = None) -> NeonizeTransport:
    """The transport for `service.runtime.app.make_transport` (setting transport = "neonize"):
    the `neonize_*` settings; the dead-link deadline is the policy's keepalive one; `due_work`
    as `NeonizeTransport` says."""
    return NeonizeTransport(settings.neonize_proxy_url.reveal() or None, spare_workers=settings.neonize_spare_workers,
                            clients_per_worker=settings.neonize_clients_per_worker,
                            worker_max_connects=settings.neonize_worker_max_connects, pairing=settings.neonize_pairing,
                            dead_link_after_s=keepalive_interval_s * keepalive_misses, due_work=due_work)


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


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")


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
