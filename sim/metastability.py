"""`python -m sim metastability`: do retries keep WhatsApp over its limits after the outage ends?

Runs one mass outage twice in the same world — Baileys' README reconnect (at once, on every
close but 401, forever) and the note's backoff — with upstreams that push back (connects
take time, WhatsApp's handshakes have a capacity, a connect past the timeout fails) and
WhatsApp's per-IP and per-account limits. Useful work is sessions opened per second; the
chart draws it against time with the attempts that produced it. A policy is metastable
here when useful work stays near zero long after the trigger (the outage) has ended. Must
not change the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sim import engine
from sim.params import ModelParams
from sim.results import build

OUT = Path("reports/sim/metastability")
POLICIES: dict[str, dict[str, Any]] = {
    "baileys_readme": {"schedule": "steps", "steps_s": (0.0,), "max_attempts": 0, "codes": "baileys_readme",
                       "jitter": "none"},
    "note": {"schedule": "exponential", "steps_s": (), "max_attempts": 5, "codes": "original", "jitter": "none",
             "base_s": 2.0, "factor": 2.0, "cap_s": 32.0},
}
WORLD = {"sessions": 2_000, "outage_s": 30.0, "until_s": 240.0, "queues": True, "whatsapp_connect_s": 0.5,
         "whatsapp_handshakes_per_s": 200.0, "connect_timeout_s": 5.0, "bin_s": 1.0}


def study(base: ModelParams) -> dict[str, Any]:
    """Both policies in `base`'s world: per-second opens and attempts, and when each recovered."""
    runs = {}
    for name, policy in POLICIES.items():
        results = build(engine.run(base.with_(**policy, scenario="mass_outage"), workers=1))
        opened = results["series"]["opened"]
        runs[name] = {"opened": opened, "attempts": results["series"]["whatsapp_connects"],
                      "rate_limited": results["series"]["rate_limited"],
                      "recovered": results["outcomes"]["recovered"], "inactive": results["outcomes"]["inactive"],
                      "reconnecting": results["outcomes"]["reconnecting"], "attempts_total": results["connects"],
                      "all_back_by_s": _all_back_by(opened, results["params"]["bin_s"], results["outcomes"])}
    return {"sessions": base.sessions, "outage_s": base.outage_s, "outage_ends_s": 1.0 + base.outage_s,
            "bin_s": base.bin_s, "until_s": base.until_s, "runs": runs}


def _all_back_by(opened: list[int], bin_s: float, outcomes: dict[str, int]) -> float | None:
    """When the last session that recovered was back (None if any is still reconnecting)."""
    if outcomes["reconnecting"]:
        return None
    last = max((i for i, count in enumerate(opened) if count), default=None)
    return None if last is None else (last + 1) * bin_s


def add_parser(commands) -> None:
    from sim.flags import add_model_flags

    parser = commands.add_parser("metastability", help="Baileys' immediate reconnects against the note's backoff",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR", help=f"output folder (default: {OUT})")
    add_model_flags(parser)


def command(args: argparse.Namespace) -> int:
    from sim import charts
    from sim.flags import params_from

    explicit = {k: v for k, v in vars(args).items() if k in WORLD and v is not None}
    base = params_from(args, **{**WORLD, **explicit})
    data = study(base)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metastability.json").write_text(json.dumps(data, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    chart = charts.useful_work(data, args.out / "useful_work.png")
    for name, run in data["runs"].items():
        back = "never (still reconnecting)" if run["all_back_by_s"] is None else f"{run['all_back_by_s']:g} s"
        print(f"{name:15} recovered {run['recovered']:>6,}  inactive {run['inactive']:>6,}  still reconnecting "
              f"{run['reconnecting']:>6,}  connects {run['attempts_total']:>9,}  all back by {back}")
    print(f"wrote {args.out}/metastability.json and {chart}", file=sys.stderr)
    return 0
