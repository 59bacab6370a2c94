"""Sweeps: a 3 × 3 × 2 grid with 3 replications, locally in parallel and on a Dask LocalCluster."""

from __future__ import annotations

import json

import pytest

from sim.cli import main
from sim.params import ModelParams, ParamError
from sim.sweep import parse_grid, run_dask, run_local, summarise, tasks

pytestmark = pytest.mark.sim

GRID = ["outage_s=30,61,63", "jitter=none,full,equal", "max_attempts=5,6"]
BASE = ModelParams(sessions=300, ip_connects_per_s=0.0, account_connects=0)


@pytest.fixture(scope="module")
def local_rows():
    return run_local(tasks(BASE, parse_grid(GRID), 3), workers=2)


def test_the_grid_has_every_point_and_replication(local_rows):
    assert len(local_rows) == 3 * 3 * 2 * 3
    summary = summarise(local_rows, parse_grid(GRID))
    assert len(summary) == 18 and all(entry["replications"] == 3 for entry in summary)
    cliff = {(e["outage_s"], e["jitter"], e["max_attempts"]): e["inactive_fraction"] for e in summary}
    assert cliff[(61.0, "none", 5)] == 0.0 and cliff[(63.0, "none", 5)] == 1.0
    assert cliff[(63.0, "none", 6)] == 0.0  # a sixth attempt at +126 s outlives the outage


def test_dask_local_cluster_gives_identical_results(local_rows):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, host="127.0.0.1") as cluster:
        with distributed.Client(cluster) as client:
            dask_rows = run_dask(tasks(BASE, parse_grid(GRID), 3), client)
    assert json.dumps(dask_rows, sort_keys=True) == json.dumps(local_rows, sort_keys=True)


def test_replications_use_distinct_seeds():
    seeds = [p.seed for p in tasks(BASE.with_(seed=10), parse_grid(["outage_s=5"]), 3)]
    assert seeds == [10, 11, 12]


@pytest.mark.parametrize("item", ["outage_s", "nope=1,2", "jitter=", "outage_s=x"])
def test_a_bad_grid_is_refused(item):
    with pytest.raises(ParamError):
        tasks(BASE, parse_grid([item]), 1)


def test_sweep_cli_writes_table_json_and_heatmaps(tmp_path, capsys):
    assert main(["sweep", "--grid", "outage_s=10,70", "--grid", "jitter=none,full", "--replications", "2",
                 "--sessions", "100", "--workers", "1", "--out", str(tmp_path)]) == 0
    assert "sweep: 4 points × 2 replications" in capsys.readouterr().out
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert len(doc["rows"]) == 8
    assert (tmp_path / "heatmap_inactive_fraction.png").stat().st_size > 0
