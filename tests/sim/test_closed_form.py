"""The event model agrees with the closed form of a mass outage without capacity limits."""

from __future__ import annotations

import math

import pytest

from sim import closed_form, engine
from sim.params import ModelParams
from sim.results import build

pytestmark = pytest.mark.sim

UNLIMITED = dict(ip_connects_per_s=0.0, account_connects=0)


@pytest.mark.parametrize("outage_s", [10.0, 29.0, 61.0, 63.0, 120.0])
def test_without_jitter_the_model_equals_the_closed_form_exactly(outage_s):
    params = ModelParams(sessions=1_000, outage_s=outage_s, **UNLIMITED)
    model = build(engine.run(params))
    exact = closed_form.mass_outage(params.policy().backoff, 1_000, outage_s)
    assert model["outcomes"]["recovered"] == exact["recovered"]
    assert model["outcomes"]["inactive"] == exact["inactive"]
    assert model["attempts"] == exact["attempts"]
    if exact["recovered"]:
        assert model["recovery_s"]["max"] == pytest.approx(float(exact["recovery_s"].max()))


@pytest.mark.parametrize("jitter, outage_s", [("full", 30.0), ("equal", 50.0), ("decorrelated", 60.0)])
def test_with_jitter_the_model_matches_the_closed_form_within_sampling_error(jitter, outage_s):
    sessions = 4_000
    params = ModelParams(sessions=sessions, outage_s=outage_s, jitter=jitter, **UNLIMITED)
    model_share = build(engine.run(params))["outcomes"]["inactive"] / sessions
    exact = closed_form.mass_outage(params.policy().backoff, 200_000, outage_s, seed=5)
    share = exact["inactive"] / exact["sessions"]
    sigma = math.sqrt(max(share * (1 - share), 1e-4) / sessions)
    assert abs(model_share - share) < 5 * sigma, (model_share, share)
