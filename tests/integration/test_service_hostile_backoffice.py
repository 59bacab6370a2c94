"""The whole service against a hostile back office (the stand-in's hostile modes), over
real sockets with a real Redis: every hostile reply to a validity question or a status
batch is counted and logged, the sessions reconnect on Redis's answer (R4 with the back
office unable to answer), the outbox keeps every update, and once the back office is
healthy again everything is delivered and validation asks it again.

Also: any exception while validating ends as a counted, logged failed attempt
(`ValidationFailed`), never a task that died with its session left validating.
"""

from __future__ import annotations

import pytest

from service.core import Status
from tests.fixtures.service import ascrape, log_records, metric_value, read_timeline, run_service
from tests.fixtures.standins import eventually

pytestmark = pytest.mark.integration

IDS = ["s0", "s1", "s2"]
TIMEOUT_S = 0.5  # the back office's per-request timeout here: never-ending replies end at it


def statuses_are(redis_client, status: str, ids=IDS) -> bool:
    return all(v == status.encode() for v in redis_client.mget([f"rl:status:{sid}" for sid in ids]))


def connects(standins, sid: str) -> int:
    return int(standins.whatsapp.session(sid)["connects"])


async def drop_all_and_wait_reconnected(standins, redis_client, ids=IDS, timeout_s: float = 15.0) -> None:
    before = {sid: connects(standins, sid) for sid in ids}
    for sid in ids:
        standins.whatsapp.close(sid, 503)
    await eventually(lambda: all(connects(standins, sid) > before[sid] for sid in ids)
                     and statuses_are(redis_client, "active", ids), timeout_s, "every session reconnected")


HOSTILE_MODES = [
    ("deep_nesting", {}), ("huge_number", {}), ("wrong_types", {}), ("truncated", {}),
    ("oversize", {}), ("never_ends", {}), ("trickle", {"delay_s": 0.2}),
]


@pytest.mark.parametrize("mode, knobs", HOSTILE_MODES, ids=[m for m, _ in HOSTILE_MODES])
async def test_hostile_back_office_is_counted_logged_and_recovered_from(
        mode, knobs, service_settings, standins_clean, redis_client, service_log) -> None:
    s = standins_clean
    s.backoffice.add_accounts(IDS)
    settings = service_settings(sessions=",".join(IDS), backoffice_timeout_s=TIMEOUT_S)
    async with run_service(settings) as service:
        await eventually(lambda: statuses_are(redis_client, "active"), 10, "all active")
        await eventually(lambda: redis_client.xlen("rl:outbox") == 0, 5, "start-up updates delivered")
        s.backoffice.set_mode(mode, **knobs)  # every endpoint: validity batches and status batches
        await drop_all_and_wait_reconnected(s, redis_client)
        # the drop's updates wait in Redis while the status batches are refused
        await eventually(lambda: service.outbox.retries >= 1, 10, "a failed status batch retried")
        assert redis_client.xlen("rl:outbox") >= len(IDS)
        text = await ascrape(service.server.port)
        assert metric_value(text, "reconnect_lab_backoffice_errors") >= 2, "validity and status failures counted"
        assert service.validity.backoffice_unreachable >= len(IDS), "each validation saw the back office fail"
        assert s.backoffice.updates()["hostile_replies"] >= 2

        s.backoffice.set_mode("ok")
        await eventually(lambda: redis_client.xlen("rl:outbox") == 0, 10, "outbox drained once healthy")
        asked = s.backoffice.updates()["validity_batches"]
        s.backoffice.deactivate("s0")  # the back office's answer counts again: s0 is vetoed
        await drop_all_and_wait_reconnected(s, redis_client, ["s1", "s2"])
        s.whatsapp.close("s0", 503)
        await eventually(lambda: "s0" not in service.gateway.runners, 10, "s0 dropped as invalid")
        assert s.backoffice.updates()["validity_batches"] > asked
    logged = log_records(service_log)
    assert any(r["event"] == "validation_backoffice_unreachable" for r in logged)
    assert any(r["event"] == "outbox_batch_failed" for r in logged)
    assert not any(r["event"] in ("session_task_failed", "validation_failed") for r in logged)
    got = [(u["status"], u["seq"]) for u in s.backoffice.updates()["updates"] if u["session_id"] == "s1"]
    assert [seq for _, seq in got] == list(range(1, len(got) + 1)), "every update delivered, in order"


