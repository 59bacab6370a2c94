"""asyncio's side of one `wire` link (`wire_link.WireLink`): the `Protocol` whose callbacks
start the link's WebSocket once the TCP connection is up (websockets' Sans-I/O
`ClientProtocol`, its per-frame debug log kept quiet, the upgrade request sent) and hand
the socket's reads and its end to the link, after the transport's due work; and the
`LinkFailed` reason of a connect error.

Holds nothing but the link, whose socket and WebSocket it sets once connected; decides
nothing about it (the link judges what arrives, and when it is open or closed). Must not
log credentials or frame contents (the hello carries them: websockets' DEBUG lines never
go out), nor add work per frame: it is a storm's hot path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus
from websockets.protocol import State

from service.core import FailReason
from service.errors import LinkFailed
from service.transports import wire_handshake
from service.transports.wire_protocol import MAX_FRAME_BYTES

if TYPE_CHECKING:
    from service.transports.wire_link import WireLink

log = logging.getLogger("service.transports.wire")


class _QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs each frame at DEBUG, hello credentials included: never let it."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        return None


_WS_LOGGER = _QuietLogger(logging.getLogger(__name__ + ".websockets"), {})


class LinkProtocol(asyncio.Protocol):
    """asyncio's side of one link: hands its socket's callbacks to the link, after the
    transport's `due_work` is handed on (the runtime's due reconnect timers)."""

    def __init__(self, link: WireLink) -> None:
        self.link = link
        self.run_due_now = link._transport.due_work.run_due_now

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """The TCP connection is up: the link's WebSocket starts, its upgrade request sent."""
        link = self.link
        link._socket = transport
        uri = link._transport.uri_for(link.session_id)
        link._ws = ClientProtocol(uri, max_size=4 * MAX_FRAME_BYTES, logger=_WS_LOGGER, state=State.OPEN)
        link._answer = wire_handshake.UpgradeAnswer(link._ws.key)
        transport.write(wire_handshake.request(uri, link._ws.key))
        if link._close_requested:
            transport.abort()

    def data_received(self, data: bytes) -> None:
        self.run_due_now()
        try:
            self.link._received(data)
        except Exception as err:  # noqa: BLE001 - a bug here must end this link, not the loop's pass
            log.warning("wire link: reading failed (%s), closing (session %s)", type(err).__name__,
                        self.link.session_id)
            if self.link._socket is not None:
                self.link._socket.abort()

    def eof_received(self) -> bool | None:
        return None  # the peer ended its side: close ours too (connection_lost follows)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run_due_now()
        self.link._ended(exc)


def link_failed(exc: BaseException) -> LinkFailed:
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
