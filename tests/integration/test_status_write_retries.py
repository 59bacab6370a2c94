"""A status write whose reply was lost is retried with the same update: the retry must not
consume a new seq nor append a second outbox entry (else the back office sees a gap), and
a reconnect that finds no status in Redis (Redis lost its data) asks the back office."""

from __future__ import annotations


import pytest
import redis.asyncio as aioredis

from service.keys import KeyLayout
from service.backoffice import HttpBackOffice
from service.core import Priority, Status
from service.errors import StoreError
from service.ports import Secret, new_update
from service.store import RedisStatusStore, ValidityCache
from service.validity import ValidityChain
from tests.fixtures.process import free_port
from tests.fixtures.redis_cluster import RedisUnderTest
from tests.fixtures.standins import Standins

pytestmark = pytest.mark.integration


@pytest.fixture
def aredis(any_redis: RedisUnderTest) -> aioredis.Redis:  # this module's tests: single server and cluster
    return any_redis.client


async def test_retried_write_keeps_its_seq_and_appends_once(aredis: aioredis.Redis, layout: KeyLayout) -> None:
    store = RedisStatusStore(aredis)
    first = new_update("s1", Status.CONNECTING, Priority.NORMAL)
    second = new_update("s1", Status.ACTIVE, Priority.NORMAL)
    stored = await store.set_status("s1", Status.CONNECTING, outbox_update=first)
    again = await store.set_status("s1", Status.CONNECTING, outbox_update=first)  # the "lost reply" retry
    later = await store.set_status("s1", Status.ACTIVE, outbox_update=second)
    assert (stored.seq, again.seq, later.seq) == (1, 1, 2)
    entries = await aredis.xrange(layout.outbox_of("s1"))
    assert [fields[b"update_id"].decode() for _, fields in entries] == [first.update_id, second.update_id]


async def test_missing_status_during_a_reconnect_asks_the_back_office(
        aredis: aioredis.Redis, standins_clean: Standins) -> None:
    backoffice = HttpBackOffice(standins_clean.backoffice_url, standins_clean.backoffice_token, timeout_s=2.0)
    chain = ValidityChain(RedisStatusStore(aredis), backoffice, ValidityCache(0))
    standins_clean.backoffice.add_account("known")
    try:
        assert await chain.is_session_active("known", for_reconnect=True) is True
        assert await chain.is_session_active("unknown", for_reconnect=True) is False
        assert await chain.is_session_active("known", for_reconnect=False) is False  # R1: not `active`
    finally:
        await backoffice.aclose()
    assert chain.missing_status == 2


async def test_missing_status_and_no_back_office_is_not_a_verdict(aredis: aioredis.Redis) -> None:
    backoffice = HttpBackOffice(f"http://127.0.0.1:{free_port()}", Secret("unused"), timeout_s=1.0)
    chain = ValidityChain(RedisStatusStore(aredis), backoffice, ValidityCache(0))
    try:
        with pytest.raises(StoreError, match="back office cannot tell"):
            await chain.is_session_active("s1", for_reconnect=True)
    finally:
        await backoffice.aclose()
