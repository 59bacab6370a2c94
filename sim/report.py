"""Present a run: the printed summary table, the Markdown summary and the files of a run folder.

The printed summary is deterministic (no wall times: SimPy-example-style tests compare
it with a saved expected output); wall-clock measurements go to `timing.json`, never
into `results.json`. Must not run the model.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from sim.results import dumps

TABLE_WIDTH = 100


def _n(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "–"


def title(results: dict[str, Any]) -> str:
    p = results["params"]
    scenario = results["scenario"]["name"]
    if scenario in ("mass_outage", "outage_during_deploy"):
        scenario += f" ({p['outage_s']:g} s)"
    return (f"{scenario} · {results['sessions']:,} sessions · jitter {p['jitter']} · "
            f"{policy_text(p)} · seed {p['seed']}")


def _over_capacity(results: dict[str, Any]) -> str:
    names = {"redis": ("Redis", "redis_ops_per_s"), "backoffice": ("back office", "backoffice_requests_per_s")}
    flagged = [f"{names[n][0]} {_n(results['peaks'][names[n][1]])}/s > {_n(results['upstreams'][n]['capacity_per_s'])}"
               for n in results.get("over_capacity", [])]
    return "OVER: " + ", ".join(flagged) if flagged else "none"


def policy_text(p: dict[str, Any]) -> str:
    """The backoff of a run's parameters in one phrase, e.g. `backoff 2·2^(n-1) ≤ 32 s, 5 attempts`."""
    schedule = p.get("schedule", "exponential")
    cap = f" ≤ {p['cap_s']:g} s" if p["cap_s"] != float("inf") else " s, no cap"
    if schedule == "steps":
        text = "backoff " + ", ".join(f"{d:g}" for d in p["steps_s"]) + " s (last repeated)"
    elif schedule == "linear":
        text = f"backoff {p['base_s']:g} + {p['step_s']:g}·(n-1){cap}"
    else:
        text = f"backoff {p['base_s']:g}·{p['factor']:g}^(n-1){cap}"
    text += f", {p['max_attempts']} attempts" if p["max_attempts"] else ", no attempt cap"
    if p.get("max_elapsed_s"):
        text += f", give-up deadline {p['max_elapsed_s']:g} s"
    return text


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) rows shared by the table, the Markdown and `compare`."""
    o, n = results["outcomes"], results["sessions"]
    peaks, rec, up = results["peaks"], results["recovery_s"], results["upstreams"]
    rows = [(f"sessions {key}", f"{_n(o[key])} ({_pct(o[key], n)})")
            for key in ("recovered", "inactive", "cancelled", "reconnecting", "undisturbed")]
    rows += [
        ("reconnect attempts", _n(results["attempts"])),
        ("connects refused by rate limits", _n(results["rate_limited"])),
        ("peak attempts/s at WhatsApp", _n(peaks["whatsapp_attempts_per_s"])),
        ("peak Redis ops/s (capacity)",
         f"{_n(peaks['redis_ops_per_s'])} ({_n(up['redis']['capacity_per_s'])})"),
        ("peak back-office requests/s (capacity)",
         f"{_n(peaks['backoffice_requests_per_s'])} ({_n(up['backoffice']['capacity_per_s'])})"),
        ("back-office max backlog (requests)", _n(up["backoffice"]["max_backlog"])),
        ("upstreams over capacity", _over_capacity(results)),
        ("recovery time p50 / p99 / max (s)", f"{_n(rec['p50'])} / {_n(rec['p99'])} / {_n(rec['max'])}"),
        ("engine (machines simulated)", f"{results['engine']} ({_n(results['work']['units'])})"),
    ]
    return rows


def render_table(results: dict[str, Any]) -> str:
    """The summary table as plain text (no colour, fixed width: stable for golden tests)."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for metric, value in summary_rows(results):
        table.add_row(metric, value)
    buffer = io.StringIO()
    Console(file=buffer, width=TABLE_WIDTH, color_system=None, force_terminal=False,
            legacy_windows=False).print(table)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    return title(results) + "\n" + "\n".join(lines) + "\n"


def markdown(results: dict[str, Any], charts: list[str]) -> str:
    lines = [f"# Simulation: {results['scenario']['name']}", "",
             results["scenario"]["description"] + ".", "", f"Run: {title(results)}.", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {metric} | {value} |" for metric, value in summary_rows(results)]
    lines += ["", _reading(results), ""]
    lines += [f"![{name}]({name})" for name in charts]
    return "\n".join(lines) + "\n"


def _reading(results: dict[str, Any]) -> str:
    o, n = results["outcomes"], results["sessions"]
    from sim.params import ModelParams, names

    params = ModelParams(**{k: v for k, v in results["params"].items() if k in names()})
    give_up_s = params.policy().backoff.give_up_after_s()
    gives_up = (f"gives up {give_up_s:g} s after its first close (un-jittered)" if give_up_s != float("inf")
                else "never gives up")
    text = (f"With this policy a session {gives_up}; "
            f"{_pct(o['inactive'], n)} of sessions ended inactive and {_pct(o['recovered'], n)} recovered.")
    if results["rate_limited"]:
        text += f" WhatsApp's rate limits refused {results['rate_limited']:,} connects."
    return text


def write_run(folder: Path, results: dict[str, Any], timing: dict[str, Any], charts: list[str]) -> None:
    """results.json (deterministic), timing.json (wall clock), summary.md."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(dumps(results), encoding="utf-8")
    (folder / "timing.json").write_text(json.dumps(timing, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    (folder / "summary.md").write_text(markdown(results, charts), encoding="utf-8")