async def test_an_exception_while_validating_is_a_counted_failed_attempt(
        service_settings, standins_clean, redis_client, service_log) -> None:
    s = standins_clean
    s.backoffice.add_accounts(IDS)
    async with run_service(service_settings(sessions=",".join(IDS))) as service:
        await eventually(lambda: statuses_are(redis_client, "active"), 10, "all active")
        backoffice = service.validity.backoffice
        real_is_valid = backoffice.is_valid
        failures = {"left": 2}

        async def failing_is_valid(session_id: str) -> bool:
            if session_id == "s0" and failures["left"] > 0:
                failures["left"] -= 1
                raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")
            return await real_is_valid(session_id)
        backoffice.is_valid = failing_is_valid
        s.whatsapp.close("s0", 503)
        # attempts 1 and 2 fail at validation; attempt 3 is validated and opens
        await eventually(lambda: connects(s, "s0") == 2 and statuses_are(redis_client, "active"), 15,
                         "s0 reconnected after two failed validations")
        text = await ascrape(service.server.port)
        assert metric_value(text, "reconnect_lab_command_errors_total", command="Validate") == 2
        assert service.gateway.runners["s0"].machine.attempts == 0  # reset on open (R6)
    failed = [r for r in log_records(service_log) if r["event"] == "validation_failed"]
    assert [r["error_type"] for r in failed] == ["RecursionError", "RecursionError"]
    timeline = [r for r in read_timeline(service.settings.timeline_path) if r.session_id == "s0"]
    reasons = [r.detail.get("reason") for r in timeline if r.event == "reconnect_failed"]
    assert reasons == ["RecursionError", "RecursionError"]
    assert [r.attempt for r in timeline if r.event == "session_starting"][-1] == 3


async def test_validation_that_always_fails_ends_in_a_give_up_not_a_stuck_session(
        service_settings, standins_clean, redis_client, service_log) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0"])
    async with run_service(service_settings(sessions="s0")) as service:
        await eventually(lambda: statuses_are(redis_client, "active", ["s0"]), 10, "active")

        async def broken(session_id: str) -> bool:
            raise ZeroDivisionError("a bug in the validity check")
        service.validity.backoffice.is_valid = broken
        s.whatsapp.close("s0", 503)
        await eventually(lambda: "s0" not in service.gateway.runners, 15, "s0 gave up")
        await eventually(lambda: statuses_are(redis_client, Status.INACTIVE.value, ["s0"]), 5, "s0 inactive")
        assert connects(s, "s0") == 1, "no socket opened without a validation"
    gave_up = [r for r in log_records(service_log) if r["event"] == "max_attempts_reached"]
    assert len(gave_up) == 1


async def test_an_exception_while_adopting_one_session_is_contained_and_retried(
        service_settings, standins_clean, redis_client, service_log, monkeypatch) -> None:
    """A session whose start-up read raises something unforeseen neither stops the service
    from starting nor stays unowned: counted, logged, its lease let go and taken again."""
    from service.store import RedisStatusStore
    real_get_status = RedisStatusStore.get_status
    failures = {"left": 1}

    async def get_status_failing_once(self, session_id: str, **options):
        if session_id == "s1" and failures["left"] > 0:
            failures["left"] -= 1
            raise ValueError("an unforeseen value")
        return await real_get_status(self, session_id, **options)
    monkeypatch.setattr(RedisStatusStore, "get_status", get_status_failing_once)
    standins_clean.backoffice.add_accounts(IDS)
    async with run_service(service_settings(sessions=",".join(IDS))) as service:
        await eventually(lambda: statuses_are(redis_client, "active"), 10, "all active, s1 on a later sweep")
        text = await ascrape(service.server.port)
        assert metric_value(text, "reconnect_lab_command_errors_total", command="adopt") == 1
    failed = [r for r in log_records(service_log) if r["event"] == "adopt_failed"]
    assert [(r["session_id"], r["error_type"]) for r in failed] == [("s1", "ValueError")]
