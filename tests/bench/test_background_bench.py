"""Benchmark: CPU of the Redis work that runs beside a storm's sessions, per unit, in this
process (no server: what is measured is the service's own packing and bookkeeping).

- a tick's status-store requests queued on a `ScriptBatch` and packed as the service's
  connection packs the batch command (one MessagePack array), against the same calls packed
  as one command each by hiredis (what the batch carried before MessagePack, and what a
  MULTI/EXEC pipeline still sends): µs per script call, a storm's mix (a validation's read
  with its started record, a status write with its outbox entry, a pending record).
- a store-and-outbox micro-storm against a real redis-server (`redis_server`): STORM_SESSIONS
  sessions' status-store requests of a `wire` storm session (close: status `connecting`, its
  update and pending record 1; validation 1 with its started record; pending record 2;
  validation 2; opened: status `active`, its update, the record cleared), each step one
  gather (batched per tick as in a storm), then the outbox drained to a back office that
  builds the real request body (`update_to_json`, `json_body`) and acknowledges everything:
  µs of this process's CPU per session (5 requests, 2 updates; 2 attempts in the storm).

Measures (never asserts time): best of BACKGROUND_BENCH_ROUNDS rounds (default 30) of a
200-request tick (the store's `MAX_REQUESTS_PER_PIPELINE`), the two alternated, and best of
STORM_ROUNDS (default 5) micro-storms of BACKGROUND_BENCH_SESSIONS sessions (default 3,000),
process CPU time. Writes `reports/service/background.json`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from redis.asyncio.connection import Connection

from service import keys
from service.backoffice import json_body, update_to_json
from service.core import Status
from service.pending import PendingReconnect, pending_mapping
from service.ports import StatusUpdate, new_update
from service.redis_connect import RedisOptions, open_client, parse_redis_url, with_hiredis_packing
from service.redis_outbox import RedisOutbox
from service.redis_scripts import BATCH_SHA, READ_STATUS_SHA, load_scripts
from service.store import MAX_REQUESTS_PER_PIPELINE, RedisStatusStore, queue_write
from service.tick_batch import ScriptBatch

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]

REPORT_DIR = Path(__file__).resolve().parents[2] / "reports" / "service"
ROUNDS = int(os.environ.get("BACKGROUND_BENCH_ROUNDS", "30"))
STORM_SESSIONS = int(os.environ.get("BACKGROUND_BENCH_SESSIONS", "3000"))
STORM_ROUNDS = int(os.environ.get("STORM_ROUNDS", "5"))
CONNECTION = with_hiredis_packing(Connection)()  # packs as the service's connections do


class Commands:
    """A pipeline stand-in that keeps each command as it was queued."""

    def __init__(self) -> None:
        self.commands: list[tuple] = []

    def execute_command(self, *args) -> None:
        self.commands.append(args)


def storm_tick(pipe, requests: int) -> None:
    """A storm's requests of one tick, queued on `pipe` (each record's fields made as the store
    makes them, as its write is checked: `pending_mapping`)."""
    now_s = time.time()
    for i in range(requests):
        sid = f"s{i}"
        if i % 3 == 0:  # a validation's read, with its "attempt started" record
            pipe.execute_command("EVALSHA", READ_STATUS_SHA, 1, keys.SINGLE.status_key(sid))
            queue_write(pipe, sid, token=12345, pending=pending_mapping(PendingReconnect(1, now_s, started_at_s=now_s)))
        elif i % 3 == 1:  # a status write with its outbox entry and pending record
            queue_write(pipe, sid, token=12345, status=Status.CONNECTING,
                        update=new_update(sid, Status.CONNECTING, at_s=now_s),
                        pending=pending_mapping(PendingReconnect(2, now_s + 4)))
        else:
            queue_write(pipe, sid, token=12345, pending=pending_mapping(PendingReconnect(2, now_s + 4)))


def batched() -> int:
    batch = ScriptBatch()
    storm_tick(batch, MAX_REQUESTS_PER_PIPELINE)
    CONNECTION.pack_command("EVALSHA", BATCH_SHA, 0, batch.calls, msgpack.packb(batch.items, use_bin_type=False))
    return batch.calls


def one_command_each() -> int:
    pipe = Commands()
    storm_tick(pipe, MAX_REQUESTS_PER_PIPELINE)
    CONNECTION.pack_commands(pipe.commands)
    return len(pipe.commands)


def best_us_per_call(cases: dict[str, Callable[[], int]]) -> dict[str, float]:
    best = {name: float("inf") for name in cases}
    for _ in range(ROUNDS):
        for name, case in cases.items():
            started = time.process_time()
            calls = case()
            best[name] = min(best[name], (time.process_time() - started) * 1e6 / calls)
    return best


class AckingBackOffice:
    """Builds each batch's request body as the HTTP client does, and acknowledges it all."""

    async def is_valid(self, session_id: str) -> bool:
        return True

    async def send_statuses(self, updates: list[StatusUpdate]) -> set[str]:
        json_body({"updates": [update_to_json(update) for update in updates]})
        return {update.update_id for update in updates}


