"""`python -m chaos show`, and where scenarios come from: the catalog, `--file`, `--scenario-module`.

Owns the flags every scenario-taking subcommand shares (`--file F` a scenario file or a
folder of them, `--scenario-module M` a Python module that calls `chaos.catalog.register`)
and loading them into the catalog before names are resolved; and `show NAME`, which
prints any scenario as a TOML file that loads back equal. Must not run scenarios.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from chaos import catalog
from chaos.scenario import ChaosScenarioError
from chaos.scenario_file import dump_scenario, load_scenarios

FILE_GROUP = "file"
EXIT_OK, EXIT_USAGE = 0, 2


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    """`--file` and `--scenario-module`, both repeatable."""
    parser.add_argument("--file", action="append", default=[], type=Path, metavar="PATH",
                        help="a TOML scenario file, or a folder of them (every *.toml); repeatable "
                             "(see `python -m chaos show S1` for the shape)")
    parser.add_argument("--scenario-module", action="append", default=[], metavar="MODULE",
                        help="import this Python module first (dotted name, found from the current folder): "
                             "the scenarios it registers with chaos.catalog.register become known; repeatable")


def import_scenario_module(name: str) -> None:
    """Import a module that registers scenarios; the current folder is searched first, as `python -m` does."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        importlib.import_module(name)
    except ChaosScenarioError as exc:
        raise ChaosScenarioError(f"scenario module {name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's module: say which and why
        raise ChaosScenarioError(f"cannot import scenario module {name!r}: {type(exc).__name__}: {exc}") from None


def register_files(paths: list[Path]) -> list[str]:
    """Load and register every scenario file (all validated before any is registered); their names."""
    loaded = [item for path in paths for item in load_scenarios(path)]
    names: list[str] = []
    for item in loaded:
        name = item.scenario.name
        if name in catalog.CATALOG or name in catalog.ALIASES or name in names:
            raise ChaosScenarioError(f"{item.path}: a scenario named {name!r} is already known")
        names.append(name)
    for item in loaded:
        catalog.register(item.scenario, group=FILE_GROUP, default_scale=item.default_scale)
    return names


def load_sources(args: argparse.Namespace) -> list[str]:
    """Import `--scenario-module`s, register `--file`s; returns the files' scenario names in order."""
    for name in getattr(args, "scenario_module", []):
        import_scenario_module(name)
    return register_files(list(getattr(args, "file", [])))


def register(subparsers: Any) -> None:
    """Add `show` to `python -m chaos`."""
    shower = subparsers.add_parser(
        "show", help="print a scenario as a TOML file",
        description="Print a scenario (built in, from --scenario-module or --file) as a TOML scenario file "
                    "at real timings; `python -m chaos run --file` runs the file, edited or not.",
        epilog="example: python -m chaos show S1 > my_wifi.toml && python -m chaos run --file my_wifi.toml")
    shower.add_argument("name", metavar="NAME", help="scenario name or alias (S1, S2, S3)")
    add_source_flags(shower)
    shower.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    try:
        load_sources(args)
        scenario = catalog.get(args.name)
        text = dump_scenario(scenario, catalog.explicit_scale(scenario.name))
    except ChaosScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(text)
    return EXIT_OK
