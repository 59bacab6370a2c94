"""The histogram engine: equal to the per-session engine within sampling error, fast, and seeded.

Equality runs 100,000 sessions through both engines for every scenario the histogram engine
supports, with every jitter kind on the mass outage (proportional at its default ±50 %) and
the kinds taking turns on the rest (decorrelated jitter, whose lumps are keyed by the previous
delay, costs about as much as the per-session engine, so it takes the shorter scenarios);
each pair of runs is made once and serves three checks: recovery times (two-sample KS at
significance ALPHA), inactive share (within three standard errors) and peak rates (within 2 %).
"""

from __future__ import annotations

import pytest

from sim import engine
from sim.agreement import ks_two_sample, share_within
from sim.params import ModelParams, ParamError
from sim.results import build, dumps

pytestmark = pytest.mark.sim

UNLIMITED = dict(ip_connects_per_s=0.0, account_connects=0)
SESSIONS = 100_000
ALPHA = 0.001
CASES = [  # (scenario, outage_s, jitter)
    ("mass_outage", 30.0, "full"), ("mass_outage", 30.0, "equal"), ("mass_outage", 20.0, "decorrelated"),
    ("outage_during_deploy", 30.0, "full"), ("rolling_deploy", 0.0, "equal"), ("flaky_wifi", 0.0, "full"),
    ("flaky_wifi", 0.0, "decorrelated"), ("long_outage", 0.0, "equal"), ("deleted_mid_retry", 0.0, "decorrelated"),
    ("terminal_401", 0.0, "full"), ("mass_outage", 30.0, "proportional"),
]
IDS = [f"{s}-{j}" for s, _, j in CASES]
_RUNS: dict[tuple, dict] = {}


def _pair(case: tuple) -> dict:
    """Both engines' runs of one case, made once per test session."""
    if case not in _RUNS:
        scenario, outage_s, jitter = case
        base = ModelParams(sessions=SESSIONS, scenario=scenario, outage_s=outage_s, jitter=jitter, **UNLIMITED)
        pair = {}
        for name in ("session", "histogram"):
            output = engine.run(base.with_(engine=name))
            pair[name] = (output, build(output))
        _RUNS[case] = pair
    return _RUNS[case]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_recovery_times_agree_by_a_two_sample_ks_test(case):
    pair = _pair(case)
    (session, session_results), (histogram, histogram_results) = pair["session"], pair["histogram"]
    assert histogram_results["engine"] == "histogram"
    assert sum(histogram_results["outcomes"].values()) == SESSIONS
    a, b = session.tally, histogram.tally
    if not a.recovery_s:
        assert not b.recovery_s
        return
    ks = ks_two_sample(a.recovery_s, a.recovery_weight, b.recovery_s, b.recovery_weight)
    assert ks.p_value > ALPHA, (ks, ks.critical(ALPHA))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_inactive_share_agrees_within_three_standard_errors(case):
    pair = _pair(case)
    a, b = pair["session"][1]["outcomes"], pair["histogram"][1]["outcomes"]
    agree, difference, allowed = share_within(a["inactive"], SESSIONS, b["inactive"], SESSIONS, errors=3.0)
    assert agree, (difference, allowed)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_peak_rates_agree_within_two_percent(case):
    pair = _pair(case)
    a, b = pair["session"][1]["peaks"], pair["histogram"][1]["peaks"]
    for name in a:
        assert abs(a[name] - b[name]) <= 0.02 * max(a[name], b[name]), (name, a[name], b[name])


def test_auto_picks_the_histogram_engine_for_a_jittered_outage_and_says_why():
    output = engine.run(ModelParams(sessions=2_000, jitter="full", **UNLIMITED))
    assert output.engine == "histogram" and "jitter" in output.engine_reason
    assert output.tally.handle_calls < output.tally.core_events / 2  # one machine per lump, not per session


@pytest.mark.parametrize("scenario", ["flaky_links", "account_churn"])
def test_auto_falls_back_where_sessions_have_their_own_chance_and_says_so(scenario):
    output = engine.run(ModelParams(sessions=500, jitter="full", scenario=scenario, until_s=20.0, **UNLIMITED))
    assert output.engine == "session"
    assert "histogram engine does not apply" in output.engine_reason and scenario in output.engine_reason
    with pytest.raises(ParamError, match="histogram"):
        engine.run(ModelParams(sessions=500, jitter="full", scenario=scenario, engine="histogram"))


def test_auto_keeps_per_session_runs_when_per_ip_lumps_would_hold_one_session():
    output = engine.run(ModelParams(sessions=500, jitter="full", outage_s=5.0))  # 100 sessions per IP, limited
    assert output.engine == "session" and "per IP" in output.engine_reason


def test_same_seed_same_results_another_seed_differs_and_workers_change_nothing():
    params = ModelParams(sessions=30_000, jitter="full", scenario="outage_during_deploy", outage_s=30.0,
                         block_sessions=100, engine="histogram", **UNLIMITED)
    first = dumps(build(engine.run(params, workers=1)))
    assert dumps(build(engine.run(params, workers=2))) == first
    assert dumps(build(engine.run(params.with_(seed=1), workers=1))) != first


@pytest.mark.slow
def test_per_ip_lumps_under_tight_limits_agree_with_the_per_session_engine():
    """WhatsApp's per-IP bucket admits part of a lump: it splits, as cohorts do, and results agree."""
    values = dict(sessions=20_000, jitter="full", outage_s=30.0, sessions_per_ip=2_000, ip_burst=50.0,
                  ip_connects_per_s=30.0, account_connects=0)
    session = engine.run(ModelParams(engine="session", **values))
    histogram = engine.run(ModelParams(engine="histogram", **values))
    a, b = build(session), build(histogram)
    assert a["rate_limited"] > 0 and b["rate_limited"] > 0
    assert share_within(a["rate_limited"], a["connects"], b["rate_limited"], b["connects"], errors=4.0)[0]
    assert share_within(a["outcomes"]["inactive"], 20_000, b["outcomes"]["inactive"], 20_000)[0]
    ks = ks_two_sample(session.tally.recovery_s, session.tally.recovery_weight,
                       histogram.tally.recovery_s, histogram.tally.recovery_weight)
    assert ks.p_value > ALPHA, ks


def test_a_bad_grid_is_refused():
    with pytest.raises(ParamError, match="grid_s"):
        ModelParams(grid_s=-0.01)
