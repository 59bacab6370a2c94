"""Inside a worker process: the process around `host.Host` — pipes, logging, neonize.

Runs only in the child (`python -m service.transports.neonize_worker`). Order matters:
take the stdout pipe for messages (stray prints go to stderr), configure logging with
redaction, and only then import neonize (it calls `logging.basicConfig` on import).
neonize's handlers run on Go threads; they only put the event on the main thread's
inbox, tagged with its client. The main thread hands every inbox item to the `Host`,
which owns the clients (see `host.py` for why starts and stops go through one gate).
Must not: call `get_me()` (aborts the process before connect/after stop), pass `jid=`
(aborts for a JID not in the store), call `shutdown_log_worker()` (never returns), or
write a store path or proxy credentials anywhere.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, BinaryIO

from service.errors import MalformedInput
from service.transports.neonize_events import SUBSCRIBED_EVENTS
from service.transports.neonize_worker.host import Client, Gate, Host, Item
from service.transports.neonize_worker.protocol import MAX_LINE_BYTES, decode_op, encode_message

EXIT_OK, EXIT_NO_NEONIZE = 0, 3
ORPHAN_EXIT_S = 2.0
# Workers yield the CPU to the service process, whose event loop fires every reconnect timer
# and enforces every deadline: on a saturated machine a storm's dials wait, not the timers.
# A nice value counts only within one scheduling group (a session under Linux's autogroup, or
# a cgroup), so the supervisor keeps workers in the service's session; there at 19 a worker
# weighs 15 against the service's 1024 in the scheduler (service/README.md, neonize storm).
WORKER_NICE = 19


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


def subscribe(client: Any, put: Callable[[Item], None], client_id: str | None = None) -> None:
    """Register one handler per event type of interest; each only hands the event over.

    Handlers run on Go threads and neonize swallows their exceptions, so they do nothing
    but `put`. Must be called before `connect()` (later handlers are not subscribed).
    """
    from neonize.proto import Neonize_pb2 as pb  # the caller imported neonize already

    def hand_over(_client: Any, message: Any) -> None:
        put(("event", client_id, message))

    for name in SUBSCRIBED_EVENTS:
        client.event(getattr(pb, name))(hand_over)
    # A QR code arrives through its own callback with the raw code, which must not travel.
    client.event.qr(lambda _client, _code: put(("event", client_id, pb.QR())))


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
            put(("op", None, decode_op(line)))
        except MalformedInput as err:
            put(("bad_op", None, str(err)))
    put(("ops_eof", None, None))
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


def main(argv: list[str] | None = None) -> int:
    """Host clients until the service says `shutdown` or goes away; the exit code is for the supervisor.

    argv: optional `--log-level LEVEL` (DEBUG shows whatsmeow's own log, redacted) and
    `--allow-inject` (tests: accept `inject` ops, see `dispatcher`).
    """
    args = sys.argv[1:] if argv is None else argv
    level = args[args.index("--log-level") + 1] if "--log-level" in args[:-1] else "WARNING"
    os.setpgid(0, 0)  # a process group of its own: a terminal's Ctrl-C reaches the service, which stops it
    os.nice(WORKER_NICE)
    send = _take_stdout()
    redactor = Redactor()
    configure_logging(redactor, getattr(logging, level.upper(), logging.WARNING))
    try:
        from neonize.client import NewClient, ProxySettings
    except Exception as err:  # noqa: BLE001 - reported, then exit
        send("error", client=None, detail=f"cannot import neonize: {type(err).__name__}: {err}"[:500])
        return EXIT_NO_NEONIZE
    inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
    proxies: dict[str, Any] = {}

    def make_client(op: dict[str, Any]) -> Client:
        redactor.add(op["store"])
        redactor.add_url(op["proxy"])
        neonize = NewClient(op["store"], uuid=op["client"])
        subscribe(neonize, inbox.put, op["client"])
        proxies[op["client"]] = ProxySettings(proxy_address=op["proxy"]) if op["proxy"] else None
        inject = dispatcher(neonize) if "--allow-inject" in args else None
        return Client(op["client"], neonize, pairing=op["pairing"], inject=inject)

    gate = Gate(inbox.put, lambda client: proxies.pop(client.client_id, None))
    host = Host(send, redactor.redact, gate, make_client, inbox.put)
    threading.Thread(target=_read_ops, args=(sys.stdin.buffer, inbox.put), name="ops", daemon=True).start()
    send("ready", pid=os.getpid())
    while not host.done:
        host.handle(inbox.get())
    return EXIT_OK
