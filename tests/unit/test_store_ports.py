"""The runtime's store ports — status store, leases, outbox, validity — as contracts every
implementation keeps: the in-memory ones (`service.memory`) and the Redis ones, run here on
fakeredis with their Lua scripts, so the quick suite catches a broken rule in either within
seconds. The Redis implementations against a real redis-server: tests/integration/test_store*.py,
test_lease.py, test_outbox*.py, test_fencing.py (those are the truth; fakeredis is a stand-in)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest

from service.core import Priority, Status
from service.errors import FencedWrite
from service.lease import RedisLeases
from service.memory import MemoryLeases, MemoryOutbox, MemoryState, MemoryStatusStore
from service.outbox import OutboxFlusher
from service.redis_outbox import RedisOutbox
from service.pending import PendingReconnect
from service.ports import BackOffice, Leases, Outbox, StatusStore, StatusUpdate, Validity, new_update
from service.store import RedisStatusStore, ValidityCache
from service.validity import ValidityChain
from tests.fixtures.fake_redis import fake_server
from tests.fixtures.memory import MemoryBackOffice, until


class ManualClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Ports:
    """One implementation's ports, sharing one backing state (a Redis server, or `MemoryState`)."""

    kind: str
    store: StatusStore
    backing: Any

    def leases(self, owner_id: str, ttl_s: float = 5.0) -> Leases:
        if self.kind == "memory":
            return MemoryLeases(self.backing, owner_id, ttl_s=ttl_s)
        return RedisLeases(fakeredis.FakeAsyncRedis(server=self.backing), owner_id, ttl_s=ttl_s)

    def outbox(self, backoffice: BackOffice, **options: Any) -> OutboxFlusher:
        options = {"batch_size": 100, "flush_interval_s": 60.0, "retry_base_s": 0.01, "retry_cap_s": 0.05, **options}
        if self.kind == "memory":
            return MemoryOutbox(self.backing, backoffice, **options)
        return RedisOutbox(fakeredis.FakeAsyncRedis(server=self.backing), backoffice, **options)


@pytest.fixture(params=["memory", "redis"])
async def ports(request: pytest.FixtureRequest) -> AsyncIterator[Ports]:
    if request.param == "memory":
        state = MemoryState()
        yield Ports("memory", MemoryStatusStore(state), state)
        return
    server = fake_server()
    client = fakeredis.FakeAsyncRedis(server=server)
    store = RedisStatusStore(client)
    yield Ports("redis", store, server)
    await store.aclose()
    await client.aclose()


def test_every_implementation_is_its_port() -> None:
    state = MemoryState()
    assert isinstance(MemoryStatusStore(state), StatusStore)
    assert isinstance(RedisStatusStore(fakeredis.FakeAsyncRedis()), StatusStore)
    assert isinstance(MemoryLeases(state, "a", ttl_s=1.0), Leases)
    assert isinstance(RedisLeases(fakeredis.FakeAsyncRedis(), "a", ttl_s=1.0), Leases)
    assert isinstance(MemoryOutbox(state, MemoryBackOffice(), batch_size=1, flush_interval_s=1.0,
                                   retry_base_s=1.0, retry_cap_s=1.0), Outbox)
    assert isinstance(ValidityChain(MemoryStatusStore(state), MemoryBackOffice(), ValidityCache(1.0)), Validity)


# -- status store ----------------------------------------------------------------------------


async def test_status_outbox_entry_and_pending_record_in_one_write(ports: Ports) -> None:
    store = ports.store
    assert await store.get_status("s1") is None and await store.pending("s1") is None
    first = new_update("s1", Status.CONNECTING)
    stored = await store.set_status("s1", Status.CONNECTING, outbox_update=first, pending=PendingReconnect(1, 12.5))
    assert stored is not None and stored.seq == 1 and stored.update_id == first.update_id
    assert await store.get_status("s1") is Status.CONNECTING
    assert await store.pending("s1") == PendingReconnect(1, 12.5)
    again = await store.set_status("s1", Status.CONNECTING, outbox_update=first)  # a retry after a lost reply
    assert again is not None and again.seq == 1
    await store.save_pending("s1", PendingReconnect(1, 12.5, started_at_s=13.0))
    assert await store.pending("s1") == PendingReconnect(1, 12.5, 13.0)
    await store.save_pending("s1", None)
    assert await store.pending("s1") is None
    await store.save_pending("s1", PendingReconnect(1, 12.5, counted=False))
    assert await store.pending("s1") == PendingReconnect(1, 12.5, counted=False)
    started = PendingReconnect(2, 14.0, started_at_s=14.5)  # an attempt's start, saved with its read
    assert await store.get_status("s1", mark_started=started) is Status.CONNECTING
    assert await store.pending("s1") == started
    later = await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s1", Status.ACTIVE),
                                   clear_pending=True)
    assert later is not None and later.seq == 2
    assert await store.get_status("s1") is Status.ACTIVE and await store.pending("s1") is None
    with pytest.raises(ValueError, match="outbox_update"):
        await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s2", Status.ACTIVE))
    with pytest.raises(ValueError, match="attempt"):
        await store.save_pending("s1", PendingReconnect(-1, 1.0))


