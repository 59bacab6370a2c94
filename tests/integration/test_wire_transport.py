"""The `wire` client against the real WhatsApp stand-in (and raw loopback servers and
Toxiproxy for the network faults): open/close, refusals decoded, connect timeouts that
really cut the attempt off, keepalive death, malformed frames survived, R7 ordering,
and credentials never logged."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from websockets.utils import accept_key

from chaos.toxiproxy import Toxiproxy
from service.errors import LinkFailed
from service.ports import Link, LinkClosed, Secret, Transport
from service.transports.wire import KEEPALIVE_TIMEOUT, WireLink, WireTransport
from tests.fixtures.due_work import DueWorkProbe
from tests.fixtures.process import free_port, wait_until
from tests.fixtures.standins import Standins, eventually

pytestmark = pytest.mark.integration

CREDS = Secret("s3cr3t-cred-XYZ-0123")
OPEN_TIMEOUT_S = 5.0
INTERVAL_S = 0.2
MISSES = 3


def transport_for(url: str, interval_s: float = INTERVAL_S, misses: int = MISSES) -> WireTransport:
    return WireTransport(url, keepalive_interval_s=interval_s, keepalive_misses=misses)


@pytest.fixture
async def wire(standins_clean: Standins) -> AsyncIterator[WireTransport]:
    transport = transport_for(standins_clean.whatsapp_ws_url)
    try:
        yield transport
    finally:
        await transport.aclose()


async def opened(transport: WireTransport, session_id: str = "s1", credentials: Secret = CREDS) -> WireLink:
    link = transport.new_link(session_id, credentials)
    await link.open(OPEN_TIMEOUT_S)
    return link


async def closed_within(link: WireLink, timeout_s: float = 10.0) -> LinkClosed:
    async with asyncio.timeout(timeout_s):
        return await link.wait_closed()


# -- raw loopback servers for network faults ---------------------------------------------


@dataclass
class RawServer:
    port: int
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    peer_gone: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def raw_server(*, reset_after_request: bool, answer: bytes | None = None) -> AsyncIterator[RawServer]:
    """Accepts TCP and never answers; or, with `reset_after_request`, answers with a RST; or
    answers the upgrade request with `answer` (`{accept}` in it: the request's key's answer)."""
    state = RawServer(port=0)
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        state.accepted.set()
        if reset_after_request:
            await reader.read(1)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        try:
            if answer is not None:
                head = await reader.readuntil(b"\r\n\r\n")
                key = head.split(b"Sec-WebSocket-Key: ", 1)[1].split(b"\r\n", 1)[0].decode()
                writer.write(answer.replace(b"{accept}", accept_key(key).encode()))
            while await reader.read(4096):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        state.peer_gone.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        async with asyncio.timeout(5):
            await server.wait_closed()


# -- shape and config ---------------------------------------------------------------------


async def test_transport_and_link_implement_the_ports(wire: WireTransport) -> None:
    assert isinstance(wire, Transport)
    assert isinstance(wire.new_link("s1", CREDS), Link)


# -- open, close, R7 ---------------------------------------------------------------------------


async def test_open_then_close_leaves_no_socket_counted_live(wire: WireTransport, standins_clean: Standins) -> None:
    admin = standins_clean.whatsapp
    link = await opened(wire)
    assert admin.session("s1")["live"] == 1
    await eventually(lambda: link.pongs_received >= 1, 5, "first pong")

    await link.close()

    # No waiting here: close() returned only once the server had counted the socket out.
    assert admin.session("s1")["live"] == 0
    assert await closed_within(link) == LinkClosed(code=None, reason="closed by the service")
    await link.close()  # idempotent, never raises
    assert admin.events()[-1]["by"] == "client"


async def test_link_is_single_use(wire: WireTransport) -> None:
    link = await opened(wire)
    with pytest.raises(LinkFailed, match="already_used"):
        await link.open(OPEN_TIMEOUT_S)
    await link.close()


async def test_closing_before_each_reopen_never_holds_two_sockets(wire: WireTransport, standins_clean: Standins) -> None:
    previous: WireLink | None = None
    for _ in range(15):
        if previous is not None:
            await previous.close()  # R7: old socket closed before the new one opens
        previous = await opened(wire)
    assert previous is not None
    await previous.close()
    stats = standins_clean.whatsapp.stats()
    assert (stats["r7_violations"], stats["max_live_per_session"]) == ([], 1)
    assert standins_clean.whatsapp.session("s1")["opens"] == 15


async def test_reopening_without_closing_is_caught_by_the_r7_detector(wire: WireTransport, standins_clean: Standins) -> None:
    first = await opened(wire)
    second = await opened(wire)  # the bug R7 forbids
    violations = standins_clean.whatsapp.stats()["r7_violations"]
    await asyncio.gather(first.close(), second.close())
    assert [(v["session_id"], v["live"]) for v in violations] == [("s1", 2)]


async def test_transport_aclose_closes_every_open_link(standins_clean: Standins) -> None:
    transport = transport_for(standins_clean.whatsapp_ws_url)
    links = [await opened(transport, f"s{i}") for i in range(3)]
    await transport.aclose()
    assert [(await closed_within(link)).code for link in links] == [None, None, None]
    assert all(s["live"] == 0 for s in standins_clean.whatsapp.sessions().values())


# -- refusals and peer closes ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [401, 405, 440])
async def test_refused_hello_raises_link_failed_with_decoded_code(wire: WireTransport, standins_clean: Standins,
                                                                  code: int) -> None:
    standins_clean.whatsapp.reject("s1", code)
    link = wire.new_link("s1", CREDS)
    with pytest.raises(LinkFailed) as info:
        await link.open(OPEN_TIMEOUT_S)
    assert (info.value.reason, info.value.code) == ("rejected", code)
    assert (await closed_within(link)).code == code


async def test_wrong_credentials_are_refused_401(wire: WireTransport, standins_clean: Standins) -> None:
    standins_clean.whatsapp.set_credentials("s1", CREDS.reveal())
    with pytest.raises(LinkFailed) as info:
        await opened(wire, credentials=Secret("not-the-right-ones"))
    assert (info.value.reason, info.value.code) == ("rejected", 401)
    link = await opened(wire)  # the right ones open
    await link.close()


@pytest.mark.parametrize(("action", "expected"), [("close428", 428), ("replace", 440), ("logout", 401),
                                                  ("plain", None)])
async def test_peer_close_is_reported_with_decoded_code(wire: WireTransport, standins_clean: Standins,
                                                        action: str, expected: int | None) -> None:
    link = await opened(wire)
    admin = standins_clean.whatsapp
    {"close428": lambda: admin.close("s1", 428), "replace": lambda: admin.replace("s1"),
     "logout": lambda: admin.logout("s1"), "plain": lambda: admin.close("s1")}[action]()
    closed = await closed_within(link)
    assert closed.code == expected
    assert closed.wait_s is None
    assert not link.is_open


async def test_a_cancelled_wait_leaves_the_end_to_every_other_waiter(wire: WireTransport,
                                                                     standins_clean: Standins) -> None:
    """Each `wait_closed()` waits on its own: cancelling one ends no other, and after the peer
    closed, `close()` returns at once and every later wait reads the same end."""
    link = await opened(wire)
    cancelled = asyncio.create_task(link.wait_closed())
    waiting = [asyncio.create_task(link.wait_closed()) for _ in range(2)]
    await eventually(lambda: len(link._closed_waiters) == 3, 5, "three waits")
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert link.is_open and len(link._closed_waiters) == 2
    standins_clean.whatsapp.close("s1", 428)
    async with asyncio.timeout(10):
        ends = await asyncio.gather(*waiting)
    assert [end.code for end in ends] == [428, 428]
    await link.close()
    assert (await link.wait_closed()) is ends[0] and not link.is_open


async def test_due_work_runs_before_each_read_and_close_callback(standins_clean: Standins) -> None:
    """`due_work` (due timers handed on) runs in the socket's own callbacks: before
    the frames that open the link, and before a close is taken in."""
    calls: list[float] = []
    transport = WireTransport(standins_clean.whatsapp_ws_url, keepalive_interval_s=INTERVAL_S,
                              keepalive_misses=MISSES, due_work=DueWorkProbe(lambda: calls.append(time.monotonic())))
    try:
        link = await opened(transport)
        after_open = len(calls)
        assert after_open >= 2  # the HTTP upgrade answer and the `open` frame at least
        standins_clean.whatsapp.close("s1", 428)
        assert (await closed_within(link)).code == 428
        assert len(calls) > after_open
    finally:
        await transport.aclose()


async def test_ban_close_carries_its_wait(wire: WireTransport, standins_clean: Standins) -> None:
    link = await opened(wire)
    standins_clean.whatsapp.close("s1", 402, reconnect_after_s=42.5)
    closed = await closed_within(link)
    assert (closed.code, closed.wait_s) == (402, 42.5)


# -- network faults ---------------------------------------------------------------------------------


async def test_nothing_listening_is_refused() -> None:
    transport = transport_for(f"ws://127.0.0.1:{free_port()}")
    with pytest.raises(LinkFailed) as info:
        await transport.new_link("s1", CREDS).open(OPEN_TIMEOUT_S)
    assert info.value.reason == "refused"


async def test_reset_during_handshake_is_reset() -> None:
    async with raw_server(reset_after_request=True) as server:
        transport = transport_for(f"ws://127.0.0.1:{server.port}")
        with pytest.raises(LinkFailed) as info:
            await transport.new_link("s1", CREDS).open(OPEN_TIMEOUT_S)
    assert info.value.reason == "reset"


UPGRADED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"


@pytest.mark.parametrize(("answer", "reason", "code"), [
    (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "handshake_rejected", 503),
    (UPGRADED + b"\r\n", "handshake_failed", None),  # no Sec-WebSocket-Accept
    (UPGRADED + b"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
     "handshake_failed", None),
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "reset", None),
])
async def test_an_upgrade_answered_otherwise_fails_the_open_and_ends_the_socket(answer: bytes, reason: str,
                                                                              code: int | None) -> None:
    async with raw_server(reset_after_request=False, answer=answer) as server:
        transport = transport_for(f"ws://127.0.0.1:{server.port}")
        with pytest.raises(LinkFailed) as info:
            await transport.new_link("s1", CREDS).open(OPEN_TIMEOUT_S)
        assert (info.value.reason, info.value.code) == (reason, code)
        async with asyncio.timeout(5):
            await server.peer_gone.wait()  # our side really closed the TCP connection


async def test_frames_in_the_same_packet_as_the_upgrade_are_read() -> None:
    opened = b'{"type":"open"}'
    answer = UPGRADED + b"Sec-WebSocket-Accept: {accept}\r\n\r\n" + bytes([0x81, len(opened)]) + opened
    async with raw_server(reset_after_request=False, answer=answer) as server:
        link = transport_for(f"ws://127.0.0.1:{server.port}").new_link("s1", CREDS)
        await link.open(OPEN_TIMEOUT_S)
        assert link.is_open
        await link.close()
        async with asyncio.timeout(5):
            await server.peer_gone.wait()


async def test_silent_server_times_out_and_the_attempt_is_cut_off() -> None:
    async with raw_server(reset_after_request=False) as server:
        transport = transport_for(f"ws://127.0.0.1:{server.port}")
        started = time.monotonic()
        with pytest.raises(LinkFailed) as info:
            await transport.new_link("s1", CREDS).open(0.5)
        elapsed_s = time.monotonic() - started
        assert info.value.reason == "connect_timeout"
        assert server.accepted.is_set()
        assert 0.5 <= elapsed_s < 3.0
        async with asyncio.timeout(5):
            await server.peer_gone.wait()  # our side really closed the TCP connection


@pytest.mark.parametrize("stage", ["connected-late", "silent", "reset"])
async def test_a_failed_open_leaves_no_unretrieved_exception(stage: str) -> None:
    """A failed attempt is reported once, by `open()` raising: no future of the link is left
    holding an exception nobody reads (asyncio logs those when they are collected). In a
    storm the loop can be so busy that the connect's task finishes only after the timeout:
    `connected-late` holds the connect back past it, the socket already made."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    real_connect = loop.create_connection

    async def connected_late(*args: object, **kwargs: object) -> object:
        made = await real_connect(*args, **kwargs)  # type: ignore[arg-type]
        await asyncio.sleep(5)
        return made
    if stage == "connected-late":
        loop.create_connection = connected_late  # type: ignore[method-assign]
    try:
        async with raw_server(reset_after_request=stage == "reset") as server:
            link = transport_for(f"ws://127.0.0.1:{server.port}").new_link("s1", CREDS)
            with pytest.raises(LinkFailed):
                await link.open(0.3)
            await closed_within(link)
        del link
        for _ in range(3):  # a future's exception is reported when the future is collected
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
        if stage == "connected-late":
            del loop.create_connection  # the loop's own method again
    assert [context.get("message") for context in unhandled] == []


