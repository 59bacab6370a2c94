"""Peak rates are over a fixed 1 s sliding window, whatever the chart bins are."""

import pytest

from sim import engine
from sim.params import ModelParams
from sim.rates import peak_per_s
from sim.results import build

pytestmark = pytest.mark.sim


def test_peak_is_the_busiest_one_second_window_at_tick_resolution():
    assert peak_per_s({0: 5, 999: 5, 1000: 7}) == 12  # [0.999 s, 1.999 s) holds 5 + 7
    assert peak_per_s({0: 5, 1000: 7}) == 7
    assert peak_per_s({}) == 0


def test_same_peaks_for_one_second_and_tenth_second_bins():
    # fixed bins gave 1,402/s at 1 s bins and 1,560/s at 0.1 s bins for this run
    base = ModelParams(sessions=2_000, jitter="full", outage_s=60.0)
    coarse = build(engine.run(base.with_(bin_s=1.0)))
    fine = build(engine.run(base.with_(bin_s=0.1)))
    assert len(fine["series"]["whatsapp_connects"]) == 10 * len(coarse["series"]["whatsapp_connects"])
    assert coarse["peaks"] == fine["peaks"]
    assert coarse["peaks"]["whatsapp_attempts_per_s"] >= max(coarse["series"]["whatsapp_connects"])
