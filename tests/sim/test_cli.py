"""`python -m sim` as a user meets it: the default run against its saved output, files, flags, exit codes.

In the manner of SimPy's example tests: the printed summary of the default run is
compared with `expected/default_run.txt`. Regenerate it deliberately with
SIM_UPDATE_EXPECTED=1 after a change that is meant to alter the model's numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main

pytestmark = pytest.mark.sim

EXPECTED = Path(__file__).parent / "expected"
REPO = Path(__file__).resolve().parents[2]


def _golden(name: str, actual: str) -> None:
    path = EXPECTED / name
    if os.environ.get("SIM_UPDATE_EXPECTED") == "1":
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


def test_the_default_run_prints_the_expected_summary_and_writes_its_reports(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sim", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    _golden("default_run.txt", proc.stdout)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["outcomes"]["recovered"] == results["sessions"] == 10_000
    for name in ("timing.json", "summary.md", "backoff_schedule.png", "herd.png", "cliff.png",
                 "recovery_cdf.png", "load_over_time.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "wall_s" not in (tmp_path / "results.json").read_text()


def test_same_seed_gives_a_byte_identical_results_json(tmp_path, capsys):
    argv = ["--no-charts", "--quiet", "--sessions", "3000", "--jitter", "full", "--scenario", "flaky_links"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert main([*argv, "--seed", "7", "--out", str(tmp_path / "c")]) == 0
    first = (tmp_path / "a" / "results.json").read_bytes()
    assert (tmp_path / "b" / "results.json").read_bytes() == first
    assert (tmp_path / "c" / "results.json").read_bytes() != first


def test_help_explains_every_flag_with_units_and_defaults(capsys):
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--sessions", "--scenario", "--outage-s", "--base-s", "--factor", "--cap-s", "--max-attempts",
                 "--jitter", "--codes", "--seed", "--until-s", "--ip-connects-per-s", "--redis-ops-per-s",
                 "--backoffice-requests-per-s", "--config"):
        assert flag in text, flag
    assert "SECONDS" in text and "(default: 60)" in text


@pytest.mark.parametrize("argv, named", [
    (["--sessions", "zero"], "--sessions"),
    (["--jitter", "sometimes"], "--jitter"),
    (["--no-such-flag"], "--no-such-flag"),
    (["--cap-s", "1"], "cap_s"),
    (["--sessions", "0"], "sessions"),
    (["--scenario", "nope"], "--scenario"),
])
def test_a_bad_flag_exits_2_naming_what_is_wrong(capsys, argv, named):
    assert main([*argv, "--no-charts", "--quiet"]) == 2
    assert named in capsys.readouterr().err


def test_a_toml_file_sets_parameters_and_flags_win(tmp_path, capsys):
    config = tmp_path / "sim.toml"
    config.write_text('[sim]\nsessions = 500\noutage_s = 63\nip_connects_per_s = 0\njitter = "none"\n')
    assert main(["--config", str(config), "--quiet", "--no-charts", "--out", str(tmp_path / "a")]) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["sessions"] == 500 and results["outcomes"]["inactive"] == 500
    assert main(["--config", str(config), "--outage-s", "10", "--quiet", "--no-charts",
                 "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "results.json").read_text())["outcomes"]["recovered"] == 500


def test_a_bad_toml_key_is_a_usage_error(tmp_path, capsys):
    config = tmp_path / "sim.toml"
    config.write_text("sesions = 5\n")
    assert main(["--config", str(config), "--quiet", "--no-charts"]) == 2
    assert "sesions" in capsys.readouterr().err


def test_a_failed_capacity_check_exits_1(tmp_path, capsys):
    argv = ["--sessions", "200", "--outage-s", "63", "--quiet", "--no-charts", "--out", str(tmp_path)]
    assert main([*argv, "--fail-if-inactive-above", "0.5"]) == 1
    assert main([*argv, "--fail-if-inactive-above", "1.0"]) == 0
    assert main([*argv, "--fail-if-inactive-above", "50%"]) == 1
    assert main([*argv, "--fail-if-inactive-above", "100%"]) == 0


@pytest.mark.parametrize("value", ["5", "-0.1", "101%", "half"])
def test_the_inactive_limit_is_a_share_or_a_percentage(value, capsys):
    assert main(["--fail-if-inactive-above", value, "--quiet", "--no-charts"]) == 2
    assert "--fail-if-inactive-above" in (err := capsys.readouterr().err) and "0–1" in err


def test_compare_shows_two_policies_side_by_side(tmp_path, capsys):
    assert main(["compare", "--a", "jitter=none", "--b", "jitter=full", "--sessions", "500",
                 "--quiet", "--no-charts", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "A: jitter=none" in out and "B: jitter=full" in out
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["params"]["seed"] == b["params"]["seed"] and a["params"]["jitter"] != b["params"]["jitter"]


def test_compare_rejects_an_unknown_parameter(capsys):
    assert main(["compare", "--a", "jiter=full", "--quiet", "--no-charts"]) == 2
    assert "jiter" in capsys.readouterr().err