async def test_close_during_open_cuts_the_attempt_off() -> None:
    async with raw_server(reset_after_request=False) as server:
        link = transport_for(f"ws://127.0.0.1:{server.port}").new_link("s1", CREDS)
        opening = asyncio.create_task(link.open(30.0))
        async with asyncio.timeout(5):
            await server.accepted.wait()
        async with asyncio.timeout(5):
            await link.close()  # returns once the attempt is settled, long before 30 s
        assert await _gone_soon(server)
        with pytest.raises(LinkFailed, match="closed"):
            await opening
    assert (await closed_within(link)).reason == "open failed: closed"


async def test_cancelling_open_cuts_the_attempt_off() -> None:
    async with raw_server(reset_after_request=False) as server:
        link = transport_for(f"ws://127.0.0.1:{server.port}").new_link("s1", CREDS)
        opening = asyncio.create_task(link.open(30.0))
        async with asyncio.timeout(5):
            await server.accepted.wait()
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert await _gone_soon(server)


async def _gone_soon(server: RawServer) -> bool:
    async with asyncio.timeout(5):
        await server.peer_gone.wait()
    return True


async def test_stalled_network_times_out_through_toxiproxy(standins_clean: Standins, toxiproxy: Toxiproxy) -> None:
    proxy = toxiproxy.create_proxy("wa-stall", upstream=f"127.0.0.1:{standins_clean.ports['whatsapp_port']}")
    transport = transport_for(f"ws://{proxy.listen}")
    proxy.add_toxic("timeout", stream="downstream", timeout=0)  # drop every byte, keep the socket
    with pytest.raises(LinkFailed) as info:
        await transport.new_link("s1", CREDS).open(0.5)
    assert info.value.reason == "connect_timeout"
    assert standins_clean.whatsapp.session("s1")["opens"] <= 1  # the hello may get through; no reply did


