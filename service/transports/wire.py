"""The `wire` transport: the service's client for the WhatsApp stand-in server.

Owns one WebSocket per link, the hello/open login, the keepalive (JSON `ping`/`pong`
frames per `wire_protocol`) and mapping every way a link fails or ends onto
`LinkFailed` / `LinkClosed`. Must not decide about reconnects (the core does), and must
never log credentials or frame contents.

Why the `websockets` library rather than aiohttp's client: it is a protocol-only
client with no session/connection-pool object to manage (aiohttp's pool caps at 100
connections unless told otherwise, a trap at 10,000 sessions); its `close()` runs the
closing handshake and then waits for the TCP connection to end, bounded by
`close_timeout`, which is exactly the "old socket really closed before the new one
opens" guarantee R7 needs; and cancelling its handshake aborts the transport, so a
connect timeout really cuts the attempt off. Its own keepalive (WebSocket pings),
compression, HTTP-proxy discovery and frame-level debug logging are all switched off:
keepalives are our JSON frames, and debug logs would print the hello's credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.parse
import weakref
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage, InvalidStatus

from service.core import CloseReason, FailReason
from service.errors import ConfigError, LinkFailed, MalformedInput
from service.ports import LinkClosed, Secret
from service.transports.wire_protocol import (MAX_FRAME_BYTES, WS_PATH_PREFIX, decode, encode,
                                              from_ws_close_code)

log = logging.getLogger(__name__)

KEEPALIVE_TIMEOUT = CloseReason.KEEPALIVE_TIMEOUT
DEFAULT_CLOSE_TIMEOUT_S = 2.0


def ban_close_reason(reconnect_after_s: float) -> str:
    """The close reason that carries a temporary ban's wait (see `wire_protocol`)."""
    return json.dumps({"reconnect_after_s": float(reconnect_after_s)}, separators=(",", ":"))


def parse_close_reason(reason: str | None) -> float | None:
    """`reconnect_after_s` from a close reason, or None when it carries none."""
    if not reason or not reason.startswith("{"):
        return None
    try:
        value = json.loads(reason).get("reconnect_after_s")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return float(value)


class _QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs each frame at DEBUG, hello credentials included: never let it."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        return None


_WS_LOGGER = _QuietLogger(logging.getLogger(__name__ + ".websockets"), {})


def _hooked_connection(on_io: Callable[[], None]) -> type[ClientConnection]:
    """A `ClientConnection` that calls `on_io()` before each read and close callback."""

    class HookedConnection(ClientConnection):
        def data_received(self, data: bytes) -> None:
            on_io()
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            on_io()
            super().connection_lost(exc)

    return HookedConnection


