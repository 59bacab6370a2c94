"""The population model: the 62 s cliff, the herd, cohort = per-session, and the population faults."""

from __future__ import annotations

import pytest

from sim import engine
from sim.params import ModelParams, ParamError
from sim.results import build, dumps
from sim.studies import herd

pytestmark = pytest.mark.sim

UNLIMITED = dict(ip_connects_per_s=0.0, account_connects=0)


def _run(**values) -> dict:
    return build(engine.run(ModelParams(**values), workers=1))


@pytest.mark.parametrize("model_engine", ["session", "cohort"])
def test_a_61_s_mass_outage_without_jitter_recovers_every_session_on_attempt_5(model_engine):
    results = _run(sessions=2_000, outage_s=61.0, engine=model_engine, **UNLIMITED)
    assert results["outcomes"]["recovered"] == 2_000
    assert results["recovered_on_attempt"] == {"5": 2_000}
    assert results["recovery_s"]["max"] == results["recovery_s"]["p50"] == 62.0


@pytest.mark.parametrize("model_engine", ["session", "cohort"])
def test_a_63_s_mass_outage_without_jitter_leaves_every_session_inactive(model_engine):
    results = _run(sessions=2_000, outage_s=63.0, engine=model_engine, **UNLIMITED)
    assert results["outcomes"]["inactive"] == 2_000
    assert results["attempts"] == 5 * 2_000


def test_full_jitter_lowers_the_peak_attempts_per_second_after_a_mass_outage():
    study = herd(ModelParams(sessions=3_000, **UNLIMITED), sessions=3_000, outage_s=120.0, bin_s=1.0)
    peaks = study["peak_attempts_per_s"]
    assert peaks["none"] == 3_000  # the herd: everyone in the same second
    ratio = peaks["full"] / peaks["none"]
    assert ratio < 1, f"full jitter peak {peaks['full']} is not below no-jitter peak {peaks['none']}"


# Tight limits so WhatsApp admits part of a cohort and the cohort engine has to split.
TIGHT = dict(sessions=900, sessions_per_ip=150, ip_burst=40.0, ip_connects_per_s=6.5, account_connects=4,
             account_window_s=30.0, account_lockout_s=45.0, block_sessions=300)


@pytest.mark.parametrize("scenario, outage_s", [("mass_outage", 30.0), ("outage_during_deploy", 45.0),
                                                ("rolling_deploy", 0.0), ("long_outage", 0.0)])
def test_the_cohort_engine_equals_the_per_session_engine(scenario, outage_s):
    per_session = build(engine.run(ModelParams(engine="session", scenario=scenario, outage_s=outage_s, **TIGHT)))
    cohort = build(engine.run(ModelParams(engine="cohort", scenario=scenario, outage_s=outage_s, **TIGHT)))
    assert per_session["work"]["units"] == 900
    for results in (per_session, cohort):
        results.pop("engine"), results.pop("work"), results["params"].pop("engine")
    assert per_session == cohort
    if scenario != "long_outage":  # there every connect meets a dead link before any limit
        assert per_session["rate_limited"] > 0  # the limits really did split cohorts


def test_cohorts_split_when_a_rate_limit_admits_part_of_them():
    output = engine.run(ModelParams(engine="cohort", scenario="mass_outage", outage_s=30.0, **TIGHT))
    assert output.tally.units > 900 // 150


def test_the_cohort_engine_refuses_jitter():
    with pytest.raises(ParamError, match="cohort"):
        engine.run(ModelParams(engine="cohort", jitter="full", sessions=10))


def test_same_seed_same_results_and_another_seed_differs():
    values = dict(sessions=3_000, scenario="flaky_links", jitter="equal", block_sessions=1_000)
    first, again = dumps(_run(**values)), dumps(_run(**values))
    assert first == again
    assert dumps(_run(seed=1, **values)) != first


def test_worker_processes_do_not_change_the_results():
    params = ModelParams(sessions=4_000, scenario="account_churn", jitter="full", block_sessions=1_000)
    alone = dumps(build(engine.run(params, workers=1)))
    assert dumps(build(engine.run(params, workers=2))) == alone


def test_rolling_deploy_hands_every_session_over_without_losing_one():
    results = _run(sessions=2_000, scenario="rolling_deploy", **UNLIMITED)
    assert results["outcomes"]["recovered"] == 2_000
    assert results["recovered_on_attempt"] == {"0": 2_000}  # a fresh start by the new owner, not a retry


def test_a_deploy_during_an_outage_resumes_waiting_sessions_with_their_attempt():
    results = _run(sessions=1_000, scenario="outage_during_deploy", outage_s=61.0, **UNLIMITED)
    # resumed sessions keep their pending attempt and its due time, so the cliff stays at 62 s
    assert results["outcomes"]["recovered"] == 1_000
    assert results["recovered_on_attempt"] == {"5": 1_000}


def test_account_churn_cancels_waiting_sessions_and_closes_open_ones_terminally():
    results = _run(sessions=1_000, scenario="account_churn", until_s=30.0, **UNLIMITED)
    deleted = results["outcomes"]["inactive"] + results["outcomes"]["cancelled"]
    assert 400 <= deleted <= 800  # 20 deletions/s × 30 s, Poisson
    assert results["attempts"] == 0  # a deleted account is never retried


def test_flaky_links_recover_on_early_attempts():
    results = _run(sessions=2_000, scenario="flaky_links", **UNLIMITED)
    attempts = {int(k): v for k, v in results["recovered_on_attempt"].items()}
    assert results["outcomes"]["recovered"] > 0
    assert sum(v for k, v in attempts.items() if k <= 3) > 0.9 * sum(attempts.values())


def test_a_rate_limited_herd_burns_attempts():
    """Without jitter the whole IP group hits the bucket at once; refused connects count as attempts."""
    limited = _run(sessions=1_000, outage_s=61.0, sessions_per_ip=1_000, ip_burst=50.0, ip_connects_per_s=5.0)
    assert limited["rate_limited"] > 0
    assert limited["outcomes"]["inactive"] > 0.5 * 1_000
