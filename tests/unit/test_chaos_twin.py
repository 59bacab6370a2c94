"""One interpreter for the twin: the chaos prediction is the population model's run, and it
can be calibrated with the latencies a run measured (errors per attempt in ms)."""

from __future__ import annotations

import pytest

from chaos import catalog
from chaos.prediction import measured_latencies, predict, predict_and_compare
from sim.params import ModelParams
from sim.replay import Latencies
from sim.timeline import model_timeline
from tests.unit.test_chaos_report import replayed

NOTE = ["flaky_wifi", "long_outage", "deleted_mid_retry"]


@pytest.mark.parametrize("name", NOTE)
@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_the_chaos_prediction_is_the_models_timeline(name, scale):
    scenario = catalog.at_scale(name, scale)
    twin = predict(scenario)
    modelled = model_timeline(name, ModelParams(sessions=scenario.sessions), time_scale=scale,
                              sessions=scenario.sessions)
    assert twin is not None and twin.timeline
    assert [r.to_json() for r in twin.timeline] == [r.to_json() for r in modelled]


def test_the_run_latencies_are_measured_from_its_timeline():
    history, _ = replayed("flaky_wifi", latencies=Latencies(validation_s=0.04, connect_s=0.03))
    measured = measured_latencies(history)
    assert measured.validation_s == pytest.approx(0.04) and measured.connect_s == pytest.approx(0.03)
    zero, _ = replayed("flaky_wifi", latencies=Latencies())
    assert measured_latencies(zero) == Latencies()


@pytest.mark.parametrize("name", ["flaky_wifi", "long_outage"])
def test_calibration_removes_the_latency_error_per_attempt(name):
    latencies = Latencies(validation_s=0.06, connect_s=0.05)
    history, scenario = replayed(name, latencies=latencies)
    report = predict_and_compare(history, scenario)
    assert report.latencies.validation_s == pytest.approx(0.06) and report.latencies.connect_s == pytest.approx(0.05)
    raw, calibrated = report.error_ms, report.calibrated_error_ms
    assert set(raw) == set(calibrated) and 1 in raw
    assert raw[1]["max"] >= 60  # the zero-latency twin misses each attempt by its validation time at least
    assert max(e["max"] for e in raw.values()) > max(e["max"] for e in calibrated.values())
    assert all(e["max"] <= 1.0 for e in calibrated.values()), calibrated
    journal = report.to_dict()
    assert journal["calibrated_error_ms"]["1"] == calibrated[1] and journal["latencies"]["validation_ms"] == 60.0
