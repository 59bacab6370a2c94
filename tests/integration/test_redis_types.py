"""Defect class: a key the service reads or increments holds a value of the wrong Redis type
(string garbage, hash, list, set, zset, stream, a 1 MiB string, a non-numeric counter).
Every such value is counted as malformed Redis input and has one documented outcome (see
`service.redis_scripts` and the service README); none may leave a session retrying forever.
Real redis-server, the real service in this event loop, the real stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from service.ports import new_update
from service import keys
from service.core import Status
from service.store import RedisStatusStore
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
# the per-session keys the service reads or increments, and what a session needs there first
KEYS: dict[str, Callable[[str], str]] = {
    "status": keys.status_key, "pending": keys.session_key, "lease": keys.lease_key,
    "fence": keys.fence_key, "seq": keys.seq_key,
}


def plant(redis_client, key_name: str, kind: str, session_id: str) -> None:
    if key_name == "pending":  # a pending record is read only when the status says `connecting`
        redis_client.set(keys.status_key(session_id), Status.CONNECTING.value)
    PLANTERS[kind](redis_client, KEYS[key_name](session_id))


CASES = [(key_name, kind) for key_name in KEYS for kind in PLANTERS]
IDS = [f"{key_name}-{kind}" for key_name, kind in CASES]


async def test_planted_values_of_every_type_in_every_key_are_counted_and_sessions_run(
        service_settings, standins_clean, redis_client, service_log) -> None:
    s = standins_clean
    s.backoffice.add_accounts(IDS + ["clean"])
    for sid, (key_name, kind) in zip(IDS, CASES):
        plant(redis_client, key_name, kind, sid)
    async with run_service(service_settings(sessions=",".join(IDS + ["clean"]))) as service:
        await eventually(lambda: set(statuses(redis_client, IDS + ["clean"]).values()) == {"active"}, 15,
                         "every session adopted and active despite what its keys held")
        await eventually(lambda: redis_client.xlen(keys.OUTBOX_KEY) == 0, 5, "every update delivered")
        text = await ascrape(service.server.port)
        # counters hold garbage of every kind, and so does every other key: each one is counted
        # (a hash of `status: active` in a pending record is no record, a lease key of any kind is replaced)
        assert metric_value(text, "reconnect_lab_malformed_input_total", source="redis") >= len(CASES)
    events = {r["event"] for r in log_records(service_log)}
    assert not events & {"adopt_failed", "lease_acquire_failed", "status_write_deferred", "store_retry"}, events
    updates = s.backoffice.updates()["updates"]
    assert {u["session_id"] for u in updates if u["status"] == "active"} >= set(IDS)


@pytest.mark.parametrize("kind", sorted(PLANTERS))
async def test_a_status_of_any_type_planted_mid_backoff_ends_the_session(
        kind, service_settings, standins_clean, redis_client, service_log) -> None:
    """Validation fails closed on an unusable status, once: the session ends `inactive` (B10),
    never `validation_unavailable` retried forever."""
    s = standins_clean
    s.backoffice.add_accounts(["s0", "s1"])
    async with run_service(service_settings(sessions="s0,s1")) as service:
        await eventually(lambda: set(statuses(redis_client, ["s0", "s1"]).values()) == {"active"}, 5, "active")
        s.whatsapp.reject("s0", 500)
        s.whatsapp.close("s0")
        await eventually(lambda: s.whatsapp.session("s0")["connects"] == 2, 3, "attempt 1 failed")
        redis_client.delete(keys.status_key("s0"))
        PLANTERS[kind](redis_client, keys.status_key("s0"))
        await eventually(lambda: "s0" in service.gateway.settled, 5, "s0 dropped at validation")
        await eventually(lambda: statuses(redis_client, ["s0"])["s0"] == "inactive", 3, "s0 ended inactive")
        assert statuses(redis_client, ["s1"])["s1"] == "active"
    assert not [r for r in log_records(service_log) if r["event"] == "validation_unavailable"]


async def test_outbox_stream_and_idempotency_key_of_the_wrong_type(aredis, redis_client) -> None:
    """Global keys: an outbox that is not a stream is renamed aside (kept for a person to read)
    and a fresh stream started; an idempotency key of another type is replaced. Counted."""
    store = RedisStatusStore(aredis)
    redis_client.set(keys.OUTBOX_KEY, "not a stream")
    update = new_update("s1", Status.ACTIVE)
    redis_client.hset(keys.update_id_key(update.update_id), mapping={"seq": "1"})
    stored = await store.set_status("s1", Status.ACTIVE, outbox_update=update)
    assert stored is not None and stored.seq == 1
    assert redis_client.type(keys.OUTBOX_KEY) == b"stream" and redis_client.xlen(keys.OUTBOX_KEY) == 1
    assert redis_client.get(keys.OUTBOX_KEY + ":malformed") == b"not a stream"
    assert store.malformed == 2
    again = await store.set_status("s1", Status.ACTIVE, outbox_update=update)  # a retried write: same seq
    assert again is not None and again.seq == 1 and redis_client.xlen(keys.OUTBOX_KEY) == 1
