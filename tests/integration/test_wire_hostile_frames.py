"""Hostile wire frames, as a class: nesting depths, huge numbers, wrong types, truncated,
binary and oversize frames. Every bad frame is counted and the link kept — in the `wire`
client (frames from the stand-in), in the stand-in (frames from a client) and through the
whole service (the `malformed_input_total{source="wire"}` metric). Real sockets throughout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from service.ports import Secret
from service.transports.wire import WireLink, WireTransport
from service.transports.wire_protocol import MAX_DEPTH, MAX_FRAME_BYTES, WS_PATH_PREFIX, encode
from tests.fixtures.service import eventually_metric, metric_value, run_service, statuses
from tests.fixtures.standins import Standins, eventually

pytestmark = pytest.mark.integration

PONG = '{"type":"pong","seq":'
HOSTILE: dict[str, str | bytes] = {
    f"depth {MAX_DEPTH + 1} inside a pong": PONG + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",
    "depth 1,000 arrays": "[" * 1000 + "]" * 1000,
    "depth 10,000 objects": '{"a":' * 10_000 + "1" + "}" * 10_000,
    "depth 60,000 unclosed": "[" * 60_000,
    "5,000-digit number": PONG + "9" * 5000 + "}",
    "4,301-digit number": PONG + "1" * 4301 + "}",
    "NaN": PONG + "NaN}",
    "-Infinity": PONG + "-Infinity}",
    "array": "[1, 2]", "number": "5", "string": '"pong"', "null": "null", "true": "true",
    "type is a number": '{"type": 5}', "type is a list": '{"type": []}', "type is an object": '{"type": {}}',
    "no type": "{}", "unknown type": '{"type": "bogus"}',
    "truncated object": '{"type":"pong"', "truncated string": '{"type":"po', "empty": "",
    "oversize text": "x" * (MAX_FRAME_BYTES + 1),
    "oversize JSON": '{"type":"pong","pad":"' + "x" * (3 * MAX_FRAME_BYTES) + '"}',
    "binary, not UTF-8": b"\xff\xfe\x00\x80",
    "binary, oversize": b"{" * (MAX_FRAME_BYTES + 1),
}


def send_garbage(standins: Standins, session_id: str, frame: str | bytes) -> int:
    if isinstance(frame, bytes):
        return standins.whatsapp.garbage_bytes(session_id, frame)
    return standins.whatsapp.garbage(session_id, frame)


@pytest.fixture
async def link(standins_clean: Standins) -> AsyncIterator[WireLink]:
    transport = WireTransport(standins_clean.whatsapp_ws_url, keepalive_interval_s=0.2, keepalive_misses=25)
    opened = transport.new_link("s1", Secret("c"))
    await opened.open(5.0)
    try:
        yield opened
    finally:
        await transport.aclose()


async def test_wire_client_counts_every_hostile_frame_and_keeps_the_link(
        standins_clean: Standins, link: WireLink) -> None:
    for count, (name, frame) in enumerate(HOSTILE.items(), start=1):
        assert send_garbage(standins_clean, "s1", frame) == 1, name
        await eventually(lambda: link.malformed_frames >= count, 5, f"{name} counted")
        assert link.malformed_frames == count, name
        assert link.is_open, f"the link dropped on {name}"
        pongs = link.pongs_received
        await eventually(lambda: link.pongs_received > pongs, 5, f"keepalives answered after {name}")
    assert standins_clean.whatsapp.session("s1")["connects"] == 1
    assert standins_clean.whatsapp.session("s1")["live"] == 1


async def test_standin_counts_every_hostile_frame_from_a_client_and_keeps_the_link(
        standins_clean: Standins) -> None:
    before = standins_clean.whatsapp.stats()["malformed_frames"]
    url = standins_clean.whatsapp_ws_url + WS_PATH_PREFIX + "s2"
    async with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
        await ws.send(encode("hello", session_id="s2", credentials="c"))
        async with asyncio.timeout(5):
            assert json.loads(await ws.recv()) == {"type": "open"}
        sendable = {name: frame for name, frame in HOSTILE.items()
                    if len(frame) <= 4 * MAX_FRAME_BYTES}  # the stand-in's own frame limit
        for count, (name, frame) in enumerate(sendable.items(), start=1):
            await ws.send(frame)
            await ws.send(encode("ping", seq=count))
            async with asyncio.timeout(5):
                assert json.loads(await ws.recv()) == {"type": "pong", "seq": count}, f"no pong after {name}"
        stats = standins_clean.whatsapp.stats()
        assert stats["malformed_frames"] - before == len(sendable)
        assert standins_clean.whatsapp.session("s2")["live"] == 1


async def test_service_counts_hostile_frames_in_its_metric_and_no_session_drops(
        service_settings, standins_clean: Standins, redis_client) -> None:
    standins_clean.backoffice.add_accounts(["s0", "s1"])
    async with run_service(service_settings(sessions="s0,s1")) as service:
        await eventually(lambda: set(statuses(redis_client, ["s0", "s1"]).values()) == {"active"}, 5, "active")
        for frame in HOSTILE.values():
            assert send_garbage(standins_clean, "s0", frame) == 1
        await eventually_metric(service.server.port, lambda text: metric_value(
            text, "reconnect_lab_malformed_input_total", source="wire") >= len(HOSTILE), 10, "every frame counted")
        assert set(statuses(redis_client, ["s0", "s1"]).values()) == {"active"}
        assert standins_clean.whatsapp.session("s0")["connects"] == 1, "a hostile frame dropped the link"
