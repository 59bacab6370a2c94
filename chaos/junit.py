"""JUnit XML of a chaos run, for CI: one test suite per scenario run, one test case per check.

Owns the mapping from `ScenarioRun`s to the JUnit shape CI servers read (`testsuites` →
`testsuite` with tests/failures/errors/skipped counts → `testcase` with `classname`
`chaos.<scenario>` and the check's name; `failure` with the first violation as its message
and every violation as its text; `error` for a run that did not complete; `skipped` for a
prediction the simulation cannot make). A broken-service proof's failing checks are passes
(with what they caught in `system-out`); a proof that was not caught is a failure.
Must not decide verdicts: it writes down the runs' own.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chaos.report import ScenarioRun

PREDICTION_CASE = "prediction matches the simulation"
RUN_CASE = "the run completes"
CAUGHT_CASE = "the broken service is caught"


@dataclass(frozen=True)
class Case:
    """One test case: `kind` is pass, failure, error or skipped."""

    name: str
    kind: str = "pass"
    message: str = ""
    text: str = ""
    out: str = ""


def _cases(run: ScenarioRun) -> Iterator[Case]:
    proof = run.intended is not None
    if run.status in ("error", "interrupted"):
        yield Case(RUN_CASE, "error", run.error or run.status, run.error or "")
    elif run.error:  # completed, but e.g. its rollback did not
        yield Case(RUN_CASE, "failure", run.error, run.error)
    for check in run.checks:
        text = "\n".join(check.violations)
        if check.ok:
            yield Case(check.name)
        elif proof:
            yield Case(check.name, out=f"failed as intended (a broken-service proof):\n{text}")
        else:
            yield Case(check.name, "failure", check.violations[0] if check.violations else "violated", text)
    prediction = run.prediction
    if prediction is not None and not prediction.compared:
        yield Case(PREDICTION_CASE, "skipped", "the simulation does not model this scenario's faults")
    elif prediction is not None:
        text = "\n".join(prediction.differences)
        if prediction.ok:
            yield Case(PREDICTION_CASE)
        elif proof:
            yield Case(PREDICTION_CASE, out=f"differed as intended:\n{text}")
        else:
            yield Case(PREDICTION_CASE, "failure", prediction.differences[0], text)
    if proof and run.status not in ("error", "interrupted"):
        missed = run.missed_intents()
        yield Case(CAUGHT_CASE, "failure" if missed else "pass", "; ".join(missed), "\n".join(missed))


def junit_tree(runs: list[ScenarioRun], *, name: str = "chaos") -> ET.ElementTree:
    """The JUnit document of `runs`."""
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_s = 0.0
    for run in runs:
        cases = list(_cases(run))
        counts = {"tests": len(cases), "failures": sum(c.kind == "failure" for c in cases),
                  "errors": sum(c.kind == "error" for c in cases), "skipped": sum(c.kind == "skipped" for c in cases)}
        suite = ET.SubElement(root, "testsuite", name=f"{run.name} ×{run.scale:g}",
                              **{k: str(v) for k, v in counts.items()}, time=f"{run.duration_s:.3f}")
        for case in cases:
            element = ET.SubElement(suite, "testcase", classname=f"chaos.{run.name}", name=case.name)
            if case.kind != "pass":
                ET.SubElement(element, case.kind, message=case.message[:500]).text = case.text or None
            if case.out:
                ET.SubElement(element, "system-out").text = case.out
        for key, value in counts.items():
            totals[key] += value
        total_s += run.duration_s
    root.attrib.update({k: str(v) for k, v in totals.items()}, time=f"{total_s:.3f}")
    return ET.ElementTree(root)


def write_junit(path: Path | str, runs: list[ScenarioRun], *, name: str = "chaos") -> Path:
    """Write the JUnit XML of `runs` to `path` (UTF-8, with an XML declaration)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = junit_tree(runs, name=name)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
