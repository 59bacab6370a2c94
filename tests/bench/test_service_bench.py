"""Benchmark: a reconnect storm through real sockets — N sessions in one `python -m service`
process, all dropped at once, kept down through attempt 1, recovered on attempt 2 (the
note's timings: attempt 1 at +2 s, attempt 2 at +6 s).

How the links drop (SERVICE_BENCH_DROP):
- `outage` (default): the WhatsApp stand-in closes every socket with 503 and refuses each
  session's next hello with it (attempt 1), so every session recovers on attempt 2 however
  long the storm takes — a server-side outage each session sees for one attempt. One
  socket per session in the service process and one in the stand-in's, so 10,000 sessions
  fit an open-file limit of 20,000.
- `proxy`: the Toxiproxy proxy in front of the stand-in is disabled (every TCP connection
  cut with no close frame, new ones refused) until attempt 1 has failed everywhere — a
  network drop. Toxiproxy holds two sockets per session in one process, so the size is
  clipped to half the open-file limit.

Measures (never asserts time): CPU ms of the service per reconnect, Redis round trips per
reconnect, back-office requests per 1,000 status updates, status updates per batch, and
p50/p99 lateness of each reconnect timer against its scheduled time (from the service's
own timeline): when the machine handled `BackoffElapsed` (the target's measure) and, to
show what the timer path does not, when the validated attempt opened its socket
(`session_starting`: after the Redis read, the back-office question and any queueing for
an in-flight slot). Writes `reports/service/bench-<N>[-<variant>].json` and `.md`.

Size: SERVICE_BENCH_SESSIONS (default 10,000), clipped to what the open-file hard limit
allows for the drop. Other variants: SERVICE_BENCH_JITTER=full|equal|decorrelated (the
policy's jitter; default none, the note's) and SERVICE_BENCH_MAX_INFLIGHT (the service's
`max_inflight`, default its own), SERVICE_BENCH_LOOP=asyncio|uvloop (its `event_loop`; default the service's, uvloop) and SERVICE_BENCH_VALIDITY=single (one back-office
request per validity question instead of one per loop tick), SERVICE_BENCH_BACKOFFICE=shared (the
back-office stand-in in the WhatsApp stand-in's process, as the other tests run them; by default
it runs in a process of its own, as a real back office is apart from WhatsApp: sharing one loop,
its answers wait behind the WhatsApp stand-in's thousands of handshakes). With the `proxy` drop
one switch serves every session, so
a session whose attempt 2 comes before the last session's attempt 1 has failed (jitter, or
a storm longer than the backoff) meets the link still down: the report says on which
attempt each session recovered.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from service.core import read_jsonl
from tests.fixtures.service import metric_value, scrape, statuses
from tests.fixtures.standins import Standins, start_standins

pytestmark = [pytest.mark.benchmark, pytest.mark.slow, pytest.mark.integration]

REPORT_DIR = Path(__file__).resolve().parents[2] / "reports" / "service"
REQUESTED = int(os.environ.get("SERVICE_BENCH_SESSIONS", "10000"))
JITTER = os.environ.get("SERVICE_BENCH_JITTER", "none")
DROP = os.environ.get("SERVICE_BENCH_DROP", "outage")
VALIDITY = os.environ.get("SERVICE_BENCH_VALIDITY", "batch")  # the service's `backoffice_validity`
SERVICE_LOOP = Settings.model_fields["event_loop"].default  # the service's own default
LOOP = os.environ.get("SERVICE_BENCH_LOOP", SERVICE_LOOP)  # the service's `event_loop`
SOCKETS_PER_SESSION = {"outage": 1, "proxy": 2}  # in the one process holding the most
OUTAGE_CODE = 503  # "service unavailable": reconnect, in every close-code table
BACKOFFICE = os.environ.get("SERVICE_BENCH_BACKOFFICE", "apart")  # the back-office stand-in's process
BACKOFFICE_STANDIN = {"apart": "its own process", "shared": "the WhatsApp stand-in's process"}
MAX_INFLIGHT = int(os.environ["SERVICE_BENCH_MAX_INFLIGHT"]) if os.environ.get("SERVICE_BENCH_MAX_INFLIGHT") else None
FD_MARGIN = 400
TARGETS = {"p99_lateness_ms": 100.0, "redis_round_trips_per_reconnect": 4.0, "updates_per_backoffice_batch": 50.0}


VALIDITY_OUTCOMES = ("vetoed", "unreachable", "budget_expired")  # R4 questions the back office did not answer yes
POLL_S = 0.5  # polls load the measured process (a scrape walks every session): keep them rare


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s:.1f}s")
        time.sleep(POLL_S)


def raise_fd_limit() -> int:
    """Soft limit up to the hard one (children inherit it); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def session_count() -> tuple[int, str]:
    if DROP not in SOCKETS_PER_SESSION:
        raise ValueError(f"SERVICE_BENCH_DROP must be one of {sorted(SOCKETS_PER_SESSION)}, got {DROP!r}")
    limit = raise_fd_limit()
    per_session = SOCKETS_PER_SESSION[DROP]
    fits = (limit - FD_MARGIN) // per_session
    if REQUESTED <= fits:
        return REQUESTED, ""
    return fits, (f"{REQUESTED} sessions do not fit: the open-file hard limit is {limit} and the `{DROP}` drop "
                  f"needs {per_session} socket(s) per session in one process, so at most {fits} fit")


