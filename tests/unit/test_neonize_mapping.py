"""neonize events → link outcomes, through neonize's real dispatch path.

Events are real `neonize.proto.Neonize_pb2` messages, serialized and handed to the
ctypes callback neonize gives its Go side (`func_callback_bytes(client.event.execute)`,
called with a C pointer, a size and neonize's event number, exactly as Go calls it), so
they pass through neonize's parsing and handler lookup and the worker's own `subscribe`.
QR codes come through neonize's separate QR callback. Tests that load neonize are
marked `integration` (neonize loads a Go runtime); the pure ones are not.
"""

from __future__ import annotations

import ctypes
import queue
import uuid
from pathlib import Path
from typing import Any

import pytest

from service.core import Action, SessionMachine, State, build_policy
from service.core.events import Closed, Opened, ScheduleReconnect, Start
from service.errors import MalformedInput
from service.ports import LinkClosed
from service.transports.neonize_events import OPEN, KeepAlive, classify_dial_error, map_event
from service.transports.neonize_worker.protocol import decode_message, decode_op, encode_message, encode_op
from service.transports.neonize_worker.host import Client, Host
from service.transports.neonize_worker.worker import Redactor, subscribe

# neonize's ConnectFailure/LoggedOut reason numbers → whatsmeow's codes, written out
# from the neonize 0.5.2 notes (not computed from the table under test).
CONNECT_FAILURES = [(1, 400), (2, 401), (3, 402), (4, 403), (5, 406), (6, 405), (7, 409),
                    (8, 500), (9, 501), (10, 503)]
TERMINAL_FAILURES = {401, 403, 405, 406, 409}


class Dispatcher:
    """A real neonize client (never connected) and the callbacks its Go side would call."""

    def __init__(self, store: Path) -> None:
        from neonize._binder import func_callback_bytes, func_string
        from neonize.client import NewClient
        from neonize.events import EVENT_TO_INT

        self.client = NewClient(str(store), uuid=f"test-{uuid.uuid4().hex}")
        self.inbox: queue.SimpleQueue[tuple[str, str | None, Any]] = queue.SimpleQueue()
        subscribe(self.client, self.inbox.put)
        self._event_numbers = EVENT_TO_INT
        # neonize keeps these wrappers alive for the session; so do we
        self._event_callback = func_callback_bytes(self.client.event.execute)
        self._qr_callback = func_string(self.client._NewClient__onQr)

    def go_event(self, message: Any) -> Any:
        """Deliver `message` as Go does; return what the worker's handler handed over (or None)."""
        data = message.SerializeToString()
        buffer = ctypes.create_string_buffer(data, len(data))
        self._event_callback(self.client.uuid, ctypes.addressof(buffer), len(data),
                             self._event_numbers[type(message)])
        return self._take()

    def go_qr(self, code: bytes) -> Any:
        buffer = ctypes.create_string_buffer(code)
        self._qr_callback(None, ctypes.addressof(buffer))
        return self._take()

    def _take(self) -> Any:
        try:
            kind, _, payload = self.inbox.get_nowait()
        except queue.Empty:
            return None
        assert kind == "event"
        return payload


@pytest.fixture
def pb() -> Any:
    from neonize.proto import Neonize_pb2  # imported during setup: pytest's log handlers are in place

    return Neonize_pb2


@pytest.fixture
def go(tmp_path: Path) -> Dispatcher:
    return Dispatcher(tmp_path / "never-opened.db")


def table_rows(pb: Any) -> list[tuple[Any, Any]]:
    """(event, expected map_event result) for every row of the transport's table."""
    rows: list[tuple[Any, Any]] = [
        (pb.Connected(status=True), OPEN),
        (pb.Disconnected(status=True), LinkClosed(code="Disconnected")),
        (pb.LoggedOut(OnConnect=True, Reason=2), LinkClosed(code="LoggedOut")),
        (pb.StreamReplaced(), LinkClosed(code="StreamReplaced")),
        (pb.TemporaryBan(Code=2, Expire=3600), LinkClosed(code="TemporaryBan", wait_s=3600.0)),
        (pb.ClientOutdated(), LinkClosed(code="ClientOutdated")),
        (pb.StreamError(Code="xml-not-well-formed", Raw=pb.Node(Tag="stream:error")), LinkClosed(code="StreamError")),
        (pb.KeepAliveTimeout(ErrorCount=2, LastSuccess=1_700_000_000), KeepAlive("KeepAliveTimeout", ok=False, error_count=2)),
        (pb.KeepAliveRestored(), KeepAlive("KeepAliveRestored", ok=True)),
        (pb.QR(Codes=["2@not-a-real-code"]), LinkClosed(code="QR")),
        (pb.OfflineSyncCompleted(Count=3), None),  # not subscribed: never reaches the link
    ]
    rows += [(failure(pb, n), LinkClosed(code=f"ConnectFailure:{code}"))
             for n, code in CONNECT_FAILURES]
    return rows