async def test_a_record_no_restart_could_read_is_refused_before_anything_is_written(ports: Ports) -> None:
    """B5: every write that carries a pending record (with a status, as an attempt's start with a
    read, on its own) refuses a bad one with what is wrong, and nothing of that write lands."""
    store = ports.store
    await store.set_status("s1", Status.CONNECTING, outbox_update=new_update("s1", Status.CONNECTING),
                           pending=PendingReconnect(1, 12.5))
    for bad in (PendingReconnect(-1, 1.0), PendingReconnect("2", 1.0)):  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="attempt"):
            await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s1", Status.ACTIVE), pending=bad)
        with pytest.raises(ValueError, match="attempt"):
            await store.get_status("s1", mark_started=bad)
        with pytest.raises(ValueError, match="attempt"):
            await store.save_pending("s1", bad)
    assert await store.get_status("s1") is Status.CONNECTING
    assert await store.pending("s1") == PendingReconnect(1, 12.5)
    again = await store.set_status("s1", Status.ACTIVE, outbox_update=new_update("s1", Status.ACTIVE))
    assert again is not None and again.seq == 2, "a refused write took an outbox seq"


async def test_a_write_with_a_token_that_moved_is_refused_whole(ports: Ports) -> None:
    """B9: once another owner took the session, nothing of a fenced write lands."""
    a, b = ports.leases("gw-a"), ports.leases("gw-b")
    assert await a.acquire("s1")
    token_a = a.token("s1")
    assert token_a is not None
    await ports.store.set_status("s1", Status.ACTIVE, fence=token_a)
    assert await a.release("s1") and await b.acquire("s1")
    assert b.token("s1") != token_a
    with pytest.raises(FencedWrite):
        await ports.store.set_status("s1", Status.INACTIVE, outbox_update=new_update("s1", Status.INACTIVE),
                                     clear_pending=True, fence=token_a)
    with pytest.raises(FencedWrite):
        await ports.store.save_pending("s1", PendingReconnect(2, 5.0), fence=token_a)
    with pytest.raises(FencedWrite):  # a refused start mark wins over the read it went with
        await ports.store.get_status("s1", mark_started=PendingReconnect(2, 5.0, started_at_s=5.0), fence=token_a)
    assert await ports.store.get_status("s1") is Status.ACTIVE and await ports.store.pending("s1") is None
    await ports.store.set_status("s1", Status.INACTIVE, fence=b.token("s1"))
    assert await ports.store.get_status("s1") is Status.INACTIVE


# -- leases --------------------------------------------------------------------------------------


async def test_one_owner_at_a_time_and_a_new_token_each_acquisition(ports: Ports) -> None:
    a, b = ports.leases("gw-a"), ports.leases("gw-b")
    assert await a.acquire("s1") and not await b.acquire("s1")
    first = a.token("s1")
    assert await a.acquire("s1")  # ours already: extended, with a new token
    assert a.token("s1") != first and b.token("s1") is None
    assert set(a.tokens()) == {"s1"}


async def test_renewal_and_release_only_by_the_owner_with_its_token(ports: Ports) -> None:
    a, b = ports.leases("gw-a"), ports.leases("gw-b")
    assert await a.acquire("s1") and await a.acquire("s2")
    token = a.token("s1")
    assert token is not None
    assert await b.renew(["s1"], {"s1": token}) == set(), "b renewed a lease a holds"
    assert not await b.release("s1"), "b released a lease a holds"
    assert not await b.acquire("s1")
    assert await a.renew(["s1", "s2"]) == {"s1", "s2"}
    stale = {"s1": token}
    assert await a.acquire("s1")  # a new token: whatever held the old one is fenced off
    assert await a.renew(["s1"], stale) == set(), "renewed with a token that has moved on"
    assert await a.release("s2") and not await a.release("s2")


