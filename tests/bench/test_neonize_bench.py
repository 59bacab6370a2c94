"""Benchmark: N sessions on the `neonize` transport in one `python -m service` process,
through 10 storm cycles of dial failures and recoveries against local endpoints.

Every session's client is a real neonize client in a worker of the fleet
(`neonize_clients_per_worker` each) dialing WhatsApp through a Toxiproxy proxy in front
of the loopback SOCKS5 server. Offline no dial can reach `Connected` (that needs
WhatsApp's servers), so one cycle is:
- **hold**: a Toxiproxy `timeout` toxic swallows what the clients send, so every
  session's next dial reaches the proxy and stays there: all N clients alive at once in
  the workers (their goroutines, store, socket), the nearest offline stand-in for N
  connected sessions; memory is measured here;
- **drop**: the toxic is removed, which closes every held connection at once; every
  session's dial fails (`proxy_closed` or `connection_reset`) together: the storm;
- **failure**: the proxy is disabled; every session's next dial is refused
  (`connection_refused`);
- **recovery**: the proxy is enabled; every session's next dial goes through to the SOCKS5
  server, which refuses WhatsApp's host, and the transport classifies that answer
  (`proxy_refused_target`) — the furthest a dial gets offline, so "recovered" means
  "the dial path works again".
Each phase ends once every session got there. The core schedules every attempt (policy:
a constant 2 s backoff, no attempt cap, no jitter, so all sessions retry together; a
connect timeout of 120 s and `max_inflight` = N, so held dials neither time out nor wait
for a slot).

Measures (never asserts time), for the whole process tree (the service and its neonize
workers): resident memory (RSS, and PSS, which splits shared pages) per session while
every client is held; CPU per attempt; open file descriptors after every cycle; p50/p99
lateness of each reconnect timer (when the machine handled `BackoffElapsed`) and of the
socket opening (`session_starting`), against the timer's due time, from the service's
timeline. Writes `reports/service/bench-neonize-<N>.json` and `.md`. Size:
NEONIZE_BENCH_SESSIONS (default 100, which `make test` runs; the README's figures are
1,000); NEONIZE_BENCH_CLIENTS_PER_WORKER (default: the
setting's default).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from service.core import TimelineRecord
from tests.bench.test_service_bench import (REPORT_DIR, interpreter, lateness_ms, raise_fd_limit, summary_ms,
                                            wait_until)
from tests.fixtures.socks5 import Socks5Server

pytestmark = [pytest.mark.benchmark, pytest.mark.slow, pytest.mark.integration,
              pytest.mark.timeout(1800)]  # 1,000 sessions take 5-6 min on a busy 2-CPU machine

SESSIONS = int(os.environ.get("NEONIZE_BENCH_SESSIONS", "100"))  # the README's figures: 1,000
PER_WORKER = int(os.environ.get("NEONIZE_BENCH_CLIENTS_PER_WORKER", "0")) or int(
    Settings.model_fields["neonize_clients_per_worker"].default)
CYCLES = 10
BACKOFF_S = 2.0
PHASE_TIMEOUT_S = 600.0
TARGETS = {"rss_mb_per_session_at_1000": 5.0, "p99_lateness_ms": 100.0}
POLICY_TOML = f"""
[policy]
schedule = "steps"
steps_s = [{BACKOFF_S}]
max_attempts = "unlimited"
jitter = "none"
connect_timeout_s = 120.0
"""
DROP_REASONS = ("proxy_closed", "connection_reset")


def tree_pids(root: int) -> list[int]:
    """`root` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _status_kb(pid: int, key: str, name: str = "status") -> int:
    try:
        text = Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def tree_usage(root: int) -> dict[str, float]:
    """Memory (MB), CPU (s, reaped children included) and open files of the process tree."""
    pids = tree_pids(root)
    ticks = root_ticks = fds = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # self + reaped children
        root_ticks += (int(fields[11]) + int(fields[12])) if pid == root else 0
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    return {"processes": len(pids), "rss_mb": sum(_status_kb(p, "VmRSS") for p in pids) / 1024,
            "pss_mb": sum(_status_kb(p, "Pss", "smaps_rollup") for p in pids) / 1024,
            "cpu_s": ticks * tick_s, "service_cpu_s": root_ticks * tick_s, "fds": fds}


