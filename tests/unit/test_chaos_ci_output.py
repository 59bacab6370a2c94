"""CI-friendly output of chaos runs: JUnit XML (one case per scenario × check), a folder per run
with a `latest` link, and intended failures (broken-service proofs) kept apart from real ones."""

from __future__ import annotations

import datetime as dt
import threading
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from chaos.checkers import ATTEMPTS_WITHIN_MAX, FINAL_STATUS_AS_EXPECTED, check_all
from chaos.journal import JOURNAL_FORMAT, Journal
from chaos.junit import CAUGHT_CASE, PREDICTION_CASE, RUN_CASE, write_junit
from chaos.prediction import PredictionReport, predict_and_compare
from chaos.report import ScenarioRun, check_key, summary_markdown
from chaos.runs import DEFAULT_KEEP_RUNS, LATEST, new_run_dir, point_latest, prune_runs, unique_dir
from tests.unit.test_chaos_report import replayed


def replayed_run(name: str, *, final: str | None = None, **fields) -> ScenarioRun:
    history, scenario = replayed(name)
    if final is not None:
        history = replace(history, final_status={s: final for s in history.sessions})
    return ScenarioRun(name, scenario.time_scale, "passed", check_all(history, scenario),
                       predict_and_compare(history, scenario), duration_s=1.5, **fields)


def with_status(run: ScenarioRun) -> ScenarioRun:
    ok = all(c.ok for c in run.checks) and (run.prediction is None or run.prediction.ok)
    return replace(run, status="passed" if ok else "failed")