async def test_keepalive_detects_a_muted_server(wire: WireTransport, standins_clean: Standins) -> None:
    link = await opened(wire)
    await eventually(lambda: link.pongs_received >= 1, 5, "first pong")
    standins_clean.whatsapp.mute("s1")
    muted_at = time.monotonic()
    closed = await closed_within(link)
    detected_s = time.monotonic() - muted_at
    assert closed.code == KEEPALIVE_TIMEOUT
    # About interval x misses: not before (misses-1) intervals, well before a few more.
    assert (MISSES - 1) * INTERVAL_S <= detected_s <= (MISSES + 2) * INTERVAL_S + 1.0
    wait_until(lambda: standins_clean.whatsapp.session("s1")["live"] == 0, 5, "server counted the dead link out")


@pytest.mark.parametrize("error", [OSError("socket gone"), RuntimeError("transport closed"), ValueError("bad")])
async def test_a_failing_keepalive_send_closes_the_link_instead_of_leaving_it_unwatched(
        wire: WireTransport, standins_clean: Standins, error: Exception) -> None:
    link = await opened(wire)
    await eventually(lambda: link.pongs_received >= 1, 5, "first pong")
    real_send = link._ws.send_text

    def failing_send(message: bytes, fin: bool = True) -> None:
        if b'"ping"' in message:
            raise error
        real_send(message, fin)

    link._ws.send_text = failing_send  # the keepalive's next ping fails in a way no handler expects
    closed = await closed_within(link, timeout_s=5 * INTERVAL_S * MISSES + 2.0)
    assert closed.code == KEEPALIVE_TIMEOUT
    wait_until(lambda: standins_clean.whatsapp.session("s1")["live"] == 0, 5, "server counted the link out")


