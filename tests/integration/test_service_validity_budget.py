"""R4 within a budget: a slow or silent back office adds at most
`backoffice_validity_budget_s` to a reconnect, not its whole request timeout; Redis's
`inactive` decides without asking at all.

Measured per session from the service's own timeline: timer fired (`reconnect_running`)
→ socket opening (`session_starting`), with a healthy back office (the baseline), with a
silent one and the budget as long as the timeout (how every reconnect waited before the
budget existed), and with a silent one and a short budget. Each step is judged against
the baseline measured in the same run. The figures go to `reports/service/r4-budget.json`.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest
import redis

from tests.fixtures.redis_cluster import SERVICE_ON_BOTH, RedisView
from tests.fixtures.service import ascrape, metric_value, read_timeline, run_service, statuses
from tests.fixtures.standins import eventually

pytestmark = pytest.mark.integration

IDS = [f"s{i}" for i in range(5)]
# SERVICE_R4_TIMEOUT_S=5 SERVICE_R4_BUDGET_S=1 measures at the service's defaults
TIMEOUT_S = float(os.environ.get("SERVICE_R4_TIMEOUT_S", "2.0"))
BUDGET_S = float(os.environ.get("SERVICE_R4_BUDGET_S", "0.25"))
MARGIN_S = 0.5  # scheduling noise of a busy 2-core machine, on top of the measured baseline
REPORT = Path(__file__).resolve().parents[2] / "reports" / "service" / "r4-budget.json"
VALIDITY_CALLS = ["validity", "validity_batch"]


def all_active(redis_: redis.Redis | RedisView, ids=IDS) -> bool:
    return set(statuses(redis_, ids).values()) == {"active"}


def open_delays_s(timeline_path: Path) -> list[float]:
    """Per reconnect: seconds from its timer firing to its socket opening."""
    running: dict[str, float] = {}
    delays = []
    for record in read_timeline(timeline_path):
        if record.event == "reconnect_running":
            running[record.session_id] = record.t
        elif record.event == "session_starting" and record.attempt >= 1 and record.session_id in running:
            delays.append(record.t - running.pop(record.session_id))
    return delays


async def reconnect_all(settings, standins, redis_client, silent: bool) -> tuple[list[float], dict[str, float]]:
    s = standins
    async with run_service(settings) as service:
        await eventually(lambda: all_active(redis_client), 10, "all active")
        if silent:
            s.backoffice.set_mode("never_ends", endpoints=VALIDITY_CALLS)
        before = {sid: s.whatsapp.session(sid)["connects"] for sid in IDS}
        for sid in IDS:
            s.whatsapp.close(sid, 503)
        await eventually(lambda: all(s.whatsapp.session(sid)["connects"] == before[sid] + 1 for sid in IDS)
                         and all_active(redis_client), 15, "every session reconnected")
        text = await ascrape(service.server.port)
        counts = {outcome: metric_value(text, "reconnect_lab_validity_backoffice", outcome=outcome)
                  for outcome in ("unreachable", "budget_expired")}
        s.backoffice.set_mode("ok")
    return open_delays_s(settings.timeline_path), counts


async def test_a_silent_back_office_costs_a_reconnect_at_most_the_budget(
        service_settings, standins_clean, redis_client, tmp_path) -> None:
    standins_clean.backoffice.add_accounts(IDS)

    def settings(name: str, budget_s: float):
        redis_client.flushdb()
        return service_settings(sessions=",".join(IDS), backoffice_timeout_s=TIMEOUT_S,
                                backoffice_validity_budget_s=budget_s, timeline_path=tmp_path / f"{name}.jsonl")

    healthy, healthy_counts = await reconnect_all(settings("healthy", BUDGET_S), standins_clean, redis_client, False)
    before, _ = await reconnect_all(settings("before", TIMEOUT_S), standins_clean, redis_client, True)
    after, after_counts = await reconnect_all(settings("after", BUDGET_S), standins_clean, redis_client, True)
    assert len(healthy) == len(before) == len(after) == len(IDS)
    bound_s = max(healthy) + BUDGET_S + MARGIN_S
    assert all(delay <= bound_s for delay in after), f"{after} against {bound_s:.3f} s"
    assert healthy_counts == {"unreachable": 0, "budget_expired": 0}
    assert after_counts["budget_expired"] == len(IDS) and after_counts["unreachable"] == len(IDS)
    assert all(delay >= TIMEOUT_S * 0.9 for delay in before), f"without a budget each waits the timeout: {before}"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({
        "what": "timer fired -> socket opening, seconds, per reconnect (5 sessions)",
        "backoffice_timeout_s": TIMEOUT_S, "budget_s": BUDGET_S,
        "healthy": {"median": statistics.median(healthy), "max": max(healthy)},
        "silent_budget_equal_to_timeout": {"median": statistics.median(before), "max": max(before)},
        "silent_with_budget": {"median": statistics.median(after), "max": max(after)},
    }, indent=2) + "\n")


@SERVICE_ON_BOTH
async def test_redis_inactive_decides_without_asking_the_back_office(
        service_settings, standins_clean, service_redis) -> None:
    s, r = standins_clean, service_redis
    s.backoffice.add_accounts(["s0"])
    settings = service_settings(sessions="s0", backoffice_timeout_s=TIMEOUT_S, backoffice_validity_budget_s=TIMEOUT_S,
                                policy={"base_s": 10.0})  # 0.5 s with the tests' time scale
    async with run_service(settings) as service:
        await eventually(lambda: all_active(r, ["s0"]), 10, "active")
        s.backoffice.set_mode("never_ends", endpoints=VALIDITY_CALLS)
        s.whatsapp.close("s0", 503)
        await eventually(lambda: statuses(r, ["s0"])["s0"] == "connecting", 5, "s0 in backoff")
        r.sync.set(r.layout.status_key("s0"), "inactive")  # as the back office does when it deletes an account
        await eventually(lambda: "s0" not in service.gateway.runners, 5, "s0 dropped")
        assert s.backoffice.updates()["validity_batches"] == 0
        assert service.validity.backoffice_budget_expired == 0 and service.validity.backoffice_unreachable == 0
    timeline = [r for r in read_timeline(settings.timeline_path) if r.session_id == "s0"]
    fired = next(r.t for r in timeline if r.event == "reconnect_running")
    cancelled = next(r.t for r in timeline if r.event == "reconnect_cancelled")
    assert cancelled - fired < BUDGET_S + MARGIN_S, "Redis's inactive is the answer at once"
