"""Redis round trips of one reconnect, counted (not timed) on the real service in this event
loop against real Redis and the real stand-ins: drop → attempt 1 fails → attempt 2 opens
costs at most 5, one of them the pending record with attempt 2's due time, so a restarted
gateway resumes the right attempt at the right time (B5). On a single server and on the
local cluster (where the per-tick pipeline sends each node its share: the same count).

Timings are the note's scaled by 0.5 (attempt 1 at +1 s, attempt 2 at +2 s after it failed),
so the test has seconds, not milliseconds, to lift the rejection between the two attempts.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.fixtures.redis_cluster import SERVICE_ON_BOTH
from tests.fixtures.service import events_of, read_timeline, run_service, statuses
from tests.fixtures.standins import eventually

pytestmark = [pytest.mark.integration, SERVICE_ON_BOTH]

REJECT = 500  # not terminal in the `original` table: the attempt fails and is retried
MAX_ROUND_TRIPS = 5


def connects(standins, session_id: str) -> int:
    return int(standins.whatsapp.session(session_id)["connects"])


async def test_drop_failed_attempt_then_recovery_costs_at_most_5_round_trips(
        service_settings, standins_clean, service_redis, tmp_path) -> None:
    s, r = standins_clean, service_redis
    s.backoffice.add_account("s0")
    async with run_service(service_settings(sessions="s0", time_scale=0.5)) as service:
        runner = service.gateway.runners["s0"]
        await eventually(lambda: statuses(r, ["s0"])["s0"] == "active" and not runner.has_unwritten,
                         10, "s0 active, its writes done")
        before = service.store.round_trips
        s.whatsapp.reject("s0", REJECT)
        s.whatsapp.close("s0")
        await eventually(lambda: runner.machine.state.value == "backoff" and runner.machine.attempts == 2, 5,
                         "attempt 1 failed, attempt 2 scheduled")
        assert connects(s, "s0") == 2
        s.whatsapp.unreject("s0")
        # between the attempts Redis says what a restart needs: attempt 2 and when it is due
        await eventually(lambda: not runner.has_unwritten, 5, "attempt 2's record written")
        record = {k.decode(): v.decode() for k, v in r.sync.hgetall(r.layout.session_key("s0")).items()}
        assert record["attempt"] == "2" and "started_at_s" not in record, record
        assert 0 < float(record["due_at_s"]) - time.time() <= 2.0 + 0.5, record  # attempt 2 waits 2 s (scale 0.5)
        await eventually(lambda: statuses(r, ["s0"])["s0"] == "active" and connects(s, "s0") == 3
                         and runner.machine.state.value == "open" and not runner.has_unwritten,
                         10, "attempt 2 opened and its status written")
        used = service.store.round_trips - before
    records = read_timeline(tmp_path / "timeline.jsonl")
    steps = events_of(records, "s0")
    assert [r.attempt for r in records if r.event == "reconnect_failed"] == [1]
    assert steps.count("session_open") == 2, steps
    assert not r.sync.exists(r.layout.session_key("s0")), "pending record left after recovery"
    assert used <= MAX_ROUND_TRIPS, f"one recovered session cost {used} Redis round trips"


async def test_restart_after_a_started_attempt_resumes_the_next_one(
        service_settings, standins_clean, service_redis, tmp_path) -> None:
    """What a process killed between attempt 1's failure and attempt 2 leaves behind: status
    `connecting` and the record "attempt 1 started". The restart resumes attempt 2."""
    s, r = standins_clean, service_redis
    s.backoffice.add_account("s0")
    now = time.time()
    r.sync.set(r.layout.status_key("s0"), "connecting")
    r.sync.hset(r.layout.session_key("s0"), mapping={"attempt": "1", "due_at_s": repr(now - 3.0),
                                                        "started_at_s": repr(now - 2.9)})
    async with run_service(service_settings(sessions="s0")):
        await eventually(lambda: statuses(r, ["s0"])["s0"] == "active", 10, "s0 resumed and active")
    records = [r for r in read_timeline(tmp_path / "timeline.jsonl") if r.session_id == "s0"]
    resumed = [r for r in records if r.event == "session_resumed"]
    assert [r.detail.get("pending_attempt") for r in resumed] == [2], json.dumps([r.detail for r in resumed])
    assert [r.attempt for r in records if r.event == "reconnect_scheduled"][:1] == [2]


async def test_restart_during_a_ban_resumes_the_uncounted_wait_without_spending_an_attempt(
        service_settings, standins_clean, service_redis, tmp_path) -> None:
    """What a process killed while waiting out a temporary ban after attempt 2 leaves behind:
    `connecting` and the record "uncounted wait after 2 attempts, due in 1 s". The restart waits
    the rest of it uncounted, and the next counted attempt is 3 (not 2 again)."""
    s, r = standins_clean, service_redis
    s.backoffice.add_account("s0")
    now = time.time()
    r.sync.set(r.layout.status_key("s0"), "connecting")
    r.sync.hset(r.layout.session_key("s0"), mapping={"attempt": "2", "due_at_s": repr(now + 1.0), "counted": "0"})
    async with run_service(service_settings(sessions="s0")):
        await eventually(lambda: statuses(r, ["s0"])["s0"] == "active", 10, "s0 resumed and active")
    records = [r for r in read_timeline(tmp_path / "timeline.jsonl") if r.session_id == "s0"]
    scheduled = [r for r in records if r.event == "reconnect_scheduled"]
    assert [(r.attempt, r.detail.get("reason")) for r in scheduled][:1] == [(2, "resumed")], scheduled
    assert scheduled[0].detail["backoff_ms"] <= 1000.0, scheduled[0].detail
    assert not r.sync.exists(r.layout.session_key("s0")), "pending record left after recovery"
