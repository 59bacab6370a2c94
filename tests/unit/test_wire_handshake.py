"""`service.transports.wire_handshake` judges a server's answer to the upgrade as websockets'
`ClientProtocol` does: for every answer of a hostile set (statuses, each required header missing,
wrong or doubled, offered extensions, what is not HTTP, every limit at and past its edge), whole
or in pieces, the same `LinkFailed` (reason and code) or the same success; and the request it
sends is the library's, byte for byte but the key."""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS
from websockets.uri import parse_uri
from websockets.utils import accept_key

from service.errors import LinkFailed
from service.transports import wire_handshake
from service.transports.wire_socket import link_failed

ACCEPT = "{accept}"  # replaced by the key's answer
UPGRADE = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
           f"Sec-WebSocket-Accept: {ACCEPT}\r\n")
SERVER = "Date: Sun, 29 Nov 2026 19:05:04 GMT\r\nServer: Python/3.11 aiohttp/3.14.5\r\n"


def without(header: str) -> str:
    return "".join(line + "\r\n" for line in UPGRADE.split("\r\n") if line and not line.startswith(header))


ANSWERS = {
    "aiohttp's": UPGRADE + SERVER + "\r\n",
    "frames right after": UPGRADE + "\r\n",  # + a frame, appended below
    "names in any case, values padded": ("HTTP/1.1 101 OK\r\nupgrade:\t WebSocket \r\nCONNECTION: Keep-Alive, Upgrade"
                                         f"\r\nsec-websocket-accept:{ACCEPT}\r\n\r\n"),
    "obs-text in a value": UPGRADE + "X-Note: caf\xe9\r\n\r\n",
    "empty reason": "HTTP/1.1 101 \r\n" + UPGRADE.split("\r\n", 1)[1] + "\r\n",
    "connection listed twice": UPGRADE + "Connection: keep-alive\r\n\r\n",
    "refused 503": "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    "not found, with a body": "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!",
    "200": "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "no Connection": without("Connection") + "\r\n",
    "Connection: close": without("Connection") + "Connection: close\r\n\r\n",
    "Connection of bad syntax": without("Connection") + "Connection: ,;,\r\n\r\n",
    "no Upgrade": without("Upgrade") + "\r\n",
    "Upgrade: h2c": without("Upgrade") + "Upgrade: h2c\r\n\r\n",
    "two upgrades": without("Upgrade") + "Upgrade: websocket, h2c\r\n\r\n",
    "Upgrade twice": UPGRADE + "Upgrade: websocket\r\n\r\n",
    "Upgrade of bad syntax": without("Upgrade") + "Upgrade: web socket\r\n\r\n",
    "no Accept": without("Sec-WebSocket-Accept") + "\r\n",
    "wrong Accept": without("Sec-WebSocket-Accept") + "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    "Accept twice": UPGRADE + f"Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n",
    "an extension": UPGRADE + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    "an empty extension header": UPGRADE + "Sec-WebSocket-Extensions: \r\n\r\n",
    "a subprotocol": UPGRADE + "Sec-WebSocket-Protocol: chat\r\n\r\n",
    "HTTP/1.0": "HTTP/1.0 101 Switching Protocols\r\n" + UPGRADE.split("\r\n", 1)[1] + "\r\n",
    "not HTTP": "hello there\r\n\r\n",
    "no reason": "HTTP/1.1 101\r\n" + UPGRADE.split("\r\n", 1)[1] + "\r\n",
    "status 99": "HTTP/1.1 099 Low\r\n\r\n",
    "status 600": "HTTP/1.1 600 High\r\n\r\n",
    "status of 4 digits": "HTTP/1.1 1010 X\r\n\r\n",
    "status not a number": "HTTP/1.1 1x1 X\r\n\r\n",
    "a control character in the reason": "HTTP/1.1 101 Swi\x01tching\r\n" + UPGRADE.split("\r\n", 1)[1] + "\r\n",
    "header line without a colon": UPGRADE + "NoColonHere\r\n\r\n",
    "header name with a space": UPGRADE + "Bad Name: x\r\n\r\n",
    "header name empty": UPGRADE + ": x\r\n\r\n",
    "control character in a value": UPGRADE + "X-Bad: a\x01b\r\n\r\n",
    "carriage return in a value": UPGRADE + "X-Bad: a\rb\r\n\r\n",
    "lone LF in a header line": UPGRADE + "X-Bad: a\nb\r\n\r\n",
    "lone LF ends the head": UPGRADE + "\n",
    "cut short": UPGRADE,
    "nothing": "",
    "128 headers": UPGRADE + "".join(f"X-H{i}: v\r\n" for i in range(MAX_NUM_HEADERS - 3)) + "\r\n",
    "129 headers": UPGRADE + "".join(f"X-H{i}: v\r\n" for i in range(MAX_NUM_HEADERS - 2)) + "\r\n",
    "a line at the limit": UPGRADE + "X-Long: " + "v" * (MAX_LINE_LENGTH - 10) + "\r\n\r\n",
    "a line past the limit": UPGRADE + "X-Long: " + "v" * (MAX_LINE_LENGTH - 9) + "\r\n\r\n",
    "an endless line": UPGRADE + "X-Long: " + "v" * (3 * MAX_LINE_LENGTH),
    "an endless head": UPGRADE + "X-Long: v\r\n" * (2 * MAX_NUM_HEADERS),
}
FRAME = b"\x88\x02\x11\x97"  # a close frame, code 4503, as the stand-in refuses a hello