class Drop:
    """Takes every link down and keeps new ones from opening (`begin`), then lets them open (`end`)."""

    def __init__(self, standins: Any, request: pytest.FixtureRequest) -> None:
        self.standins = standins
        self.proxy = None
        if DROP == "proxy":
            toxiproxy = request.getfixturevalue("toxiproxy")  # a Toxiproxy server only for this drop
            upstream = f"127.0.0.1:{standins.ports['whatsapp_port']}"
            self.proxy = toxiproxy.create_proxy(f"wa-bench-{uuid.uuid4().hex[:6]}", upstream=upstream)

    @property
    def whatsapp_url(self) -> str:
        return self.standins.whatsapp_ws_url if self.proxy is None else f"ws://{self.proxy.listen}"

    @property
    def described(self) -> str:
        if self.proxy is None:
            return (f"WhatsApp stand-in outage ({OUTAGE_CODE}: every socket closed, each session's next "
                    f"hello refused)")
        return "Toxiproxy proxy disabled (every TCP connection cut, new ones refused)"

    def begin(self) -> None:
        if self.proxy is None:
            self.standins.whatsapp.outage(OUTAGE_CODE, refusals=1)
        else:
            self.proxy.disable()

    def end(self) -> None:
        if self.proxy is None:
            self.standins.whatsapp.end_outage()
        else:
            self.proxy.enable()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def snapshot(service: Any, standin_pids: list[int]) -> dict[str, float]:
    text = scrape(service.metrics_port, timeout_s=30.0)
    return {
        "cpu_s": cpu_s(service.process.pid),
        "standins_cpu_s": sum(cpu_s(pid) for pid in standin_pids),
        "redis_round_trips": metric_value(text, "reconnect_lab_redis_round_trips"),
        "backoffice_requests": metric_value(text, "reconnect_lab_backoffice_requests", call="all"),
        "status_batches": metric_value(text, "reconnect_lab_backoffice_requests", call="status_batch_answered"),
        "attempts_failed": metric_value(text, "reconnect_lab_reconnect_attempts_total", outcome="failed"),
        "attempts_opened": metric_value(text, "reconnect_lab_reconnect_attempts_total", outcome="opened"),
        "wall_s": time.monotonic(),
        **{f"validity_{outcome}": metric_value(text, "reconnect_lab_validity_backoffice", outcome=outcome)
           for outcome in VALIDITY_OUTCOMES},
        **loop_pauses(text),
    }


def loop_pauses(text: str) -> dict[str, float]:
    """Loop-lag probes (every 50 ms) and GC pauses so far, from the service's histograms."""
    lag = "reconnect_lab_event_loop_lag_seconds"
    probes = metric_value(text, lag + "_count")
    found = {"lag_probes": probes,
             "lag_over_50ms": probes - metric_value(text, lag + "_bucket", le="0.05"),
             "lag_over_100ms": probes - metric_value(text, lag + "_bucket", le="0.1")}
    for generation in ("0", "1", "2"):
        found[f"gc{generation}_count"] = metric_value(text, "reconnect_lab_gc_pause_seconds_count", generation=generation)
        found[f"gc{generation}_s"] = metric_value(text, "reconnect_lab_gc_pause_seconds_sum", generation=generation)
    return found


