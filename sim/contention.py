"""The contention model of "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015).

N clients each update one optimistically-locked record once: read the version, write
with it; a write whose version is stale fails, and the client backs off before reading
again. Every message takes |Normal(10 ms, 2 ms)| one way; base 5 ms, cap 2 s; writes are
counted as calls; completion time is when the last client's write succeeds. The
backoff delays come from `service.core.Backoff` (the article's expo(n) = base·2^n is the
core's attempt n+1); "no backoff" retries at once. Must not touch the session model.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

import simpy

from service.core import Backoff, Jitter

KINDS = ("none", "full", "equal", "decorrelated", "no_backoff")
LABELS = {"none": "exponential (no jitter)", "full": "full jitter", "equal": "equal jitter",
          "decorrelated": "decorrelated jitter", "no_backoff": "no backoff"}
BASE_S, CAP_S, DELAY_MEAN_S, DELAY_SD_S = 0.005, 2.0, 0.010, 0.002
CLIENT_COUNTS = list(range(10, 200, 20))
OUT = Path("reports/sim/contention")


def simulate(clients: int, kind: str, rng: random.Random) -> tuple[float, int]:
    """One run: (completion time in s, write calls)."""
    if kind not in KINDS:
        raise ValueError(f"unknown contention kind {kind!r}; choose one of: {', '.join(KINDS)}")
    env = simpy.Environment()
    backoff = Backoff(base_s=BASE_S, factor=2.0, cap_s=CAP_S, max_attempts=1,
                      jitter=Jitter.NONE if kind == "no_backoff" else Jitter(kind))
    record = {"version": 0, "calls": 0, "done_s": 0.0}

    def net_s() -> float:
        return abs(rng.normalvariate(DELAY_MEAN_S, DELAY_SD_S))

    def client(env: simpy.Environment):
        failures, previous_s = 0, None
        yield env.timeout(net_s())  # the read reaches the record
        while True:
            version = record["version"]
            yield env.timeout(net_s() + net_s())  # read reply back, then the write goes out
            record["calls"] += 1
            ok = record["version"] == version
            if ok:
                record["version"] += 1
            yield env.timeout(net_s())  # the write's answer comes back
            if ok:
                record["done_s"] = max(record["done_s"], env.now)
                return
            failures += 1
            sleep_s = 0.0
            if kind != "no_backoff":
                sleep_s = backoff.delay_s(failures + 1, rng, previous_s)  # core attempt n+1 = article's n
                previous_s = sleep_s
            yield env.timeout(net_s() + sleep_s)  # the next read reaches the record

    for _ in range(clients):
        env.process(client(env))
    env.run()
    return record["done_s"], record["calls"]


def measure(clients: int, kind: str, *, runs: int, seed: int) -> dict[str, Any]:
    """Mean completion time and calls over `runs` seeded runs."""
    if clients < 1 or runs < 1:
        raise ValueError("clients and runs must be ≥ 1")
    times, calls = [], []
    for run in range(runs):
        done_s, n_calls = simulate(clients, kind, random.Random(f"{seed}:{clients}:{kind}:{run}"))
        times.append(done_s)
        calls.append(n_calls)
    return {"clients": clients, "kind": kind, "runs": runs,
            "completion_ms": round(1000 * statistics.fmean(times), 6), "calls": statistics.fmean(calls)}


def study(*, runs: int, seed: int, counts: list[int] | None = None) -> dict[str, Any]:
    counts = counts or CLIENT_COUNTS
    rows = [measure(n, kind, runs=runs, seed=seed) for kind in KINDS for n in counts]
    return {"clients": counts, "runs": runs, "seed": seed, "rows": rows}


def chart(data: dict[str, Any], folder: Path) -> list[str]:
    from sim.charts import _COLOURS, _save, plt

    names = []
    for key, label, file in (("completion_ms", "time until every client has written (ms)", "completion_time.png"),
                             ("calls", "write calls (total work)", "calls.png")):
        fig, ax = plt.subplots(figsize=(8, 4.8))
        for kind in KINDS:
            rows = [r for r in data["rows"] if r["kind"] == kind]
            ax.plot([r["clients"] for r in rows], [r[key] for r in rows], "o-", markersize=3,
                    color=_COLOURS[kind], label=LABELS[kind])
        ax.set_title(f"N clients contending on one record — {label}\n"
                     f"(article's model, mean of {data['runs']} runs per point)")
        ax.set_xlabel("clients")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(alpha=0.3)
        names.append(_save(fig, folder / file))
    return names


def add_parser(commands) -> None:
    parser = commands.add_parser("contention", help="the backoff-and-jitter article's OCC contention model",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100, metavar="N", help="contending clients (default: 100)")
    parser.add_argument("--jitter", choices=(*KINDS, "all"), default="all",
                        help="none = plain exponential; no_backoff = retry at once; all = every kind (default)")
    parser.add_argument("--runs", type=int, default=20, metavar="N", help="runs averaged per point (default: 20)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed (default: 0)")
    parser.add_argument("--chart", action="store_true",
                        help=f"run 10–190 clients for every kind and write charts to {OUT}/")
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR", help=f"chart folder (default: {OUT})")


def command(args: argparse.Namespace) -> int:
    if args.chart:
        data = study(runs=args.runs, seed=args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "contention.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        names = chart(data, args.out)
        print(f"wrote {args.out}/contention.json and {', '.join(names)}", file=sys.stderr)
        return 0
    kinds = KINDS if args.jitter == "all" else (args.jitter,)
    print(f"{args.clients} clients on one record, mean of {args.runs} runs")
    print(f"{'backoff':26} {'completion (ms)':>16} {'calls':>10}")
    for kind in kinds:
        row = measure(args.clients, kind, runs=args.runs, seed=args.seed)
        print(f"{LABELS[kind]:26} {row['completion_ms']:16.1f} {row['calls']:10.1f}")
    return 0