def shape(path) -> dict:
    """Parse JUnit XML and check its structure: counts agree with the cases; every case named."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    suites = {}
    for suite in root:
        assert suite.tag == "testsuite" and suite.get("name") and float(suite.get("time")) >= 0
        cases = list(suite)
        assert all(c.tag == "testcase" and c.get("classname", "").startswith("chaos.") and c.get("name")
                   for c in cases)
        outcome = {c.get("name"): next((x.tag for x in c if x.tag != "system-out"), "pass") for c in cases}
        counts = {"tests": len(cases), "failures": list(outcome.values()).count("failure"),
                  "errors": list(outcome.values()).count("error"), "skipped": list(outcome.values()).count("skipped")}
        assert {k: int(suite.get(k)) for k in counts} == counts
        for case in cases:
            for child in case:
                assert child.tag in ("failure", "error", "skipped", "system-out")
                if child.tag in ("failure", "error"):
                    assert child.get("message")
        for key in totals:
            totals[key] += counts[key]
        suites[suite.get("name")] = outcome
    assert {k: int(root.get(k)) for k in totals} == totals
    return suites


def test_junit_has_one_case_per_scenario_and_check(tmp_path):
    good = with_status(replayed_run("flaky_wifi"))
    bad = with_status(replayed_run("deleted_mid_retry", final="active"))
    unmodelled = replace(good, name="herd", scale=0.5, prediction=PredictionReport("herd", False, 0.5))
    errored = ScenarioRun("long_outage", 1.0, "error", error="ProcessStartError: gateway-0 exited with code 1")
    suites = shape(write_junit(tmp_path / "out" / "junit.xml", [good, bad, unmodelled, errored]))
    assert list(suites) == ["flaky_wifi ×1", "deleted_mid_retry ×1", "herd ×0.5", "long_outage ×1"]
    check_names = [c.name for c in good.checks]
    assert list(suites["flaky_wifi ×1"]) == [*check_names, PREDICTION_CASE]
    assert set(suites["flaky_wifi ×1"].values()) == {"pass"}
    assert suites["deleted_mid_retry ×1"][FINAL_STATUS_AS_EXPECTED] == "failure"
    assert suites["herd ×0.5"][PREDICTION_CASE] == "skipped"
    assert suites["long_outage ×1"] == {RUN_CASE: "error"}
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    failure = root.find(f".//testcase[@name='{FINAL_STATUS_AS_EXPECTED}']/failure")
    assert "deleted_mid_retry-s0" in failure.get("message") and failure.text


def test_a_caught_proof_is_green_and_kept_apart_from_real_failures(tmp_path):
    caught = replace(with_status(replayed_run("flaky_wifi", final="inactive")), intended=(FINAL_STATUS_AS_EXPECTED,))
    any_check = replace(with_status(replayed_run("flaky_wifi", final="inactive")), intended=())
    missed = replace(with_status(replayed_run("flaky_wifi")), intended=(check_key(ATTEMPTS_WITHIN_MAX),))
    typo = replace(caught, intended=("final-status-per-sesion",))
    real = with_status(replayed_run("deleted_mid_retry", final="active"))
    assert (caught.verdict, any_check.verdict, missed.verdict, typo.verdict, real.verdict) == (
        "caught", "caught", "not caught", "not caught", "failed")
    assert [r.ok for r in (caught, any_check, missed, typo, real)] == [True, True, False, False, False]
    assert missed.missed_intents() == ["'attempts-per-episode-max' did not fail"]
    assert typo.missed_intents()[0].startswith("no check named 'final-status-per-sesion' (checks: ")
    text = summary_markdown([caught, missed, real])
    assert "0 of 3 scenario(s) passed; 1 failed as intended (broken-service proofs); **2 real failure(s)**" in text
    real_part, intended_part = text.split("## Real failures")[1].split("## Intended failures (broken-service proofs)")
    assert "### flaky_wifi: not caught" in real_part and "### deleted_mid_retry: failed" in real_part
    assert "### flaky_wifi: caught — intended to fail: final status per session as expected" in intended_part
    caught_suite = shape(write_junit(tmp_path / "junit.xml", [caught]))
    [proof] = caught_suite.values()
    assert set(proof.values()) == {"pass"} and proof[CAUGHT_CASE] == "pass"
    out = ET.parse(tmp_path / "junit.xml").getroot().find(f".//testcase[@name='{FINAL_STATUS_AS_EXPECTED}']/system-out")
    assert out.text.startswith("failed as intended")
    [miss] = shape(write_junit(tmp_path / "missed.xml", [missed])).values()
    assert miss[CAUGHT_CASE] == "failure" and list(miss.values()).count("failure") == 1


def test_an_interrupted_proof_is_not_caught():
    run = ScenarioRun("flaky_wifi", 1.0, "interrupted", error="interrupted (Ctrl-C)", intended=())
    assert run.verdict == "interrupted" and not run.ok


def test_each_run_gets_its_own_folder_and_latest_follows_the_newest(tmp_path):
    same_second = dt.datetime(2026, 11, 29, 5, 0, 0, tzinfo=dt.timezone.utc)
    found: list = []
    threads = [threading.Thread(target=lambda: found.append(new_run_dir(tmp_path, now=same_second)))
               for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(set(found)) == 20 and all(p.name.startswith("20261129T050000Z-") and p.is_dir() for p in found)
    for run_dir in found[:3]:
        link = point_latest(tmp_path, run_dir)
        assert link.name == LATEST and link.is_symlink() and link.resolve() == run_dir
        assert not link.readlink().is_absolute()  # the folder can move with its link
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _runs_at(base, minutes: range) -> list:
    return [new_run_dir(base, now=dt.datetime(2026, 11, 29, 5, m, tzinfo=dt.timezone.utc)) for m in minutes]


def test_only_the_newest_runs_are_kept_and_nothing_but_run_folders_is_deleted(tmp_path):
    runs = _runs_at(tmp_path, range(6))
    (runs[0] / "summary.md").write_text("old")
    others = [tmp_path / "notes", tmp_path / "20261129T050000Z-zzzzzz", tmp_path / "20261129T050000Z-abc123.md"]
    others[0].mkdir(), others[1].mkdir(), others[2].write_text("not a run")
    point_latest(tmp_path, runs[1])  # an old run that `latest` still names is kept

    deleted = prune_runs(tmp_path, 2, current=runs[2])

    assert deleted == [runs[0], runs[3]]
    assert sorted(p for p in tmp_path.iterdir() if p.name != LATEST) == sorted([runs[1], runs[2], runs[4], runs[5],
                                                                               *others])
    assert prune_runs(tmp_path, 2, current=runs[2]) == []  # again: nothing more to do
    with pytest.raises(ValueError, match="keep must be >= 1"):
        prune_runs(tmp_path, 0)


def test_the_cli_and_the_plugin_keep_twenty_runs_unless_told_and_refuse_a_bad_count(capsys):
    from chaos.cli import main
    from chaos.pytest_plugin import _keep_runs

    assert DEFAULT_KEEP_RUNS == 20
    for bad in ("0", "-1", "2.5", "x"):
        assert main(["run", "S1", "--keep-runs", bad]) == 2
        assert "--keep-runs must be a whole number >= 1" in capsys.readouterr().err

    class Config:
        def __init__(self, option, ini) -> None:
            self.option, self.ini = option, ini

        def getoption(self, name):
            return self.option

        def getini(self, name):
            return self.ini

    assert [_keep_runs(Config(None, "")), _keep_runs(Config(3, "7")), _keep_runs(Config(None, "7"))] == [20, 3, 7]
    for option, ini in ((0, ""), (None, "zero"), (None, "0")):
        with pytest.raises(pytest.UsageError, match="must be a whole number >= 1"):
            _keep_runs(Config(option, ini))


def test_a_scenario_repeated_in_one_run_gets_its_own_folder(tmp_path):
    names = [unique_dir(tmp_path, "flaky_wifi").name for _ in range(3)]
    assert names == ["flaky_wifi", "flaky_wifi-2", "flaky_wifi-3"]
    with pytest.raises(FileExistsError, match="already: use a new run folder"):
        for _ in range(1000):
            unique_dir(tmp_path, "flaky_wifi")


def test_the_journal_says_whose_format_it_is_and_claims_no_chaos_toolkit_version():
    journal = Journal({"name": "flaky_wifi"}, clock=lambda: 1_800_000_000.0)
    with journal.activity("start the service", phase="before"):
        pass
    journal.finish("completed")
    record = journal.to_dict()
    assert record["format"] == JOURNAL_FORMAT == "reconnect-lab chaos journal 1"
    assert not any(key.startswith("chaoslib") for key in record)
