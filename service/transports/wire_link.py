"""One `wire` link: a WebSocket to the stand-in on websockets' Sans-I/O `ClientProtocol`
under a plain asyncio `Protocol` (why: `service.transports.wire`; the `Protocol`, which
starts the WebSocket and sends the upgrade, is `wire_socket`'s), the upgrade's answer judged
by `wire_handshake`.

Owns the link's life — connect, upgrade answer, hello, `open`; the keepalive (a loop timer,
no task); the closing handshake and waiting, bounded, for the TCP connection to end (R7) —
and turning every way it fails or ends into `LinkFailed` / `LinkClosed`. Must not decide
about reconnects, or log credentials or frame contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from typing import TYPE_CHECKING, Any

from websockets.exceptions import InvalidHandshake
from websockets.frames import Opcode
from websockets.protocol import State

from service.core import CloseReason, FailReason
from service.deadlines import deadline
from service.errors import LinkFailed, MalformedInput
from service.ports import LinkClosed, Secret
from service.transports.wire_protocol import (MAX_FRAME_BYTES, WS_PATH_PREFIX, decode, encode_bytes,
                                               from_ws_close_code, parse_close_reason)
from service.transports.wire_socket import LinkProtocol, link_failed

if TYPE_CHECKING:
    from websockets.client import ClientProtocol

    from service.transports import wire_handshake
    from service.transports.wire import WireTransport

log = logging.getLogger("service.transports.wire")

KEEPALIVE_TIMEOUT = CloseReason.KEEPALIVE_TIMEOUT
ABNORMAL_CLOSURE = 1006  # RFC 6455: the connection ended without a close frame


class WireLink:
    """One session's WebSocket to the stand-in. Single use: a reconnect makes a new link."""

    def __init__(self, transport: WireTransport, session_id: str, credentials: Secret) -> None:
        self.session_id = session_id
        self.malformed_frames = 0
        self.pongs_received = 0
        self._transport = transport
        self._credentials = credentials
        self._ws: ClientProtocol | None = None  # the Sans-I/O WebSocket state, OPEN once the upgrade is answered
        self._answer: wire_handshake.UpgradeAnswer | None = None  # the upgrade's answer, while it is awaited
        self._handshake_failed: LinkFailed | None = None  # why the answer was no upgrade
        self._socket: asyncio.Transport | None = None  # the TCP connection (set with `_ws` by `LinkProtocol`)
        self._started = False
        self._close_requested = False
        self._closed_by: str | None = None  # "keepalive" or "local", when we closed it
        self._closed: LinkClosed | None = None  # how the link ended, once it has
        self._closed_waiters: list[asyncio.Future[None]] = []  # `wait_closed()` calls still waiting
        self._login: asyncio.Future[None] | None = None  # the `open` frame, or why not
        self._lost: asyncio.Future[None] | None = None  # made by the first wait for the TCP connection's end
        self._is_lost = False  # the TCP connection has ended
        self._opener: asyncio.Task[Any] | None = None  # the task in the TCP connect, cut off by close()
        self._cut_off = False  # close() cancelled the opener's connect
        self._opening = False  # open() is under way
        self._open_settled: asyncio.Future[None] | None = None  # made by a close() that waits for it
        self._keepalive: asyncio.TimerHandle | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._ping_seq = 0
        self._fragments: list[bytes] | None = None  # a message still arriving in pieces
        self._peer_close_deadline: asyncio.TimerHandle | None = None
        self._last_pong_seq = 0
        self._last_pong_at = 0.0  # loop time of the last pong (or of the open)

    def __repr__(self) -> str:
        return f"WireLink(session_id={self.session_id!r}, open={self.is_open})"

    @property
    def is_open(self) -> bool:
        return self._keepalive is not None and self._closed is None

    @property
    def url(self) -> str:
        return self._transport.url + WS_PATH_PREFIX + urllib.parse.quote(self.session_id, safe="")

    # -- open ---------------------------------------------------------------------

    async def open(self, timeout_s: float) -> None:
        if self._started or self._close_requested:
            raise LinkFailed("already_used" if self._started else "closed")
        self._started = True
        loop = asyncio.get_running_loop()
        self._login, self._opening = loop.create_future(), True
        try:
            failure = await self._attempt_open(loop, timeout_s)
            if self._close_requested:  # close() cut the attempt off, or raced its last step
                failure = LinkFailed("closed")
            if failure is not None:
                await self._abort_attempt(failure)
                raise failure
            self._last_pong_at = loop.time()
            self._keepalive = loop.call_soon(self._keepalive_tick)
        finally:
            self._opening = False
            if self._open_settled is not None:
                self._open_settled.set_result(None)
        log.debug("wire link open: session %s", self.session_id)

    async def _attempt_open(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> LinkFailed | None:
        """Connect, upgrade, hello, wait for `open`; None once open, else why not. A cancelled
        caller takes the attempt down (aborted) and is re-raised. The connect runs in the
        caller's task (no task of its own): `close()` cuts it off by cancelling that task
        while it connects, and the cancel is taken back here."""
        transport = self._transport
        self._opener = asyncio.current_task()
        try:
            async with deadline(timeout_s):
                try:
                    await loop.create_connection(lambda: LinkProtocol(self), transport.host, transport.port,
                                                 ssl=transport.ssl or None)
                finally:
                    self._opener = None
                await self._login
        except TimeoutError:
            return LinkFailed(FailReason.CONNECT_TIMEOUT)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._cut_off and task is not None:
                task.uncancel()  # close()'s own cancel
            if task is not None and task.cancelling():  # our caller was cancelled
                await self._abort_attempt(LinkFailed("cancelled"))
                raise
            return LinkFailed("closed")  # close() cut it off
        except LinkFailed as failure:
            return failure
        except (InvalidHandshake, OSError, EOFError) as exc:
            return link_failed(exc)
        return None

    def _flush(self) -> None:
        """Write what the WebSocket protocol has to send (the empty chunk: half-close)."""
        assert self._ws is not None and self._socket is not None
        for data in self._ws.data_to_send():
            if data:
                self._socket.write(data)
            elif self._socket.can_write_eof():
                self._socket.write_eof()

    async def _abort_attempt(self, failure: LinkFailed) -> None:
        """Cut a failed attempt off: abort (no handshake on a stalled network), wait bounded."""
        if self._socket is not None:
            self._socket.abort()
            await self._until_lost(self._transport.close_timeout_s)
        assert self._login is not None
        if self._closed is None:
            self._settle_closed(LinkClosed(code=failure.code, wait_s=failure.wait_s,
                                           reason=f"open failed: {failure.reason}"))
        # `open()` raising is the one report of this failure (the session logs and counts it):
        # a login the connection failed after the attempt stopped waiting is read here, so
        # asyncio does not log it again as an exception never retrieved
        if not self._login.done():
            self._login.cancel()
        elif not self._login.cancelled():
            self._login.exception()
        log.debug("wire link failed to open: session %s: %s (code %s)", self.session_id, failure.reason, failure.code)

    # -- socket callbacks ----------------------------------------------------------

    def _received(self, data: bytes) -> None:
        ws = self._ws
        assert ws is not None and self._socket is not None
        if self._answer is not None:  # the upgrade's answer, whole or in part, then perhaps frames
            rest = self._answered(self._answer, data)
            if rest is None:
                return
            data = rest
        if data:
            ws.receive_data(data)
        for event in ws.events_received():
            if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self._piece(event.opcode, bytes(event.data), event.fin)
        self._flush()
        if ws.close_rcvd is not None or ws.parser_exc is not None:
            self._settle_login()
        if self._keepalive is not None and self._peer_close_deadline is None and ws.close_expected():
            # the closing handshake is under way: the peer ends the TCP connection, or we do
            self._peer_close_deadline = asyncio.get_running_loop().call_later(
                self._transport.close_timeout_s, self._socket.abort)

    def _piece(self, opcode: Opcode, data: bytes, fin: bool) -> None:
        """A data frame: a whole message, or a piece of one (joined, bounded like a frame)."""
        if opcode is not Opcode.CONT:
            self._fragments = []
        if self._fragments is None:
            return  # a continuation of nothing: the protocol layer already refused it
        self._fragments.append(data)
        if sum(map(len, self._fragments)) > 4 * MAX_FRAME_BYTES:
            self._fragments = None
            self._frame(b"x" * (MAX_FRAME_BYTES + 1))  # counted as the oversized frame it is
        elif fin:
            message, self._fragments = b"".join(self._fragments), None
            self._frame(message)

    def _answered(self, answer: wire_handshake.UpgradeAnswer, data: bytes) -> bytes | None:
        """Read the upgrade's answer: once whole, send the hello and return the bytes after it
        (frames); None while more is to come, or when it was no upgrade (the login failed with
        why, the socket aborted)."""
        try:
            rest = answer.feed(data)
        except LinkFailed as failure:
            self._answer, self._handshake_failed = None, failure
            self._settle_login()
            return None
        if rest is not None:
            self._answer = None
            assert self._ws is not None
            self._ws.send_text(encode_bytes("hello", session_id=self.session_id, credentials=self._credentials.reveal()))
        return rest

    def _frame(self, raw: bytes | str) -> None:
        frame = self._decode(raw)
        if frame is None:
            return
        if frame["type"] == "open":
            if self._login is not None and not self._login.done():
                self._login.set_result(None)
        elif frame["type"] == "pong":
            self.pongs_received += 1
            seq = frame.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self._last_pong_seq = max(self._last_pong_seq, seq)
            self._last_pong_at = asyncio.get_running_loop().time()

    def _settle_login(self, exc: Exception | None = None) -> None:
        """Fail a login still waiting, with the reason the connection gives — once the TCP
        connection has ended (`_ended`): a reason found before (a refusal, a failed upgrade, a
        broken frame) aborts the socket, and its end settles the login, so the open wakes once,
        its socket already gone."""
        login, ws = self._login, self._ws
        if login is None or login.done():
            return
        if ws is not None and ws.close_rcvd is not None:
            code, wait_s = from_ws_close_code(ws.close_rcvd.code), parse_close_reason(ws.close_rcvd.reason)
            failure = LinkFailed("rejected", code, wait_s)
        elif self._handshake_failed is not None:
            failure = self._handshake_failed
        elif exc is None and ws is not None and ws.parser_exc is None and ws.state is not State.CLOSED:
            return  # nothing has ended yet
        else:
            failure = LinkFailed("reset")
        if self._is_lost or self._socket is None:
            login.set_exception(failure)
        else:
            self._socket.abort()

    def _ended(self, exc: Exception | None) -> None:
        """The TCP connection is gone (either side, or aborted)."""
        if self._ws is not None:
            with contextlib.suppress(Exception):  # settles its state; nothing is left to send
                self._ws.receive_eof()
        for handle in (self._keepalive, self._peer_close_deadline):
            if handle is not None:
                handle.cancel()
        self._is_lost = True
        self._settle_login(exc or ConnectionResetError())
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if self._keepalive is not None:  # it was open: the link has ended
            self._finish()

    # -- while open ---------------------------------------------------------------

    def _decode(self, raw: str | bytes) -> dict[str, Any] | None:
        try:
            return decode(raw)
        except MalformedInput as exc:
            self.malformed_frames += 1
            log.warning("wire link: malformed frame ignored (session %s, #%d): %s",
                        self.session_id, self.malformed_frames, exc.detail)
            return None

    def _keepalive_tick(self) -> None:
        """Ping every interval; silence for interval × misses since the last pong = dead link.

        Judged by time since the last pong, not by which ping it answered, so a link whose
        round trip is longer than the interval is slow, not dead, while pongs keep coming.
        """
        interval_s, misses_allowed = self._transport.keepalive_interval_s, self._transport.keepalive_misses
        loop = asyncio.get_running_loop()
        dead_after_s = interval_s * misses_allowed
        silent_s = loop.time() - self._last_pong_at
        if silent_s >= dead_after_s:
            log.info("wire link: keepalives unanswered, no pong for %.2f s (%d intervals), closing (session %s)",
                     silent_s, misses_allowed, self.session_id)
            # A dead link cannot finish a handshake: give it one interval, then abort.
            self._begin_shutdown("keepalive", grace_s=min(interval_s, self._transport.close_timeout_s))
            return
        self._ping_seq += 1
        try:
            assert self._ws is not None
            if self._ws.state is State.OPEN:
                self._ws.send_text(encode_bytes("ping", seq=self._ping_seq))
                self._flush()
        except Exception as err:  # noqa: BLE001 - an unwatched link would stay up for good
            log.warning("wire link: keepalive send failed (%s), closing (session %s)",
                        type(err).__name__, self.session_id)
            self._begin_shutdown("keepalive", grace_s=min(interval_s, self._transport.close_timeout_s))
            return
        # wake at the next ping or exactly when the silence would reach the deadline
        wait_s = max(0.01, min(interval_s, self._last_pong_at + dead_after_s - loop.time()))
        self._keepalive = loop.call_later(wait_s, self._keepalive_tick)

    def _finish(self) -> None:
        """Resolve `wait_closed()` once the socket is gone, from whoever saw it first."""
        assert self._ws is not None
        if self._closed is not None:
            return
        if self._closed_by == "keepalive":
            closed = LinkClosed(code=KEEPALIVE_TIMEOUT, reason="keepalives unanswered")
        elif self._closed_by == "local":
            closed = LinkClosed(code=None, reason="closed by the service")
        else:
            rcvd = self._ws.close_rcvd
            ws_code = ABNORMAL_CLOSURE if rcvd is None else rcvd.code
            closed = LinkClosed(code=from_ws_close_code(ws_code), wait_s=parse_close_reason(rcvd and rcvd.reason),
                                reason=f"peer closed (websocket code {ws_code})")
        self._settle_closed(closed)
        log.debug("wire link closed: session %s code %s", self.session_id, closed.code)

    def _settle_closed(self, closed: LinkClosed) -> None:
        """The link has ended: say how, once, and wake every `wait_closed()`."""
        self._closed = closed
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            if not waiter.done():  # a waiter whose caller was cancelled is done already
                waiter.set_result(None)

    # -- close --------------------------------------------------------------------

    async def wait_closed(self) -> LinkClosed:
        if not self._started:
            raise RuntimeError("wait_closed() before open(): this link was never opened")
        if self._closed is None:  # a future of this caller's own: cancelling it ends no other wait
            waiter = asyncio.get_running_loop().create_future()
            self._closed_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._closed_waiters:
                    self._closed_waiters.remove(waiter)
                raise
        assert self._closed is not None
        return self._closed

    async def close(self) -> None:
        """Close the socket and wait (bounded) until it is really closed. Never raises."""
        self._close_requested = True
        if self._opening:
            if self._opener is not None and not self._cut_off and self._opener is not asyncio.current_task():
                self._cut_off = True
                self._opener.cancel()  # still connecting: cut it off
            elif self._socket is not None:
                self._socket.abort()  # upgrading or logging in: cut it off
            with contextlib.suppress(Exception):
                async with deadline(2 * self._transport.close_timeout_s + 1.0):
                    if self._open_settled is None:
                        self._open_settled = asyncio.get_running_loop().create_future()
                    await asyncio.shield(self._open_settled)
        if self._keepalive is None:
            return  # never opened, or the open failed (its socket is already closed)
        if self._is_lost and self._shutdown_task is None:
            return  # the TCP connection has ended (the peer closed it): nothing to send or wait for
        try:
            await asyncio.shield(self._begin_shutdown("local", grace_s=self._transport.close_timeout_s))
        except Exception as exc:  # noqa: BLE001 - close never raises
            log.warning("wire link close (session %s): %s", self.session_id, type(exc).__name__)

    def _begin_shutdown(self, by: str, grace_s: float) -> asyncio.Task[None]:
        """One shutdown per link; later callers wait for the same one."""
        if self._shutdown_task is None:
            if self._closed_by is None and self._started and self._closed is None:
                self._closed_by = by
            self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown(grace_s))
        return self._shutdown_task

    async def _shutdown(self, grace_s: float) -> None:
        """Closing handshake, then the peer's TCP close; whatever is left after `grace_s` is
        aborted. Returns once the socket is gone (bounded)."""
        assert self._ws is not None and self._socket is not None
        if self._keepalive is not None:
            self._keepalive.cancel()
        try:
            if self._ws.state is State.OPEN:
                self._ws.send_close(1000)
                self._flush()
        except Exception:  # noqa: BLE001 - no handshake to wait for: abort at once
            pass
        else:
            await self._until_lost(grace_s)
        self._socket.abort()
        await self._until_lost(self._transport.close_timeout_s)
        self._finish()

    async def _until_lost(self, timeout_s: float) -> None:
        """Wait, at most `timeout_s`, for the TCP connection to end (a future only if it has not)."""
        if self._is_lost:
            return
        if self._lost is None or self._lost.done():  # none yet, or cancelled with an earlier waiter
            self._lost = asyncio.get_running_loop().create_future()
        with contextlib.suppress(Exception):
            async with deadline(timeout_s):
                await self._lost

