"""`python -m sim`: the command line of the simulation. `main(argv) -> int`.

Exit codes: 0 ok, 1 a failed check (e.g. `--fail-if-inactive-above`), 2 a usage error
(bad flag, bad value, unknown scenario) with a one-line message naming what is wrong.
Owns argument parsing and dispatch only; the work is in `sim.runner`, `sim.sweep`,
`sim.contention`, `sim.bench` and `sim.replay`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.core import CoreError
from sim import bench, contention, metastability, sweep, tune_report
from sim.flags import add_model_flags, params_from, parse_share
from sim.params import ParamError
from sim.population import all_names, describe
from sim.scenarios import ScenarioError

COMMANDS = ("run", "sweep", "compare", "replay", "contention", "bench", "tune", "metastability")
EPILOG = "scenarios:\n" + "\n".join(f"  {name:22} {describe(name)}" for name in all_names())


class UsageError(Exception):
    """A usage problem found after parsing; reported like argparse's own errors (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sim",
        description="Replay the reconnect policy of service.core over a population of WhatsApp sessions "
                    "on a virtual clock (SimPy). With no command: `run` the default scenario, print a "
                    "summary and write results.json, charts and summary.md under reports/sim/.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="simulate one scenario (the default command)",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run the blocks on this dask.distributed scheduler (tcp://HOST:8786) and merge them; "
                          "same results as a local run")
    _run_flags(run)
    compare = commands.add_parser("compare", help="two policies side by side on one scenario and seed")
    compare.add_argument("--a", metavar="KEY=VALUE", action="append", default=[],
                         help="a parameter of policy A (repeatable), e.g. --a jitter=none")
    compare.add_argument("--b", metavar="KEY=VALUE", action="append", default=[],
                         help="a parameter of policy B (repeatable), e.g. --b jitter=full")
    _run_flags(compare)
    replay = commands.add_parser("replay", help="the predicted timeline of a shared scenario, as JSON lines")
    replay.add_argument("name", metavar="SCENARIO", help="a shared scenario: flaky_wifi, long_outage, …")
    replay.add_argument("--time-scale", type=float, default=1.0, metavar="K",
                        help="multiply every time of the scenario and the policy by K (default: 1)")
    replay.add_argument("--replay-sessions", type=int, default=1, metavar="N", help="sessions s0… (default: 1)")
    replay.add_argument("--via", choices=("replay", "model"), default="replay",
                        help="the model as the twin chaos compares with, or with the population parameters (default: replay)")
    add_model_flags(replay)
    sweep.add_parser(commands)
    contention.add_parser(commands)
    bench.add_parser(commands)
    tune_report.add_parser(commands)
    metastability.add_parser(commands)
    return parser


def _run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="run folder (default: reports/sim/<scenario>-<hash of the parameters>)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes (default: 1 for small or cohort runs, else every core)")
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no file notice on stderr")
    parser.add_argument("--fail-if-inactive-above", type=parse_share, metavar="SHARE",
                        help="exit 1 if more than this share of sessions ends inactive (a capacity SLO): "
                             "0–1 (e.g. 0.01) or a percentage (e.g. 1%%)")
    add_model_flags(parser)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and message
        return int(exc.code or 0)
    try:
        return _dispatch(args)
    except (UsageError, ParamError, ScenarioError, CoreError, ValueError) as exc:
        print(f"python -m sim {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    from sim import runner

    if args.command == "run":
        params = params_from(args)
        results = runner.run_and_report(params, out=args.out, workers=args.workers, scheduler=args.scheduler,
                                        with_charts=not args.no_charts, quiet=args.quiet)
        return _check(args, results)
    if args.command == "compare":
        return _compare(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "sweep":
        return sweep.command(args)
    if args.command == "contention":
        return contention.command(args)
    if args.command == "bench":
        return bench.command(args)
    if args.command == "tune":
        return tune_report.command(args)
    if args.command == "metastability":
        return metastability.command(args)
    raise UsageError(f"unknown command {args.command!r}; choose one of {', '.join(COMMANDS)}")


def _check(args: argparse.Namespace, results: dict) -> int:
    limit = args.fail_if_inactive_above
    if limit is None:
        return 0
    share = results["outcomes"]["inactive"] / results["sessions"]
    if share > limit:
        print(f"check failed: {share:.2%} of sessions ended inactive (limit {limit:.2%})", file=sys.stderr)
        return 1
    return 0


def _pairs(items: list[str], side: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--{side} takes KEY=VALUE, got {item!r}")
        pairs[key.strip().replace("-", "_")] = value.strip()
    return pairs


def _compare(args: argparse.Namespace) -> int:
    from sim import compare

    base = params_from(args)
    return compare.run(base, _pairs(args.a, "a"), _pairs(args.b, "b"), out=args.out, workers=args.workers,
                       with_charts=not args.no_charts, quiet=args.quiet)


def _replay(args: argparse.Namespace) -> int:
    from sim import timeline

    if args.replay_sessions < 1 or args.time_scale <= 0:
        raise UsageError("--replay-sessions must be ≥ 1 and --time-scale > 0")
    params = params_from(args)
    records = timeline.predict(args.name, params, time_scale=args.time_scale,
                               sessions=args.replay_sessions, via=args.via)
    for record in records:
        sys.stdout.write(record.to_json() + "\n")
    return 0
