"""Inside a worker process: one neonize client, its events forwarded to the service.

Runs only in the child (`python -m service.transports.neonize_worker`). Order matters:
take the stdout pipe for messages (stray prints go to stderr), configure logging with
redaction, and only then import neonize (it calls `logging.basicConfig` on import).
neonize's handlers run on Go threads; they only put the event on the main thread's
inbox. The main thread maps events (`neonize_events.map_event`), forwards them, and
`stop()`s the client on any drop so whatsmeow's own reconnect loop never races the
service's. Must not: call `get_me()` (aborts the process before connect/after stop),
pass `jid=` (aborts for a JID not in the store), call `shutdown_log_worker()` (never
returns), or write the store path or proxy credentials anywhere.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import sys
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, BinaryIO

from service.errors import MalformedInput
from service.ports import LinkClosed
from service.transports.neonize_events import (
    OPEN, SUBSCRIBED_EVENTS, KeepAlive, classify_dial_error, map_event,
)
from service.transports.neonize_worker.protocol import MAX_LINE_BYTES, decode_op, encode_message

EXIT_OK, EXIT_NO_NEONIZE = 0, 3
ORPHAN_EXIT_S = 2.0
Item = tuple[str, Any]  # (kind, payload) on the main thread's inbox


class Redactor:
    """Replaces every known secret (store path, proxy URL and its credentials) with ***."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)  # longest first: a URL before its password

    def add_url(self, url: str | None) -> None:
        if not url:
            return
        self.add(url)
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            self.add(f"{parts.username}:{parts.password}")
            self.add(parts.password)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__("neonize-worker %(levelname)s %(name)s: %(message)s")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.redact(super().format(record))


def configure_logging(redactor: Redactor, level: int = logging.WARNING) -> None:
    """Root logging to stderr through the redactor; must run before neonize is imported."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # neonize derives whatsmeow's Go log level from this logger's level
    logging.getLogger("neonize.utils.log").setLevel(level)
    # media helpers are never used here; their missing-ffmpeg warning is noise
    logging.getLogger("neonize.utils.ffmpeg").setLevel(logging.ERROR)


def subscribe(client: Any, put: Callable[[Item], None]) -> None:
    """Register one handler per event type of interest; each only hands the event over.

    Handlers run on Go threads and neonize swallows their exceptions, so they do nothing
    but `put`. Must be called before `connect()` (later handlers are not subscribed).
    """
    from neonize.proto import Neonize_pb2 as pb  # the caller imported neonize already

    def hand_over(_client: Any, message: Any) -> None:
        put(("event", message))

    for name in SUBSCRIBED_EVENTS:
        client.event(getattr(pb, name))(hand_over)
    # A QR code arrives through its own callback with the raw code, which must not travel.
    client.event.qr(lambda _client, _code: put(("event", pb.QR())))


class WorkerSession:
    """The main thread's logic: one inbox item at a time, until `done`."""

    def __init__(self, stop_client: Callable[[], None], send: Callable[..., None],
                 redactor: Redactor, pairing: bool = False,
                 inject: Callable[[str, bytes], None] | None = None) -> None:
        self._stop_client = stop_client
        self._inject = inject
        self._send = send
        self._redactor = redactor
        self._pairing = pairing
        self.opened = False
        self.stopping = False
        self.done = False

    def handle(self, item: Item) -> None:
        kind, payload = item
        if kind == "event":
            self._on_event(payload)
        elif kind == "op" and payload["op"] == "inject":
            self._on_inject(payload)
        elif kind == "op":
            self._stop("stop requested")
        elif kind == "connect_error":
            if not self.stopping:
                detail = self._redactor.redact(str(payload))[:500]
                self._send("failed", reason=classify_dial_error(detail), detail=detail)
            self.done = True
        elif kind == "connect_returned":
            if not self.stopping:  # returned without our stop(): the client ended on its own
                self._send("closed", code=None, wait_s=None, reason="client stopped by itself")
            self._send("stopped")
            self.done = True
        elif kind == "ops_eof":  # the service is gone: nobody to report to
            self._stop("service gone")
            self.done = True
        elif kind == "bad_op":
            self._send("error", detail=str(payload)[:200])

    def _on_event(self, message: Any) -> None:
        if self.stopping:
            return  # after a drop, whatever Go still reports is whatsmeow's own loop
        mapped = map_event(message, pairing=self._pairing)
        if mapped == OPEN:
            if not self.opened:
                self.opened = True
                self._send("open")
        elif isinstance(mapped, LinkClosed):
            self._send("closed", code=mapped.code, wait_s=mapped.wait_s, reason=mapped.reason)
            self._stop(f"closed: {mapped.code}")
        elif isinstance(mapped, KeepAlive):
            self._send("keepalive", code=mapped.code, ok=mapped.ok, error_count=mapped.error_count)

    def _on_inject(self, op: dict[str, Any]) -> None:
        if self._inject is None:
            self._send("error", detail="event injection is not enabled in this worker")
            return
        try:
            self._inject(op["event"], base64.b64decode(op["data"], validate=True))
        except (AttributeError, KeyError, ValueError) as err:
            self._send("error", detail=f"cannot inject {op['event'][:40]!r}: {type(err).__name__}")

    def _stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        logging.getLogger(__name__).info("stopping the neonize client (%s)", why)
        # May block while a dial is in flight; the service kills us after its grace period.
        self._stop_client()


