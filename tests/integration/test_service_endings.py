"""B10 end to end: every way a session leaves the process ends it — a final status in Redis
that is not `connecting`, no pending record, a final update to the back office — and a clean
ending raises no repair warning. The real service in this event loop, real Redis, the real
stand-ins; timings scaled by 0.05 (backoff 0.1, 0.2, 0.4, 0.8, 1.6 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service import keys
from tests.fixtures.service import log_records, run_service, statuses
from tests.fixtures.standins import eventually

pytestmark = pytest.mark.integration

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


async def ended(redis_client, standins, session_id: str, status: str) -> bool:
    return (statuses(redis_client, [session_id])[session_id] == status
            and not redis_client.exists(keys.session_key(session_id))
            and (last_update(standins, session_id) or {}).get("status") == status)


@pytest.mark.parametrize("how", ["terminal", "give_up"])
async def test_a_clean_ending_raises_no_status_repairs_warning(
        how, service_settings, standins_clean, redis_client, service_log) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0", "s1"])
    async with run_service(service_settings(sessions="s0,s1")) as service:
        sweeps = count_calls(service.gateway, "repair_statuses")
        await eventually(lambda: set(statuses(redis_client, ["s0", "s1"]).values()) == {"active"}, 5, "active")
        if how == "terminal":
            s.whatsapp.close("s0", 401)
        else:
            s.whatsapp.reject("s0", REJECT)
            s.whatsapp.close("s0")
        await eventually(lambda: statuses(redis_client, ["s0"])["s0"] == "inactive"
                         and "s0" in service.gateway.settled, 6, "s0 ended inactive")
        done_at = sweeps()
        await eventually(lambda: sweeps() >= done_at + 3, 5, "three adoption sweeps after the ending")
    repairs = [r for r in log_records(service_log) if r["event"] == "status_repairs"]
    assert repairs == [], f"nothing failed, yet: {repairs[:2]}"