async def test_keepalive_detects_a_half_open_link_through_toxiproxy(standins_clean: Standins, toxiproxy: Toxiproxy) -> None:
    proxy = toxiproxy.create_proxy("wa-halfopen", upstream=f"127.0.0.1:{standins_clean.ports['whatsapp_port']}")
    transport = transport_for(f"ws://{proxy.listen}")
    link = await opened(transport)
    await eventually(lambda: link.pongs_received >= 1, 5, "first pong")
    proxy.add_toxic("timeout", stream="downstream", timeout=0)
    stalled_at = time.monotonic()
    closed = await closed_within(link)
    assert closed.code == KEEPALIVE_TIMEOUT
    assert time.monotonic() - stalled_at <= (MISSES + 2) * INTERVAL_S + 1.0
    await link.close()  # idempotent after a keepalive death


async def test_a_slow_link_is_not_a_dead_link(standins_clean: Standins, toxiproxy: Toxiproxy) -> None:
    """Round trip 0.5 s on a 0.2 s interval: pongs keep coming, late; the link must stay up."""
    proxy = toxiproxy.create_proxy("wa-slow", upstream=f"127.0.0.1:{standins_clean.ports['whatsapp_port']}")
    transport = transport_for(f"ws://{proxy.listen}")
    try:
        link = await opened(transport)
        proxy.add_toxic("latency", stream="downstream", latency=500, jitter=0)
        pongs_before = link.pongs_received
        await asyncio.sleep(6 * INTERVAL_S * MISSES)  # twice the dead-link deadline, on purpose
        assert link.is_open, "a link whose pongs arrive late was declared dead"
        assert link.pongs_received > pongs_before + MISSES
    finally:
        await transport.aclose()


