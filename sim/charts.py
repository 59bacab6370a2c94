"""PNG charts a person understands without explanation (matplotlib, Agg backend).

Each function takes plain data (a policy, results dicts, study dicts) and a path, draws
one figure with a title that says what to look at, and returns the file name. Must not
run the model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from service.core import Jitter, Policy  # noqa: E402

_COLOURS = {"none": "#d62728", "full": "#2ca02c", "equal": "#1f77b4", "decorrelated": "#9467bd", "proportional": "#8c564b",
            "no_backoff": "#7f7f7f"}
_DPI = 110


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI, metadata={"Software": None})
    plt.close(fig)
    return path.name


def backoff_schedule(policy: Policy, path: Path) -> str:
    """Bars: the wait before each attempt; line: time since the close when it runs (the cliff)."""
    backoff = policy.backoff
    delays = backoff.schedule_s(limit=12)  # a policy with no limit shows its first 12 attempts
    attempts = list(range(1, len(delays) + 1))
    cumulative = [sum(delays[:i]) for i in attempts]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(attempts, delays, color="#9ecae1", label="wait before this attempt (s)")
    if backoff.jitter is not Jitter.NONE:
        lows = [backoff.bounds_s(n)[0] for n in attempts]
        ax.errorbar(attempts, delays, yerr=[[d - lo for d, lo in zip(delays, lows)], [0] * len(delays)],
                    fmt="none", ecolor="#555", capsize=4, label=f"{backoff.jitter.value} jitter range")
    ax.plot(attempts, cumulative, "o-", color="#d62728", label="seconds after the close it runs")
    for n, total in zip(attempts, cumulative):
        ax.annotate(f"{total:g} s", (n, total), textcoords="offset points", xytext=(0, 7), ha="center")
    give_up_s = backoff.give_up_after_s()
    if math.isfinite(give_up_s):
        ax.axhline(give_up_s, color="#d62728", linestyle=":", linewidth=1)
        ax.set_title(f"Backoff schedule: after attempt {len(delays)} fails ({give_up_s:g} s after the "
                     "close)\nthe session is marked inactive — an outage longer than that loses it")
    else:
        ax.set_title(f"Backoff schedule (first {len(delays)} attempts): this policy never gives up —\n"
                     "no outage loses a session, but retries never stop either")
    ax.set_xlabel("reconnect attempt")
    ax.set_ylabel("seconds")
    ax.set_xticks(attempts)
    ax.set_ylim(0, max(cumulative + [1.0]) * 1.18)
    ax.legend(loc="upper left")
    return _save(fig, path)


def load_over_time(results: dict[str, Any], path: Path) -> str:
    """Three stacked panels: WhatsApp connects (and refusals), Redis ops, back-office requests."""
    series, bin_s, up = results["series"], results["series"]["bin_s"], results["upstreams"]
    t = [i * bin_s for i in range(len(series["whatsapp_connects"]))]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    panels = [
        (axes[0], "whatsapp_connects", "WhatsApp connect attempts / s", None),
        (axes[1], "redis_ops", "Redis operations / s", up["redis"]["capacity_per_s"]),
        (axes[2], "backoffice_requests", "back-office requests / s", up["backoffice"]["capacity_per_s"]),
    ]
    for ax, key, label, capacity in panels:
        ax.step(t, [v / bin_s for v in series[key]], where="post", color="#1f77b4", label=label)
        if capacity:
            ax.axhline(capacity, color="#d62728", linestyle="--", linewidth=1, label=f"capacity {capacity:g}/s")
        ax.set_ylabel("per second")
        ax.legend(loc="upper right")
    axes[0].step(t, [v / bin_s for v in series["rate_limited"]], where="post", color="#ff7f0e",
                 label="refused by rate limits")
    axes[0].legend(loc="upper right")
    axes[0].set_title(f"Load on each upstream over time — {results['scenario']['name']}, "
                      f"{results['sessions']:,} sessions, jitter {results['params']['jitter']}")
    axes[2].set_xlabel("simulated time (s)")
    return _save(fig, path)


def cdf_steps(points: list[list[float]]) -> tuple[list[float], list[float]]:
    """A recovery CDF as step coordinates (%), from (0, 0) to past the last point, so a run
    where every session took the same time (a single point) still draws its step."""
    xs = [0.0] + [p[0] for p in points] + [points[-1][0] * 1.05 + 1.0]
    ys = [0.0] + [100 * p[1] for p in points] + [100 * points[-1][1]]
    return xs, ys


def recovery_cdf(results: dict[str, Any], path: Path) -> str:
    points = results["recovery_cdf"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if points:
        ax.step(*cdf_steps(points), where="post", color="#2ca02c")
        if len(points) == 1:
            ax.annotate(f"every recovery took {points[0][0]:g} s", (points[0][0], 50),
                        textcoords="offset points", xytext=(-6, 0), ha="right")
    share = results["outcomes"]["recovered"] / results["sessions"]
    ax.set_title(f"How long disrupted sessions took to come back ({share:.0%} of sessions recovered;\n"
                 "the rest are not on this curve)")
    ax.set_xlabel("seconds from the close to the session being open again")
    ax.set_ylabel("% of recoveries done by then")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def herd(study: dict[str, Any], path: Path) -> str:
    """Attempts per second after a mass outage, one line per jitter kind."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    bin_s = study["bin_s"]
    for jitter, series in study["series"].items():
        t = [i * bin_s for i in range(len(series))]
        ax.step(t, [v / bin_s for v in series], where="post", color=_COLOURS.get(jitter),
                label=f"{jitter} (peak {study['peak_attempts_per_s'][jitter]:,.0f}/s)")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title(f"The thundering herd: {study['sessions']:,} sessions after a {study['outage_s']:g} s outage.\n"
                 "Without jitter every session retries in the same second; jitter spreads them out")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("connect attempts / s (log scale)")
    ax.legend(title="jitter")
    return _save(fig, path)


