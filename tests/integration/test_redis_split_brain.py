"""A split brain: the Redis primary cut off by Toxiproxy from the service, the sentinels and its
replica while the replica is promoted; then the partition heals and the old primary is demoted.

The replica stalls (a Toxiproxy `timeout` toxic drops what the primary sends it while the
link stays up, as a replica far behind looks), the back office refuses status batches (so
updates wait in the outbox), 300 sessions drop at once, and once their updates are on the
primary it is partitioned. What the old primary took and never passed on is discarded when it rejoins as
a replica; the back office answers again after the heal. Judged:
- with `redis_replica_waits = 1` no back-office update the service counted as committed is
  lost (each waited for the replica's acknowledgement);
- with 0 the loss is measured and reported (`reports/service/redis-split-brain-waits-<N>.json`):
  every update committed on the primary alone is lost (the test requires it to see them);
- either way the service follows the promoted replica, no session is stuck, and the old
  primary, once healed, holds the new primary's data (it was demoted, not written to).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chaos.toxiproxy import Toxiproxy
from service.ports import StatusUpdate
from tests.fixtures.redis_ha import (DOWN_AFTER_MS, SentinelGroup, all_active, lost_examples, outbox_empty, record_commits,
                                     group_reads, recover_and_collect, start_partitionable_group, until)
from tests.fixtures.service import run_service
from tests.fixtures.standins import Standins

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SESSIONS = 300
IDS = [f"s{i}" for i in range(SESSIONS)]
WAIT_TIMEOUT_MS = 1000
REPORT_DIR = Path(__file__).resolve().parents[2] / "reports" / "service"


@pytest.fixture
def partitionable_group(server_log_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                        toxiproxy: Toxiproxy) -> Any:
    group = start_partitionable_group(server_log_dir, tmp_path_factory.mktemp("split-group"), toxiproxy)
    try:
        yield group
    finally:
        group.stop()


def demoted(group: SentinelGroup) -> bool:
    """The old primary now replicates the new one and is in sync with it."""
    with group.primary.client() as direct:
        info = direct.info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def outbox_length(server: Any) -> int:
    with server.client() as direct:
        return int(direct.xlen("rl:outbox"))


def statuses_of(client: Any) -> list[Any]:
    return client.mget([f"rl:status:{sid}" for sid in IDS])


@pytest.mark.parametrize("replica_waits", [1, 0])
async def test_partitioned_primary_loses_no_committed_update_with_replica_waits(
        replica_waits: int, partitionable_group: SentinelGroup, service_settings: Callable[..., Any],
        standins_clean: Standins) -> None:
    group, standins = partitionable_group, standins_clean
    await asyncio.to_thread(standins.backoffice.add_accounts, IDS)
    settings = service_settings(redis_url=group.url(), sessions=f"s{{0..{SESSIONS - 1}}}", time_scale=0.5,
                                lease_ttl_s=10.0, redis_replica_waits=replica_waits,
                                redis_wait_timeout_ms=WAIT_TIMEOUT_MS)
    committed: dict[str, tuple[float, StatusUpdate]] = {}
    async with run_service(settings) as service:
        record_commits(service.outbox, committed)
        await until(lambda: all_active(group, IDS), 60, "every session active")
        await until(lambda: outbox_empty(group), 30, "start-up updates delivered")
        old = group.primary_address()
        # the back office refuses status batches meanwhile: the drop's updates wait in the outbox
        await asyncio.to_thread(standins.backoffice.set_mode, "error500", endpoints=["status_batch"])
        # the replica stalls: what the primary sends it is dropped (its link stays up, as in a lag)
        stall = group.proxies["replication"].add_toxic("timeout", timeout=0)

        await asyncio.to_thread(standins.whatsapp.outage, 503, refusals=1)
        before = len(committed)
        # on the primary, and (waits off) counted by the service as committed; with waits on none can
        # be: the stalled replica acknowledges nothing
        await until(lambda: outbox_length(group.primary) >= SESSIONS // 3
                    and (replica_waits > 0 or len(committed) - before >= SESSIONS // 3), 30,
                    "the drop's updates on the primary")
        group.proxies["primary"].disable()  # the primary alone: cut from the service and the sentinels
        partitioned_at, committed_before_cut = time.monotonic(), len(committed) - before
        new, failover_s = await asyncio.to_thread(group.wait_for_new_primary, old, 60.0)
        # heal only once no sentinel would fail over again (with the old primary back, to it)
        await asyncio.to_thread(group.wait_until_settled_on, new, hold_s=2 * DOWN_AFTER_MS / 1000, timeout_s=60.0)
        group.proxies["replication"].remove_toxic(stall)
        group.proxies["primary"].enable()
        healed_at = await until(lambda: demoted(group), 60, "the old primary demoted and in sync")
        await asyncio.to_thread(standins.backoffice.set_mode, "ok")

        # with waits on, leases could not be renewed while no replica acknowledged (up to the heal):
        # sessions released then are adopted again by the lease loop, and open again
        recovered = await recover_and_collect(service, standins, group_reads(group, IDS), SESSIONS)
        with group.primary_client() as now_primary, group.primary.client() as old_primary:
            same_data = statuses_of(now_primary) == statuses_of(old_primary)

    lost = recovered.lost(committed)
    result = {
        "sessions": SESSIONS, "redis_replica_waits": replica_waits, "replica": "stalled from before the drop until the failover",
        "failover_s": round(failover_s, 3), "old_primary_demoted_after_partition_s": round(healed_at - partitioned_at, 3),
        "updates_committed": len(committed), "committed_on_the_primary_alone": committed_before_cut,
        "updates_lost": len(lost),
        "lost_examples": lost_examples(committed, lost),
    }
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / f"redis-split-brain-waits-{replica_waits}.json").write_text(json.dumps(result, indent=2) + "\n")

    assert new == group.proxies["replica"].address, result
    health, stats = recovered.health, recovered.stats
    assert health["ok"], health
    assert stats["connected"] == SESSIONS and stats["max_live_per_session"] == 1 and not stats["r7_violations"], stats
    assert same_data, "the old primary kept data the new one does not have"
    if replica_waits:  # nothing counted as done while the replica could not acknowledge it
        assert committed_before_cut == 0 and not lost, result
    else:  # what the primary alone took is gone, and the test sees it
        assert len(lost) >= committed_before_cut > 0, result
