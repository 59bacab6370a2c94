"""The `tune` command's surface: its flags, the printed table, candidates.csv, pareto.png,
tune.json and the recommended policy file. Must not search (`sim.tune` does).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from sim.flags import parse_share
from sim.params import ParamError
from sim.tune import DEFAULT_SPACE, OBJECTIVES, Candidate, Constraints, parse_space, search
from sim.tune import __doc__ as tune_doc

OUT = Path("reports/sim/tune")
EXAMPLE = ("python -m sim tune --max-inactive 0.01 --outage-s 30,60,90 --max-connects-per-s 2000\n"
           "python -m sim tune --max-inactive 1% --outage-s 45,90 --space jitter=full,decorrelated "
           "--space base_s=2,4,8 --sessions 50000")


def add_parser(commands) -> None:
    from sim.flags import add_model_flags

    parser = commands.add_parser(
        "tune", help="find a backoff policy that meets constraints (exit 1 if none does)",
        description=tune_doc, epilog="examples:\n  " + EXAMPLE.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter, conflict_handler="resolve")
    add_model_flags(parser)
    parser.add_argument("--outage-s", dest="outages_s", type=_seconds_list, default=[30.0, 60.0, 90.0],
                        metavar="S1,S2,…", help="mass-outage lengths every policy is judged on (default: 30,60,90)")
    parser.add_argument("--max-inactive", type=parse_share, default=0.01, metavar="SHARE",
                        help="most sessions allowed to end inactive, as 0–1 or N%% (default: 0.01)")
    parser.add_argument("--max-connects-per-s", type=float, metavar="RATE",
                        help="most connects per second WhatsApp may see (busiest 1 s, at --sessions)")
    parser.add_argument("--max-p99-recovery-s", type=float, metavar="SECONDS", help="slowest p99 recovery allowed")
    parser.add_argument("--max-upstream-load", type=float, metavar="RATIO",
                        help="highest peak / capacity allowed at Redis and the back office (1 = at capacity)")
    parser.add_argument("--space", action="append", default=[], metavar="NAME=V1,V2,…",
                        help="replace or add a searched dimension (repeatable); default: "
                             + "; ".join(f"{k}={','.join(map(str, v))}" for k, v in DEFAULT_SPACE.items()))
    parser.add_argument("--eval-sessions", type=int, default=300, metavar="N",
                        help="sample population each candidate is screened on (rates scaled up; default: 300)")
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR", help=f"output folder (default: {OUT})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _seconds_list(raw: str) -> list[float]:
    try:
        values = [float(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds such as 30,60,90, got {raw!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive seconds such as 30,60,90, got {raw!r}")
    return values


def command(args: argparse.Namespace) -> int:
    from sim.flags import params_from

    if args.eval_sessions < 1:
        raise ParamError(f"--eval-sessions must be ≥ 1, got {args.eval_sessions}")
    base = params_from(args)
    constraints = Constraints(args.max_inactive, args.max_connects_per_s, args.max_p99_recovery_s,
                              args.max_upstream_load)
    space = parse_space(args.space)
    started = time.perf_counter()
    with _progress(space, args.quiet) as tick:
        found, best = search(base, space, args.outages_s, constraints, args.eval_sessions, tick)
    wall_s = time.perf_counter() - started
    sys.stdout.write(render(found, best, constraints, base.sessions, args.outages_s))
    files = write(args.out, found, best, base, constraints, args.outages_s, wall_s)
    print(f"wrote {', '.join(str(args.out / f) for f in files)} ({len(found)} candidates, {wall_s:.1f} s)",
          file=sys.stderr)
    return 0 if best is not None else 1


def render(found: list[Candidate], best: Candidate | None, constraints: Constraints, sessions: int,
           outages_s: list[float]) -> str:
    front = sorted((c for c in found if c.pareto), key=lambda c: c.metrics["p99_recovery_s"])
    lines = [f"tune · {len(found)} candidates · {sessions:,} sessions · outages {', '.join(f'{o:g}' for o in outages_s)} s"
             f" · feasible {len([c for c in found if c.rejected is None])} · Pareto front {len(front)}", ""]
    lines += ["  " + "  ".join(f"{h:>12}" for h in ("inactive", "connects/s", "p99 s", "load")) + "  policy"]
    for cand in front[:15]:
        m = cand.metrics
        lines.append("  " + "  ".join(f"{v:>12}" for v in (f"{m['inactive_share']:.2%}", f"{m['peak_connects_per_s']:,.0f}",
                                                            _num(m["p99_recovery_s"]), f"{m['upstream_load']:.2f}"))
                     + "  " + _values_text(cand.values) + (" ← recommended (full population)" if cand is best else ""))
    lines.append("")
    if best is None:
        lines.append("no policy meets the constraints (" + _constraints_text(constraints) + "); "
                     "widen --space or relax a bound")
    else:
        lines.append("recommended (re-simulated at the full population): " + _values_text(best.values))
    return "\n".join(lines) + "\n"


def write(folder: Path, found: list[Candidate], best: Candidate | None, base, constraints: Constraints,
          outages_s: list[float], wall_s: float) -> list[str]:
    from sim import charts
    from sim.policy_file import write_policy_file

    folder.mkdir(parents=True, exist_ok=True)
    names = [_write_csv(folder / "candidates.csv", found)]
    names.append(charts.pareto(_chart_data(found, best, constraints), folder / "pareto.png"))
    record = {"constraints": constraints.__dict__, "outages_s": outages_s, "sessions": base.sessions,
              "wall_s": round(wall_s, 3), "candidates": len(found),
              "recommended": None if best is None else {"values": best.values, "metrics": _clean(best.metrics)},
              "pareto_front": [{"values": c.values, "metrics": _clean(c.metrics)} for c in found if c.pareto]}
    (folder / "tune.json").write_text(json.dumps(record, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    names.append("tune.json")
    policy_path = folder / "policy.toml"
    if best is not None:
        write_policy_file(policy_path, best.params.policy(), [
            "Recommended by `python -m sim tune` for " + _constraints_text(constraints),
            f"over mass outages of {', '.join(f'{o:g}' for o in outages_s)} s at {base.sessions:,} sessions: "
            + ", ".join(f"{k} {_num(v)}" for k, v in best.metrics.items())])
        names.append("policy.toml")
    elif policy_path.exists():
        policy_path.unlink()  # a stale recommendation must not outlive a failed search
    return names


def _write_csv(path: Path, found: list[Candidate]) -> str:
    keys = sorted({k for c in found for k in c.values})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*keys, *OBJECTIVES, "rejected_by", "pareto", "verified"])
        for cand in found:
            writer.writerow([cand.values.get(k) for k in keys] + [_num(cand.metrics.get(o)) for o in OBJECTIVES]
                            + [cand.rejected or "", cand.pareto, "" if cand.verified is None else cand.verified])
    return path.name


def _chart_data(found: list[Candidate], best: Candidate | None, constraints: Constraints) -> dict[str, Any]:
    def point(c: Candidate) -> dict[str, Any]:
        return {"x": c.metrics["peak_connects_per_s"], "y": c.metrics["p99_recovery_s"],
                "label": _values_text(c.values), "jitter": c.values.get("jitter", "")}
    return {"feasible": [point(c) for c in found if c.rejected is None and not c.pareto],
            "front": [point(c) for c in found if c.pareto],
            "rejected": [point(c) for c in found if c.rejected is not None and math.isfinite(c.metrics["p99_recovery_s"])],
            "best": point(best) if best else None, "max_connects_per_s": constraints.max_connects_per_s}


def _values_text(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_num(v)}" for k, v in values.items())


def _constraints_text(c: Constraints) -> str:
    parts = [f"inactive ≤ {c.max_inactive:.2%}"]
    if c.max_connects_per_s is not None:
        parts.append(f"connects ≤ {c.max_connects_per_s:g}/s")
    if c.max_p99_recovery_s is not None:
        parts.append(f"p99 recovery ≤ {c.max_p99_recovery_s:g} s")
    if c.max_upstream_load is not None:
        parts.append(f"upstream load ≤ {c.max_upstream_load:g}")
    return ", ".join(parts)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in metrics.items()}


class _progress:
    """A transient progress bar on stderr over the candidates (nothing when quiet)."""

    def __init__(self, space: dict[str, list[Any]], quiet: bool) -> None:
        self.total, self.quiet, self.bar = math.prod(len(v) for v in space.values()), quiet, None

    def __enter__(self):
        if self.quiet:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("candidates"),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.bar.__enter__()
        task = self.bar.add_task("tune", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
