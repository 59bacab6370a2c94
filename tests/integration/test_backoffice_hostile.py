"""The real back-office client against the stand-in's hostile modes, over real sockets.

Every hostile reply to each of the three calls is a `BackOfficeError` naming the call and
what was wrong (never another exception, never a wrong answer, never a hang past the
timeout), counted in the client's `errors`; valid replies of every size up to the limit
are read whole, around every buffer size; and the next call after the mode ends answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from service.ports import new_update
from service.backoffice import MAX_REPLY_BYTES, HttpBackOffice
from service.core import Status
from service.errors import BackOfficeError
from tests.fixtures.standins import Standins

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0
CALLS = ("validity", "validity_batch", "status_batch")


@pytest.fixture
async def client(standins_clean: Standins) -> AsyncIterator[HttpBackOffice]:
    standins_clean.backoffice.add_accounts(["s1", "s2"])
    async with HttpBackOffice(standins_clean.backoffice_url, standins_clean.backoffice_token,
                              timeout_s=TIMEOUT_S) as backoffice:
        yield backoffice


async def call(client: HttpBackOffice, which: str) -> object:
    if which == "validity":
        return await client.is_valid("s1")
    if which == "validity_batch":
        return await client.validities(["s1", "s2"])
    return await client.send_statuses([new_update("s1", Status.ACTIVE)])


def healthy_answer(which: str, answer: object) -> bool:
    if which == "validity":
        return answer is True
    if which == "validity_batch":
        return answer == {"s1": True, "s2": True}
    return isinstance(answer, set) and len(answer) == 1


HOSTILE = [  # mode, knobs, what the error must say
    ("deep_nesting", {}, "nested too deeply"),
    ("deep_nesting", {"depth": 400_000}, "nested too deeply"),  # 800 KB, under the limit
    ("huge_number", {}, "not JSON"),
    ("huge_number", {"digits": 200_000}, "not JSON"),
    ("truncated", {}, "ClientPayloadError|not JSON"),
    ("oversize", {}, f"more than {MAX_REPLY_BYTES} bytes"),
    ("oversize", {"size_bytes": 20 * MAX_REPLY_BYTES}, f"more than {MAX_REPLY_BYTES} bytes"),
    ("padded", {"size_bytes": MAX_REPLY_BYTES + 1}, f"announces {MAX_REPLY_BYTES + 1} bytes"),
    ("never_ends", {}, f"no reply within {TIMEOUT_S:g} s"),
    ("trickle", {"delay_s": 0.2}, f"no reply within {TIMEOUT_S:g} s"),
    ("garbage", {}, "not JSON"),
    ("error500", {}, "HTTP 500"),
]


@pytest.mark.parametrize("which", CALLS)
@pytest.mark.parametrize("mode, knobs, why", HOSTILE, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(HOSTILE)])
async def test_each_hostile_reply_is_a_clear_counted_error_then_recovers(
        standins_clean: Standins, client: HttpBackOffice, which: str, mode: str, knobs: dict, why: str) -> None:
    standins_clean.backoffice.set_mode(mode, endpoints=[which], **knobs)
    errors_before = client.errors
    started = time.monotonic()
    with pytest.raises(BackOfficeError, match=why):
        await call(client, which)
    # bounded by the client's timeout, plus generous room for a busy machine
    assert time.monotonic() - started < TIMEOUT_S + 5.0
    assert client.errors == errors_before + 1
    others = [c for c in CALLS if c != which]
    for other in others:  # the mode is per endpoint: the other calls are unharmed
        assert healthy_answer(other, await call(client, other))
    standins_clean.backoffice.set_mode("ok")
    assert healthy_answer(which, await call(client, which))


@pytest.mark.parametrize("which", CALLS)
async def test_every_wrong_type_is_a_clear_error(standins_clean: Standins, client: HttpBackOffice,
                                                 which: str) -> None:
    answer = standins_clean.backoffice.set_mode("wrong_types", endpoints=[which])
    assert answer["mode"] == "wrong_types"
    kinds = 11  # the stand-in's list of wrong replies per call, one per reply in turn
    for _ in range(kinds):
        with pytest.raises(BackOfficeError):
            await call(client, which)
    assert standins_clean.backoffice.updates()["hostile_replies"] == kinds
    standins_clean.backoffice.set_mode("ok")
    assert healthy_answer(which, await call(client, which))


def sizes_around_every_buffer() -> list[int]:
    """2^k - 1, 2^k, 2^k + 1 for every k up to the limit, and the limit - 1, limit."""
    sizes = {size for k in range(6, 21) for size in (2 ** k - 1, 2 ** k, 2 ** k + 1)}
    sizes |= {MAX_REPLY_BYTES - 1, MAX_REPLY_BYTES, 200_000}
    return sorted(s for s in sizes if s <= MAX_REPLY_BYTES)


@pytest.mark.parametrize("which", CALLS)
async def test_valid_replies_of_every_size_up_to_the_limit_are_read_whole(
        standins_clean: Standins, client: HttpBackOffice, which: str) -> None:
    for mode in ("padded", "oversize"):  # with Content-Length, then chunked with none
        for size in sizes_around_every_buffer():
            standins_clean.backoffice.set_mode(mode, size_bytes=size, endpoints=[which])
            assert healthy_answer(which, await call(client, which)), f"{mode} reply of {size} bytes"
    for mode in ("padded", "oversize"):
        standins_clean.backoffice.set_mode(mode, size_bytes=MAX_REPLY_BYTES + 1, endpoints=[which])
        with pytest.raises(BackOfficeError, match=str(MAX_REPLY_BYTES)):
            await call(client, which)


async def test_a_slow_trickle_within_the_timeout_is_read_whole(standins_clean: Standins,
                                                               client: HttpBackOffice) -> None:
    standins_clean.backoffice.set_mode("trickle", delay_s=0.002, chunk_bytes=7, endpoints=["validity_batch"])
    assert await client.validities(["s1", "s2"]) == {"s1": True, "s2": True}


async def test_hostile_mode_knobs_are_checked(standins_clean: Standins) -> None:
    from chaos.standins.admin import AdminError
    for knobs in ({"depth": 0}, {"digits": "many"}, {"size_bytes": -1}, {"endpoints": ["nope"]},
                  {"endpoints": []}, {"chunk_bytes": True}):
        with pytest.raises(AdminError) as caught:
            standins_clean.backoffice.set_mode("deep_nesting", **knobs)
        assert caught.value.status == 400
        assert next(iter(knobs)) in caught.value.detail


async def test_never_ending_reply_releases_the_stand_in_when_the_client_leaves(
        standins_clean: Standins, client: HttpBackOffice) -> None:
    standins_clean.backoffice.set_mode("never_ends", endpoints=["validity"])
    for _ in range(3):
        with pytest.raises(BackOfficeError, match="no reply within"):
            await call(client, "validity")
    standins_clean.backoffice.set_mode("ok")
    # the held handlers saw their clients go: the stand-in still answers at once
    assert await asyncio.wait_for(client.is_valid("s1"), TIMEOUT_S) is True
