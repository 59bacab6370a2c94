"""Charts that draw every run, compare on one chart, and CLI errors that say what is wrong."""

import json
import time

import pytest

from sim.charts import cdf_steps
from sim.cli import main
from sim.studies import cliff_outages_s

pytestmark = pytest.mark.sim


def test_a_single_value_recovery_cdf_still_draws_a_step():
    xs, ys = cdf_steps([[62.0, 1.0]])  # the default run: every session back at 62 s
    assert xs[0] == 0 and ys[0] == 0 and xs[-1] > 62 and ys[-1] == 100
    assert len(xs) >= 3  # matplotlib draws nothing from one point


def test_the_cliff_spans_the_run_policy_give_up_time():
    outages = cliff_outages_s(62.0)
    assert {61.0, 63.0} <= set(outages) and max(outages) == pytest.approx(99.2)
    assert max(cliff_outages_s(30.0)) == pytest.approx(48.0)
    assert max(cliff_outages_s(float("inf"))) == 135.0


@pytest.mark.parametrize("preset", ["whatsmeow", "signalr"])
def test_a_preset_run_draws_every_chart(preset, tmp_path):
    assert main(["--preset", preset, "--sessions", "200", "--quiet", "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "backoff_schedule.png", "load_over_time.png", "recovery_cdf.png", "herd.png", "cliff.png"}


def test_compare_draws_both_runs_on_one_chart_with_a_delta_column(tmp_path, capsys):
    assert main(["compare", "--a", "jitter=none", "--b", "jitter=full", "--sessions", "300",
                 "--outage-s", "20", "--quiet", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "B − A" in text and "+" in text
    assert (tmp_path / "compare.png").exists()
    peaks = [json.loads((tmp_path / s / "results.json").read_text())["peaks"]["whatsapp_attempts_per_s"]
             for s in "ab"]
    assert f"{int(peaks[1] - peaks[0]):+,}" in text


def test_compare_refuses_two_identical_policies(capsys):
    assert main(["compare", "--a", "base_s=2", "--b", "base_s=2.0", "--quiet", "--no-charts"]) == 2
    assert "A and B are the same policy" in capsys.readouterr().err


def test_an_unreachable_dask_scheduler_is_one_line_and_exit_2_within_its_timeout(capsys):
    started = time.monotonic()
    assert main(["sweep", "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout-s", "2",
                 "--grid", "outage_s=30", "--replications", "1"]) == 2
    elapsed_s = time.monotonic() - started
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach the Dask scheduler" in err
    assert elapsed_s < 2 + 15  # the connect timeout plus importing distributed on a busy machine


def test_heatmaps_split_by_the_dimensions_they_would_average():
    from sim.sweep_report import facets

    split, panels = facets({"outage_s": [30, 60], "jitter": ["none", "full"], "max_attempts": [5, 6],
                            "base_s": [1, 2, 4]})
    assert split == ["max_attempts", "base_s"] and len(panels) == 6
    assert facets({"a": [1], "b": [2], "c": list(range(13))}) == ([], [{}])  # too many panels: averaged


def test_sweep_writes_each_run_to_its_own_folder_and_csv_beside_json(tmp_path):
    assert main(["sweep", "--grid", "outage_s=20,40", "--grid", "jitter=none,full", "--grid", "max_attempts=5,6",
                 "--replications", "2", "--workers", "1", "--sessions", "100", "--out", str(tmp_path)]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2 * 2 * 2 * 2
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 1 + 8
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == 1 + 16
    assert (tmp_path / "sweep.json").exists() and (tmp_path / "heatmap_inactive_fraction.png").exists()