def same_outcome(got: Any, want: Any) -> bool:
    if isinstance(want, LinkClosed):  # the reason text is for people; code and wait are the contract
        return isinstance(got, LinkClosed) and (got.code, got.wait_s) == (want.code, want.wait_s)
    return got == want


@pytest.mark.integration
def test_every_row_of_the_table_through_neonize_dispatch(go: Dispatcher, pb: Any) -> None:
    for message, want in table_rows(pb):
        handed_over = go.go_event(message)
        if want is None:
            assert handed_over is None, f"{type(message).__name__} should not be subscribed"
            continue
        assert type(handed_over).__name__ == type(message).__name__
        got = map_event(handed_over)
        assert same_outcome(got, want), f"{type(message).__name__}: got {got!r}, want {want!r}"


@pytest.mark.integration
def test_qr_callback_closes_a_reconnecting_session_but_not_a_pairing_one(go: Dispatcher) -> None:
    handed_over = go.go_qr(b"2@AbCdEf,not-a-real-ref")
    assert same_outcome(map_event(handed_over), LinkClosed(code="QR"))
    assert map_event(handed_over, pairing=True) is None
    assert "AbCdEf" not in repr(handed_over)  # the code itself never leaves the callback


@pytest.mark.integration
@pytest.mark.parametrize("neonize_reason,code", CONNECT_FAILURES)
def test_connect_failure_codes_drive_the_core_as_whatsmeow_says(go: Dispatcher, pb: Any,
                                                                neonize_reason: int, code: int) -> None:
    closed = map_event(go.go_event(failure(pb, neonize_reason)))
    machine = open_machine()
    commands = machine.handle(Closed(closed.code, closed.wait_s), now=1.0)
    if code in TERMINAL_FAILURES:
        assert machine.state is State.DROPPED
    elif code == 402:  # temporarily banned: waits the default ban time, uncounted
        assert machine.state is State.BACKOFF and machine.attempts == 0
        assert schedule_of(commands).delay_s == machine.policy.timeouts.default_ban_wait_s
    else:
        assert machine.state is State.BACKOFF and machine.attempts == 1


@pytest.mark.integration
def test_temporary_ban_waits_for_its_expiry(go: Dispatcher, pb: Any) -> None:
    closed = map_event(go.go_event(pb.TemporaryBan(Code=5, Expire=90)))
    machine = open_machine()
    schedule = schedule_of(machine.handle(Closed(closed.code, closed.wait_s), now=1.0))
    assert (schedule.delay_s, machine.attempts) == (90.0, 0)


@pytest.mark.integration
def test_terminal_and_retried_events(go: Dispatcher, pb: Any) -> None:
    policy = build_policy({"codes": "whatsmeow"})
    expected = {
        "LoggedOut": Action.TERMINAL, "StreamReplaced": Action.TERMINAL, "ClientOutdated": Action.TERMINAL,
        "QR": Action.TERMINAL, "Disconnected": Action.RECONNECT, "StreamError": Action.RECONNECT,
        "TemporaryBan": Action.WAIT_UNTIL,
    }
    for message, want in table_rows(pb):
        if isinstance(want, LinkClosed) and want.code in expected:
            closed = map_event(go.go_event(message))
            assert policy.codes.action_for(closed.code) is expected[want.code], want.code


