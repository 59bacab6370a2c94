"""`python -m chaos list` and `python -m chaos run`: the catalog, and running it for real.

Owns the two subcommands' flags, progress lines and exit codes (0 every scenario passed
or, given --expect-fail, caught its broken service; 1 a real failure, error or interrupt;
2 bad usage). `run` starts its own lab (Redis, Toxiproxy, the stand-ins) on free loopback
ports, runs the note's scenarios concurrently and the rest one by one, and writes, in a
new folder of its own under --report (with a `latest` link), the Markdown summary and one
journal, history and chart per scenario; with --junit, JUnit XML. Must not decide verdicts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chaos import catalog
from chaos.cli_scenarios import add_source_flags, load_sources
from chaos.gateway import GatewaySpecError, load_gateway, reference_gateway
from chaos.lab import LabError, started_lab
from chaos.process import ProcessStartError
from chaos.junit import write_junit
from chaos.report import ScenarioRun, write_summary
from chaos.runner import RunOptions, run_scenarios
from chaos.runs import DEFAULT_KEEP_RUNS, new_run_dir, point_latest, prune_runs
from chaos.scenario import ChaosScenarioError
from service.config import parse_scalar

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_REPORT_DIR = Path("reports/chaos")

RUN_EPILOG = """\
examples:
  python -m chaos list
  python -m chaos run S1                      # the note's flaky WiFi at its real timings
  python -m chaos run matrix_redis_timeout --scale 0.1
  python -m chaos run --all --scale 0.1 --report reports/chaos
  python -m chaos run S2 --service-policy max_attempts=6   # a broken service: the checks must fail
  python -m chaos run S2 --service-policy max_attempts=6 --expect-fail attempts-per-episode-max  # a proof
  python -m chaos run --group note --junit reports/chaos-junit.xml         # for CI
  python -m chaos run --gateway examples/baileys-style-gateway/gateway.toml   # S1-S3 and the matrix

