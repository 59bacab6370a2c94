"""Defect class: a key the service reads or increments holds a value of the wrong Redis type
(string garbage, hash, list, set, zset, stream, a 1 MiB string, a non-numeric counter).
Every such value is counted as malformed Redis input and has one documented outcome (see
`service.redis_scripts` and the service README); none may leave a session retrying forever.
Real redis-server and the local Redis Cluster (each key at its layout's name), the real
service in this event loop, the real stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from service.core import Status
from service.keys import KeyLayout
from service.ports import new_update
from service.store import RedisStatusStore
from tests.fixtures.redis_cluster import SERVICE_ON_BOTH, RedisUnderTest, RedisView
from tests.fixtures.service import ascrape, log_records, metric_value, run_service, statuses
from tests.fixtures.standins import eventually

pytestmark = pytest.mark.integration

HUGE = "x" * (1 << 20)
PLANTERS: dict[str, Callable[[redis.Redis, str], object]] = {
    "garbage": lambda r, key: r.set(key, "\xff banana {"),
    "huge": lambda r, key: r.set(key, HUGE),
    "hash": lambda r, key: r.hset(key, mapping={"status": "active"}),
    "list": lambda r, key: r.rpush(key, "active"),
    "set": lambda r, key: r.sadd(key, "active"),
    "zset": lambda r, key: r.zadd(key, {"active": 1.0}),
    "stream": lambda r, key: r.xadd(key, {"status": "active"}),
    "not_a_counter": lambda r, key: r.set(key, "12abc"),
}
# the per-session keys the service reads or increments (`KeyLayout` methods), and what a session needs there first
KEYS: dict[str, Callable[[KeyLayout, str], str]] = {
    "status": KeyLayout.status_key, "pending": KeyLayout.session_key, "lease": KeyLayout.lease_key,
    "fence": KeyLayout.fence_key, "seq": KeyLayout.seq_key,
}


def plant(r: RedisView, key_name: str, kind: str, session_id: str) -> None:
    if key_name == "pending":  # a pending record is read only when the status says `connecting`
        r.sync.set(r.layout.status_key(session_id), Status.CONNECTING.value)
    PLANTERS[kind](r.sync, KEYS[key_name](r.layout, session_id))


CASES = [(key_name, kind) for key_name in KEYS for kind in PLANTERS]
IDS = [f"{key_name}-{kind}" for key_name, kind in CASES]


@SERVICE_ON_BOTH
async def test_planted_values_of_every_type_in_every_key_are_counted_and_sessions_run(
        service_settings, standins_clean, service_redis, service_log) -> None:
    s, r = standins_clean, service_redis
    s.backoffice.add_accounts(IDS + ["clean"])
    for sid, (key_name, kind) in zip(IDS, CASES):
        plant(r, key_name, kind, sid)
    async with run_service(service_settings(sessions=",".join(IDS + ["clean"]))) as service:
        await eventually(lambda: set(statuses(r, IDS + ["clean"]).values()) == {"active"}, 15,
                         "every session adopted and active despite what its keys held")
        await eventually(lambda: r.outbox_length() == 0, 5, "every update delivered")
        text = await ascrape(service.server.port)
        # counters hold garbage of every kind, and so does every other key: each one is counted
        # (a hash of `status: active` in a pending record is no record, a lease key of any kind is replaced)
        assert metric_value(text, "reconnect_lab_malformed_input_total", source="redis") >= len(CASES)
    events = {r["event"] for r in log_records(service_log)}
    assert not events & {"adopt_failed", "lease_acquire_failed", "status_write_deferred", "store_retry"}, events
    updates = s.backoffice.updates()["updates"]
    assert {u["session_id"] for u in updates if u["status"] == "active"} >= set(IDS)


@SERVICE_ON_BOTH
@pytest.mark.parametrize("kind", sorted(PLANTERS))
async def test_a_status_of_any_type_planted_mid_backoff_ends_the_session(
        kind, service_settings, standins_clean, service_redis, service_log) -> None:
    """Validation fails closed on an unusable status, once: the session ends `inactive` (B10),
    never `validation_unavailable` retried forever."""
    s, r = standins_clean, service_redis
    s.backoffice.add_accounts(["s0", "s1"])
    async with run_service(service_settings(sessions="s0,s1")) as service:
        await eventually(lambda: set(statuses(r, ["s0", "s1"]).values()) == {"active"}, 5, "active")
        s.whatsapp.reject("s0", 500)
        s.whatsapp.close("s0")
        await eventually(lambda: s.whatsapp.session("s0")["connects"] == 2, 3, "attempt 1 failed")
        r.sync.delete(r.layout.status_key("s0"))
        PLANTERS[kind](r.sync, r.layout.status_key("s0"))
        await eventually(lambda: "s0" in service.gateway.settled, 5, "s0 dropped at validation")
        await eventually(lambda: statuses(r, ["s0"])["s0"] == "inactive", 3, "s0 ended inactive")
        assert statuses(r, ["s1"])["s1"] == "active"
    assert not [r for r in log_records(service_log) if r["event"] == "validation_unavailable"]


async def test_outbox_stream_and_idempotency_key_of_the_wrong_type(any_redis: RedisUnderTest) -> None:
    """Shared keys: an outbox that is not a stream is renamed aside (kept for a person to read)
    and a fresh stream started; an idempotency key of another type is replaced. Counted.
    On a cluster: the session's shard's stream, renamed within its slot."""
    r = any_redis
    store = RedisStatusStore(r.client, layout=r.layout)
    outbox = r.layout.outbox_of("s1")
    r.sync.set(outbox, "not a stream")
    update = new_update("s1", Status.ACTIVE)
    r.sync.hset(r.layout.update_id_key("s1", update.update_id), mapping={"seq": "1"})
    stored = await store.set_status("s1", Status.ACTIVE, outbox_update=update)
    assert stored is not None and stored.seq == 1
    assert r.sync.type(outbox) == b"stream" and r.sync.xlen(outbox) == 1
    assert r.sync.get(outbox + ":malformed") == b"not a stream"
    assert store.malformed == 2
    again = await store.set_status("s1", Status.ACTIVE, outbox_update=update)  # a retried write: same seq
    assert again is not None and again.seq == 1 and r.sync.xlen(outbox) == 1
