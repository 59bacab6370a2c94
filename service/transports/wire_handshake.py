"""The `wire` link's opening handshake (RFC 6455 §4.1, client side): the upgrade request's bytes,
and the server's answer read and judged — the checks and the verdicts of websockets'
`ClientProtocol` (`tests/unit/test_wire_handshake.py` holds the two to the same `LinkFailed` for
each answer of a hostile set), without its HTTP machinery.

Why not the library's own handshake: its request is built as a header object and its answer read
by a generator per line, validated into another; at a storm's 2,000 attempts a second that was
half of the link's CPU per attempt. The link's `ClientProtocol` starts OPEN once this module has
judged the answer, and does every frame from there (masking, UTF-8 and size checks, closing).

Owns: the request's text, the answer's limits (websockets': 128 header lines of at most 8,192
bytes each) and its verdict — given on the answer's head: a refusal's body is not waited for. Must not: do I/O, or name the credentials (the hello carries them,
not the upgrade).
"""

from __future__ import annotations

import functools
import re

from websockets.exceptions import InvalidHeaderFormat
from websockets.headers import build_authorization_basic, build_host, parse_connection, parse_upgrade
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS
from websockets.uri import WebSocketURI
from websockets.utils import accept_key

from service.errors import LinkFailed

# RFC 9110: a header line is a token, a colon and field content (obs-text allowed); the whole
# block is checked by one match, each line's CRLF included
_HEADER_LINES = re.compile(rb"(?:[-!#$%&\'*+.^_`|~0-9a-zA-Z]+:[\x09\x20-\x7e\x80-\xff]*\r\n)*")
_STATUS = re.compile(rb"HTTP/1\.1 ([0-9]{3}) ([\x09\x20-\x7e\x80-\xff]*)")
_HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = (MAX_NUM_HEADERS + 1) * (MAX_LINE_LENGTH + 2) + 2


def request(uri: WebSocketURI, key: str) -> bytes:
    """The upgrade request for `uri` with `Sec-WebSocket-Key: key` (no extensions, no subprotocols)."""
    return (f"GET {uri.resource_name} HTTP/1.1\r\n{_host_lines(uri.host, uri.port, uri.secure, uri.user_info)}"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode("ascii")


@functools.lru_cache(maxsize=64)
def _host_lines(host: str, port: int, secure: bool, user_info: tuple[str, str] | None) -> str:
    """Host (and Authorization) of a transport's every request, made once (`build_host` parses the address)."""
    authorization = f"Authorization: {build_authorization_basic(*user_info)}\r\n" if user_info else ""
    return f"Host: {build_host(host, port, secure)}\r\n{authorization}"


class UpgradeAnswer:
    """The server's answer to one upgrade request, fed as its bytes arrive: `feed(data)` returns
    None until the answer's head is whole, then the bytes after it (the first frames); raises
    `LinkFailed` when it is not a valid upgrade: `reset` for what is not HTTP (or too big),
    `handshake_rejected` with the status of any but 101, `handshake_failed` for a 101 whose
    headers do not complete the upgrade."""

    def __init__(self, key: str) -> None:
        self._key = key
        self._buffer = b""

    def feed(self, data: bytes) -> bytes | None:
        buffer = self._buffer + data if self._buffer else data
        end = buffer.find(_HEAD_END)
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES or _line_too_long(buffer, buffer.rfind(b"\n") + 1):
                raise LinkFailed("reset")
            self._buffer = buffer
            return None
        self._buffer = b""
        _judge(_read_head(buffer[:end]), self._key)
        return buffer[end + len(_HEAD_END):]


def _line_too_long(buffer: bytes, start: int) -> bool:
    return len(buffer) - start > MAX_LINE_LENGTH


def _read_head(head: bytes) -> tuple[int, dict[str, list[str]]]:
    """(status, header values by lower-case name), or `LinkFailed("reset")` for what is not HTTP/1.1."""
    status_line, _, block = head.partition(b"\r\n")
    lines = block.split(b"\r\n") if block else []
    status = _STATUS.fullmatch(status_line)
    if (status is None or not 100 <= int(status.group(1)) < 600 or len(lines) > MAX_NUM_HEADERS
            or not _HEADER_LINES.fullmatch(block + b"\r\n" if block else b"")
            or (len(head) > MAX_LINE_LENGTH - 2 and any(len(line) > MAX_LINE_LENGTH - 2 for line in (status_line, *lines)))):
        raise LinkFailed("reset")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers.setdefault(name.decode("ascii").lower(), []).append(value.strip(b" \t").decode("iso-8859-1"))
    return int(status.group(1)), headers


def _judge(answer: tuple[int, dict[str, list[str]]], key: str) -> None:
    """websockets' `ClientProtocol.process_response`, for a client that offers no extension or subprotocol."""
    code, headers = answer
    if code != 101:
        raise LinkFailed("handshake_rejected", code)
    try:
        if not _only(headers.get("connection", []), "upgrade", parse_connection, any_of=True):
            raise LinkFailed("handshake_failed")
        if not _only(headers.get("upgrade", []), "websocket", parse_upgrade, any_of=False):
            raise LinkFailed("handshake_failed")
    except InvalidHeaderFormat:
        raise LinkFailed("handshake_failed") from None
    if headers.get("sec-websocket-accept") != [accept_key(key)]:
        raise LinkFailed("handshake_failed")
    if "sec-websocket-extensions" in headers or "sec-websocket-protocol" in headers:
        raise LinkFailed("handshake_failed")  # none offered: any accepted is a broken server


def _only(values: list[str], token: str, parse: object, *, any_of: bool) -> bool:
    """`token` among (any_of) or alone in (not any_of) the header's comma-separated options."""
    if len(values) == 1 and values[0].lower() == token:  # the usual answer, without parsing
        return True
    options = [option.lower() for value in values for option in parse(value)]  # type: ignore[operator]
    return token in options if any_of else options == [token]
