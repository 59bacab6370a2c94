"""The `wire` transport: the service's client for the WhatsApp stand-in server.

Owns one WebSocket per link, the hello/open login, the keepalive (JSON `ping`/`pong`
frames per `wire_protocol`) and mapping every way a link fails or ends onto
`LinkFailed` / `LinkClosed`. Must not decide about reconnects (the core does), and must
never log credentials or frame contents.

Why the `websockets` library's Sans-I/O `ClientProtocol` under a plain asyncio `Protocol`
(`wire_link`, `wire_socket`) rather than its asyncio client (or aiohttp's): the protocol
object does the RFC 6455 work on frames — framing and masking, UTF-8 and size checks, the
closing handshake, answering pings — and the link only moves bytes, so a link is
one socket callback object, a few futures and one keepalive timer (no reader or keepalive
task, no locks, no message assembler). The upgrade itself (request, answer, its checks) is
`wire_handshake`'s: the library's verdicts, without its HTTP parser (half of a refused
attempt's link CPU). Measured against its asyncio client, one open and
close costs about half the CPU with the GC on and a third less with it off
(`tests/bench/test_wire_link_bench.py`): fewer objects for the cyclic GC to walk. R7's "old
socket really closed before the new one opens": `close()` sends the close frame and returns
once the TCP connection has ended, the peer given `close_timeout_s` to end it, then aborted.
A connect timeout aborts the socket. Compression is never offered, and frames are never
logged (the hello carries credentials).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import weakref

from websockets.exceptions import InvalidURI
from websockets.uri import WebSocketURI, parse_uri

from service.due_work import NO_DUE_WORK, DueWork
from service.errors import ConfigError
from service.ports import Secret
from service.transports.wire_link import KEEPALIVE_TIMEOUT, WireLink
from service.transports.wire_protocol import WS_PATH_PREFIX, parse_close_reason

__all__ = ["DEFAULT_CLOSE_TIMEOUT_S", "KEEPALIVE_TIMEOUT", "WireLink", "WireTransport", "ban_close_reason",
           "parse_close_reason"]

DEFAULT_CLOSE_TIMEOUT_S = 2.0


def ban_close_reason(reconnect_after_s: float) -> str:
    """The close reason that carries a temporary ban's wait (see `wire_protocol`)."""
    return json.dumps({"reconnect_after_s": float(reconnect_after_s)}, separators=(",", ":"))


class WireTransport:
    """Makes `WireLink`s to the stand-in at `url` (e.g. "ws://127.0.0.1:8765")."""

    def __init__(self, url: str, *, keepalive_interval_s: float, keepalive_misses: int,
                 close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
                 due_work: DueWork = NO_DUE_WORK) -> None:
        """`due_work` (`service.due_work`) is handed on first in every socket read and close
        callback of every link: in a storm the loop runs thousands of such callbacks back to
        back, and none of them is a session event."""
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
        self.due_work = due_work
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "wss" else 80)
        self.ssl = parsed.scheme == "wss"
        try:
            self._base_uri = parse_uri(self.url + WS_PATH_PREFIX)  # parsed once, not per open
        except InvalidURI as err:
            raise ConfigError(f"wire url is not a usable WebSocket URL ({err})") from None

    def uri_for(self, session_id: str) -> WebSocketURI:
        """The WebSocket URI of `session_id`'s link: `parse_uri` of the link's URL, without parsing
        it again (the id percent-encoded once, also under a non-ASCII host)."""
        base = self._base_uri
        return WebSocketURI(base.secure, base.host, base.port, base.path + urllib.parse.quote(session_id, safe=""),
                            "", base.username, base.password)

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

