"""The outbox's Redis queue over every stream of the key layout, against a real redis-server
(one stream) and a real Redis Cluster (a stream per shard, `any_redis`): the flusher
delivers every entry once, each session's in append order, in batches of at most its size;
dead letters stay in their entry's shard; depth and age span every stream."""

from __future__ import annotations

import time

import pytest

from service.core import Status
from service.dead_letters import update_fields
from service.ports import StatusUpdate, new_update
from service.redis_outbox import RedisOutbox, RedisQueue
from tests.fixtures.redis_cluster import RedisUnderTest

pytestmark = pytest.mark.integration


class RecordingBackOffice:
    """Acknowledges everything and remembers each batch (what the queue handed out)."""

    def __init__(self) -> None:
        self.batches: list[list[StatusUpdate]] = []

    async def is_valid(self, session_id: str) -> bool:
        return True

    async def send_statuses(self, updates: list[StatusUpdate]) -> set[str]:
        self.batches.append(list(updates))
        return {u.update_id for u in updates}


async def plant(r: RedisUnderTest, n_updates: int, n_sessions: int) -> list[StatusUpdate]:
    """`n_updates` entries round-robin over `n_sessions`, each in its session's stream with
    seq 1, 2, 3… per session (as the status write's script appends them)."""
    planted = []
    for i in range(n_updates):
        session_id = f"sess-{i % n_sessions:03d}"
        update = new_update(session_id, Status.ACTIVE)
        update = StatusUpdate(update.update_id, session_id, update.status, update.priority,
                              i // n_sessions + 1, update.at_s)
        await r.client.xadd(r.layout.outbox_of(session_id), update_fields(update))
        planted.append(update)
    return planted


async def test_every_stream_is_delivered_once_in_session_order(any_redis: RedisUnderTest) -> None:
    r = any_redis
    planted = await plant(r, 600, 40)
    streams = {r.layout.outbox_of(u.session_id) for u in planted}
    assert len(streams) == (1 if r.mode == "single" else r.layout.shards)  # the test spans every shard
    backoffice = RecordingBackOffice()
    outbox = RedisOutbox(r.client, backoffice, layout=r.layout, batch_size=50, flush_interval_s=1.0,
                         retry_base_s=0.05, retry_cap_s=0.1)
    assert await outbox.depth() == 600
    await outbox.drain()
    sent = [u for batch in backoffice.batches for u in batch]
    assert sorted(u.update_id for u in sent) == sorted(u.update_id for u in planted)  # once each
    assert max(len(b) for b in backoffice.batches) == 50
    for session in {u.session_id for u in planted}:
        assert [u.seq for u in sent if u.session_id == session] == list(range(1, 16))
    assert await outbox.depth() == 0 and outbox.acked_updates == 600


async def test_dead_letters_stay_in_their_shard_and_age_spans_every_stream(any_redis: RedisUnderTest) -> None:
    r = any_redis
    queue = RedisQueue(r.client, r.layout)
    assert await queue.oldest_age_s(time.time()) == 0.0
    planted = await plant(r, 60, 20)
    raw = await queue.read(1000)
    assert len(raw) == 60
    assert 0.0 <= await queue.oldest_age_s(time.time() + 5.0) - 5.0 < 30.0
    doomed = raw[:7]
    await queue.move_dead(doomed, "refused", ["test"] * len(doomed))
    assert await queue.depth() == 53
    by_id = {u.update_id: u for u in planted}
    for _, fields in doomed:
        session = by_id[fields[b"update_id"].decode()].session_id
        shard = r.layout.shard_of(session)
        dead = await r.client.xrange(r.layout.dead_key(shard))
        assert fields[b"update_id"] in {f[b"update_id"] for _, f in dead}
        assert all(f[b"reason"] == b"refused" for _, f in dead)
    await queue.delete([entry_id for entry_id, _ in raw[7:]])
    assert await queue.depth() == 0
