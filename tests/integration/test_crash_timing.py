"""B5 timing with a real kill -9: a process killed while a session waits for attempt 4 leaves
its due time in Redis; the restarted process resumes attempt 4 at that time (not a fresh
backoff after the lease ran out) with the right attempt number. Judged per step at the
WhatsApp stand-in (its clock): the gap from attempt 3 to attempt 4 is the backoff, within a
tolerance taken from the lateness of the steps before the kill. On a single server and on
the local cluster.
"""

from __future__ import annotations

import pytest

from tests.fixtures.process import wait_until
from tests.fixtures.redis_cluster import SERVICE_ON_BOTH, RedisView
from tests.fixtures.service import read_timeline, statuses

pytestmark = [pytest.mark.integration, pytest.mark.slow, SERVICE_ON_BOTH]

SCALE = 0.5  # backoff 1, 2, 4, 8, 16 s: attempt 4 is due 8 s after attempt 3 failed
LEASE_TTL_S = 2.0  # the restart can take the session over after ~2.4 s, well before attempt 4 is due
REJECT = 500
SID = "s0"


def connect_times(standins) -> list[float]:
    return [e["t"] for e in standins.whatsapp.events() if e["session_id"] == SID and e["event"] == "connect"]


def scheduled(path, attempt: int) -> bool:
    return any(r.event == "reconnect_scheduled" and r.attempt == attempt for r in read_timeline(path))


def record_attempt(r: RedisView) -> str | None:
    value = r.sync.hget(r.layout.session_key(SID), "attempt")
    return value.decode() if value is not None else None


def test_kill_9_while_attempt_4_waits_resumes_it_at_its_due_time(
        service_process, standins_clean, service_redis, tmp_path) -> None:
    s, r = standins_clean, service_redis
    s.backoffice.add_account(SID)
    common = {"sessions": SID, "time_scale": SCALE, "lease_ttl_s": LEASE_TTL_S}
    first = service_process("a", **common)
    wait_until(lambda: statuses(r, [SID])[SID] == "active", 10, "active")
    s.whatsapp.reject(SID, REJECT)
    s.whatsapp.close(SID)
    wait_until(lambda: scheduled(tmp_path / "timeline-a.jsonl", 4), 20, "attempt 3 failed, attempt 4 scheduled")
    try:  # the due time rides on the write that follows the schedule: give it up to 1 s, then kill anyway
        wait_until(lambda: record_attempt(r) == "4", 1.0, "attempt 4 recorded")
    except TimeoutError:
        pass
    first.process.kill()
    s.whatsapp.unreject(SID)
    service_process("b", **common)
    wait_until(lambda: statuses(r, [SID])[SID] == "active" and len(connect_times(s)) == 5, 30,
               "attempt 4 opened under the restarted process")

    t = connect_times(s)  # start, attempts 1-3 under a, attempt 4 under b
    expected_s = [2 * SCALE, 4 * SCALE, 8 * SCALE, 16 * SCALE]  # attempt n waits base * 2**(n-1) after n-1 failed
    gaps = [b - a for a, b in zip(t[1:], t[2:])]
    lateness = [gap - want for gap, want in zip(gaps, expected_s[1:3])]
    tolerance_s = max(0.5, 3 * max(lateness))
    assert all(x >= -0.05 for x in lateness), (gaps, "an attempt ran early")
    assert expected_s[3] - 0.05 <= gaps[2] <= expected_s[3] + tolerance_s, (
        f"attempt 4 came {gaps[2]:.2f}s after attempt 3, its backoff is {expected_s[3]:.2f}s "
        f"(tolerance {tolerance_s:.2f}s from the steps before the kill: {lateness})")
    print(f"attempt 4 came {gaps[2]:.2f}s after attempt 3 (backoff {expected_s[3]:.2f}s, tolerance {tolerance_s:.2f}s)")
    resumed = [r for r in read_timeline(tmp_path / "timeline-b.jsonl") if r.session_id == SID]
    assert [r.detail.get("pending_attempt") for r in resumed if r.event == "session_resumed"] == [4]
    assert [r.attempt for r in resumed if r.event == "session_starting"] == [4]
    assert not r.sync.exists(r.layout.session_key(SID)), "pending record left after recovery"
