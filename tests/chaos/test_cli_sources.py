"""`python -m chaos run` from a user's folder: the README's own scenario module and a scenario
file shown from the catalog, run for real (own lab) in one subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.test_chaos_scenario_files import readme_example

pytestmark = [pytest.mark.chaos]


def test_the_readmes_scenario_module_and_a_shown_file_run_from_the_command_line(tmp_path):
    path, code = readme_example()
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(code)
    module = path.removesuffix(".py").replace("/", ".")
    shown = subprocess.run([sys.executable, "-m", "chaos", "show", "terminal_401"], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    (tmp_path / "my_401.toml").write_text(shown.replace('name = "terminal_401"', 'name = "my_401"'))
    done = subprocess.run([sys.executable, "-m", "chaos", "run", "slow_backoffice_during_outage",
                           "--scenario-module", module, "--file", "my_401.toml", "--scale", "0.2",
                           "--report", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2/2 passed" in done.stderr
    summaries = list((tmp_path / "out").rglob("summary.md"))
    assert len(summaries) == 1
    summary = summaries[0].read_text()
    assert "| slow_backoffice_during_outage | 0.2 | **passed** |" in summary
    assert "| my_401 | 0.2 | **passed** |" in summary
