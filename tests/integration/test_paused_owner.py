"""B9 with real processes: the paused-owner test. Owner B runs 150 sessions; B is frozen
with SIGSTOP for 40 s; WhatsApp closes B's sockets with 440 (replaced), then process C
starts and takes every session over once B's leases run out; then SIGCONT. B wakes to 150 buffered closes
and must write nothing: every write it tries is refused in Redis (its fencing token has
moved), counted in B's /metrics, and B lets the sessions go. Judged from outside: Redis
(statuses, seq counters, pending records, leases), the back office's received updates and
the WhatsApp stand-in's connects; never B's or C's memory.

With the `baileys` table a 440 is terminal (B would write `inactive`, high priority); with
the default table it is a drop (B would write `connecting` and reconnect). Both on a single
server; on the local cluster the default table with 50 sessions (the same pause).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from service.keys import KeyLayout
from tests.fixtures.process import wait_until
from tests.fixtures.redis_cluster import RedisView
from tests.fixtures.service import metric_value, scrape, statuses

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 150
CLUSTER_N = 50  # the cluster variant: one table and fewer sessions (the pause is most of its time)
PAUSE_S = 40.0
LEASE_TTL_S = 2.0
REPLACED = 440


def leases(r: RedisView, ids: list[str]) -> dict[str, str | None]:
    values = r.get([r.layout.lease_key(sid) for sid in ids])
    return {sid: (v.decode() if v is not None else None) for sid, v in zip(ids, values)}


def counters(r: RedisView, key_of: Callable[[KeyLayout, str], str], ids: list[str]) -> list[bytes | None]:
    return r.get([key_of(r.layout, sid) for sid in ids])


def fenced_total(metrics_text: str) -> float:
    return sum(metric_value(metrics_text, "reconnect_lab_fenced_writes_total", write=write)
               for write in ("set_status", "save_pending", "mark_started"))


@pytest.mark.parametrize(("codes", "service_redis", "n"), [
    ("baileys", "single", N), ("original", "single", N), ("original", "cluster", CLUSTER_N)],
    indirect=["service_redis"])
def test_a_paused_owner_writes_nothing_over_sessions_another_process_took(
        codes, n, service_process, standins_clean, service_redis) -> None:
    s, r, ids = standins_clean, service_redis, [f"s{i}" for i in range(n)]
    s.backoffice.add_accounts(ids)
    common = {"sessions": f"s{{0..{n - 1}}}", "lease_ttl_s": LEASE_TTL_S, "policy": f"codes={codes}"}
    b = service_process("b", **common)
    wait_until(lambda: set(statuses(r, ids).values()) == {"active"}
               and b.health()["sessions"] == n, 30, "B runs every session, all active")

    os.kill(b.process.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        for sid in ids:  # WhatsApp replaces B's devices: B is frozen and reads none of this yet
            assert s.whatsapp.close(sid, REPLACED) == 1, "only B's socket may be closed"
        c = service_process("c", **common)  # started after the closes, so none of them can reach C
        wait_until(lambda: set(leases(r, ids).values()) == {"c"}, PAUSE_S, "C leased every session")
        wait_until(lambda: set(statuses(r, ids).values()) == {"active"}
                   and c.health()["sessions"] == n and r.outbox_length() == 0,
                   PAUSE_S, "C runs every session, all active and delivered")
        took_over_s = time.monotonic() - stopped_at
        assert all(s.whatsapp.session(sid)["connects"] == 2 for sid in ids)
        seqs, fences = counters(r, KeyLayout.seq_key, ids), counters(r, KeyLayout.fence_key, ids)
        wait_until(lambda: time.monotonic() - stopped_at >= PAUSE_S, PAUSE_S + 1, "the pause is over")
        continued_at = time.time()
    finally:
        os.kill(b.process.pid, signal.SIGCONT)

    wait_until(lambda: b.health()["sessions"] == 0 and b.health()["settled"] == 0, 15, "B let every session go")
    observed_from = time.monotonic()  # B's lease loop runs every TTL/5: watch it for two TTLs
    wait_until(lambda: time.monotonic() - observed_from >= 2 * LEASE_TTL_S, 3 * LEASE_TTL_S, "observed")

    assert set(statuses(r, ids).values()) == {"active"}, "a stale status was accepted"
    assert counters(r, KeyLayout.seq_key, ids) == seqs, "B appended outbox entries after waking"
    assert counters(r, KeyLayout.fence_key, ids) == fences, "B took a lease back"
    assert not any(r.sync.exists(r.layout.session_key(sid)) for sid in ids), "B left pending records"
    assert set(leases(r, ids).values()) == {"c"}
    late = [u for u in s.backoffice.updates()["updates"] if u["received_at"] >= continued_at]
    assert late == [], f"the back office received {len(late)} updates after B woke: {late[:3]}"
    assert all(s.whatsapp.session(sid)["connects"] == 2 for sid in ids), "B reconnected a session it lost"
    assert c.health()["sessions"] == n
    refused = fenced_total(scrape(b.metrics_port))
    assert refused >= 1, "B's refused writes are not counted in its /metrics"
    print(f"codes={codes} on {r.mode}: C took over in {took_over_s:.1f}s; B's refused writes: {refused:.0f}")
