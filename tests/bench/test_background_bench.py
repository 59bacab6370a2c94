"""Benchmark: CPU of the Redis work that runs beside a storm's sessions, per unit, in this
process (no server: what is measured is the service's own packing and bookkeeping).

- a tick's status-store requests queued on a `ScriptBatch` and packed as the service's
  connection packs the batch command (one MessagePack array), against the same calls packed
  as one command each by hiredis (what the batch carried before MessagePack, and what a
  MULTI/EXEC pipeline still sends): µs per script call, a storm's mix (a validation's read
  with its started record, a status write with its outbox entry, a pending record).

Measures (never asserts time): best of BACKGROUND_BENCH_ROUNDS rounds (default 30) of a
200-request tick (the store's `MAX_REQUESTS_PER_PIPELINE`), the two alternated, process CPU
time. Writes `reports/service/background.json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from redis.asyncio.connection import Connection

from service import keys
from service.core import Status
from service.pending import PendingReconnect, pending_mapping
from service.ports import new_update
from service.redis_connect import with_hiredis_packing
from service.redis_scripts import BATCH_SHA, READ_STATUS_SHA
from service.store import MAX_REQUESTS_PER_PIPELINE, queue_write
from service.tick_batch import ScriptBatch

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]

REPORT_DIR = Path(__file__).resolve().parents[2] / "reports" / "service"
ROUNDS = int(os.environ.get("BACKGROUND_BENCH_ROUNDS", "30"))
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


def test_background_redis_work_per_unit(capsys) -> None:
    assert batched() == one_command_each() > MAX_REQUESTS_PER_PIPELINE  # the same calls either way
    packing = best_us_per_call({"batch_msgpack": batched, "one_command_each": one_command_each})
    result = {"rounds": ROUNDS, "tick_requests": MAX_REQUESTS_PER_PIPELINE,
              "script_call_us": {name: round(us, 2) for name, us in packing.items()}}
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "background.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with capsys.disabled():
        print(f"\nscript call queued and packed, best of {ROUNDS}: one MessagePack batch "
              f"{packing['batch_msgpack']:.2f} µs, one command each {packing['one_command_each']:.2f} µs")