exit codes: 0 every scenario passed (or, with --expect-fail, caught the broken service), 1 a real failure,
an error or an interrupt, 2 bad usage. Each run writes to a new folder under --report; --report/latest
links the newest.
"""


def register(subparsers: Any) -> None:
    """Add `list` and `run` to `python -m chaos`."""
    lister = subparsers.add_parser("list", help="list the chaos scenarios and what each expects",
                                   description="List the named chaos scenarios: group, default scale, "
                                               "duration, sessions and the expected outcome.")
    lister.add_argument("--group", help="only this group (note, matrix, extra, file, or your module's)")
    add_source_flags(lister)
    lister.set_defaults(func=_list)
    runner = subparsers.add_parser(
        "run", help="run chaos scenarios against the real service",
        description="Start Redis, Toxiproxy and the stand-ins on 127.0.0.1, run each scenario against "
                    "`python -m service` behind one proxy per upstream, check the recorded history and "
                    "compare it with the simulation's replay.",
        epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    runner.add_argument("names", nargs="*", metavar="NAME", help="scenario names or aliases (S1, S2, S3)")
    runner.add_argument("--all", action="store_true", help="every scenario in the catalog")
    runner.add_argument("--group", help="every scenario of one group (note, matrix, extra, file, or your module's)")
    add_source_flags(runner)
    runner.add_argument("--scale", type=_scale, default=None, metavar="K",
                        help="multiply every time by K (default: each scenario's own: 1 for the note's, 0.1 else)")
    runner.add_argument("--report", type=Path, default=DEFAULT_REPORT_DIR, metavar="DIR",
                        help=f"each run gets its own folder in DIR (UTC time + random), with journals, histories, "
                             f"charts and summary.md; DIR/latest links the newest (default {DEFAULT_REPORT_DIR})")
    runner.add_argument("--keep-runs", type=_keep_runs, default=DEFAULT_KEEP_RUNS, metavar="N",
                        help=f"keep only the newest N run folders in DIR, this one included; older ones are "
                             f"deleted when a run starts (default {DEFAULT_KEEP_RUNS})")
    runner.add_argument("--service-policy", action="append", default=[], metavar="KEY=VALUE",
                        help="run the service with this policy instead of the scenario's (checks still use "
                             "the scenario's): shows the checkers catching a broken service")
    runner.add_argument("--gateway", type=Path, default=None, metavar="FILE",
                        help="the gateway to test, from its TOML file (chaos/CONTRACT.md); default: the reference "
                             "service, chaos/gateways/reference.toml. Alone (no NAME, --group, --file): the note's "
                             "S1-S3 and the matrix")
    runner.add_argument("--junit", type=Path, default=None, metavar="FILE",
                        help="also write JUnit XML for CI: one test case per scenario × check")
    runner.add_argument("--expect-fail", action="append", nargs="?", const="", default=None, metavar="CHECK",
                        help="a broken-service proof: this check must fail (repeatable; a check's name or its "
                             "dashed form, e.g. attempts-per-episode-max; alone: any check). Caught is exit 0 "
                             "and listed apart from real failures")
    runner.add_argument("--black-box", action="store_true",
                        help="judge from the stand-ins, Redis and the back office alone, with each WhatsApp link down "
                             "as the stand-in refusing (the default for a gateway that writes no timeline)")
    runner.add_argument("--sequential", action="store_true", help="run the note's scenarios one by one too")
    runner.set_defaults(func=_run)


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0.01:
        raise argparse.ArgumentTypeError(f"--scale must be a number >= 0.01, got {text!r}")
    return value


def _keep_runs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--keep-runs must be a whole number >= 1, got {text!r}")
    return int(text)


def _list(args: argparse.Namespace) -> int:
    try:
        load_sources(args)
        names = catalog.names(args.group)
    except ChaosScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for name in names:
        scenario = catalog.at_scale(name)
        print(f"{name:34} {catalog.group_of(name):6} ×{scenario.time_scale:<4g} {scenario.duration_s:7.1f} s "
              f"{scenario.sessions:4d} session(s)  {scenario.expected.describe()}")
    return EXIT_OK


def _selected(args: argparse.Namespace) -> list[str]:
    from_files = load_sources(args)
    if args.all and (args.names or args.group):
        raise ChaosScenarioError("give scenario names, --group or --all, not several")
    if args.all:
        return catalog.names()
    if args.group:
        return catalog.names(args.group)
    if not args.names and not from_files and args.gateway is not None:
        return catalog.names("note") + catalog.names("matrix")  # a gateway's conformance run
    if not args.names and not from_files:
        raise ChaosScenarioError("name at least one scenario, give --file, or use --all (see `python -m chaos list`)")
    return [catalog.get(name).name for name in args.names] + from_files


def _policy(items: list[str]) -> dict[str, Any] | None:
    if not items:
        return None
    policy = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ChaosScenarioError(f"--service-policy expects KEY=VALUE, got {item!r}")
        policy[key.strip()] = parse_scalar(value.strip())
    return policy


def _run(args: argparse.Namespace) -> int:
    try:
        names = _selected(args)
        scenarios = [catalog.at_scale(name, args.scale) for name in names]
        gateway = reference_gateway() if args.gateway is None else load_gateway(args.gateway)
        intended = None if args.expect_fail is None else tuple(name for name in args.expect_fail if name)
        for scenario in scenarios:
            if not gateway.supports_scale(scenario.time_scale):
                raise GatewaySpecError(f"gateway {gateway.name!r} ({gateway.source}) has no time scale; "
                                       f"{scenario.name} would run at ×{scenario.time_scale:g}: give --scale 1")
    except (ChaosScenarioError, GatewaySpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        run_dir = new_run_dir(args.report)
    except OSError as exc:
        print(f"error: --report {args.report}: cannot create a run folder: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    options = RunOptions(report_dir=run_dir, service_policy=_policy(args.service_policy), gateway=gateway,
                         intended_failures=intended, black_box=True if args.black_box else None)
    point_latest(args.report, run_dir)
    prune_runs(args.report, args.keep_runs, current=run_dir)
    started = time.monotonic()
    note = [s for s in scenarios if catalog.group_of(s.name) == "note"]
    rest = [s for s in scenarios if s not in note]
    results: list[ScenarioRun] = []
    try:
        with tempfile.TemporaryDirectory(prefix="chaos-lab-") as work, started_lab(Path(work)) as lab:
            print(f"lab up; running {len(scenarios)} scenario(s), report in {run_dir}", file=sys.stderr)
            results += run_scenarios(note, lab, options, concurrent=not args.sequential)
            results += run_scenarios(rest, lab, options)
    except (LabError, ProcessStartError) as exc:
        print(f"error: the lab did not start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: every started scenario was rolled back", file=sys.stderr)
    summary = write_summary(run_dir, results, title=f"Chaos run of {len(scenarios)} scenario(s)")
    if args.junit is not None:
        write_junit(args.junit, results)
    passed = sum(r.verdict == "passed" for r in results)
    caught = sum(r.is_intended_failure for r in results)
    real = len(scenarios) - sum(r.ok for r in results)
    print(f"{passed}/{len(scenarios)} passed, {caught} failed as intended, {real} real failure(s) in "
          f"{time.monotonic() - started:.0f} s; summary: {summary}", file=sys.stderr)
    return EXIT_OK if real == 0 else EXIT_FAILED