def pauses_between(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    delta = {key: after[key] - before[key] for key in loop_pauses("")}
    return {"loop_lag_probes": int(delta["lag_probes"]), "loop_lag_over_50ms": int(delta["lag_over_50ms"]),
            "loop_lag_over_100ms": int(delta["lag_over_100ms"]),
            "gc": {f"gen{g}": {"collections": int(delta[f"gc{g}_count"]), "pause_s": round(delta[f"gc{g}_s"], 3)}
                   for g in ("0", "1", "2")}}


@dataclass
class Lateness:
    timer_ms: list[float] = field(default_factory=list)  # when `BackoffElapsed` was handled
    timer_ms_by_attempt: dict[int, list[float]] = field(default_factory=dict)
    socket_open_ms: list[float] = field(default_factory=list)  # when the validated attempt opened its socket
    socket_open_ms_by_attempt: dict[int, list[float]] = field(default_factory=dict)
    recovered_on: dict[int, int] = field(default_factory=dict)  # attempt -> sessions recovered on it


def lateness_ms(timeline: Path, since_t: float) -> Lateness:
    """Each reconnect timer's lateness when its `BackoffElapsed` was handled (by attempt),
    each validated attempt's lateness when it opened its socket, and how many sessions
    recovered on which attempt."""
    found = Lateness()
    due: dict[str, float] = {}
    running_due: dict[str, tuple[float, int]] = {}
    last_attempt: dict[str, int] = {}
    with timeline.open(encoding="utf-8") as stream:
        for record in read_jsonl(stream):
            if record.t < since_t:
                continue
            if record.event == "reconnect_scheduled":
                due[record.session_id] = record.t + float(record.detail["backoff_ms"]) / 1000
                last_attempt[record.session_id] = record.attempt
            elif record.event == "reconnect_running" and record.session_id in due:
                running_due[record.session_id] = (due.pop(record.session_id), record.attempt)
                late = (record.t - running_due[record.session_id][0]) * 1000
                found.timer_ms.append(late)
                found.timer_ms_by_attempt.setdefault(record.attempt, []).append(late)
            elif record.event == "session_starting" and record.session_id in running_due:
                due_t, attempt = running_due.pop(record.session_id)
                found.socket_open_ms.append((record.t - due_t) * 1000)
                found.socket_open_ms_by_attempt.setdefault(attempt, []).append((record.t - due_t) * 1000)
    for attempt in last_attempt.values():
        found.recovered_on[attempt] = found.recovered_on.get(attempt, 0) + 1
    return found


def summary_ms(values: list[float]) -> dict[str, float | int | None]:
    return {"count": len(values), "p50": round(percentile(values, 0.50), 2),
            "p99": round(percentile(values, 0.99), 2), "max": round(max(values, default=float("nan")), 2),
            "mean": round(statistics.fmean(values), 2) if values else None}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def backoffice_apart(standins: Standins, tmp_path: Path, log_dir: Path,
                     request: pytest.FixtureRequest) -> tuple[Standins, list[int]]:
    """`standins` with the back office of stand-ins of its own (stopped after the test) when
    SERVICE_BENCH_BACKOFFICE is `apart`, and the stand-in processes' PIDs."""
    if BACKOFFICE not in BACKOFFICE_STANDIN:
        raise ValueError(f"SERVICE_BENCH_BACKOFFICE must be one of {sorted(BACKOFFICE_STANDIN)}, got {BACKOFFICE!r}")
    if BACKOFFICE == "shared":
        return standins, [standins.process.pid]
    apart = start_standins(log_dir, tmp_path / "backoffice-ready.json", standins.redis_url, name="backoffice")
    request.addfinalizer(apart.process.stop)
    ports = {**standins.ports, **{name: port for name, port in apart.ports.items() if name.startswith("backoffice")}}
    return (Standins(standins.process, ports, apart.backoffice_token, standins.redis_url),
            [standins.process.pid, apart.process.pid])


def test_reconnect_storm(service_process, standins_clean, redis_client, tmp_path, request, server_log_dir) -> None:
    n, clipped = session_count()
    s, standin_pids = backoffice_apart(standins_clean, tmp_path, server_log_dir, request)
    ids = [f"s{i}" for i in range(n)]
    s.backoffice.add_accounts(ids)
    drop = Drop(s, request)
    service = service_process("bench", sessions=f"s{{0..{n - 1}}}", time_scale=1.0, lease_ttl_s=10.0,
                              backoffice_url=s.backoffice_url, backoffice_token=s.backoffice_token,
                              whatsapp_url=drop.whatsapp_url, outbox_batch_size=500,
                              outbox_flush_interval_s=0.5, start_concurrency=500, seed=None,
                              policy=None if JITTER == "none" else f"jitter={JITTER}", max_inflight=MAX_INFLIGHT,
                              backoffice_validity=VALIDITY, event_loop=LOOP)
    wait_until(lambda: set(statuses(redis_client, ids).values()) == {"active"}, 300, f"{n} sessions active")
    wait_until(lambda: redis_client.xlen("rl:outbox") == 0, 60, "start-up updates delivered")
    bo_before = s.backoffice.updates()
    before = snapshot(service, standin_pids)
    storm_t = time.time()

    drop.begin()
    if drop.proxy is not None:  # one switch for every session: back on once attempt 1 failed everywhere
        wait_until(lambda: snapshot(service, standin_pids)["attempts_failed"] - before["attempts_failed"] >= n, 60,
                   "attempt 1 failed for every session")
        drop.end()
    else:  # each session's one refusal is spent by its attempt 1: watch Redis, not the measured loop
        wait_until(lambda: "active" not in set(statuses(redis_client, ids).values()), 60, "every session dropped")
    enabled_after_s = time.time() - storm_t  # when the drop ended (the outage: when all were down)
    wait_until(lambda: set(statuses(redis_client, ids).values()) == {"active"}, 300, "every session recovered")
    drop.end()
    wait_until(lambda: redis_client.xlen("rl:outbox") == 0, 60, "storm updates delivered")
    after = snapshot(service, standin_pids)
    bo_after = s.backoffice.updates()
    lateness = lateness_ms(tmp_path / "timeline-bench.jsonl", storm_t)
    recovered_on = lateness.recovered_on
    stats = s.whatsapp.stats()
    if os.environ.get("SERVICE_BENCH_KEEP_TIMELINE"):
        import shutil
        shutil.copy(tmp_path / "timeline-bench.jsonl", os.environ["SERVICE_BENCH_KEEP_TIMELINE"])

    reconnects = n
    attempts = (after["attempts_failed"] - before["attempts_failed"]) + (after["attempts_opened"] - before["attempts_opened"])
    updates = len(bo_after["updates"]) - len(bo_before["updates"])
    batches = bo_after["batches"] - bo_before["batches"]
    backoffice_requests = after["backoffice_requests"] - before["backoffice_requests"]
    result = {
        "sessions": n, "requested_sessions": REQUESTED, "clipped_because": clipped,
        "policy": "note defaults: base 2 s, factor 2, cap 32 s, 5 attempts, "
                  + ("no jitter" if JITTER == "none" else f"{JITTER} jitter"),
        "variant": variant_name(), "max_inflight": MAX_INFLIGHT or "service default",
        "backoffice_validity": VALIDITY, "backoffice_standin": BACKOFFICE_STANDIN[BACKOFFICE], "event_loop": LOOP, "transport": "wire",
        "drop": drop.described + " until attempt 1 failed everywhere",
        "drop_ended_after_s": round(enabled_after_s, 3),
        "recovered_on_attempt": {str(k): v for k, v in sorted(recovered_on.items())},
        "storm_wall_s": round(after["wall_s"] - before["wall_s"], 3),
        "reconnect_attempts": int(attempts),
        "cpu_ms_per_reconnect": round((after["cpu_s"] - before["cpu_s"]) * 1000 / reconnects, 3),
        "cpu_ms_per_attempt": round((after["cpu_s"] - before["cpu_s"]) * 1000 / max(1, attempts), 3),
        "standins_cpu_s": round(after["standins_cpu_s"] - before["standins_cpu_s"], 3),
        "loop_pauses": pauses_between(before, after),
        "validity_backoffice": {outcome: int(after[f"validity_{outcome}"] - before[f"validity_{outcome}"])
                                for outcome in VALIDITY_OUTCOMES},
        "redis_round_trips_per_reconnect": round((after["redis_round_trips"] - before["redis_round_trips"]) / reconnects, 3),
        "redis_round_trips_per_attempt": round((after["redis_round_trips"] - before["redis_round_trips"]) / max(1, attempts), 3),
        "status_updates": updates,
        "status_batches": batches,
        "updates_per_backoffice_batch": round(updates / max(1, batches), 1),
        "backoffice_requests_per_1000_updates": round(backoffice_requests * 1000 / max(1, updates), 1),
        "backoffice_batch_requests_per_1000_updates": round(batches * 1000 / max(1, updates), 2),
        "lateness_ms": summary_ms(lateness.timer_ms),
        "lateness_ms_by_attempt": {str(k): summary_ms(v) for k, v in sorted(lateness.timer_ms_by_attempt.items())},
        "socket_open_lateness_ms": summary_ms(lateness.socket_open_ms),
        "socket_open_lateness_ms_by_attempt": {str(k): summary_ms(v)
                                               for k, v in sorted(lateness.socket_open_ms_by_attempt.items())},
        "r7_violations": len(stats["r7_violations"]),
        "machine": {"cpus": os.cpu_count(), "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                    "python": interpreter()},
        "targets": TARGETS,
    }
    write_report(result)
    assert result["r7_violations"] == 0
    assert sum(recovered_on.values()) == n, "every session must have gone through the storm"


def interpreter() -> str:
    """The Python the service ran on (this venv's, as the service's process): its build moves CPU figures."""
    return f"CPython {sys.version.split()[0]} ({os.path.realpath(sys.executable)})"


def variant_name() -> str:
    parts = (([] if DROP == "outage" else [f"drop-{DROP}"]) + ([] if VALIDITY == "batch" else [f"validity-{VALIDITY}"])
             + ([] if JITTER == "none" else [f"jitter-{JITTER}"])
             + ([] if MAX_INFLIGHT is None else [f"inflight-{MAX_INFLIGHT}"])
             + ([] if LOOP == SERVICE_LOOP else [LOOP]) + ([] if BACKOFFICE == "apart" else ["backoffice-shared"]))
    return "-".join(parts)


def write_report(result: dict[str, Any]) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    name = f"bench-{result['sessions']}" + (f"-{result['variant']}" if result["variant"] else "")
    (REPORT_DIR / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    late, opened = result["lateness_ms"], result["socket_open_lateness_ms"]
    met = {
        "p99 lateness ≤ 100 ms": late["p99"] <= TARGETS["p99_lateness_ms"],
        "≤ 4 Redis round trips per reconnect": result["redis_round_trips_per_reconnect"] <= 4,
        "≥ 50 status updates per back-office request": result["updates_per_backoffice_batch"] >= 50,
    }
    lines = [
        "# Service reconnect storm", "",
        f"{result['sessions']} sessions in one `python -m service` process, dropped at once: {result['drop']}, "
        f"then up. {result['policy']}; "
        f"max_inflight: {result['max_inflight']}; transport: `{result['transport']}`; event loop: "
        f"{result['event_loop']}; back-office stand-in in {result['backoffice_standin']}; {result['machine']['python']}.",
        *(["", f"Size: {result['clipped_because']}."] if result["clipped_because"] else []), "",
        "| measure | value |", "|---|---|",
        f"| recovered on attempt | {result['recovered_on_attempt']} |",
        f"| CPU ms per reconnect (per attempt) | {result['cpu_ms_per_reconnect']} ({result['cpu_ms_per_attempt']}) |",
        f"| Redis round trips per reconnect (per attempt) | {result['redis_round_trips_per_reconnect']} "
        f"({result['redis_round_trips_per_attempt']}) |",
        f"| status updates per back-office batch | {result['updates_per_backoffice_batch']} |",
        f"| back-office requests per 1,000 status updates (all / batches only) | "
        f"{result['backoffice_requests_per_1000_updates']} / {result['backoffice_batch_requests_per_1000_updates']} |",
        f"| timer lateness p50 / p99 / max (ms) | {late['p50']} / {late['p99']} / {late['max']} |",
        *[f"| … attempt {attempt}'s timers p50 / p99 / max (ms) | {a['p50']} / {a['p99']} / {a['max']} |"
          for attempt, a in result["lateness_ms_by_attempt"].items()],
        f"| socket-open lateness (after validation) p50 / p99 / max (ms) | {opened['p50']} / {opened['p99']} / "
        f"{opened['max']} |",
        *[f"| … attempt {attempt}'s opens p50 / p99 / max (ms) | {a['p50']} / {a['p99']} / {a['max']} |"
          for attempt, a in result["socket_open_lateness_ms_by_attempt"].items()],
        f"| R4 back-office answers vetoed / unreachable / past the budget | "
        + " / ".join(str(result["validity_backoffice"][o]) for o in VALIDITY_OUTCOMES) + " |",
        f"| storm wall time (s) | {result['storm_wall_s']} |",
        f"| R7 violations at the stand-in | {result['r7_violations']} |",
        f"| stand-ins' CPU during the storm (s) | {result['standins_cpu_s']} |",
        f"| loop-lag probes over 50 / 100 ms (of {result['loop_pauses']['loop_lag_probes']}) | "
        f"{result['loop_pauses']['loop_lag_over_50ms']} / {result['loop_pauses']['loop_lag_over_100ms']} |",
        "| GC collections (pause s) by generation | " + ", ".join(
            f"{g}: {v['collections']} ({v['pause_s']})" for g, v in result["loop_pauses"]["gc"].items()) + " |", "",
        "Targets: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in met.items()) + ".", "",
        "Back-office requests count the status batches and the validity questions (R4; batched per "
        "loop tick unless the service runs with `backoffice_validity = \"single\"`).",
    ]
    (REPORT_DIR / f"{name}.md").write_text("\n".join(lines) + "\n")
