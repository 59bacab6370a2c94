"""B5 and B4 with real processes: `python -m service` killed with SIGKILL while 100 sessions
wait in backoff, then restarted; and two processes sharing one Redis, one of them killed.
On a single server and on the local cluster.

Observed through Redis (statuses, leases, pending records), the back-office stand-in's
history and the WhatsApp stand-in's socket counts; never through the service's memory.
"""

from __future__ import annotations

import time

import pytest

from tests.fixtures.process import wait_until
from tests.fixtures.redis_cluster import SERVICE_ON_BOTH, RedisView
from tests.fixtures.service import read_timeline, statuses

pytestmark = [pytest.mark.integration, pytest.mark.slow, SERVICE_ON_BOTH]

N = 100
IDS = [f"s{i}" for i in range(N)]
REJECT = 500  # not terminal: attempts fail and back off
CRASH_SCALE = 0.25  # backoff 0.5, 1, 2, 4, 8 s: long enough to kill the process mid-backoff
LEASE_TTL_S = 2.0


def all_status(r: RedisView, wanted: str) -> bool:
    return set(statuses(r, IDS).values()) == {wanted}


def lease_owners(r: RedisView) -> dict[str, str | None]:
    values = r.get([r.layout.lease_key(sid) for sid in IDS])
    return {sid: (v.decode() if v is not None else None) for sid, v in zip(IDS, values)}


def seq_gaps(updates: list[dict], session_id: str) -> list[int]:
    """Missing seq numbers in what the back office received for one session."""
    seqs = sorted({u["seq"] for u in updates if u["session_id"] == session_id})
    return sorted(set(range(1, seqs[-1] + 1)) - set(seqs)) if seqs else []


def test_b5_kill_9_in_backoff_then_restart_resumes_every_session(
        service_process, standins_clean, service_redis, tmp_path) -> None:
    s, r = standins_clean, service_redis
    s.backoffice.add_accounts(IDS)
    first = service_process("a", sessions=f"s{{0..{N - 1}}}", time_scale=CRASH_SCALE, lease_ttl_s=LEASE_TTL_S)
    wait_until(lambda: all_status(r, "active"), 20, "100 sessions active")
    for sid in IDS:
        s.whatsapp.reject(sid, REJECT)
        s.whatsapp.close(sid)
    wait_until(lambda: all_status(r, "connecting")
               and all(r.sync.exists(r.layout.session_key(sid)) for sid in IDS), 10,
               "every session waiting in backoff with a pending record")
    first.process.kill()  # SIGKILL: no graceful stop, leases and pending records stay behind
    for sid in IDS:
        s.whatsapp.unreject(sid)
    assert all_status(r, "connecting")

    restarted = service_process("b", sessions=f"s{{0..{N - 1}}}", time_scale=CRASH_SCALE, lease_ttl_s=LEASE_TTL_S)
    wait_until(lambda: all_status(r, "active"), 30, "every session active after the restart")
    wait_until(lambda: r.outbox_length() == 0, 10, "outbox drained")

    final = statuses(r, IDS)
    assert "connecting" not in final.values()
    updates = s.backoffice.updates()["updates"]
    for sid in IDS:
        assert seq_gaps(updates, sid) == [], f"{sid}: the back office's history has a gap"
        mine = sorted((u for u in updates if u["session_id"] == sid), key=lambda u: u["seq"])
        assert mine[-1]["status"] == final[sid], f"{sid}: back office and Redis disagree"
        assert not r.sync.exists(r.layout.session_key(sid)), "pending record left after recovery"
    resumed = {r.session_id for r in read_timeline(tmp_path / "timeline-b.jsonl") if r.event == "session_resumed"}
    assert resumed == set(IDS), f"not resumed via Resumed: {sorted(set(IDS) - resumed)[:5]}"
    assert s.whatsapp.stats()["r7_violations"] == []
    assert restarted.health()["sessions"] == N


def test_b4_two_processes_one_owner_per_session_and_takeover_within_the_lease(
        service_process, standins_clean, service_redis, tmp_path) -> None:
    s, r = standins_clean, service_redis
    s.backoffice.add_accounts(IDS)
    a = service_process("a", sessions=f"s{{0..{N - 1}}}", lease_ttl_s=LEASE_TTL_S)
    b = service_process("b", sessions=f"s{{0..{N - 1}}}", lease_ttl_s=LEASE_TTL_S)
    wait_until(lambda: all_status(r, "active"), 20, "100 sessions active")
    wait_until(lambda: a.health()["sessions"] + b.health()["sessions"] == N, 5, "every session run once")
    owners = lease_owners(r)
    assert set(owners.values()) <= {"a", "b"} and None not in owners.values()
    assert a.health()["sessions"] == list(owners.values()).count("a")

    # keep the sessions busy while ownership moves: drop every one of them
    for sid in IDS[:50]:
        s.whatsapp.close(sid)
    killed_at = time.monotonic()
    a.process.kill()
    wait_until(lambda: set(lease_owners(r).values()) == {"b"}, LEASE_TTL_S + 2.0,
               "b holds every lease")
    takeover_s = time.monotonic() - killed_at
    wait_until(lambda: all_status(r, "active"), 10, "every session active under b")
    assert b.health()["sessions"] == N
    assert takeover_s <= LEASE_TTL_S + 1.0, f"takeover took {takeover_s:.2f}s, lease is {LEASE_TTL_S}s"
    stats = s.whatsapp.stats()
    assert stats["r7_violations"] == [] and stats["max_live_per_session"] == 1, \
        "a session had two live sockets: two processes ran it at once"
    # the two timelines never interleave for one session: a's steps all come before b's
    steps = [(r.t, name, r.session_id) for name in ("a", "b")
             for r in read_timeline(tmp_path / f"timeline-{name}.jsonl")]
    for sid in IDS:
        owners = [name for _, name, who in sorted(steps) if who == sid]
        switches = sum(1 for x, y in zip(owners, owners[1:]) if x != y)
        assert switches <= 1 and (switches == 0 or owners[0] == "a"), f"{sid} ran in both at once: {owners}"
    assert {name for _, name, _ in steps} == {"a", "b"}, "both processes ran sessions before the kill"
