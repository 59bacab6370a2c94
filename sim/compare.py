"""`python -m sim compare`: two policies side by side on one scenario and seed.

Both runs share every parameter except the `--a` / `--b` overrides; each writes its own
run folder under the compare folder (a/, b/) and the table shows them column by column.
Must not decide anything about the policies: it only runs and lays out.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from sim.params import ModelParams, ParamError, coerce

_NUMBER = re.compile(r"-?[\d,]*\.?\d+")
from sim.report import TABLE_WIDTH, summary_rows, write_run
from sim.runner import REPORTS, draw, simulate


def variant(base: ModelParams, overrides: dict[str, str]) -> ModelParams:
    try:
        return base.with_(**{key: coerce(key, value) for key, value in overrides.items()})
    except ParamError as exc:
        raise ParamError(f"compare: {exc}") from None


def delta(value_a: str, value_b: str) -> str:
    """B − A of the first number in two table cells ("" when either has none, or they are equal)."""
    first_a, first_b = _NUMBER.search(value_a), _NUMBER.search(value_b)
    if not first_a or not first_b:
        return ""
    a, b = (float(m.group().replace(",", "")) for m in (first_a, first_b))
    if a == b:
        return "="
    diff = b - a
    return f"{diff:+,.2f}" if not diff.is_integer() else f"{int(diff):+,}"


def render(results_a: dict[str, Any], results_b: dict[str, Any], label_a: str, label_b: str) -> str:
    table = Table(title=f"compare on {results_a['scenario']['name']} · {results_a['sessions']:,} sessions · "
                        f"seed {results_a['params']['seed']}", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("metric")
    table.add_column(f"A: {label_a}", justify="right")
    table.add_column(f"B: {label_b}", justify="right")
    table.add_column("B − A", justify="right")
    for (metric, value_a), (_, value_b) in zip(summary_rows(results_a), summary_rows(results_b)):
        table.add_row(metric, value_a, value_b, delta(value_a, value_b))
    buffer = io.StringIO()
    Console(file=buffer, width=TABLE_WIDTH + 20, color_system=None, force_terminal=False).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def run(base: ModelParams, a: dict[str, str], b: dict[str, str], *, out: Path | None, workers: int | None,
        with_charts: bool, quiet: bool) -> int:
    params_a, params_b = variant(base, a), variant(base, b)
    if params_a == params_b:
        raise ParamError("compare: A and B are the same policy in the same world "
                         f"(--a {a or 'nothing'} / --b {b or 'nothing'}); change a parameter on one side")
    folder = out or REPORTS / f"compare-{params_a.digest()}-{params_b.digest()}"
    outputs = []
    for name, params in (("a", params_a), ("b", params_b)):
        results, timing = simulate(params, workers=workers, quiet=quiet)
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        charts = draw(params, results, sub) if with_charts else []
        write_run(sub, results, timing, charts)
        outputs.append(results)
    label = lambda pairs: ", ".join(f"{k}={v}" for k, v in pairs.items()) or "base"  # noqa: E731
    text = render(outputs[0], outputs[1], label(a), label(b))
    (folder / "compare.txt").write_text(text, encoding="utf-8")
    if with_charts:
        from sim import charts as chart_module

        chart_module.compare(outputs[0], outputs[1], (f"A: {label(a)}", f"B: {label(b)}"), folder / "compare.png")
    sys.stdout.write(text)
    if not quiet:
        print(f"wrote {folder}/a, {folder}/b and compare.txt", file=sys.stderr)
    return 0
