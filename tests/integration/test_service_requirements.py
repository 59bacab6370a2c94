"""R1–R8 end to end: the real service (in this event loop) against real Redis (a single
server and the local cluster) and the real stand-ins, observed where a person would look —
the status in Redis, the updates the back-office stand-in received, and the sockets the
WhatsApp stand-in saw.

Timings are the note's scaled by 0.05: backoff 0.1, 0.2, 0.4, 0.8, 1.6 s.
"""

from __future__ import annotations

import random

import pytest

from service.core import Status
from tests.fixtures.redis_cluster import SERVICE_ON_BOTH
from tests.fixtures.service import events_of, read_timeline, run_service, statuses
from tests.fixtures.standins import eventually

pytestmark = [pytest.mark.integration, SERVICE_ON_BOTH]

NON_TERMINAL_REJECT = 500  # `original` table: not terminal, so it is retried with backoff


def history(standins, session_id: str) -> list[tuple[str, str]]:
    """(status, priority) of every update the back office received for one session, in order."""
    updates = standins.backoffice.updates()["updates"]
    return [(u["status"], u["priority"]) for u in sorted(
        (u for u in updates if u["session_id"] == session_id), key=lambda u: u["seq"])]


def connects(standins, session_id: str) -> int:
    return int(standins.whatsapp.session(session_id)["connects"])


async def all_active(service_redis, ids: list[str], timeout_s: float = 10.0) -> None:
    await eventually(lambda: set(statuses(service_redis, ids).values()) == {"active"}, timeout_s,
                     f"all of {ids[:3]}... active")


async def test_r5_terminal_close_marks_inactive_and_never_reconnects(
        service_settings, standins_clean, service_redis, tmp_path) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0", "s1"])
    async with run_service(service_settings(sessions="s0,s1")) as service:
        await all_active(service_redis, ["s0", "s1"])
        s.whatsapp.close("s0", 401)
        s.whatsapp.close("s1")  # a plain drop at the same moment: its reconnect paces the check
        await eventually(lambda: statuses(service_redis, ["s0"])["s0"] == "inactive", 5, "s0 inactive in Redis")
        # one flush: high priority goes at once, so well inside one flush interval (0.1 s) + HTTP
        await eventually(lambda: ("inactive", "high") in history(s, "s0"), 1.0, "high-priority inactive at the back office")
        await eventually(lambda: statuses(service_redis, ["s1"])["s1"] == "active"
                         and connects(s, "s1") == 2, 5, "s1 reconnected after its backoff")
        assert connects(s, "s0") == 1, "a terminal close must never reach the stand-in again"
        assert "s0" not in service.gateway.runners
        records = read_timeline(tmp_path / "timeline.jsonl")
        assert "session_terminal" in events_of(records, "s0")
        assert "reconnect_scheduled" not in events_of(records, "s0")


@pytest.mark.parametrize("validity", ["batch", "single"])
async def test_s1_flaky_link_reconnects_on_attempt_2_and_r6_resets_attempts(
        service_settings, standins_clean, service_redis, tmp_path, validity) -> None:
    s = standins_clean
    s.backoffice.add_account("s0")
    async with run_service(service_settings(sessions="s0", backoffice_validity=validity)):
        await all_active(service_redis, ["s0"])
        s.whatsapp.reject("s0", NON_TERMINAL_REJECT)
        s.whatsapp.close("s0")
        await eventually(lambda: statuses(service_redis, ["s0"])["s0"] == "connecting", 2, "connecting")
        # refused, not only accepted: a socket is counted at accept, before its hello is judged
        await eventually(lambda: connects(s, "s0") == 2 and s.whatsapp.session("s0")["connected"] == 0, 3,
                         "attempt 1 reached the stand-in and was refused")
        s.whatsapp.unreject("s0")
        await eventually(lambda: statuses(service_redis, ["s0"])["s0"] == "active" and connects(s, "s0") == 3,
                         3, "attempt 2 succeeded")
        # R6: a new drop starts again from attempt 1
        s.whatsapp.close("s0")
        await eventually(lambda: connects(s, "s0") == 4 and statuses(service_redis, ["s0"])["s0"] == "active",
                         3, "second drop recovered")
    records = [r for r in read_timeline(tmp_path / "timeline.jsonl") if r.session_id == "s0"]
    scheduled = [(r.attempt, r.detail["backoff_ms"]) for r in records if r.event == "reconnect_scheduled"]
    assert scheduled == [(1, 100.0), (2, 200.0), (1, 100.0)]
    assert [r.attempt for r in records if r.event == "reconnect_failed"] == [1]
    assert history(s, "s0") == [("connecting", "normal"), ("active", "normal"), ("connecting", "normal"),
                                ("active", "normal"), ("connecting", "normal"), ("active", "normal")]
    # R4 asked the back office before each of the three attempts, in the configured way
    batches = s.backoffice.updates()["validity_batches"]
    assert batches == 0 if validity == "single" else batches >= 3


async def test_r2_five_attempts_then_inactive(service_settings, standins_clean, service_redis, tmp_path) -> None:
    s = standins_clean
    s.backoffice.add_account("s0")
    async with run_service(service_settings(sessions="s0")) as service:
        await all_active(service_redis, ["s0"])
        s.whatsapp.reject("s0", NON_TERMINAL_REJECT)
        s.whatsapp.close("s0")
        await eventually(lambda: statuses(service_redis, ["s0"])["s0"] == "inactive", 6, "given up")
        await eventually(lambda: ("inactive", "high") in history(s, "s0"), 1.0, "back office told, high")
        assert connects(s, "s0") == 1 + 5
        assert "s0" not in service.gateway.runners
    records = [r for r in read_timeline(tmp_path / "timeline.jsonl") if r.session_id == "s0"]
    assert [r.detail["backoff_ms"] for r in records if r.event == "reconnect_scheduled"] == [100, 200, 400, 800, 1600]
    assert events_of(records, "s0").count("max_attempts_reached") == 1
    # attempts are spaced by the schedule (measured at the stand-in, on its clock)
    opens = [e["t"] for e in s.whatsapp.events() if e["session_id"] == "s0" and e["event"] == "connect"]
    gaps = [b - a for a, b in zip(opens[1:], opens[2:])]
    for gap, expected in zip(gaps, [0.2, 0.4, 0.8, 1.6]):
        assert expected * 0.9 <= gap <= expected + 0.5, (gaps, "backoff not respected")


