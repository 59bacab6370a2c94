"""One run across machines: `python -m sim run --scheduler` sends blocks to Dask and merges them."""

from __future__ import annotations

import json

import pytest

from sim.cli import main

pytestmark = pytest.mark.sim

ARGS = ["--sessions", "20000", "--jitter", "full", "--scenario", "outage_during_deploy", "--outage-s", "30",
        "--ip-connects-per-s", "0", "--block-sessions", "50", "--no-charts", "--quiet"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--engine", "session", "--sessions", "2000", "--block-sessions", "500"]], ids=["histogram", "session"])
def test_a_run_on_a_local_cluster_equals_the_local_run(tmp_path, capsys, extra):
    distributed = pytest.importorskip("distributed")
    assert main(["run", *ARGS, *extra, "--workers", "1", "--out", str(tmp_path / "local")]) == 0
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, host="127.0.0.1") as cluster:
        assert main(["run", *ARGS, *extra, "--scheduler", cluster.scheduler_address,
                     "--out", str(tmp_path / "dask")]) == 0
    local = (tmp_path / "local" / "results.json").read_bytes()
    assert (tmp_path / "dask" / "results.json").read_bytes() == local
    assert json.loads(local)["work"]["blocks"] >= 4  # really cut into blocks
    timing = (tmp_path / "dask" / "timing.json").read_text()
    assert cluster.scheduler_address in timing
