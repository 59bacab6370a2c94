"""R7 in the runtime, with a slow-closing link: the WhatsApp stand-in answers (and counts
out) a client's close frame late (`slow-close`), so a service that opens the next socket
before its close of the old one finished holds two live sockets for a session, and the
stand-in's R7 counter sees it. One test per path that reopens: reconnect after backoff
(a dead link the service closes itself), Baileys' 515 immediate reconnect, resume by
another process after a graceful stop (the session's lease moves), and a restart.
"""

from __future__ import annotations

import pytest

from service.runtime.app import build_service
from tests.fixtures.service import run_service, statuses
from tests.fixtures.standins import Standins, eventually

pytestmark = pytest.mark.integration

# at the fixtures' time scale: keepalive 1 s x 3 misses, close grace 1 s, lease 2 s (checked every 0.4 s)
SLOW_CLOSE_S = 0.6  # below the dead link's close grace (1 s): a correct service waits for it
TAKEOVER_SLOW_CLOSE_S = 1.5  # below the wire close timeout (2 s), above a lease check (0.4 s)


def assert_one_live_socket(standins: Standins, session_id: str) -> None:
    stats = standins.whatsapp.stats()
    assert stats["r7_violations"] == [], stats["r7_violations"]
    assert standins.whatsapp.session(session_id)["max_live"] == 1


async def test_reconnect_after_backoff_waits_for_the_old_sockets_slow_close(
        service_settings, standins_clean: Standins, redis_client) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0"])
    async with run_service(service_settings(sessions="s0")):
        await eventually(lambda: statuses(redis_client, ["s0"])["s0"] == "active", 5, "s0 active")
        s.whatsapp.slow_close("s0", SLOW_CLOSE_S)
        s.whatsapp.mute("s0")  # keepalives unanswered: the service closes the link, backs off, reopens
        await eventually(lambda: s.whatsapp.session("s0")["connects"] >= 2, 15, "s0 reopened after backoff")
        s.whatsapp.unmute("s0")
        await eventually(lambda: statuses(redis_client, ["s0"])["s0"] == "active", 5, "s0 active again")
    assert_one_live_socket(s, "s0")


async def test_515_immediate_reconnect_keeps_one_live_socket(
        service_settings, standins_clean: Standins, redis_client) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0"])
    async with run_service(service_settings(sessions="s0", policy={"codes": "baileys"})):
        await eventually(lambda: statuses(redis_client, ["s0"])["s0"] == "active", 5, "s0 active")
        s.whatsapp.slow_close("s0", SLOW_CLOSE_S)
        for round_ in range(2, 5):
            assert s.whatsapp.close("s0", 515) == 1
            await eventually(lambda: s.whatsapp.session("s0")["opens"] >= round_, 5, f"reopen {round_}")
    assert_one_live_socket(s, "s0")


async def test_takeover_after_a_graceful_stop_waits_for_the_old_sockets_slow_close(
        service_settings, standins_clean: Standins, redis_client) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0"])
    first = await build_service(service_settings(sessions="s0", owner_id="owner-a"))
    stopped = False
    try:
        await eventually(lambda: s.whatsapp.session("s0")["live"] == 1, 10, "s0 live on owner-a")
        async with run_service(service_settings(sessions="s0", owner_id="owner-b")) as standby:
            await eventually(lambda: standby.gateway.health()["ok"], 5, "owner-b running")
            assert "s0" not in standby.gateway.runners
            s.whatsapp.slow_close("s0", TAKEOVER_SLOW_CLOSE_S)
            stopped = True
            await first.stop()  # releases s0: its socket closed (slowly), then its lease given up
            await eventually(lambda: "s0" in standby.gateway.runners and s.whatsapp.session("s0")["live"] == 1,
                             10, "owner-b resumed s0")
    finally:
        if not stopped:
            await first.stop()
    assert s.whatsapp.session("s0")["connects"] == 2
    assert_one_live_socket(s, "s0")


async def test_restart_after_a_graceful_stop_resumes_after_the_old_sockets_slow_close(
        service_settings, standins_clean: Standins, redis_client) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0"])
    settings = service_settings(sessions="s0", owner_id="owner-a")
    async with run_service(settings):
        await eventually(lambda: s.whatsapp.session("s0")["live"] == 1, 10, "s0 live")
        s.whatsapp.slow_close("s0", TAKEOVER_SLOW_CLOSE_S)
    # stopped (the socket's slow close included); the same owner starts again at once
    async with run_service(settings):
        await eventually(lambda: s.whatsapp.session("s0")["connects"] == 2
                         and s.whatsapp.session("s0")["live"] == 1, 10, "s0 resumed by the restart")
    assert_one_live_socket(s, "s0")
