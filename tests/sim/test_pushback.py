"""Upstreams that push back: sessions wait in Redis, back-office and WhatsApp queues."""

import pytest

from sim import engine
from sim.params import ModelParams, ParamError
from sim.report import render_table
from sim.results import build

pytestmark = pytest.mark.sim

SLOW_BACKOFFICE = ModelParams(outage_s=20.0, backoffice_requests_per_s=10.0, backoffice_latency_s=0.05,
                              redis_latency_s=0.001, whatsapp_connect_s=0.2, queues=True)


def run(params: ModelParams) -> dict:
    return build(engine.run(params))


def test_an_over_capacity_back_office_delays_recoveries_more_as_load_grows():
    by_load = {n: run(SLOW_BACKOFFICE.with_(sessions=n)) for n in (200, 1_000, 4_000)}
    p99s = [by_load[n]["recovery_s"]["p99"] for n in (200, 1_000, 4_000)]
    assert p99s[0] < p99s[1] < p99s[2], p99s
    assert all(r["outcomes"]["recovered"] == r["sessions"] for r in by_load.values())
    assert by_load[200]["over_capacity"] == []
    assert by_load[4_000]["over_capacity"] == ["backoffice"]
    assert by_load[4_000]["upstreams"]["backoffice"]["over_capacity"] is True
    assert "OVER: back office" in render_table(by_load[4_000])
    # as load meters (no queues, no latencies) the same upstreams delayed nobody
    metered = [run(SLOW_BACKOFFICE.with_(sessions=n, queues=False, backoffice_latency_s=0.0, redis_latency_s=0.0,
                                         whatsapp_connect_s=0.0))["recovery_s"]["p99"] for n in (200, 4_000)]
    assert metered[0] == metered[1]


def test_queues_with_no_limits_and_no_latency_change_nothing():
    plain = ModelParams(sessions=600, jitter="full", outage_s=30.0, ip_connects_per_s=0.0, engine="session")
    unlimited = plain.with_(queues=True, redis_ops_per_s=0.0, backoffice_requests_per_s=0.0)
    a, b = run(plain.with_(redis_ops_per_s=0.0, backoffice_requests_per_s=0.0)), run(unlimited)
    assert (a["outcomes"], a["recovery_s"], a["attempts"]) == (b["outcomes"], b["recovery_s"], b["attempts"])


def test_connects_past_the_timeout_fail_and_are_counted():
    params = ModelParams(sessions=1_000, outage_s=10.0, queues=True, whatsapp_handshakes_per_s=50.0,
                         whatsapp_connect_s=0.1, connect_timeout_s=5.0, ip_connects_per_s=0.0)
    results = run(params)
    assert results["connect_timeouts"] > 0
    assert sum(results["series"]["connect_timeouts"]) == results["connect_timeouts"]
    assert sum(results["series"]["opened"]) == sum(results["recovered_on_attempt"].values())


def test_cohorts_cannot_model_waiting():
    with pytest.raises(ParamError, match="engine 'cohort' needs"):
        engine.run(ModelParams(sessions=100, queues=True, engine="cohort"))