async def test_a_lease_not_renewed_expires_for_others() -> None:
    """On the injected clock (the Redis leases: test_lease.py's handover, in real time)."""
    clock = ManualClock()
    state = MemoryState(clock=clock)
    a, b = MemoryLeases(state, "gw-a", ttl_s=2.0), MemoryLeases(state, "gw-b", ttl_s=2.0)
    assert await a.acquire("s1")
    clock.now_s += 1.9
    assert await a.renew(["s1"]) == {"s1"} and not await b.acquire("s1")
    clock.now_s += 2.0
    assert await b.acquire("s1")
    assert await a.renew(["s1"]) == set() and a.token("s1") is None and a.lost == 1


# -- outbox ------------------------------------------------------------------------------------


async def appended(store: StatusStore, writes: list[tuple[str, Status]], **kwargs: Any) -> list[StatusUpdate]:
    stored = []
    for session_id, status in writes:
        update = await store.set_status(session_id, status, outbox_update=new_update(session_id, status, **kwargs))
        assert update is not None
        stored.append(update)
    return stored


WRITES = [("a", Status.CONNECTING), ("b", Status.CONNECTING), ("a", Status.ACTIVE), ("c", Status.ACTIVE),
          ("a", Status.CONNECTING), ("b", Status.ACTIVE), ("a", Status.INACTIVE)]


async def test_the_outbox_delivers_in_append_order_and_forgets_only_what_was_acked(ports: Ports) -> None:
    backoffice = MemoryBackOffice()
    outbox = ports.outbox(backoffice, batch_size=3)
    stored = await appended(ports.store, WRITES)
    await outbox.drain()
    sent = [u for batch in backoffice.batches for u in batch]
    assert [u.update_id for u in sent] == [u.update_id for u in stored], "sent out of append order"
    assert [len(batch) for batch in backoffice.batches] == [3, 3, 1]
    assert [u.seq for u in sent if u.session_id == "a"] == [1, 2, 3, 4]
    assert await outbox.depth() == 0 and outbox.acked_updates == len(WRITES)


class Unacked(MemoryBackOffice):
    """Acknowledges every update but those in `withheld`."""

    def __init__(self, withheld: set[str]) -> None:
        super().__init__()
        self.withheld = withheld

    async def send_statuses(self, updates: list[StatusUpdate]) -> set[str]:
        return await super().send_statuses(updates) - self.withheld


async def test_an_unacknowledged_update_holds_its_sessions_later_ones(ports: Ports) -> None:
    stored = await appended(ports.store, WRITES)
    a_second = stored[2]
    outbox = ports.outbox(Unacked({a_second.update_id}))
    await outbox.drain()
    assert await outbox.depth() == 3, "a's 2nd, 3rd and 4th wait; the rest are acknowledged and gone"
    backoffice = MemoryBackOffice()
    await ports.outbox(backoffice).drain()
    assert [u.update_id for u in backoffice.batches[0]] == [u.update_id for u in stored[2::2]]


async def test_a_high_priority_update_is_sent_at_once(ports: Ports) -> None:
    backoffice = MemoryBackOffice()
    outbox = ports.outbox(backoffice, flush_interval_s=60.0)
    if isinstance(ports.store, (MemoryStatusStore, RedisStatusStore)):
        ports.store.outbox = outbox
    outbox.start()
    try:
        await until(lambda: outbox.flushes["start"] == 1, "first drain")
        await appended(ports.store, [("a", Status.CONNECTING)])
        await appended(ports.store, [("a", Status.INACTIVE)], priority=Priority.HIGH)
        await until(lambda: len([u for b in backoffice.batches for u in b]) == 2, "both sent, long before the interval")
        assert outbox.flushes["high"] == 1 and outbox.flushes["interval"] == 0
    finally:
        assert await outbox.stop(timeout_s=5.0)


# -- validity (one chain over either store) --------------------------------------------------------------

# (stored status, account in the back office, for_reconnect) -> valid?   R1, R4's invalid-wins,
# and no status at all during a reconnect (Redis lost its data): the back office decides.
TRUTH_TABLE = [
    (None, True, False, False), (None, True, True, True), (None, False, True, False),
    (Status.ACTIVE, True, False, True), (Status.ACTIVE, True, True, True),
    (Status.CONNECTING, True, False, False), (Status.CONNECTING, True, True, True),
    (Status.INACTIVE, True, False, False), (Status.INACTIVE, True, True, False),
    (Status.ACTIVE, False, False, False), (Status.ACTIVE, False, True, False), (Status.CONNECTING, False, True, False),
]