def library_verdict(answer: bytes) -> tuple[str, int | None]:
    """What the link made of this answer with websockets' own handshake (then the connection ends)."""
    ws = ClientProtocol(parse_uri("ws://127.0.0.1:8765/ws/s1"))
    ws.send_request(ws.connect())
    ws.receive_data(answer.replace(ACCEPT.encode(), accept_key(ws.key).encode()))
    ws.receive_eof()
    if ws.handshake_exc is not None:
        failed = link_failed(ws.handshake_exc)
        return failed.reason, failed.code
    return "open", None


def our_verdict(answer: bytes, piece_bytes: int) -> tuple[str, int | None]:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    reader, rest = wire_handshake.UpgradeAnswer(key), None
    answer = answer.replace(ACCEPT.encode(), accept_key(key).encode())
    try:
        for start in range(0, len(answer), piece_bytes):
            rest = reader.feed(answer[start:start + piece_bytes])
            if rest is not None:
                break
    except LinkFailed as failed:
        return failed.reason, failed.code
    return ("open", None) if rest is not None else ("reset", None)  # the connection ended mid-answer: reset


@pytest.mark.parametrize("name", ANSWERS)
def test_every_answer_is_judged_as_the_library_judges_it(name: str) -> None:
    answer = ANSWERS[name].encode("iso-8859-1") + (FRAME if name == "frames right after" else b"")
    expected = library_verdict(answer)
    for piece_bytes in (len(answer) or 1, 1, 7, 1000):
        assert our_verdict(answer, piece_bytes) == expected, f"{name!r} in pieces of {piece_bytes}"


def test_the_set_holds_each_kind_of_verdict() -> None:
    verdicts = {library_verdict(ANSWERS[name].encode("iso-8859-1"))[0] for name in ANSWERS}
    assert verdicts == {"open", "reset", "handshake_rejected", "handshake_failed"}


def test_the_bytes_after_the_answer_are_handed_back_whole() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    answer = (UPGRADE + "\r\n").replace(ACCEPT, accept_key(key)).encode() + FRAME
    reader = wire_handshake.UpgradeAnswer(key)
    assert reader.feed(answer[:10]) is None
    assert reader.feed(answer[10:]) == FRAME


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8765/ws/s1", "ws://localhost/ws/a%2Fb", "wss://[::1]:9443/ws/x",
                                 "ws://user:pa%20ss@127.0.0.1:8765/ws/s1"])
def test_the_request_is_the_librarys(url: str) -> None:
    ws = ClientProtocol(parse_uri(url))
    ws.send_request(ws.connect())
    library = b"".join(ws.data_to_send())
    ours = wire_handshake.request(parse_uri(url), ws.key)
    assert ours.split(b"\r\n")[0] == library.split(b"\r\n")[0]
    assert sorted(ours.split(b"\r\n")) == sorted(line for line in library.split(b"\r\n")
                                                 if not line.startswith(b"User-Agent"))
