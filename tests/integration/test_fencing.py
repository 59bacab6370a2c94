"""B9 in one process, on real Redis and real sockets: once a session's lease has moved to
another owner (its fencing token incremented, as another process's acquisition does), every
ownership write of the old owner is refused inside the script — status, outbox entry,
pending record — counted in `/metrics`, logged, and the old owner lets the session go
without touching its state. On a single server and on the local cluster. The paused-owner test with real processes is
`test_paused_owner.py`.
"""

from __future__ import annotations

import pytest

from tests.fixtures.redis_cluster import SERVICE_ON_BOTH, RedisView
from tests.fixtures.service import ascrape, log_records, metric_value, run_service, statuses
from tests.fixtures.standins import eventually

pytestmark = [pytest.mark.integration, SERVICE_ON_BOTH]


def take_over(r: RedisView, session_id: str, owner: str) -> None:
    """What another process's lease acquisition leaves in Redis (see `ACQUIRE_LUA`)."""
    r.sync.set(r.layout.lease_key(session_id), owner, px=60_000)
    r.sync.incr(r.layout.fence_key(session_id))


@pytest.mark.parametrize("close_code", [401, 500])  # terminal (writes inactive) and backoff (connecting + pending)
async def test_writes_after_the_lease_moved_are_refused_and_the_session_let_go(
        close_code, service_settings, standins_clean, service_redis, service_log) -> None:
    s, r = standins_clean, service_redis
    s.backoffice.add_accounts(["s0", "s1"])
    async with run_service(service_settings(sessions="s0,s1", lease_ttl_s=30.0)) as service:
        await eventually(lambda: set(statuses(r, ["s0", "s1"]).values()) == {"active"}, 5, "active")
        await eventually(lambda: r.outbox_length() == 0, 5, "start-up updates delivered")
        before = len([u for u in s.backoffice.updates()["updates"] if u["session_id"] == "s0"])
        take_over(r, "s0", "gw-other")
        s.whatsapp.close("s0", close_code)
        await eventually(lambda: "s0" not in service.gateway.runners and "s0" not in service.gateway.settled,
                         5, "s0 let go")
        text = await ascrape(service.server.port)
        assert metric_value(text, "reconnect_lab_fenced_writes_total", write="set_status") == 1
        assert statuses(r, ["s0"])["s0"] == "active", "a refused write changed the status"
        assert not r.sync.exists(r.layout.session_key("s0")), "a refused write left a pending record"
        assert r.outbox_length() == 0, "a refused write appended an outbox entry"
        assert r.sync.get(r.layout.lease_key("s0")) == b"gw-other", "the new owner's lease was touched"
        s1_connects = s.whatsapp.session("s1")["connects"]
        s.whatsapp.close("s1")  # the other session is still ours and still written
        await eventually(lambda: s.whatsapp.session("s1")["connects"] > s1_connects
                         and statuses(r, ["s1"])["s1"] == "active", 5, "s1 reconnected")
    assert len([u for u in s.backoffice.updates()["updates"] if u["session_id"] == "s0"]) == before
    assert s.whatsapp.session("s0")["connects"] == 1, "the old owner reconnected a session it lost"
    fenced = [r for r in log_records(service_log) if r["event"] == "write_fenced"]
    assert [r.get("session_id") for r in fenced] == ["s0"]
