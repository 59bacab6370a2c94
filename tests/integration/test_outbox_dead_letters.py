"""One bad outbox entry never stalls the others (B6 with hostile entries), against a real
redis-server and a real Redis Cluster (`any_redis`), and the real back-office stand-in.

Entries that decode but break the back office's rules (empty ids, a negative seq, a
non-finite time) are dead-lettered before sending; an entry the back office refuses for
its own reasons (a 400 for the whole batch) is found by splitting the batch and
dead-lettered alone; the rest is delivered in order. A refusal that is not the entry's
fault (a wrong token) dead-letters nothing.
"""

from __future__ import annotations

import math

import pytest
import redis.asyncio as aioredis

from service.keys import KeyLayout
from service.backoffice import HttpBackOffice
from service.core import Status
from service.errors import BackOfficeError
from service.ports import Secret, StatusUpdate, new_update
from tests.fixtures.standins import Standins
from tests.fixtures.redis_cluster import RedisUnderTest
from tests.integration.test_outbox import append, http_backoffice, make_outbox

pytestmark = pytest.mark.integration


@pytest.fixture
def aredis(any_redis: RedisUnderTest) -> aioredis.Redis:  # this module's tests: single server and cluster
    return any_redis.client

BAD_FIELDS = [  # each decodes; the back office refuses each with 400
    {"session_id": ""},
    {"seq": "-1"},
    {"update_id": ""},
    {"seq": "-99999999999999999999"},
    {"at_s": "nan"},
    {"at_s": "inf"},
    {"at_s": "-inf"},
]


def planted(number: int, **bad: str) -> dict[str, str]:
    fields = {"update_id": f"planted-{number}", "session_id": "s-planted", "status": "active",
              "priority": "normal", "seq": str(number), "at_s": "1700000000.0"}
    return {**fields, **bad}


async def dead_entries(aredis: aioredis.Redis, layout: KeyLayout) -> list[dict[str, str]]:
    """Every shard's dead letters (one stream in the single layout)."""
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for shard in layout.outbox_shards() for _, fields in await aredis.xrange(layout.dead_key(shard))]


def assert_in_append_order(received: list[dict], appended: list[StatusUpdate], layout: KeyLayout) -> None:
    """One stream: delivered in append order. A stream per shard (cluster): each session's updates
    in append order (the guarantee; shards appended in the same millisecond may interleave)."""
    got = [(r["session_id"], r["update_id"]) for r in received]
    want = [(u.session_id, u.update_id) for u in appended]
    if not layout.is_sharded:
        assert got == want, "in append order"
        return
    assert sorted(got) == sorted(want)
    for session in {s for s, _ in want}:
        assert [u for s, u in got if s == session] == [u for s, u in want if s == session], "in append order"


@pytest.mark.parametrize("bad", BAD_FIELDS, ids=[f"{k}={v!r}" for d in BAD_FIELDS for k, v in d.items()])
async def test_an_entry_the_back_office_would_refuse_is_dead_lettered_and_the_rest_delivered(
        aredis: aioredis.Redis, layout: KeyLayout, standins_clean: Standins, bad: dict[str, str]) -> None:
    async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
        outbox = make_outbox(aredis, backoffice)
        first = await append(aredis, new_update("s1", Status.CONNECTING))
        await aredis.xadd(layout.outbox_of("s-planted"), planted(1, **bad))
        later = [await append(aredis, new_update(f"s{i % 3}", Status.ACTIVE)) for i in range(5)]
        await outbox.drain()
    assert_in_append_order(standins_clean.backoffice.updates()["updates"], [first, *later], layout)
    assert await outbox.depth() == 0
    dead = await dead_entries(aredis, layout)
    assert len(dead) == 1 and dead[0]["reason"] == "refused" and "before sending" in dead[0]["detail"]
    field, value = next(iter(bad.items()))
    assert dead[0][field] == value or (field == "at_s" and math.isnan(float(dead[0][field])) == (value == "nan"))
    assert outbox.stats()["refused"] == 1 and outbox.retries == 0


@pytest.mark.parametrize("position", [0, 7, 19])
async def test_an_entry_refused_by_the_back_office_is_found_by_splitting(
        aredis: aioredis.Redis, layout: KeyLayout, standins_clean: Standins, position: int) -> None:
    standins_clean.backoffice.refuse_sessions(["s-refused"])
    async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
        outbox = make_outbox(aredis, backoffice, batch_size=20)
        appended = []
        for i in range(20):
            sid = "s-refused" if i == position else f"s{i % 4}"
            appended.append(await append(aredis, new_update(sid, Status.ACTIVE)))
        requests_before = backoffice.requests
        await outbox.drain()
        requests = backoffice.requests - requests_before
    good = [u for u in appended if u.session_id != "s-refused"]
    assert_in_append_order(standins_clean.backoffice.updates()["updates"], good, layout)
    assert await outbox.depth() == 0
    dead = await dead_entries(aredis, layout)
    assert [d["session_id"] for d in dead] == ["s-refused"]
    assert "is refused" in dead[0]["detail"] and "HTTP 400" in dead[0]["detail"]
    assert requests <= 2 * math.ceil(math.log2(20)) + 1, f"{requests} requests to isolate one entry in 20"


async def test_several_refused_entries_of_one_session_do_not_block_its_others(
        aredis: aioredis.Redis, layout: KeyLayout, standins_clean: Standins) -> None:
    standins_clean.backoffice.refuse_sessions(["a"])
    async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
        outbox = make_outbox(aredis, backoffice, batch_size=8)
        for i in range(12):
            await append(aredis, new_update("a" if i % 3 == 0 else "b", Status.ACTIVE))
        await outbox.drain()
    assert len(standins_clean.backoffice.updates()["updates"]) == 8
    assert [d["session_id"] for d in await dead_entries(aredis, layout)] == ["a"] * 4
    assert await outbox.depth() == 0


async def test_a_wrong_token_dead_letters_nothing(aredis: aioredis.Redis, layout: KeyLayout,
                                                  standins_clean: Standins) -> None:
    async with HttpBackOffice(standins_clean.backoffice_url, Secret("wrong-token"), timeout_s=1.0) as backoffice:
        outbox = make_outbox(aredis, backoffice)
        for i in range(3):
            await append(aredis, new_update(f"s{i}", Status.ACTIVE))
        with pytest.raises(BackOfficeError, match="HTTP 401"):
            await outbox.drain()
    assert await outbox.depth() == 3, "a 401 is not the entries' fault: all kept"
    assert await dead_entries(aredis, layout) == []


async def test_the_flusher_delivers_past_a_refused_entry_without_retrying(
        aredis: aioredis.Redis, layout: KeyLayout, standins_clean: Standins) -> None:
    """The running flusher (as in the service): the bad entry costs no retry, no stall."""
    async with http_backoffice(standins_clean.backoffice_url, standins_clean) as backoffice:
        outbox = make_outbox(aredis, backoffice)
        await aredis.xadd(layout.outbox_of("s-planted"), planted(-1))
        ok = await append(aredis, new_update("s1", Status.ACTIVE))
        outbox.start()
        try:
            from tests.fixtures.standins import eventually
            await eventually(lambda: any(r["update_id"] == ok.update_id
                                         for r in standins_clean.backoffice.updates()["updates"]), 5,
                             "the good update delivered")
        finally:
            await outbox.stop()
    assert outbox.retries == 0
    assert outbox.stats()["refused"] == 1
