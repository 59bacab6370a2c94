"""A neonize worker's host of many clients, without neonize: the gate's serialisation of
calls into Go and the per-client lifecycle (start → open/failed/closed → stop → stopped).

The stand-in clients record every call that would enter neonize's Go side (where
process-wide maps are written without a lock), so the test sees whether two ever overlap.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest

from service.transports.neonize_worker.host import Client, Gate, Host, Item

WINDOW_S = 0.002  # how long a stand-in's Go entry takes (a real start, dial and refusal took 2-4 ms here)
DEADLINE_S = 10.0
POLL_S = 0.02  # how often `run_until` looks again while the inbox is empty
SESSION_S = 60.0  # a stand-in live session lasts until stopped (bounded, so no thread outlives the run for long)


class GoSide:
    """Counts calls in flight inside the stand-in Go side; `max_in_flight` > 1 is a race."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[str] = []

    def enter(self, name: str) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.calls.append(name)
        time.sleep(WINDOW_S)
        with self._lock:
            self.in_flight -= 1


class Finalizer:
    alive = True

    def detach(self) -> None:
        self.alive = False


class FakeNeonize:
    """`connect()` enters Go, then fails at once (`fail`) or blocks like a live session until `stop()`."""

    def __init__(self, go: GoSide, fail: bool) -> None:
        self._go = go
        self._fail = fail
        self._stopped = threading.Event()
        self._stop_finalizer = Finalizer()
        self.stop_threads: list[str] = []

    def connect(self, proxy: Any) -> None:
        self._go.enter("start")
        if self._fail:
            raise RuntimeError("socks connect tcp 127.0.0.1:1->web.whatsapp.com:443: connection refused")
        self._stopped.wait(SESSION_S)

    def stop(self) -> None:
        self.stop_threads.append(threading.current_thread().name)
        self._go.enter("stop")
        self._stopped.set()


class Connected:
    """Stands in for neonize's `Connected` event (mapped by its type name)."""


class Harness:
    """A Host with a real Gate thread; `run_until` plays the worker's main loop."""

    def __init__(self, fail: bool = False) -> None:
        self.go = GoSide()
        self.inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.neonize: dict[str, FakeNeonize] = {}
        self.gate = Gate(self.inbox.put, lambda client: None)

        def make_client(op: dict[str, Any]) -> Client:
            self.neonize[op["client"]] = FakeNeonize(self.go, fail)
            return Client(op["client"], self.neonize[op["client"]], pairing=False)

        self.host = Host(lambda kind, **f: self.sent.append((kind, f)), str, self.gate, make_client, self.inbox.put)

    def op(self, name: str, **fields: Any) -> None:
        self.host.handle(("op", None, {"op": name, **fields}))

    def connect(self, client_id: str) -> None:
        self.op("connect", client=client_id, store=f"/stores/{client_id}.db", proxy=None, pairing=False)

    def kinds(self, client_id: str) -> list[str]:
        return [kind for kind, fields in self.sent if fields.get("client") == client_id]

    def run_until(self, check: Any, what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what}: not true after {DEADLINE_S}s")
            try:  # a short wait: `check` may turn true on another thread, with nothing in the inbox
                self.host.handle(self.inbox.get(timeout=min(remaining, POLL_S)))
            except queue.Empty:
                pass


@pytest.mark.parametrize("fail", [True, False], ids=["dials-fail", "sessions-live"])
def test_no_two_calls_into_go_overlap_across_many_clients(fail: bool) -> None:
    h = Harness(fail=fail)
    ids = [f"c{n}" for n in range(30)]
    for client_id in ids:
        h.connect(client_id)
    if not fail:  # live sessions: every one started and open, then all stopped at once
        h.run_until(lambda: h.go.calls.count("start") == len(ids), "every client started")
        for client_id in ids:
            h.host.handle(("event", client_id, Connected()))
        for client_id in ids:
            h.op("stop", client=client_id)
    h.run_until(lambda: not h.host.clients, "every client stopped and released")
    assert h.go.calls.count("start") == h.go.calls.count("stop") == len(ids)
    assert h.go.max_in_flight == 1, "two calls into neonize's Go side overlapped"
    for client_id in ids:
        expected = ["failed", "stopped"] if fail else ["open", "stopped"]
        assert h.kinds(client_id) == expected, client_id
        assert not h.neonize[client_id]._stop_finalizer.alive


def test_a_failed_dial_is_reported_classified_then_its_client_stopped() -> None:
    h = Harness(fail=True)
    h.connect("c1")
    h.run_until(lambda: "stopped" in h.kinds("c1"), "c1 stopped")
    [(_, failed)] = [(k, f) for k, f in h.sent if k == "failed"]
    assert failed["reason"] == "connection_refused" and "web.whatsapp.com" in failed["detail"]
    assert h.neonize["c1"].stop_threads == ["neonize-gate"]  # the dial was over: stopped through the gate


def test_a_stop_during_a_dial_runs_beside_the_gate_so_other_clients_still_start() -> None:
    h = Harness(fail=False)  # connect() blocks: a dial (or a session) in flight
    h.connect("c1")
    h.run_until(lambda: h.go.calls.count("start") == 1, "c1 started")
    h.op("stop", client="c1")  # not opened, not returned: neonize's stop() would block the gate
    h.connect("c2")
    h.run_until(lambda: "stopped" in h.kinds("c1") and h.go.calls.count("start") == 2, "c1 stopped, c2 started")
    assert h.neonize["c1"].stop_threads == ["neonize-stop"]
    h.op("shutdown")
    h.run_until(lambda: h.host.done, "shut down")
    assert h.kinds("c2") == ["stopped"]


def test_stop_before_start_never_enters_go_and_bad_requests_are_answered() -> None:
    h = Harness()
    blocked = threading.Event()
    h.host._gate.start = lambda client: blocked.wait(0)  # type: ignore[method-assign]
    h.connect("c1")  # the gate has not started it yet
    h.op("stop", client="c1")
    h.host.handle(("skipped", "c1", None))  # what the gate then reports
    assert h.kinds("c1") == ["stopped"] and h.go.calls == []
    h.op("stop", client="never-seen")
    assert h.kinds("never-seen") == ["stopped"]  # idempotent: nothing to stop
    h.connect("c2")
    h.connect("c2")  # the same id twice
    assert h.kinds("c2") == ["failed", "stopped"] and h.sent[-2][1]["reason"] == "worker_refused"
    h.host.handle(("bad_op", None, "not JSON"))
    assert h.sent[-1][0] == "error"


def test_a_stop_goes_before_starts_queued_at_the_gate() -> None:
    """In a storm a worker's gate holds up to a worker's worth of starts, each up to the settle
    time; a stop queued behind them all outran the service's stop grace, which kills the worker."""
    h = Harness(fail=False)  # connect() blocks like a live session: every start waits the full settle
    h.host._gate = Gate(h.inbox.put, lambda client: None, settle_s=0.3)
    h.connect("c1")
    h.run_until(lambda: h.go.calls.count("start") == 1, "c1 started")
    h.host.handle(("event", "c1", Connected()))  # open: its stop goes through the gate
    for n in range(2, 6):
        h.connect(f"c{n}")
    h.op("stop", client="c1")  # within one settle time of the first queued start
    h.run_until(lambda: "stopped" in h.kinds("c1"), "c1 stopped")
    assert h.go.calls.index("stop") <= 2, f"the stop waited behind the queued starts: {h.go.calls}"
    h.op("shutdown")
    h.run_until(lambda: h.host.done, "shut down")