def dispatcher(client: Any) -> Callable[[str, bytes], None]:
    """Deliver a serialized event through neonize's own Go → Python callback.

    For tests only (`--allow-inject`): WhatsApp's servers, which make Go fire these events,
    cannot be reached here, so tests hand the real dispatch path the bytes Go would.
    """
    import ctypes

    from neonize._binder import func_callback_bytes
    from neonize.events import EVENT_TO_INT
    from neonize.proto import Neonize_pb2 as pb

    callback = func_callback_bytes(client.event.execute)  # referenced by the closure: stays alive

    def deliver(event_name: str, data: bytes) -> None:
        number = EVENT_TO_INT[getattr(pb, event_name)]
        buffer = ctypes.create_string_buffer(data, len(data))
        callback(client.uuid, ctypes.addressof(buffer), len(data), number)

    return deliver


def _read_ops(stream: BinaryIO, put: Callable[[Item], None]) -> None:
    """stdin → inbox, one op per line; EOF means the service is gone."""
    while line := stream.readline(MAX_LINE_BYTES + 1):
        try:
            put(("op", decode_op(line)))
        except MalformedInput as err:
            put(("bad_op", str(err)))
    put(("ops_eof", None))
    # The service is gone; if stop() blocks (a dial in flight), exit anyway.
    timer = threading.Timer(ORPHAN_EXIT_S, os._exit, args=(EXIT_OK,))
    timer.daemon = True
    timer.start()


def _take_stdout() -> Callable[..., None]:
    """The message channel is the original stdout; fd 1 becomes stderr for stray prints."""
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    lock = threading.Lock()

    def send(kind: str, **fields: Any) -> None:
        data = encode_message(kind, **fields)
        with lock:
            try:
                channel.write(data)
            except BrokenPipeError:
                pass  # the service is gone; ops_eof ends us

    return send


def _wait_connect(inbox: queue.SimpleQueue[Item], send: Callable[..., None]) -> dict[str, Any] | None:
    while True:
        kind, payload = inbox.get()
        if kind == "op" and payload["op"] == "connect":
            return payload
        if kind == "ops_eof" or (kind == "op" and payload["op"] == "stop"):
            return None
        if kind == "bad_op":
            send("error", detail=str(payload)[:200])


def main(argv: list[str] | None = None) -> int:
    """Run one client until it is stopped or fails; the exit code is for the supervisor.

    argv: optional `--log-level LEVEL` (DEBUG shows whatsmeow's own log, redacted) and
    `--allow-inject` (tests: accept `inject` ops, see `dispatcher`).
    """
    args = sys.argv[1:] if argv is None else argv
    level = args[args.index("--log-level") + 1] if "--log-level" in args[:-1] else "WARNING"
    send = _take_stdout()
    redactor = Redactor()
    configure_logging(redactor, getattr(logging, level.upper(), logging.WARNING))
    try:
        from neonize.client import NewClient, ProxySettings
    except Exception as err:  # noqa: BLE001 - reported, then exit
        send("error", detail=f"cannot import neonize: {type(err).__name__}: {err}"[:500])
        return EXIT_NO_NEONIZE
    inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
    threading.Thread(target=_read_ops, args=(sys.stdin.buffer, inbox.put), name="ops", daemon=True).start()
    send("ready", pid=os.getpid())
    op = _wait_connect(inbox, send)
    if op is None:
        send("stopped")
        return EXIT_OK
    redactor.add(op["store"])
    redactor.add_url(op["proxy"])
    client = NewClient(op["store"], uuid=op["uuid"])
    subscribe(client, inbox.put)
    proxy = ProxySettings(proxy_address=op["proxy"]) if op["proxy"] else None

    def run_client() -> None:
        try:
            client.connect(proxy)
        except Exception as err:  # noqa: BLE001 - NeonizeError and friends: a failed dial
            inbox.put(("connect_error", f"{type(err).__name__}: {err}"))
        else:
            inbox.put(("connect_returned", None))

    threading.Thread(target=run_client, name="client", daemon=True).start()
    inject = dispatcher(client) if "--allow-inject" in args else None
    session = WorkerSession(client.stop, send, redactor, pairing=op["pairing"], inject=inject)
    while not session.done:
        session.handle(inbox.get())
    return EXIT_OK
