"""B10 end to end: every way a session leaves the process ends it — a final status in Redis
that is not `connecting`, no pending record, a final update to the back office — and a clean
ending raises no repair warning. The real service in this event loop, real Redis, the real
stand-ins; timings scaled by 0.05 (backoff 0.1, 0.2, 0.4, 0.8, 1.6 s). On a single server and on
the local cluster (where the back office's `inactive` lands at the cluster layout's key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.redis_cluster import SERVICE_ON_BOTH, RedisView
from tests.fixtures.service import log_records, run_service, statuses
from tests.fixtures.standins import eventually

pytestmark = [pytest.mark.integration, SERVICE_ON_BOTH]

REJECT = 500  # not terminal in the `original` table: attempts fail and back off


def last_update(standins, session_id: str) -> dict[str, Any] | None:
    mine = [u for u in standins.backoffice.updates()["updates"] if u["session_id"] == session_id]
    return max(mine, key=lambda u: u["seq"]) if mine else None


def connects(standins, session_id: str) -> int:
    return int(standins.whatsapp.session(session_id)["connects"])


def count_calls(obj: Any, name: str) -> Callable[[], int]:
    """Wrap `obj.name` (an async method) to count its calls; returns the counter's reader."""
    calls = [0]
    original = getattr(obj, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await original(*args, **kwargs)
    setattr(obj, name, counted)
    return lambda: calls[0]


def ended(r: RedisView, standins, session_id: str, status: str) -> bool:
    return (statuses(r, [session_id])[session_id] == status
            and not r.sync.exists(r.layout.session_key(session_id))
            and (last_update(standins, session_id) or {}).get("status") == status)


@pytest.mark.parametrize("how", ["terminal", "give_up"])
async def test_a_clean_ending_raises_no_status_repairs_warning(
        how, service_settings, standins_clean, service_redis, service_log) -> None:
    s, r = standins_clean, service_redis
    s.backoffice.add_accounts(["s0", "s1"])
    async with run_service(service_settings(sessions="s0,s1")) as service:
        sweeps = count_calls(service.gateway, "repair_statuses")
        await eventually(lambda: set(statuses(r, ["s0", "s1"]).values()) == {"active"}, 5, "active")
        if how == "terminal":
            s.whatsapp.close("s0", 401)
        else:
            s.whatsapp.reject("s0", REJECT)
            s.whatsapp.close("s0")
        await eventually(lambda: statuses(r, ["s0"])["s0"] == "inactive"
                         and "s0" in service.gateway.settled, 6, "s0 ended inactive")
        done_at = sweeps()
        await eventually(lambda: sweeps() >= done_at + 3, 5, "three adoption sweeps after the ending")
    repairs = [r for r in log_records(service_log) if r["event"] == "status_repairs"]
    assert repairs == [], f"nothing failed, yet: {repairs[:2]}"


def plant_garbage(standins, r: RedisView, session_id: str) -> None:
    r.sync.set(r.layout.status_key(session_id), "banana")


DROPPED_AT_VALIDATION = {
    # the back office deletes the account and writes `inactive` itself, before the link drops
    "deleted_while_connected": ("before_drop", lambda s, r, sid: s.backoffice.delete_account(sid)),
    # the back office says no, but never writes Redis
    "vetoed_without_redis": ("in_backoff", lambda s, r, sid: s.backoffice.add_account(sid, active=False)),
    # an unusable status planted while the session waits for attempt 2
    "garbage_mid_backoff": ("in_backoff", plant_garbage),
}


@pytest.mark.parametrize("case", sorted(DROPPED_AT_VALIDATION))
async def test_a_session_dropped_at_validation_ends_inactive_with_no_pending_record(
        case, service_settings, standins_clean, service_redis, tmp_path) -> None:
    when, act = DROPPED_AT_VALIDATION[case]
    s, r = standins_clean, service_redis
    s.backoffice.add_accounts(["s0", "s1"])
    async with run_service(service_settings(sessions="s0,s1")) as service:
        await eventually(lambda: set(statuses(r, ["s0", "s1"]).values()) == {"active"}, 5, "active")
        if when == "before_drop":
            act(s, r, "s0")
        else:
            s.whatsapp.reject("s0", REJECT)
        s.whatsapp.close("s0")
        if when == "in_backoff":
            await eventually(lambda: connects(s, "s0") == 2, 3, "attempt 1 failed")
            act(s, r, "s0")
        await eventually(lambda: "s0" in service.gateway.settled, 5, "s0 dropped at validation")
        await eventually(lambda: ended(r, s, "s0", "inactive"), 3,
                         "s0 inactive in Redis and at the back office, no pending record")
        assert (last_update(s, "s0") or {}).get("priority") == "high"
        assert statuses(r, ["s1"])["s1"] == "active"
    # a restart finds nothing to resume: the session stays ended
    async with run_service(service_settings(sessions="s0,s1", timeline_path=tmp_path / "after.jsonl")) as again:
        await eventually(lambda: "s0" in again.gateway.settled, 5, "s0 settled after the restart")
    assert statuses(r, ["s0"])["s0"] == "inactive"
    assert connects(s, "s0") == (1 if when == "before_drop" else 2), "no socket after the session ended"