async def test_r4_s3_account_deleted_during_backoff_cancels_without_a_socket(
        service_settings, standins_clean, service_redis, tmp_path) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0", "s1"])
    async with run_service(service_settings(sessions="s0,s1")) as service:
        await all_active(service_redis, ["s0", "s1"])
        s.whatsapp.reject("s0", NON_TERMINAL_REJECT)
        s.whatsapp.close("s0")
        await eventually(lambda: connects(s, "s0") == 2, 3, "attempt 1 failed")
        s.backoffice.delete_account("s0")  # also writes `inactive` to Redis, as the real one does
        # read where the service reads it (its own store, in its layout); it writes no status until the cancel
        assert await service.store.get_status("s0") is Status.INACTIVE
        timeline = tmp_path / "timeline.jsonl"
        await eventually(lambda: "reconnect_cancelled" in events_of(read_timeline(timeline), "s0"), 3,
                         "the timer fired and validation failed")
        assert connects(s, "s0") == 2, "no socket may be opened for an invalid session"
        # the drop follows the timeline line once the failed attempt's link is closed (awaited)
        await eventually(lambda: "s0" not in service.gateway.runners, 2, "s0 dropped")
        assert statuses(service_redis, ["s0", "s1"]) == {"s0": "inactive", "s1": "active"}
        # Redis's `inactive` decided (R1); the back office's veto alone would also cancel, and
        # would hide a back office writing its status at a key the service never reads
        assert service.validity.backoffice_vetoes == 0


async def test_b3_dead_link_detected_by_keepalives(service_settings, standins_clean, service_redis, tmp_path) -> None:
    s = standins_clean
    s.backoffice.add_account("s0")
    async with run_service(service_settings(sessions="s0")):
        await all_active(service_redis, ["s0"])
        s.whatsapp.mute("s0")  # the socket stays up but pongs stop: a half-open link
        await eventually(lambda: statuses(service_redis, ["s0"])["s0"] == "connecting", 6, "dead link noticed")
        s.whatsapp.unmute("s0")
        await eventually(lambda: statuses(service_redis, ["s0"])["s0"] == "active", 6, "reconnected")
    closed = [r for r in read_timeline(tmp_path / "timeline.jsonl") if r.event == "session_closed"]
    assert closed and closed[0].detail.get("code") == "keepalive_timeout"


async def test_r7_one_live_socket_per_session_over_200_close_cycles(
        service_settings, standins_clean, service_redis) -> None:
    s = standins_clean
    ids = [f"s{i}" for i in range(20)]
    s.backoffice.add_accounts(ids)
    rng = random.Random(1234)
    async with run_service(service_settings(sessions="s{0..19}")):
        await all_active(service_redis, ids)
        cycles = 0
        while cycles < 200:
            batch = rng.sample(ids, 10)
            for sid in batch:
                s.whatsapp.close(sid, rng.choice([None, 408, 500, 515]))
                if rng.random() < 0.3:  # a second close lands while the first is being handled
                    s.whatsapp.close(sid)
            cycles += len(batch)
            await all_active(service_redis, ids)
            stats = s.whatsapp.stats()
            assert stats["r7_violations"] == [], stats["r7_violations"][:3]
        await eventually(lambda: s.whatsapp.stats()["live"] == len(ids), 5, "one live socket each")
    stats = s.whatsapp.stats()
    assert stats["r7_violations"] == [] and stats["max_live_per_session"] == 1


async def test_r8_every_step_is_in_the_timeline_with_session_and_attempt(
        service_settings, standins_clean, service_redis, tmp_path) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0", "s1", "s2"])
    async with run_service(service_settings(sessions="s0,s1,s2")):
        await all_active(service_redis, ["s0", "s1", "s2"])
        s.whatsapp.reject("s0", NON_TERMINAL_REJECT)  # s0 fails every attempt and gives up
        s.whatsapp.reject("s2", NON_TERMINAL_REJECT)  # s2 is deleted while it waits
        for sid in ("s0", "s1", "s2"):
            s.whatsapp.close(sid)
        await eventually(lambda: connects(s, "s2") == 2, 3, "s2 attempt 1 failed")
        s.backoffice.delete_account("s2")
        await eventually(lambda: statuses(service_redis, ["s0"])["s0"] == "inactive", 6, "s0 gave up")
        await eventually(lambda: "reconnect_cancelled" in events_of(read_timeline(tmp_path / "timeline.jsonl"), "s2"),
                         3, "s2 cancelled")
    records = read_timeline(tmp_path / "timeline.jsonl")
    seen = {r.event for r in records}
    for name in ("connection_update", "session_closed", "reconnect_scheduled", "reconnect_running",
                 "session_starting", "session_open", "reconnect_failed", "max_attempts_reached",
                 "reconnect_cancelled"):
        assert name in seen, f"R8 step {name} missing from the timeline"
    scheduled = [r for r in records if r.event == "reconnect_scheduled"]
    assert all(r.detail["max_attempts"] == 5 and "backoff_ms" in r.detail and r.attempt >= 1 for r in scheduled)
