"""Modelled upstreams and parameters: the WhatsApp limits, the load meters, clear errors."""

from __future__ import annotations

from collections import Counter

import pytest

from service.core import SessionMachine, build_policy
from sim.model import Unit
from sim.params import ModelParams, ParamError
from sim.upstreams import WhatsApp, backoffice_requests, fluid_queue

pytestmark = pytest.mark.sim


def _unit(count: int = 1, ip: int = 0) -> Unit:
    return Unit(SessionMachine("s", build_policy()), count, ip, 0)


def test_the_ip_bucket_admits_its_burst_then_refills_at_its_rate():
    whatsapp = WhatsApp(ModelParams(ip_burst=10.0, ip_connects_per_s=2.0, account_connects=0))
    herd = _unit(count=25)
    assert whatsapp.admit(herd, now=0.0) == 10
    assert whatsapp.admit(herd, now=0.0) == 0
    assert whatsapp.admit(herd, now=3.0) == 6  # 3 s × 2/s
    assert whatsapp.admit(_unit(count=5, ip=1), now=3.0) == 5  # another IP has its own bucket


def test_an_account_over_its_window_is_locked_out_and_hammering_extends_the_lockout():
    whatsapp = WhatsApp(ModelParams(ip_connects_per_s=0.0, account_connects=2, account_window_s=10.0,
                                    account_lockout_s=30.0))
    unit = _unit()
    for now in (0.0, 1.0):
        assert whatsapp.admit(unit, now) == 1
        whatsapp.admitted(unit, now)
    assert whatsapp.admit(unit, 2.0) == 0  # third connect in the window: locked out until 32 s
    assert whatsapp.admit(unit, 20.0) == 0  # the window has passed, but the lock-out has not; now until 50 s
    assert whatsapp.admit(unit, 45.0) == 0
    assert whatsapp.admit(unit, 80.0) == 1  # 45 + 30 = 75 s


def test_the_fluid_queue_reports_backlog_and_time_over_capacity():
    report = fluid_queue([0, 30, 30, 0, 0], capacity_per_bin=20)
    assert report["bins_over_capacity"] == 2
    assert report["max_backlog"] == 20.0
    assert report["backlog_at_end"] == 0.0 and report["last_backlogged_bin"] == 2  # bin 3 drains the last 20
    assert fluid_queue([5, 500], capacity_per_bin=0)["max_backlog"] == 0.0  # 0 = unlimited


def test_back_office_batches_normal_updates_per_flush_and_coalesces_high_ones():
    requests = backoffice_requests(Counter({1: 250, 3: 100}), Counter({2.0: 1, 2.001: 1, 2.5: 150}),
                                   batch=100, flush_s=1.0, bin_s=1.0, n_bins=5, capacity_per_s=50.0)
    # flush 1: 250 updates → 3 requests; t=2.0 and 2.001 share one 20 ms window; 2.5: 150 → 2
    assert requests == [0, 3, 1 + 2, 1, 0]


@pytest.mark.parametrize("values, named", [
    ({"sessions": 0}, "sessions"), ({"outage_s": -1.0}, "outage_s"), ({"bin_s": 0.0}, "bin_s"),
    ({"engine": "gpu"}, "engine"), ({"scenario": "nope"}, "scenario"), ({"jitter": "some"}, "jitter"),
    ({"cap_s": 1.0}, "cap_s"), ({"ip_burst": 0.0}, "ip_burst"), ({"sessions": True}, "sessions"),
])
def test_bad_model_parameters_raise_naming_the_parameter(values, named):
    with pytest.raises(ValueError, match=named):
        ModelParams(**values)


def test_with_rejects_unknown_names():
    with pytest.raises(ParamError, match="sesions"):
        ModelParams().with_(sesions=3)