# -- malformed frames and secrets ------------------------------------------------------------------


@pytest.mark.parametrize("payload", ["not json", "[1, 2]", '{"type": "surprise"}', '{"type": "pong", "seq": 1',
                                     "x" * 70_000, b"\xff\xfe not utf-8"])
async def test_malformed_frames_are_counted_and_the_link_stays_up(
    wire: WireTransport, standins_clean: Standins, payload: str | bytes
) -> None:
    link = await opened(wire)
    admin = standins_clean.whatsapp
    sent = admin.garbage_bytes("s1", payload) if isinstance(payload, bytes) else admin.garbage("s1", payload)
    assert sent == 1
    await eventually(lambda: link.malformed_frames == 1, 5, "malformed frame counted")
    pongs = link.pongs_received
    await eventually(lambda: link.pongs_received >= pongs + 2, 5, "keepalives still answered")
    assert link.is_open
    assert standins_clean.whatsapp.session("s1")["live"] == 1
    await link.close()
    assert (await closed_within(link)).code is None


async def test_credentials_never_reach_the_logs(wire: WireTransport, standins_clean: Standins,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, websockets' own included
    secret = CREDS.reveal()
    link = await opened(wire)
    standins_clean.whatsapp.garbage("s1", "garbage " + "!" * 10)
    await eventually(lambda: link.malformed_frames == 1, 5, "malformed frame counted")
    standins_clean.whatsapp.mute("s1")
    assert (await closed_within(link)).code == KEEPALIVE_TIMEOUT
    standins_clean.whatsapp.set_credentials("s1", "other")
    with pytest.raises(LinkFailed) as info:
        await opened(wire)
    assert "malformed frame" in caplog.text and "keepalives unanswered" in caplog.text  # logging was on
    assert secret not in caplog.text
    assert secret not in str(info.value) and secret not in repr(link) and secret not in repr(wire)


# -- scale ------------------------------------------------------------------------------------------

TEN_THOUSAND = 10_000


@pytest.mark.slow
async def test_ten_thousand_concurrent_links_on_one_stand_in(standins_clean: Standins) -> None:
    """The service benchmark's load: every link open at once, each counted once, all closed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < TEN_THOUSAND + 500:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below {TEN_THOUSAND + 500}: raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    transport = WireTransport(standins_clean.whatsapp_ws_url, keepalive_interval_s=60.0, keepalive_misses=3)
    gate = asyncio.Semaphore(500)  # many connects in flight, not 10,000 SYNs in one instant

    async def open_one(index: int) -> WireLink:
        async with gate:
            return await opened(transport, f"bulk-{index}")

    try:
        links = await asyncio.gather(*(open_one(i) for i in range(TEN_THOUSAND)))
        stats = standins_clean.whatsapp.stats()
        assert (stats["live"], stats["sessions"], stats["max_live_per_session"]) == (TEN_THOUSAND, TEN_THOUSAND, 1)
        assert all(link.is_open for link in links)
    finally:
        await transport.aclose()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert standins_clean.whatsapp.stats()["live"] == 0
