"""Present a sweep: the table, sweep.json (deterministic), timing.json and heatmaps.

Heatmaps put the first two grid parameters on the axes and average over the rest.
Must not run anything.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

_METRICS = (("inactive_fraction", "inactive", "{:.1%}"), ("recovered_fraction", "recovered", "{:.1%}"),
            ("peak_attempts_per_s", "peak attempts/s", "{:,.0f}"), ("recovery_p99_s", "recovery p99 (s)", "{:.1f}"),
            ("attempts", "attempts", "{:,.0f}"))


def render(summary: list[dict[str, Any]], grid: dict[str, list[Any]]) -> str:
    table = Table(box=box.SIMPLE_HEAD)
    for key in grid:
        table.add_column(key, justify="right")
    for _, label, _ in _METRICS:
        table.add_column(label, justify="right")
    for entry in summary:
        cells = [str(entry[k]) for k in grid]
        cells += ["–" if entry[m] is None else fmt.format(entry[m]) for m, _, fmt in _METRICS]
        table.add_row(*cells)
    buffer = io.StringIO()
    Console(file=buffer, width=140, color_system=None, force_terminal=False).print(table)
    reps = summary[0]["replications"] if summary else 0
    return f"sweep: {len(summary)} points × {reps} replications (means)\n" + "\n".join(
        line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def write(folder: Path, grid: dict[str, list[Any]], rows: list[dict[str, Any]],
          summary: list[dict[str, Any]], timing: dict[str, Any]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"grid": grid, "summary": summary, "rows": rows}
    (folder / "sweep.json").write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    (folder / "timing.json").write_text(json.dumps(timing, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    if len(grid) < 2:
        return []
    return [heatmap(summary, grid, metric, label, folder / f"heatmap_{metric}.png")
            for metric, label, _ in _METRICS[:3]]


def heatmap(summary: list[dict[str, Any]], grid: dict[str, list[Any]], metric: str, label: str, path: Path) -> str:
    from sim.charts import _save, plt

    x_key, y_key = list(grid)[:2]
    xs, ys = grid[x_key], grid[y_key]
    cells = [[[] for _ in xs] for _ in ys]
    for entry in summary:
        if entry[metric] is not None:
            cells[ys.index(entry[y_key])][xs.index(entry[x_key])].append(entry[metric])
    values = [[sum(c) / len(c) if c else float("nan") for c in row] for row in cells]
    fig, ax = plt.subplots(figsize=(1.6 * len(xs) + 3, 0.9 * len(ys) + 2.5))
    image = ax.imshow(values, cmap="Reds", aspect="auto")
    low, high = image.get_clim()
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            text = f"{value:.0%}" if metric.endswith("fraction") else f"{value:,.0f}"
            dark = high > low and (value - low) / (high - low) > 0.6
            ax.text(j, i, text, ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    others = [k for k in grid if k not in (x_key, y_key)]
    ax.set_title(f"{label} by {x_key} and {y_key}" + (f"\n(mean over {', '.join(others)} and replications)"
                                                       if others else "\n(mean over replications)"))
    fig.colorbar(image, ax=ax)
    return _save(fig, path)
