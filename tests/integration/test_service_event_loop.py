"""`event_loop`: `python -m service` runs on the loop it names — uvloop (the default) or
asyncio's own — and on each a session goes round the whole loop — drop, a failed attempt,
backoff, recovery — against the real stand-ins, Redis and sockets."""

from __future__ import annotations

import pytest

from tests.fixtures.process import wait_until
from tests.fixtures.service import read_timeline, statuses

pytestmark = pytest.mark.integration

IDS = [f"s{i}" for i in range(5)]
REJECT = 500  # not terminal: the attempt fails and is retried


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_service_recovers_a_dropped_session_on_its_loop(loop, service_process, standins_clean, redis_client,
                                                            tmp_path) -> None:
    s = standins_clean
    s.backoffice.add_accounts(IDS)
    service = service_process("uv", sessions=f"s{{0..{len(IDS) - 1}}}", event_loop=loop, time_scale=0.25)
    wait_until(lambda: set(statuses(redis_client, IDS).values()) == {"active"}, 20, "sessions active")
    running = [line for line in service.log_lines() if line.get("event") == "service_running"]
    assert [line.get("event_loop") for line in running] == [loop], running
    s.whatsapp.reject("s1", REJECT)
    s.whatsapp.close("s1")
    wait_until(lambda: int(s.whatsapp.session("s1")["connects"]) >= 2, 20, "attempt 1 made (refused)")
    s.whatsapp.unreject("s1")
    wait_until(lambda: statuses(redis_client, ["s1"])["s1"] == "active", 20, "s1 recovered")
    steps = [r.event for r in read_timeline(tmp_path / "timeline-uv.jsonl") if r.session_id == "s1"]
    assert "reconnect_failed" in steps and steps[-1] == "session_open", steps
    assert s.whatsapp.stats()["r7_violations"] == []
