"""The pytest plugin as a team outside this repository uses it: a throwaway project with its
own venv, this package installed into it (a real wheel, not the checkout), and tests that
use only the plugin's fixtures to run the note's S1–S3 (scaled) against the reference service
and — the chaos README's own example, as written — against the Node.js example gateway named
with `--chaos-gateway`, with a scenario file. The venv borrows this suite's site-packages for the dependencies
(`--no-deps`), so only the package itself is built and installed: seconds, not minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

from chaos.servers import find_binary

pytestmark = [pytest.mark.chaos]

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_GATEWAY = REPO_ROOT / "examples" / "baileys-style-gateway" / "gateway.toml"

CONFTEST = '''\
"""The throwaway project's only setup: nothing; the fixtures come from the installed plugin."""
'''

TESTS = '''\
"""A gateway team's chaos tests, using only the reconnect-lab plugin's fixtures."""
import pytest

import chaos
from chaos.gateway import reference_gateway


def test_the_plugin_comes_from_the_installed_package(chaos_gateway):
    assert "site-packages" in chaos.__file__ and {repo!r} not in chaos.__file__
    assert chaos_gateway.name == "baileys-style"  # from --chaos-gateway


@pytest.mark.parametrize("name", ["S1", "S2", "S3"])
def test_the_note_scenario_against_the_reference_service(chaos_run, name):
    result = chaos_run(name, scale=0.1, gateway=reference_gateway())
    assert result.verdict == "passed", result.explain()
    assert result.violations == {{}} and result.journal.exists()


def test_a_broken_gateway_is_caught_with_its_violations(chaos_run):
    # gives up after one attempt, before the link is back
    result = chaos_run("S1", scale=0.1, gateway=reference_gateway(), service_policy={{"max_attempts": 1}})
    assert result.verdict == "failed" and "final status per session as expected" in result.violations
'''


def readme_plugin_example() -> str:
    """The chaos README's plugin example, as written (S1–S3 against the reference service, a scenario file)."""
    text = (REPO_ROOT / "chaos" / "README.md").read_text(encoding="utf-8")
    section = text.split("## The pytest plugin", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 12, "the README promises a ten-line example"
    return code


def make_venv(path: Path) -> Path:
    """A venv without pip whose dependencies are this suite's (a .pth line), returns its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    python = path / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    Path(purelib, "suite-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def install_the_package(python: Path, build_dir: Path) -> None:
    """Build this repository's wheel from a copy (the checkout stays clean) and install it, no deps."""
    source = build_dir / "src"
    files = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True, timeout=60).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (REPO_ROOT / name).is_file() and name.split("/")[0] in ("chaos", "service", "sim", "pyproject.toml"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO_ROOT / name).read_bytes())
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
           "--no-build-isolation", "--no-index", str(source)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.timeout(900)  # ~2 min on an idle machine; CI runs the chaos tests with every core busy
def test_a_throwaway_project_runs_the_note_scenarios_with_only_the_plugin(tmp_path):
    python = make_venv(tmp_path / "venv")
    install_the_package(python, tmp_path / "build")
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(CONFTEST)
    if not (NODE_GATEWAY.parent / "node_modules").is_dir():
        pytest.fail(f"{NODE_GATEWAY.parent} has no node_modules: run `make node-gateway` (npm ci)")
    (project / "test_my_gateway.py").write_text(TESTS.format(repo=str(REPO_ROOT)))
    (project / "test_readme_example.py").write_text(readme_plugin_example())
    shown = subprocess.run([python, "-m", "chaos", "show", "S1"], capture_output=True, text=True, timeout=60,
                           cwd=project, check=True).stdout
    (project / "scenarios").mkdir()
    (project / "scenarios" / "my_wifi.toml").write_text(shown.replace('name = "flaky_wifi"', 'name = "my_wifi"')
                                          .replace("default_scale = 1.0", "default_scale = 0.1"))
    (project / "pytest.ini").write_text(textwrap.dedent("""\
        [pytest]
        addopts = -p no:cacheprovider
        chaos_report = chaos-reports
        """))
    env = {**os.environ, "TOXIPROXY_SERVER": find_binary("toxiproxy-server", "TOXIPROXY_SERVER"),
           "REDIS_SERVER": find_binary("redis-server", "REDIS_SERVER")}
    env.pop("PYTHONPATH", None)
    # the README's example runs as its comment says: against the gateway named on the command line
    # (one word: pytest takes a separate path-like word for a test path when it looks for its rootdir)
    done = subprocess.run([python, "-m", "pytest", "-q", f"--chaos-gateway={NODE_GATEWAY}"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "9 passed" in done.stdout
    summaries = list((project / "chaos-reports" / "latest").glob("summary.md"))
    assert len(summaries) == 1 and summaries[0].read_text().count("| long_outage | 0.1 | **passed** |") == 2
