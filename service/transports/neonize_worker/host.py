"""Inside a worker process: many neonize clients, each one session's link, and the gate
that keeps their calls into neonize's Go side from racing.

Why a gate: neonize keeps every client in process-wide Go maps (`clients`, `StopSignal`,
`eventChannel`) written without a lock when a client starts (`Neonize()`, before its dial)
and when it stops (`Stop()`); two such writes at once abort the whole process ("concurrent
map writes"). So one thread, the gate, makes every start and every stop of this process,
one at a time, and after starting a client it waits until that client's `connect()` has
returned or `START_SETTLE_S` has passed (the map writes come first; on this machine a
start, dial and refusal took 2–4 ms) before the next. Two calls cannot be gated: the stop
of a client whose dial is still in flight (neonize blocks it until the dial ends, so it
runs on its own thread) and the map reads neonize makes when a dial succeeds; a collision
there aborts this process, which the service supervises (its sessions back off and
reconnect elsewhere).

Owns: `Host.handle(item)`, the main thread's logic, one inbox item at a time: service
ops, events from Go threads, `connect()` returns, finished stops. Every client is stopped
once its link ends (a drop, a failed dial, a service stop), so whatsmeow's own reconnect
loop never races the service's and neonize's Go-side entries are released; its
garbage-collection finalizer (an ungated `Stop`) is detached. Must not: call `get_me()`,
pass `jid=`, or send a store path or proxy credential to the service unredacted.
"""

from __future__ import annotations

import base64
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.ports import LinkClosed
from service.transports.neonize_events import OPEN, KeepAlive, classify_dial_error, map_event

START_SETTLE_S = 0.02  # ~10x a measured start + failed dial (2-4 ms), see above
ENTRY_WAIT_S = 5.0  # longest the gate waits for a started client thread to call connect()
Item = tuple[str, str | None, Any]  # (kind, client id, payload) on the main thread's inbox
log = logging.getLogger(__name__)


@dataclass
class Client:
    """One session's neonize client and where its link stands."""

    client_id: str
    neonize: Any  # neonize.client.NewClient
    pairing: bool
    inject: Callable[[str, bytes], None] | None = None
    opened: bool = False  # Connected seen: the dial is over
    stopping: bool = False
    stop_done: bool = False
    entering: threading.Event = field(default_factory=threading.Event)  # connect() is being called
    returned: threading.Event = field(default_factory=threading.Event)  # connect() came back
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: bool = False  # the gate called connect(); under `lock`


class Gate:
    """The one thread that starts and stops clients, one call at a time (see the module doc).

    Stops go before starts: a start may hold the gate for `START_SETTLE_S`, so in a storm a
    worker's queue holds up to a worker's worth of starts, and a stop behind them all (seconds on
    a busy machine) ran past the service's `stop_grace_s`, which then killed the whole worker."""

    def __init__(self, put: Callable[[Item], None], proxy_for: Callable[[Client], Any],
                 settle_s: float = START_SETTLE_S) -> None:
        self._jobs: queue.PriorityQueue[tuple[int, int, str, Client]] = queue.PriorityQueue()
        self._order = itertools.count()  # FIFO within a kind; never compares two clients
        self._put = put
        self._proxy_for = proxy_for
        self._settle_s = settle_s
        threading.Thread(target=self._run, name="neonize-gate", daemon=True).start()

    def start(self, client: Client) -> None:
        self._jobs.put((1, next(self._order), "start", client))

    def stop(self, client: Client) -> None:
        self._jobs.put((0, next(self._order), "stop", client))

    def _run(self) -> None:
        while True:
            _, _, job, client = self._jobs.get()
            try:
                if job == "start":
                    self._start(client)
                else:
                    client.neonize.stop()
                    self._put(("stop_done", client.client_id, None))
            except Exception as err:  # noqa: BLE001 - the gate must outlive one client's failure
                log.warning("neonize %s of a client failed: %s", job, type(err).__name__)
                self._put(("returned" if job == "start" else "stop_done", client.client_id, "gate: " + repr(err)))

    def _start(self, client: Client) -> None:
        with client.lock:
            if client.stopping:  # stopped before it started: nothing to do in Go
                self._put(("skipped", client.client_id, None))
                return
            client.started = True
        proxy = self._proxy_for(client)

        def run() -> None:
            client.entering.set()
            try:
                client.neonize.connect(proxy)
            except Exception as err:  # noqa: BLE001 - NeonizeError and friends: a failed dial
                error: str | None = f"{type(err).__name__}: {err}"
            else:
                error = None
            client.returned.set()
            self._put(("returned", client.client_id, error))

        threading.Thread(target=run, name="neonize-client", daemon=True).start()
        # the settle time counts from the call, not from the thread's start (late on a busy machine)
        client.entering.wait(ENTRY_WAIT_S)
        client.returned.wait(self._settle_s)


