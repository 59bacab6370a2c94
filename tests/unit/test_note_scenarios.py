"""The design note's scenarios S1–S3 as pure event scripts: exactly the note's timelines."""

import pytest

from service.core import State, Status
from service.core.events import Closed, OpenSocket, ScheduleReconnect, SetStatus
from tests.unit.script import drive, open_session


def reconnect_times(run):
    return [t for t, c in run.of(OpenSocket) if c.attempt >= 1]


def test_s1_flaky_wifi_link_down_5_s():
    run = drive(open_session(), Closed(), link_up_at_s=5.0)
    assert run.of(SetStatus)[0][1].status is Status.CONNECTING
    assert reconnect_times(run) == [2, 6]
    assert "reconnect_failed" in run.events()
    assert run.machine.state is State.OPEN and run.machine.status is Status.ACTIVE
    assert run.machine.attempts == 0


def test_s2_long_outage_2_minutes():
    run = drive(open_session(), Closed(), link_up_at_s=120.0)
    assert reconnect_times(run) == [2, 6, 14, 30, 62]
    assert run.machine.status is Status.INACTIVE
    assert run.events()[-1] == "max_attempts_reached"
    assert max(t for t, _ in run.commands) == 62  # nothing after the fifth failure


def test_s3_account_deleted_mid_retry():
    run = drive(open_session(), Closed(), link_up_at_s=5.0, valid_until_s=1.0)
    assert reconnect_times(run) == []
    assert run.machine.state is State.DROPPED
    assert "reconnect_cancelled" in run.events()


@pytest.mark.parametrize("scale", [0.1, 0.01])
def test_scaled_parameters_give_the_same_per_attempt_outcomes(scale):
    run = drive(open_session(time_scale=scale), Closed(), link_up_at_s=120.0 * scale)
    assert reconnect_times(run) == pytest.approx([t * scale for t in (2, 6, 14, 30, 62)])
    assert [c.attempt for _, c in run.of(ScheduleReconnect)] == [1, 2, 3, 4, 5]
    assert run.machine.status is Status.INACTIVE