@pytest.mark.parametrize("status, account, for_reconnect, expected", TRUTH_TABLE)
async def test_r1_r4_truth_table(ports: Ports, status: Status | None, account: bool, for_reconnect: bool,
                                 expected: bool) -> None:
    backoffice = MemoryBackOffice(accounts={"s1": account})
    if status is not None:
        await ports.store.set_status("s1", status)
    chain = ValidityChain(ports.store, backoffice, ValidityCache(5.0))
    assert await chain.is_session_active("s1", for_reconnect=for_reconnect) is expected
    store_valid = status is Status.ACTIVE or (status is Status.CONNECTING and for_reconnect)
    assert backoffice.validity_questions == int(store_valid or (status is None and for_reconnect))
    assert chain.backoffice_vetoes == int(store_valid and not account)


async def test_the_cache_answers_until_cleared_written_or_expired(ports: Ports) -> None:
    clock = ManualClock()
    cache = ValidityCache(5.0, clock)
    backoffice = MemoryBackOffice(accounts={"s1": True})
    chain = ValidityChain(ports.store, backoffice, cache)
    ports.store.cache = cache  # type: ignore[attr-defined]
    await ports.store.set_status("s1", Status.CONNECTING)
    assert await chain.is_session_active("s1", for_reconnect=True)
    assert not await chain.is_session_active("s1"), "a reconnect's yes answered a strict question"
    assert await chain.is_session_active("s1", for_reconnect=True) and chain.cache_hits == 1
    clock.now_s += 5.0
    assert await chain.is_session_active("s1", for_reconnect=True) and chain.cache_hits == 1  # expired: asked
    ports.store.clear_cache("s1")  # R3
    backoffice.accounts["s1"] = False
    assert not await chain.is_session_active("s1", for_reconnect=True)
    backoffice.accounts["s1"] = True
    assert await chain.is_session_active("s1", for_reconnect=True)
    await ports.store.set_status("s1", Status.INACTIVE)  # a write drops the cached yes
    assert not await chain.is_session_active("s1", for_reconnect=True)


async def test_an_unreachable_back_office_leaves_the_stores_answer(ports: Ports) -> None:
    backoffice = MemoryBackOffice(accounts={"s1": False}, unreachable=True)
    chain = ValidityChain(ports.store, backoffice, ValidityCache(5.0))
    await ports.store.set_status("s1", Status.CONNECTING)
    assert await chain.is_session_active("s1", for_reconnect=True)
    assert await chain.is_session_active("s1", for_reconnect=True) and chain.backoffice_unreachable == 2
    assert chain.cache_hits == 0, "an answer without the back office was cached"


async def test_mark_started_is_saved_with_the_read_and_refused_when_fenced(ports: Ports) -> None:
    a = ports.leases("gw-a")
    assert await a.acquire("s1")
    await ports.store.set_status("s1", Status.CONNECTING, pending=PendingReconnect(1, 10.0), fence=a.token("s1"))
    chain = ValidityChain(ports.store, MemoryBackOffice(accounts={"s1": True}), ValidityCache(5.0))
    mark = PendingReconnect(1, 10.0, started_at_s=10.5)
    assert await chain.is_session_active("s1", for_reconnect=True, mark_started=mark, fence=a.token("s1"))
    assert await ports.store.pending("s1") == mark
    with pytest.raises(FencedWrite):
        await chain.is_session_active("s1", for_reconnect=True, mark_started=PendingReconnect(2, 20.0, 20.5),
                                      fence=(a.token("s1") or 0) + 1)
    assert await ports.store.pending("s1") == mark


def test_update_ids_are_unique_and_new_in_a_forked_child() -> None:
    """`new_update`'s ids (a random prefix per process and a count) never repeat in a process,
    have a uuid4's shape (32 hex digits), and a forked child draws a prefix of its own."""
    ids = [new_update("s1", Status.ACTIVE).update_id for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, then out at once
        os.write(write_end, new_update("s1", Status.ACTIVE).update_id.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_id = pipe.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    parent_id = new_update("s1", Status.ACTIVE).update_id
    assert len(child_id) == 32 and child_id[:20] != parent_id[:20], (child_id, parent_id)
    texts = new_update("s1", "active", "high")  # statuses and priorities given as text become the enums
    assert (type(texts.status), type(texts.priority)) == (Status, Priority) and texts.priority is Priority.HIGH