@dataclass
class TimelineTail:
    """Reads the service's timeline as it grows: when each session last failed for each reason."""

    path: Path
    offset: int = 0
    last_failure: dict[tuple[str, str], float] = field(default_factory=dict)  # (session, reason) -> t
    attempts: int = 0

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        complete = data[:data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            record = TimelineRecord.from_json(line)
            if record.event == "reconnect_failed":
                self.last_failure[record.session_id, str(record.detail.get("reason"))] = record.t
            elif record.event == "session_starting":
                self.attempts += 1

    def all_failed_with(self, reasons: tuple[str, ...], since_t: float, ids: list[str]) -> bool:
        self.read()
        return all(any(self.last_failure.get((sid, reason), 0.0) >= since_t for reason in reasons) for sid in ids)


def run_phase(tail: TimelineTail, reasons: tuple[str, ...], ids: list[str], started_t: float) -> float:
    """Wait until every session failed for one of `reasons` since `started_t` (taken before
    the action that begins the phase: its first failures may come before it returns)."""
    wait_until(lambda: tail.all_failed_with(reasons, started_t, ids), PHASE_TIMEOUT_S,
               f"every session's dial failed with {' or '.join(reasons)}")
    return round(time.time() - started_t, 2)


def hold(proxy: Any, socks5_server: Socks5Server, n: int) -> tuple[float, str]:
    """Every session's next dial held at the proxy; (seconds it took, the toxic's name)."""
    started_t = time.time()
    toxic = proxy.add_toxic("timeout", stream="upstream", timeout=0)
    # a held dial reached the SOCKS5 server (through Toxiproxy) and stays open there
    wait_until(lambda: socks5_server.open_connections >= n, PHASE_TIMEOUT_S, f"{n} dials held at the proxy")
    return round(time.time() - started_t, 2), toxic


def test_neonize_storm_cycles(service_process, standins_clean, toxiproxy, socks5_server: Socks5Server,
                              tmp_path: Path) -> None:
    raise_fd_limit()
    n = SESSIONS
    ids = [f"s{i}" for i in range(n)]
    standins_clean.backoffice.add_accounts(ids)
    proxy = toxiproxy.create_proxy(f"neonize-bench-{uuid.uuid4().hex[:6]}", upstream=f"127.0.0.1:{socks5_server.port}")
    (tmp_path / "stores").mkdir()
    config = tmp_path / "policy.toml"
    config.write_text(POLICY_TOML)
    load_before = os.getloadavg()
    service = service_process("nbench", sessions=f"s{{0..{n - 1}}}", transport="neonize", config=config, max_inflight=n,
                              neonize_proxy_url=f"socks5://127.0.0.1:{proxy.listen_port}",
                              session_credentials=str(tmp_path / "stores" / "{session_id}.db"),
                              neonize_clients_per_worker=PER_WORKER, time_scale=1.0, lease_ttl_s=30.0,
                              outbox_batch_size=500, outbox_flush_interval_s=0.5, seed=None)
    pid = service.process.pid
    tail = TimelineTail(tmp_path / "timeline-nbench.jsonl")
    warm_s = run_phase(tail, ("proxy_refused_target",), ids, time.time())  # start-up: every session dialed once
    start = tree_usage(pid)
    storm_t = time.time()
    attempts_before = tail.attempts
    cycles: list[dict[str, Any]] = []
    for cycle in range(1, CYCLES + 1):
        hold_s, toxic = hold(proxy, socks5_server, n)
        held = tree_usage(pid)
        started_t = time.time()
        proxy.remove_toxic(toxic)  # closes every held connection: the storm
        drop_s = run_phase(tail, DROP_REASONS, ids, started_t)
        started_t = time.time()
        proxy.disable()
        failure_s = run_phase(tail, ("connection_refused",), ids, started_t)
        started_t = time.time()
        proxy.enable()
        recovery_s = run_phase(tail, ("proxy_refused_target",), ids, started_t)
        usage = tree_usage(pid)
        cycles.append({"cycle": cycle, "phases_s": {"hold": hold_s, "drop": drop_s, "failure": failure_s,
                                                    "recovery": recovery_s},
                       "held": {"rss_mb": round(held["rss_mb"], 1), "pss_mb": round(held["pss_mb"], 1),
                                "processes": held["processes"], "fds": held["fds"]},
                       "fds": usage["fds"], "processes": usage["processes"], "rss_mb": round(usage["rss_mb"], 1)})
    end = tree_usage(pid)
    attempts = tail.attempts - attempts_before
    lateness = lateness_ms(tail.path, storm_t)
    result = {
        "transport": "neonize", "sessions": n, "clients_per_worker": PER_WORKER, "cycles": CYCLES,
        "policy": f"constant {BACKOFF_S:g} s backoff, no attempt cap, no jitter",
        "cycle": "hold (every session's dial held at the proxy: all clients alive), drop (the held connections "
                 "closed at once), failure (proxy disabled: connection_refused), recovery (the dial reaches the "
                 "SOCKS5 server and is classified: proxy_refused_target)",
        "max_inflight": n,
        "startup_phase_s": warm_s,
        "attempts": attempts,
        "attempts_per_session_per_cycle": round(attempts / n / CYCLES, 2),
        "cpu_ms_per_attempt": round((end["cpu_s"] - start["cpu_s"]) * 1000 / max(1, attempts), 3),
        "service_cpu_ms_per_attempt": round((end["service_cpu_s"] - start["service_cpu_s"]) * 1000 / max(1, attempts), 3),
        "rss_mb_per_session_held": {"max": round(max(c["held"]["rss_mb"] for c in cycles) / n, 3),
                                    "first_cycle": round(cycles[0]["held"]["rss_mb"] / n, 3),
                                    "last_cycle": round(cycles[-1]["held"]["rss_mb"] / n, 3)},
        "pss_mb_per_session_held": {"max": round(max(c["held"]["pss_mb"] for c in cycles) / n, 3)},
        "processes_held": max(c["held"]["processes"] for c in cycles),
        "fds": {"after_start": start["fds"], "after_each_cycle": [c["fds"] for c in cycles]},
        "processes": {"after_start": start["processes"], "end": end["processes"]},
        "lateness_ms": summary_ms(lateness.timer_ms),
        "socket_open_lateness_ms": summary_ms(lateness.socket_open_ms),
        "per_cycle": cycles,
        "machine": {"cpus": os.cpu_count(), "python": interpreter(),
                    "load_1_5_15_before": [round(x, 2) for x in load_before],
                    "load_1_5_15_after": [round(x, 2) for x in os.getloadavg()]},
        "targets": TARGETS,
    }
    write_report(result)
    assert attempts >= 3 * CYCLES * n, "every session went through every phase (a held dial is the drop's attempt)"


def write_report(result: dict[str, Any]) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    name = f"bench-neonize-{result['sessions']}"
    (REPORT_DIR / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    late, opened, rss, fds = (result["lateness_ms"], result["socket_open_lateness_ms"],
                              result["rss_mb_per_session_held"], result["fds"])
    lines = [
        "# Neonize reconnect storms", "",
        f"{result['sessions']} sessions on the `neonize` transport in one `python -m service` process, "
        f"{result['clients_per_worker']} clients per worker process; {result['cycles']} cycles: {result['cycle']}. "
        f"{result['policy']}. Offline no dial reaches `Connected`: a recovery is a dial that reaches the SOCKS5 "
        "server and gets an answer the transport classifies.", "",
        "| measure (whole process tree: service + workers) | value |", "|---|---|",
        f"| resident memory per session with every client held, max / first cycle / last cycle (MB, RSS) | "
        f"{rss['max']} / {rss['first_cycle']} / {rss['last_cycle']} |",
        f"| … proportional (PSS, shared pages split), max (MB) | {result['pss_mb_per_session_held']['max']} |",
        f"| processes with every client held (service + workers) | {result['processes_held']} |",
        f"| CPU ms per attempt, whole tree (service process alone) | {result['cpu_ms_per_attempt']} "
        f"({result['service_cpu_ms_per_attempt']}; {result['attempts']} attempts) |",
        f"| open files after start, then after each cycle | {fds['after_start']} → "
        f"{', '.join(str(f) for f in fds['after_each_cycle'])} |",
        f"| processes after start / end | {result['processes']['after_start']} / {result['processes']['end']} |",
        f"| timer lateness p50 / p99 / max (ms) | {late['p50']} / {late['p99']} / {late['max']} |",
        f"| socket-open lateness p50 / p99 / max (ms) | {opened['p50']} / {opened['p99']} / {opened['max']} |",
        "| phase times, hold / drop / failure / recovery (s, per cycle) | "
        + ", ".join("/".join(str(v) for v in c["phases_s"].values()) for c in result["per_cycle"]) + " |",
        f"| load average before / after (1, 5, 15 min; {result['machine']['cpus']} CPUs) | "
        f"{result['machine']['load_1_5_15_before']} / {result['machine']['load_1_5_15_after']} |", "",
        f"Targets: ≤ {TARGETS['rss_mb_per_session_at_1000']} MB per session at 1,000 sessions, p99 timer lateness "
        f"≤ {TARGETS['p99_lateness_ms']} ms, no growth of open files over the cycles.",
    ]
    (REPORT_DIR / f"{name}.md").write_text("\n".join(lines) + "\n")
