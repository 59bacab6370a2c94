"""`python -m sim tune`: a recommendation that meets its constraints when re-simulated, or exit 1."""

import csv

import pytest

from service.config import load_settings
from sim import engine
from sim.cli import main
from sim.flags import load_toml
from sim.params import ModelParams
from sim.results import build

pytestmark = pytest.mark.sim

SMALL = ["--sessions", "600", "--eval-sessions", "200", "--outage-s", "20,40", "--quiet",
         "--space", "jitter=full,decorrelated,none", "--space", "base_s=1,4", "--space", "cap_s=30",
         "--space", "max_attempts=8", "--space", "max_elapsed_s=0,100"]


def test_recommendation_meets_the_constraints_when_re_simulated(tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", "--max-inactive", "2%", "--max-connects-per-s", "300", "--out", str(out), *SMALL]) == 0
    assert "recommended" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"candidates.csv", "pareto.png", "tune.json", "policy.toml"}
    rows = list(csv.DictReader((out / "candidates.csv").open(encoding="utf-8")))
    assert len(rows) == 3 * 2 * 2 and any(r["pareto"] == "True" for r in rows)
    assert any(r["rejected_by"] == "peak_connects_per_s" for r in rows)  # no jitter: 600 at once
    params = ModelParams(sessions=600, **load_toml(out / "policy.toml"))
    for outage_s in (20.0, 40.0):
        results = build(engine.run(params.with_(outage_s=outage_s)))
        assert results["outcomes"]["inactive"] / results["sessions"] <= 0.02
        assert results["peaks"]["whatsapp_attempts_per_s"] <= 300
    settings = load_settings(toml_path=out / "policy.toml", environ={"RECONNECT_LAB_BACKOFFICE_TOKEN": "t",
                                                                          "RECONNECT_LAB_SESSIONS": "s0"})
    assert settings.build_policy() == params.policy()


def test_exit_1_and_no_policy_file_when_nothing_meets_the_constraints(tmp_path, capsys):
    out = tmp_path / "tune"
    out.mkdir()
    (out / "policy.toml").write_text("[policy]\n", encoding="utf-8")  # a stale one must go
    assert main(["tune", "--max-connects-per-s", "1", "--out", str(out), *SMALL]) == 1
    assert "no policy meets the constraints" in capsys.readouterr().out
    assert not (out / "policy.toml").exists() and (out / "pareto.png").exists()


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--max-inactive", "5"], "'5' is not between 0 and 1"),
    (["--max-inactive", "150%"], "'150%' is 150 %"),
    (["--outage-s", "30,x"], "expected seconds such as 30,60,90"),
    (["--space", "jitter"], "--space takes NAME=V1,V2"),
    (["--space", "colour=red"], "unknown model parameter 'colour'"),
])
def test_bad_tune_flags_are_one_line_and_exit_2(flags, fragment, tmp_path, capsys):
    assert main(["tune", "--out", str(tmp_path), *SMALL, *flags]) == 2
    assert fragment in capsys.readouterr().err
