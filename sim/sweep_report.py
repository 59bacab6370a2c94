"""Present a sweep: the table, sweep.json (deterministic), timing.json and heatmaps.

Heatmaps put the first two grid parameters on the axes and draw one panel per combination
of the others (up to 12 panels; only dimensions past that are averaged).
Must not run anything.
"""

from __future__ import annotations

import csv
import hashlib
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
    """sweep.json and sweep.csv (means per point), runs.csv and runs/<n>-<digest>/row.json (every
    run), timing.json, heatmaps."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"grid": grid, "summary": summary, "rows": rows}
    (folder / "sweep.json").write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    (folder / "timing.json").write_text(json.dumps(timing, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    metrics = [m for m, _, _ in _METRICS]
    _csv(folder / "sweep.csv", [*grid, *metrics, "replications"], summary)
    flat = [{**{k: row["params"][k] for k in grid}, "seed": row["params"]["seed"], **row} for row in rows]
    _csv(folder / "runs.csv", [*grid, "seed", *metrics, "engine"], flat)
    for index, row in enumerate(rows):
        digest = hashlib.sha256(json.dumps(row["params"], sort_keys=True).encode()).hexdigest()[:8]
        run_folder = folder / "runs" / f"{index:04d}-{digest}"
        run_folder.mkdir(parents=True, exist_ok=True)
        (run_folder / "row.json").write_text(json.dumps(row, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    if len(grid) < 2:
        return []
    return [heatmap(summary, grid, metric, label, folder / f"heatmap_{metric}.png")
            for metric, label, _ in _METRICS[:3]]


def _csv(path: Path, columns: list[str], entries: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(entries)


MAX_FACETS = 12


def facets(grid: dict[str, list[Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The dimensions beyond the two axes a heatmap is split by (one panel per combination,
    at most MAX_FACETS; dimensions past that are averaged), and the panels."""
    split: list[str] = []
    panels: list[dict[str, Any]] = [{}]
    for key in list(grid)[2:]:
        if len(panels) * len(grid[key]) > MAX_FACETS:
            break
        split.append(key)
        panels = [{**panel, key: value} for panel in panels for value in grid[key]]
    return split, panels


def heatmap(summary: list[dict[str, Any]], grid: dict[str, list[Any]], metric: str, label: str, path: Path) -> str:
    """One panel per combination of the other dimensions, so no two jitter kinds (say) are averaged."""
    from sim.charts import _save, plt

    x_key, y_key = list(grid)[:2]
    xs, ys = grid[x_key], grid[y_key]
    split, panels = facets(grid)
    fig, axes = plt.subplots(1, len(panels), figsize=((1.4 * len(xs) + 2.2) * len(panels), 0.9 * len(ys) + 2.8),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        values = _cells(summary, metric, x_key, y_key, xs, ys, panel)
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
        ax.set_title(", ".join(f"{k}={v}" for k, v in panel.items()) or "all points", fontsize=9)
        fig.colorbar(image, ax=ax)
    averaged = [k for k in grid if k not in (x_key, y_key, *split)]
    fig.suptitle(f"{label} by {x_key} and {y_key}" + (f", one panel per {', '.join(split)}" if split else "")
                 + (f" (mean over {', '.join(averaged)} and replications)" if averaged else
                    " (mean over replications)"), fontsize=10)
    return _save(fig, path)


def _cells(summary, metric, x_key, y_key, xs, ys, panel) -> list[list[float]]:
    cells: list[list[list[float]]] = [[[] for _ in xs] for _ in ys]
    for entry in summary:
        if entry[metric] is not None and all(entry[k] == v for k, v in panel.items()):
            cells[ys.index(entry[y_key])][xs.index(entry[x_key])].append(entry[metric])
    return [[sum(c) / len(c) if c else float("nan") for c in row] for row in cells]