class WireTransport:
    """Makes `WireLink`s to the stand-in at `url` (e.g. "ws://127.0.0.1:8765")."""

    def __init__(self, url: str, *, keepalive_interval_s: float, keepalive_misses: int,
                 close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
                 on_io: Callable[[], None] | None = None) -> None:
        """`on_io` is called first in every socket read and close callback of every link (the
        runtime hands due reconnect timers on there: in a storm the loop runs thousands of
        such callbacks back to back, and none of them is a session event). It must not raise."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("ws", "wss") or not parsed.hostname or parsed.path not in ("", "/"):
            raise ConfigError(f"wire url must be a base URL like ws://127.0.0.1:PORT (links add "
                              f"{WS_PATH_PREFIX}<session_id>), got {url!r}")
        if isinstance(keepalive_interval_s, bool) or not keepalive_interval_s > 0:
            raise ConfigError(f"keepalive_interval_s must be > 0 seconds, got {keepalive_interval_s!r}")
        if isinstance(keepalive_misses, bool) or not isinstance(keepalive_misses, int) or keepalive_misses < 1:
            raise ConfigError(f"keepalive_misses must be a whole number >= 1, got {keepalive_misses!r}")
        if not close_timeout_s > 0:
            raise ConfigError(f"close_timeout_s must be > 0 seconds, got {close_timeout_s!r}")
        self.url = url.rstrip("/")
        self.keepalive_interval_s = float(keepalive_interval_s)
        self.keepalive_misses = keepalive_misses
        self.close_timeout_s = float(close_timeout_s)
        self._links: weakref.WeakSet[WireLink] = weakref.WeakSet()
        self.connection_class = ClientConnection if on_io is None else _hooked_connection(on_io)

    def __repr__(self) -> str:
        return f"WireTransport({self.url!r}, keepalive={self.keepalive_interval_s}s x {self.keepalive_misses})"

    def new_link(self, session_id: str, credentials: Secret) -> WireLink:
        if not isinstance(session_id, str) or not session_id or "/" in session_id:
            raise ValueError(f"session_id must be a non-empty string without '/', got {session_id!r}")
        link = WireLink(self, session_id, Secret(credentials))
        self._links.add(link)
        return link

    async def aclose(self) -> None:
        """Close every link this transport made that is still open."""
        links = list(self._links)
        if links:
            await asyncio.gather(*(link.close() for link in links))


class WireLink:
    """One session's WebSocket to the stand-in. Single use: a reconnect makes a new link."""

    def __init__(self, transport: WireTransport, session_id: str, credentials: Secret) -> None:
        self.session_id = session_id
        self.malformed_frames = 0
        self.pongs_received = 0
        self._transport = transport
        self._credentials = credentials
        self._ws: ClientConnection | None = None
        self._started = False
        self._close_requested = False
        self._closed_by: str | None = None  # "keepalive" or "local", when we closed it
        self._result: asyncio.Future[LinkClosed] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._attempt: asyncio.Task[None] | None = None
        self._open_settled: asyncio.Future[None] | None = None
        self._last_pong_seq = 0
        self._last_pong_at = 0.0  # loop time of the last pong (or of the open)

    def __repr__(self) -> str:
        return f"WireLink(session_id={self.session_id!r}, open={self.is_open})"

    @property
    def is_open(self) -> bool:
        return self._ws is not None and self._result is not None and not self._result.done()

    @property
    def url(self) -> str:
        return self._transport.url + WS_PATH_PREFIX + urllib.parse.quote(self.session_id, safe="")

    # -- open ---------------------------------------------------------------------

    async def open(self, timeout_s: float) -> None:
        if self._started or self._close_requested:
            raise LinkFailed("already_used" if self._started else "closed")
        self._started = True
        loop = asyncio.get_running_loop()
        self._result = loop.create_future()
        self._open_settled = loop.create_future()
        # The attempt runs as its own task so that close() can cut it off mid-open.
        self._attempt = asyncio.create_task(self._connect_and_login())
        self._attempt.add_done_callback(_retrieve_outcome)
        try:
            failure = await self._await_attempt(self._attempt, timeout_s)
            if failure is None and self._close_requested:  # close() raced the last step
                failure = LinkFailed("closed")
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._transport.close_timeout_s):
                        await self._ws.close()  # type: ignore[union-attr]
            if failure is not None:
                await self._abort_attempt(failure)
                raise failure
            self._reader = asyncio.create_task(self._read_loop())
            self._keepalive = asyncio.create_task(self._keepalive_loop())
        finally:
            self._open_settled.set_result(None)
        log.debug("wire link open: session %s", self.session_id)

    async def _await_attempt(self, attempt: asyncio.Task[None], timeout_s: float) -> LinkFailed | None:
        try:
            done, _ = await asyncio.wait({attempt}, timeout=timeout_s)
        except asyncio.CancelledError:  # our caller was cancelled: take the attempt down too
            attempt.cancel()
            await self._abort_attempt(LinkFailed("cancelled"))
            raise
        if not done:
            attempt.cancel()
            await asyncio.wait({attempt}, timeout=self._transport.close_timeout_s)
            return LinkFailed(FailReason.CONNECT_TIMEOUT)
        if attempt.cancelled():
            return LinkFailed("closed")  # close() cut it off
        exc = attempt.exception()
        if exc is None:
            return None
        return exc if isinstance(exc, LinkFailed) else _link_failed(exc)

    async def _connect_and_login(self) -> None:
        try:
            self._ws = await connect(
                self.url, open_timeout=None, ping_interval=None, ping_timeout=None,
                close_timeout=self._transport.close_timeout_s, compression=None, proxy=None,
                max_size=4 * MAX_FRAME_BYTES, logger=_WS_LOGGER, user_agent_header=None,
                create_connection=self._transport.connection_class,
            )
            await self._ws.send(encode("hello", session_id=self.session_id,
                                       credentials=self._credentials.reveal()))
            while True:
                frame = self._decode(await self._ws.recv())
                if frame is not None and frame["type"] == "open":
                    return
        except ConnectionClosed as exc:
            if exc.rcvd is None:  # the connection dropped without a close frame
                raise LinkFailed("reset") from None
            code, wait_s = _close_info(exc)
            raise LinkFailed("rejected", code, wait_s) from None
        except (InvalidHandshake, OSError, EOFError) as exc:
            raise _link_failed(exc) from None

    async def _abort_attempt(self, failure: LinkFailed) -> None:
        """Cut a failed attempt off: abort (no handshake on a stalled network), wait bounded."""
        if self._ws is not None:
            self._ws.transport.abort()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._transport.close_timeout_s):
                    await self._ws.wait_closed()
        assert self._result is not None
        if not self._result.done():
            self._result.set_result(LinkClosed(code=failure.code, wait_s=failure.wait_s,
                                               reason=f"open failed: {failure.reason}"))
        log.info("wire link failed to open: session %s: %s (code %s)", self.session_id, failure.reason, failure.code)

    # -- while open ---------------------------------------------------------------

    def _decode(self, raw: str | bytes) -> dict[str, Any] | None:
        try:
            return decode(raw)
        except MalformedInput as exc:
            self.malformed_frames += 1
            log.warning("wire link: malformed frame ignored (session %s, #%d): %s",
                        self.session_id, self.malformed_frames, exc.detail)
            return None

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                frame = self._decode(raw)
                if frame is not None and frame["type"] == "pong":
                    self.pongs_received += 1
                    seq = frame.get("seq")
                    if isinstance(seq, int) and not isinstance(seq, bool):
                        self._last_pong_seq = max(self._last_pong_seq, seq)
                    self._last_pong_at = asyncio.get_running_loop().time()
        except ConnectionClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - never let a reader kill anything else
            log.warning("wire link reader stopped (session %s): %s", self.session_id, type(exc).__name__)
        self._finish()
        if self._keepalive is not None:
            self._keepalive.cancel()

    async def _keepalive_loop(self) -> None:
        """Ping every interval; silence for interval × misses since the last pong = dead link.

        Judged by time since the last pong, not by which ping it answered, so a link whose
        round trip is longer than the interval is slow, not dead, while pongs keep coming.
        """
        assert self._ws is not None
        interval_s, misses_allowed = self._transport.keepalive_interval_s, self._transport.keepalive_misses
        loop = asyncio.get_running_loop()
        dead_after_s = interval_s * misses_allowed
        self._last_pong_at = loop.time()
        seq = 0
        while True:
            silent_s = loop.time() - self._last_pong_at
            if silent_s >= dead_after_s:
                log.info("wire link: keepalives unanswered, no pong for %.2f s (%d intervals), closing (session %s)",
                         silent_s, misses_allowed, self.session_id)
                # A dead link cannot finish a handshake: give it one interval, then abort.
                self._begin_shutdown("keepalive", grace_s=min(interval_s, self._transport.close_timeout_s))
                return
            seq += 1
            try:
                async with asyncio.timeout(interval_s):
                    await self._ws.send(encode("ping", seq=seq))
            except TimeoutError:
                pass  # a stalled send is silence too, judged by the clock at the next tick
            except ConnectionClosed:
                return  # the reader sees the close and finishes the link
            except Exception as err:  # noqa: BLE001 - a dead task would leave the link unwatched for good
                log.warning("wire link: keepalive send failed (%s), closing (session %s)",
                            type(err).__name__, self.session_id)
                self._begin_shutdown("keepalive", grace_s=min(interval_s, self._transport.close_timeout_s))
                return
            # wake at the next ping or exactly when the silence would reach the deadline
            await asyncio.sleep(max(0.01, min(interval_s, self._last_pong_at + dead_after_s - loop.time())))

    def _finish(self) -> None:
        """Resolve `wait_closed()` once the socket is gone, from whoever saw it first."""
        assert self._ws is not None and self._result is not None
        if self._result.done():
            return
        if self._closed_by == "keepalive":
            closed = LinkClosed(code=KEEPALIVE_TIMEOUT, reason="keepalives unanswered")
        elif self._closed_by == "local":
            closed = LinkClosed(code=None, reason="closed by the service")
        else:
            rcvd = self._ws.close_code
            closed = LinkClosed(code=from_ws_close_code(rcvd), wait_s=parse_close_reason(self._ws.close_reason),
                                reason=f"peer closed (websocket code {rcvd})")
        self._result.set_result(closed)
        log.debug("wire link closed: session %s code %s", self.session_id, closed.code)

    # -- close --------------------------------------------------------------------

    async def wait_closed(self) -> LinkClosed:
        if self._result is None:
            raise RuntimeError("wait_closed() before open(): this link was never opened")
        return await asyncio.shield(self._result)

    async def close(self) -> None:
        """Close the socket and wait (bounded) until it is really closed. Never raises."""
        self._close_requested = True
        if self._attempt is not None and not self._attempt.done():
            self._attempt.cancel()  # an open in progress: cut it off, wait until it is settled
        if self._open_settled is not None and not self._open_settled.done():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2 * self._transport.close_timeout_s + 1.0):
                    await asyncio.shield(self._open_settled)
        if self._ws is None or self._reader is None:
            return  # never opened, or the open failed (its socket is already closed)
        try:
            await asyncio.shield(self._begin_shutdown("local", grace_s=self._transport.close_timeout_s))
        except Exception as exc:  # noqa: BLE001 - close never raises
            log.warning("wire link close (session %s): %s", self.session_id, type(exc).__name__)

    def _begin_shutdown(self, by: str, grace_s: float) -> asyncio.Task[None]:
        """One shutdown per link; later callers wait for the same one."""
        if self._shutdown_task is None:
            if self._closed_by is None and self._result is not None and not self._result.done():
                self._closed_by = by
            self._shutdown_task = asyncio.create_task(self._shutdown(grace_s))
        return self._shutdown_task

    async def _shutdown(self, grace_s: float) -> None:
        assert self._ws is not None and self._reader is not None
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        # Closing handshake, then the TCP close (websockets bounds each by close_timeout);
        # whatever is left after `grace_s` is aborted.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(grace_s):
                await self._ws.close()
        self._ws.transport.abort()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._transport.close_timeout_s):
                await asyncio.shield(self._reader)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._transport.close_timeout_s):
                await self._ws.wait_closed()
        self._finish()


def _retrieve_outcome(task: asyncio.Task[None]) -> None:
    """Mark an attempt's exception as seen (it may end after we stopped waiting for it)."""
    if not task.cancelled():
        task.exception()


def _close_info(exc: ConnectionClosed) -> tuple[int | None, float | None]:
    frame = exc.rcvd
    if frame is None:
        return None, None
    return from_ws_close_code(frame.code), parse_close_reason(frame.reason)


def _link_failed(exc: BaseException) -> LinkFailed:
    """Map a connect error to a `LinkFailed` reason (never with the credentials)."""
    if isinstance(exc, ConnectionRefusedError):
        return LinkFailed("refused")
    if isinstance(exc, TimeoutError):  # the kernel's connect timeout (ETIMEDOUT)
        return LinkFailed(FailReason.CONNECT_TIMEOUT)
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, EOFError, InvalidMessage)):
        return LinkFailed("reset")
    if isinstance(exc, InvalidStatus):
        return LinkFailed("handshake_rejected", exc.response.status_code)
    if isinstance(exc, InvalidHandshake):
        return LinkFailed("handshake_failed")
    if isinstance(exc, OSError):
        return LinkFailed("network_error")
    return LinkFailed("error")