def cliff(study: dict[str, Any], path: Path) -> str:
    """Fraction of sessions ending inactive against outage length, one line per jitter kind."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for jitter, fractions in study["inactive_fraction"].items():
        ax.plot(study["outages_s"], [100 * f for f in fractions], "o-", markersize=3,
                color=_COLOURS.get(jitter), label=jitter)
    give_up_s = study["give_up_after_s"]
    if math.isfinite(give_up_s):
        ax.axvline(give_up_s, color="#555", linestyle=":", linewidth=1)
        ax.annotate(f"{give_up_s:g} s: the last un-jittered attempt", (give_up_s, 50),
                    textcoords="offset points", xytext=(6, 0))
    ax.set_title("The cliff: sessions lost for good against outage length "
                 f"({study['sessions']:,} sessions per point)")
    ax.set_xlabel("mass outage length (s)")
    ax.set_ylabel("% of sessions ending inactive")
    ax.set_ylim(-2, 102)
    ax.legend(title="jitter")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pareto(data: dict[str, Any], path: Path) -> str:
    """Tuning: peak connects/s against p99 recovery per candidate, the Pareto front joined up."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for key, style in (("rejected", dict(color="#cccccc", s=12, label="broke a constraint (screened)")),
                       ("feasible", dict(color="#7f7f7f", s=18, label="meets the constraints")),
                       ("front", dict(color="#1f77b4", s=36, label="Pareto front (feasible)"))):
        points = data[key]
        if points:
            ax.scatter([p["x"] for p in points], [p["y"] for p in points], **style)
    front = sorted(data["front"], key=lambda p: p["x"])
    if len(front) > 1:
        ax.plot([p["x"] for p in front], [p["y"] for p in front], color="#1f77b4", linewidth=1)
    if data["best"]:
        best = data["best"]
        ax.scatter([best["x"]], [best["y"]], marker="*", s=260, color="#d62728", zorder=5,
                   label="recommended: " + best["label"])
    if data["max_connects_per_s"] is not None:
        ax.axvline(data["max_connects_per_s"], color="#d62728", linestyle="--", linewidth=1,
                   label=f"connects limit {data['max_connects_per_s']:g}/s")
    ax.set_xlabel("peak connects per second at WhatsApp (busiest 1 s)")
    ax.set_ylabel("worst p99 recovery time (s)")
    ax.set_title("Backoff tuning: lower-left is better; the star is the recommended policy")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def useful_work(data: dict[str, Any], path: Path) -> str:
    """Metastability: sessions opened per second (useful work) against time, per policy."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    colours = {"baileys_readme": "#d62728", "note": "#1f77b4"}
    bin_s = data["bin_s"]
    for name, run in data["runs"].items():
        t = [i * bin_s for i in range(len(run["opened"]))]
        top.step(t, [v / bin_s for v in run["opened"]], where="post", color=colours.get(name), label=name)
        bottom.step(t, [v / bin_s for v in run["attempts"]], where="post", color=colours.get(name), label=name)
    for ax in (top, bottom):
        ax.axvspan(1.0, data["outage_ends_s"], color="#dddddd", label="outage")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    top.set_ylabel("sessions opened / s")
    bottom.set_ylabel("connects tried / s")
    bottom.set_xlabel("time (s)")
    top.set_title(f"Useful work after a {data['outage_s']:g} s outage, {data['sessions']:,} sessions: "
                  "does it come back when the outage ends?")
    return _save(fig, path)


def compare(results_a: dict[str, Any], results_b: dict[str, Any], labels: tuple[str, str], path: Path) -> str:
    """Both runs of `compare` on one figure: connects per second, and the recovery CDF."""
    fig, (load, cdf) = plt.subplots(2, 1, figsize=(9, 7))
    for results, label, colour in ((results_a, labels[0], "#1f77b4"), (results_b, labels[1], "#d62728")):
        bin_s = results["series"]["bin_s"]
        series = results["series"]["whatsapp_connects"]
        load.step([i * bin_s for i in range(len(series))], [v / bin_s for v in series], where="post",
                  color=colour, label=label)
        points = results["recovery_cdf"]
        if points:
            cdf.step(*cdf_steps(points), where="post", color=colour, label=label)
    load.set_title("A against B: WhatsApp connects per second (top), recovery times (bottom)")
    load.set_xlabel("simulated time (s)")
    load.set_ylabel("connects / s")
    cdf.set_xlabel("seconds from the close to the session being open again")
    cdf.set_ylabel("% of recoveries done")
    for ax in (load, cdf):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