async def storm_cpu_s(client) -> float:
    """One micro-storm's CPU seconds (see the module docstring)."""
    await client.flushall()
    await load_scripts(client)
    store = RedisStatusStore(client)
    outbox = RedisOutbox(client, AckingBackOffice(), batch_size=500, flush_interval_s=60.0,
                         retry_base_s=0.1, retry_cap_s=1.0)
    ids = [f"s{i}" for i in range(STORM_SESSIONS)]
    started = time.process_time()
    now_s = time.time()
    await asyncio.gather(*(store.set_status(s, Status.CONNECTING, outbox_update=new_update(s, Status.CONNECTING),
                                            pending=PendingReconnect(1, now_s + 2)) for s in ids))
    await asyncio.gather(*(store.get_status(s, mark_started=PendingReconnect(1, now_s + 2, started_at_s=now_s + 2))
                           for s in ids))
    await asyncio.gather(*(store.save_pending(s, PendingReconnect(2, now_s + 6)) for s in ids))
    await asyncio.gather(*(store.get_status(s, mark_started=PendingReconnect(2, now_s + 6, started_at_s=now_s + 6))
                           for s in ids))
    await asyncio.gather(*(store.set_status(s, Status.ACTIVE, outbox_update=new_update(s, Status.ACTIVE),
                                            clear_pending=True) for s in ids))
    await outbox.drain()
    cpu_s = time.process_time() - started
    assert outbox.acked_updates == 2 * STORM_SESSIONS
    await store.aclose()
    return cpu_s


async def best_storm_cpu_s(url: str) -> float:
    client = open_client(parse_redis_url(url), RedisOptions(max_connections=8, pool_wait_s=5.0, timeout_s=5.0))
    try:
        return min([await storm_cpu_s(client) for _ in range(STORM_ROUNDS)])
    finally:
        await client.aclose()


def test_background_redis_work_per_unit(redis_server, capsys) -> None:
    assert batched() == one_command_each() > MAX_REQUESTS_PER_PIPELINE  # the same calls either way
    packing = best_us_per_call({"batch_msgpack": batched, "one_command_each": one_command_each})
    gc.disable()  # as the service's storm freeze does
    try:
        storm_us = asyncio.run(best_storm_cpu_s(f"redis://{redis_server.host}:{redis_server.port}/0")) \
            * 1e6 / STORM_SESSIONS
    finally:
        gc.enable()
    result = {"rounds": ROUNDS, "tick_requests": MAX_REQUESTS_PER_PIPELINE,
              "script_call_us": {name: round(us, 2) for name, us in packing.items()},
              "storm_sessions": STORM_SESSIONS, "storm_rounds": STORM_ROUNDS,
              "store_and_outbox_us_per_session": round(storm_us, 1)}
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "background.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with capsys.disabled():
        print(f"\nscript call queued and packed, best of {ROUNDS}: one MessagePack batch "
              f"{packing['batch_msgpack']:.2f} µs, one command each {packing['one_command_each']:.2f} µs; "
              f"store and outbox micro-storm, best of {STORM_ROUNDS} x {STORM_SESSIONS}: "
              f"{storm_us:.1f} µs CPU a session (5 requests, 2 updates)")
