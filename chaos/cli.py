"""`python -m chaos`: one argparse parser, one subcommand per module.

Owns the top-level parser and dispatch. Each subcommand lives in its own module,
listed in `SUBCOMMAND_MODULES`, exposing `register(subparsers)`, which adds its parser
and sets `func(args) -> int`. Adding a subcommand = one module + one line here.
Must not hold subcommand logic.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

SUBCOMMAND_MODULES = [
    "chaos.standins.run",  # standins
    "chaos.cli_run",  # list, run
    "chaos.cli_scenarios",  # show
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Chaos harness for reconnect-lab: stand-in servers, real Toxiproxy faults, "
                    "timelines checked against the simulation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 ok, 1 a failed check, 2 a usage error."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    return int(args.func(args))
