"""Benchmark: CPU of one `wire` link attempt — open (TCP connect, WebSocket handshake, hello,
open) and close (closing handshake, TCP close) — against the real WhatsApp stand-in, on
asyncio's loop and on uvloop, with the cyclic GC on (as the service runs) and off (the
transport's own cost, without the collections its garbage causes).

Measures (never asserts time): this process's CPU (user + system) per open+close over
WIRE_BENCH_LINKS links (default 1,000), WIRE_BENCH_CONCURRENCY at a time (default 256, the
service's `max_inflight`), best of WIRE_BENCH_ROUNDS rounds (default 2; the stand-in runs
in its own process). Writes `reports/service/wire-link.json` and `.md`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from service.ports import Secret
from service.transports.wire import WireTransport

pytestmark = [pytest.mark.benchmark, pytest.mark.slow, pytest.mark.integration]

REPORT_DIR = Path(__file__).resolve().parents[2] / "reports" / "service"
LINKS = int(os.environ.get("WIRE_BENCH_LINKS", "1000"))
CONCURRENCY = int(os.environ.get("WIRE_BENCH_CONCURRENCY", "256"))
ROUNDS = int(os.environ.get("WIRE_BENCH_ROUNDS", "2"))
LOOPS: dict[str, Callable[[Coroutine[Any, Any, list[float]]], list[float]]] = {
    "asyncio": asyncio.run, "uvloop": uvloop.run}


async def attempts_cpu_us(url: str) -> list[float]:
    """CPU µs per open+close of each round."""
    transport = WireTransport(url, keepalive_interval_s=20.0, keepalive_misses=3)
    slots = asyncio.Semaphore(CONCURRENCY)
    opened = 0

    async def attempt(i: int) -> None:
        nonlocal opened
        async with slots:
            link = transport.new_link(f"w{i}", Secret("bench"))
            await link.open(10.0)
            opened += link.is_open
            await link.close()
    rounds = []
    for _ in range(ROUNDS):
        cpu_s = time.process_time()
        await asyncio.gather(*(attempt(i) for i in range(LINKS)))
        rounds.append((time.process_time() - cpu_s) * 1e6 / LINKS)
    assert opened == LINKS * ROUNDS, f"{LINKS * ROUNDS - opened} links did not open"
    return rounds


def test_wire_link_cpu_per_attempt(standins_clean) -> None:
    url = standins_clean.whatsapp_ws_url
    found: dict[str, dict[str, float]] = {}
    for loop_name, run in LOOPS.items():
        for gc_on in (True, False):
            if not gc_on:
                gc.disable()
            try:
                rounds = run(attempts_cpu_us(url))
            finally:
                gc.enable()
            found[f"{loop_name}, GC {'on' if gc_on else 'off'}"] = {"best_us": round(min(rounds)),
                                                                   "rounds_us": [round(r) for r in rounds]}
    result = {"links": LINKS, "concurrency": CONCURRENCY, "rounds": ROUNDS, "cpu_us_per_open_and_close": found,
              "machine": {"cpus": os.cpu_count()}}
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "wire-link.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# `wire` link: CPU per open and close", "",
             f"{LINKS} links against the WhatsApp stand-in, {CONCURRENCY} at a time, best of {ROUNDS} rounds.", "",
             "| event loop, cyclic GC | CPU µs per open+close (best; every round) |", "|---|---|",
             *[f"| {name} | {v['best_us']} ({', '.join(map(str, v['rounds_us']))}) |" for name, v in found.items()]]
    (REPORT_DIR / "wire-link.md").write_text("\n".join(lines) + "\n")