class Host:
    """The main thread's view of every client of this process."""

    def __init__(self, send: Callable[..., None], redact: Callable[[str], str], gate: Gate,
                 make_client: Callable[[dict[str, Any]], Client], put: Callable[[Item], None]) -> None:
        self._send = send
        self._put = put
        self._redact = redact
        self._gate = gate
        self._make_client = make_client
        self.clients: dict[str, Client] = {}
        self.shutting_down = False

    @property
    def done(self) -> bool:
        return self.shutting_down and not self.clients

    def handle(self, item: Item) -> None:
        kind, client_id, payload = item
        if kind == "op":
            self._on_op(payload)
        elif kind == "ops_eof":
            self._shut_down("service gone")
        elif kind == "bad_op":
            self._send("error", client=None, detail=str(payload)[:200])
        elif client_id is None or client_id not in self.clients:
            return  # a late item of a client already finished
        elif kind == "event":
            self._on_event(self.clients[client_id], payload)
        elif kind == "returned":
            self._on_returned(self.clients[client_id], payload)
        elif kind == "stop_done":
            self.clients[client_id].stop_done = True
            self._maybe_finish(self.clients[client_id])
        elif kind == "skipped":
            client = self.clients[client_id]
            client.stop_done = True
            client.returned.set()
            self._maybe_finish(client)

    def _on_op(self, op: dict[str, Any]) -> None:
        name, client_id = op["op"], op.get("client")
        if name == "shutdown":
            self._shut_down("shutdown requested")
        elif name == "connect":
            self._connect(op)
        elif client_id not in self.clients:
            if name == "stop":  # already finished (or never known): say so, idempotently
                self._send("stopped", client=client_id)
        elif name == "stop":
            self._stop(self.clients[client_id], "stop requested")
        elif name == "inject":
            self._on_inject(self.clients[client_id], op)

    def _connect(self, op: dict[str, Any]) -> None:
        client_id = op["client"]
        if self.shutting_down or client_id in self.clients:
            why = "worker shutting down" if self.shutting_down else "client id in use"
            self._send("failed", client=client_id, reason="worker_refused", detail=why)
            self._send("stopped", client=client_id)
            return
        client = self._make_client(op)
        self.clients[client_id] = client
        self._gate.start(client)

    def _on_event(self, client: Client, message: Any) -> None:
        if client.stopping:
            return  # after a drop, whatever Go still reports is whatsmeow's own loop
        mapped = map_event(message, pairing=client.pairing)
        if mapped == OPEN:
            if not client.opened:
                client.opened = True
                self._send("open", client=client.client_id)
        elif isinstance(mapped, LinkClosed):
            self._send("closed", client=client.client_id, code=mapped.code, wait_s=mapped.wait_s, reason=mapped.reason)
            self._stop(client, f"closed: {mapped.code}")
        elif isinstance(mapped, KeepAlive):
            self._send("keepalive", client=client.client_id, code=mapped.code, ok=mapped.ok,
                       error_count=mapped.error_count)

    def _on_returned(self, client: Client, error: str | None) -> None:
        client.returned.set()
        if not client.stopping:
            if error is not None:
                detail = self._redact(error)[:500]
                self._send("failed", client=client.client_id, reason=classify_dial_error(detail), detail=detail)
            else:  # returned without our stop(): the client ended on its own
                self._send("closed", client=client.client_id, code=None, wait_s=None, reason="client stopped by itself")
        self._stop(client, "connect returned")
        self._maybe_finish(client)

    def _stop(self, client: Client, why: str) -> None:
        with client.lock:
            if client.stopping:
                return
            client.stopping = True
            started = client.started
        log.info("stopping neonize client %s (%s)", client.client_id, why)
        if not started:
            return  # the gate skips its start and reports it
        if client.returned.is_set() or client.opened:
            self._gate.stop(client)
        else:  # a dial in flight: neonize's stop() blocks until it ends, so not on the gate
            threading.Thread(target=self._stop_blocking, args=(client,), name="neonize-stop", daemon=True).start()

    def _stop_blocking(self, client: Client) -> None:
        try:
            client.neonize.stop()
        finally:
            self._put(("stop_done", client.client_id, None))

    def _maybe_finish(self, client: Client) -> None:
        if not (client.stop_done and client.returned.is_set()):
            return
        client.neonize._stop_finalizer.detach()  # its Stop() would be an ungated Go map write
        del self.clients[client.client_id]
        self._send("stopped", client=client.client_id)

    def _shut_down(self, why: str) -> None:
        self.shutting_down = True
        for client in list(self.clients.values()):
            self._stop(client, why)

    def _on_inject(self, client: Client, op: dict[str, Any]) -> None:
        if client.inject is None:
            self._send("error", client=client.client_id, detail="event injection is not enabled in this worker")
            return
        try:
            client.inject(op["event"], base64.b64decode(op["data"], validate=True))
        except (AttributeError, KeyError, ValueError) as err:
            self._send("error", client=client.client_id, detail=f"cannot inject {op['event'][:40]!r}: {type(err).__name__}")