class RecordingGate:
    """Stands in for the worker's gate thread: records what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def start(self, client: Client) -> None:
        self.calls.append(("start", client.client_id))
        client.started = True

    def stop(self, client: Client) -> None:
        self.calls.append(("stop", client.client_id))


def connect_op(client_id: str) -> tuple[str, None, dict[str, Any]]:
    return ("op", None, {"op": "connect", "client": client_id, "store": "/s.db", "proxy": None, "pairing": False})


@pytest.mark.integration
def test_worker_stops_the_client_after_reporting_a_drop_and_ignores_whatsmeows_own_loop(
        go: Dispatcher, pb: Any) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    gate = RecordingGate()
    host = Host(lambda kind, **f: sent.append((kind, f)), str, gate,  # type: ignore[arg-type]
                lambda op: Client(op["client"], go.client, pairing=False), lambda item: None)
    host.handle(connect_op("c1"))
    for message in (pb.Connected(status=True), pb.Disconnected(status=True), pb.Connected(status=True)):
        host.handle(("event", "c1", go.go_event(message)))
    assert [kind for kind, _ in sent] == ["open", "closed"]
    assert sent[1][1]["code"] == "Disconnected" and sent[1][1]["client"] == "c1"
    assert gate.calls == [("start", "c1"), ("stop", "c1")]  # stop() once, after the close was on its way
    host.handle(("stop_done", "c1", None))
    host.handle(("returned", "c1", None))
    assert sent[-1] == ("stopped", {"client": "c1"}) and host.clients == {}
    assert not go.client._stop_finalizer.alive  # its ungated Stop() will never run


# ---- pure: no neonize ----------------------------------------------------------------


@pytest.mark.parametrize("text,reason", [
    ("socks connect tcp 127.0.0.1:1->web.whatsapp.com:443: unknown error connection not allowed by ruleset",
     "proxy_refused_target"),
    ("dial tcp 127.0.0.1:9: connect: connection refused", "connection_refused"),
    ("socks connect tcp 127.0.0.1:1->web.whatsapp.com:443: EOF", "proxy_closed"),
    ("read tcp 127.0.0.1:5->127.0.0.1:6: read: connection reset by peer", "connection_reset"),
    ("dial tcp: lookup web.whatsapp.com: no such host", "dns_failure"),
    ("context deadline exceeded", "dial_timeout"),
    ("something new", "dial_error"),
])
def test_dial_errors_are_classified(text: str, reason: str) -> None:
    assert classify_dial_error(text) == reason


def test_worker_protocol_round_trips_and_rejects_garbage() -> None:
    line = encode_message("closed", client="c1", code="ConnectFailure:401", wait_s=None, reason="logged out")
    assert decode_message(line)["code"] == "ConnectFailure:401"
    assert decode_op(encode_op("stop", client="c1")) == {"op": "stop", "client": "c1"}
    assert decode_op(encode_op("shutdown")) == {"op": "shutdown"}
    with pytest.raises(ValueError):
        encode_op("stop")  # which client?
    for bad in (b"not json\n", b"[1]\n", b'{"kind":"nope"}\n', b'{"kind":"ready","pid":true}\n',
                b'{"kind":"closed","code":1}\n', b'{"kind":"open"}\n', b'{"kind":"stopped","client":5}\n', b"x" * 70_000):
        with pytest.raises(MalformedInput):
            decode_message(bad)


def test_redactor_hides_store_and_proxy_credentials() -> None:
    redactor = Redactor()
    redactor.add("/srv/stores/alice.db")
    redactor.add_url("socks5://bob:hunter2@10.0.0.1:1080")
    text = "open /srv/stores/alice.db via socks5://bob:hunter2@10.0.0.1:1080 (pw hunter2)"
    assert redactor.redact(text) == "open *** via *** (pw ***)"


# ---- helpers -------------------------------------------------------------------------


def open_machine() -> SessionMachine:
    machine = SessionMachine("s1", build_policy({"codes": "whatsmeow"}))
    machine.handle(Start(), now=0.0)
    machine.handle(Opened(), now=0.5)
    return machine


def failure(pb: Any, neonize_reason: int) -> Any:
    return pb.ConnectFailure(Reason=neonize_reason, Message="failure", Raw=pb.Node(Tag="failure"))


def schedule_of(commands: list[Any]) -> ScheduleReconnect:
    (schedule,) = [c for c in commands if isinstance(c, ScheduleReconnect)]
    return schedule
