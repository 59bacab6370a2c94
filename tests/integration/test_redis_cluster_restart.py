"""The service on a Redis Cluster while one of its nodes crashes and restarts in a storm.

100 sessions run in one service (`run_service`) against the local 3-primary cluster (no
replicas); the WhatsApp stand-in drops every socket and refuses each session's next hello
(attempt 1 fails, attempt 2 opens), and while the storm's first writes land one node is
killed with SIGKILL by PID and started again on the same port (its append-only file,
fsynced every second, is what it comes back with). While it is down its slots — a third of
the shards — answer nothing (`cluster-require-full-coverage` is on: the others refuse too
once they mark it failed); the service retries those writes. Judged, from times measured in
the same run:
- no session stuck: every session `active`, one live socket each, `/healthz` healthy, the
  outbox empty;
- back-office updates lost (committed by the service — `set_status` returned its `seq` — but
  never delivered) are measured and reported, not asserted: with no replica, what the node
  had not yet fsynced is gone (`redis_replica_waits` must be 0 on a cluster).
Figures go to `reports/service/redis-cluster-restart.json`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.keys import KeyLayout
from service.ports import StatusUpdate
from tests.fixtures.redis_cluster import TEST_SHARDS, LocalCluster
from tests.fixtures.redis_ha import StormReads, kill_mid_storm, lost_examples, recover_and_collect
from tests.fixtures.service import run_service
from tests.fixtures.standins import Standins

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SESSIONS = 100
IDS = [f"s{i}" for i in range(SESSIONS)]
LAYOUT = KeyLayout(TEST_SHARDS)
REPORT_DIR = Path(__file__).resolve().parents[2] / "reports" / "service"


def all_active(cluster: LocalCluster) -> bool:
    with cluster.client() as client:
        values = client.mget_nonatomic([LAYOUT.status_key(sid) for sid in IDS])
    return all(v == b"active" for v in values)


def outbox_empty(cluster: LocalCluster) -> bool:
    with cluster.client() as client:
        return sum(int(client.xlen(LAYOUT.outbox_key(s))) for s in LAYOUT.outbox_shards()) == 0


async def test_a_node_killed_and_restarted_mid_storm(redis_cluster: LocalCluster, service_settings: Callable[..., Any],
                                                     standins_clean: Standins) -> None:
    cluster, standins = redis_cluster, standins_clean
    await asyncio.to_thread(cluster.flush)
    await asyncio.to_thread(standins.backoffice.add_accounts, IDS)
    settings = service_settings(redis_url=cluster.url(), redis_cluster_shards=TEST_SHARDS,
                                sessions=f"s{{0..{SESSIONS - 1}}}", time_scale=0.5, lease_ttl_s=10.0)
    committed: dict[str, tuple[float, StatusUpdate]] = {}
    victim = cluster.nodes[0]
    reads = StormReads(lambda: all_active(cluster), lambda: outbox_empty(cluster))
    async with run_service(settings) as service:
        storm = await kill_mid_storm(service, standins, reads, SESSIONS, committed, victim.process.kill)
        await asyncio.to_thread(victim.process.start)  # SIGKILLed by PID mid-storm; back on its port
        await asyncio.to_thread(cluster.wait_ok)
        ok_at = time.monotonic()
        recovered = await recover_and_collect(service, standins, reads, SESSIONS)
        done_at = time.monotonic()

    lost = recovered.lost(committed)
    result = {
        "sessions": SESSIONS, "primaries": len(cluster.nodes), "shards": TEST_SHARDS, "redis_replica_waits": 0,
        "storm_commits_before_kill": storm.storm_commits, "kill_after_drop_s": round(storm.killed_at - storm.drop_at, 3),
        "node_down_s": round(ok_at - storm.killed_at, 3), "recovered_after_cluster_ok_s": round(done_at - ok_at, 3),
        "updates_committed": len(committed), "updates_lost": len(lost),
        "lost_examples": lost_examples(committed, lost),
    }
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "redis-cluster-restart.json").write_text(json.dumps(result, indent=2) + "\n")

    health, stats = recovered.health, recovered.stats
    assert health["ok"], health
    assert stats["connected"] == SESSIONS and stats["max_live_per_session"] == 1 and not stats["r7_violations"], stats
