"""The checkers have teeth against the real service: run it with a deliberately wrong policy
and the run fails naming the violated invariant; interrupt a run and Toxiproxy is still clean."""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ET

import pytest

from chaos import catalog
from chaos.checkers import ATTEMPT_TIMES_MATCH_POLICY, ATTEMPTS_WITHIN_MAX, NO_CONNECT_AFTER_END, ONE_LIVE_SOCKET
from chaos.lab import wait_for
from chaos.report import check_key

pytestmark = [pytest.mark.chaos]


def failed_names(result) -> set[str]:
    return {c.name for c in result.failed_checks}


def test_a_service_making_six_attempts_fails_attempts_per_episode(run_chaos):
    [result] = run_chaos([catalog.at_scale("long_outage", 0.1)], service_policy={"max_attempts": 6},
                          subdir="broken", intended_failures=(ATTEMPTS_WITHIN_MAX,))
    assert result.status == "failed" and result.verdict == "caught", result.explain()
    assert ATTEMPTS_WITHIN_MAX in failed_names(result), result.explain()
    journal = json.loads(result.journal.read_text())
    assert journal["deviated"] is True and journal["status"] == "failed"
    assert all(a["status"] == "succeeded" for a in journal["rollbacks"])


def test_a_service_with_a_slower_backoff_fails_attempt_times(run_chaos):
    [result] = run_chaos([catalog.at_scale("flaky_wifi", 0.1)], service_policy={"base_s": 6.0, "cap_s": 96.0},
                          subdir="broken", intended_failures=(ATTEMPT_TIMES_MATCH_POLICY,))
    assert result.status == "failed" and result.verdict == "caught", result.explain()
    assert ATTEMPT_TIMES_MATCH_POLICY in failed_names(result), result.explain()


def test_an_interrupted_run_rolls_back_every_fault(run_chaos, chaos_lab):
    scenario = catalog.at_scale("matrix_redis_latency", 0.5)  # the toxic stays on for ~4 s
    abort = threading.Event()

    def interrupt_once_the_toxic_is_on() -> None:
        wait_for(lambda: any(p.toxics() for p in chaos_lab.toxiproxy.proxies().values()), 60.0, "a toxic")
        abort.set()

    watcher = threading.Thread(target=interrupt_once_the_toxic_is_on, daemon=True)
    watcher.start()
    [result] = run_chaos([scenario], abort=abort, subdir="interrupted")  # run_chaos asserts Toxiproxy is clean after
    watcher.join(timeout=5.0)
    assert result.status == "interrupted", result.explain()
    journal = json.loads(result.journal.read_text())
    assert journal["status"] == "interrupted"
    assert [a["activity"]["name"] for a in journal["rollbacks"]] == [
        "stop the gateway", "remove toxics, enable proxies, start Redis", "delete this scenario's proxies"]
    assert not any(name.startswith(scenario.name) for name in chaos_lab.toxiproxy.proxies())


def test_python_m_chaos_run_starts_its_own_lab_and_reports(tmp_path):
    from chaos.cli import main

    assert main(["run", "terminal_401", "--scale", "0.2", "--report", str(tmp_path)]) == 0
    [first] = [p for p in tmp_path.iterdir() if p.name != "latest"]
    summary = (tmp_path / "latest" / "summary.md").read_text()
    assert re.search(r"\| terminal_401 \| 0\.2 \| \*\*passed\*\* \| (\d+)/\1 \| match \|", summary), summary
    assert (first / "terminal_401" / "timeline.png").exists()
    # whatsmeow's table names events, not numbers: a plain 401 is retried there, so this
    # service reconnects after WhatsApp said "unauthorised": a proof, caught (exit 0) ...
    junit = tmp_path / "junit.xml"
    assert main(["run", "terminal_401", "--scale", "0.2", "--report", str(tmp_path), "--service-policy",
                 "codes=whatsmeow", "--expect-fail", check_key(NO_CONNECT_AFTER_END), "--junit", str(junit)]) == 0
    second = (tmp_path / "latest").resolve()
    assert second != first and sorted(p.name for p in first.iterdir()) == sorted(p.name for p in second.iterdir())
    summary = (second / "summary.md").read_text()
    assert "0 failed as intended" not in summary and "**0 real failure(s)**" in summary
    assert "## Intended failures (broken-service proofs)" in summary and "## Real failures" not in summary
    assert f"**{NO_CONNECT_AFTER_END}** violated" in summary
    suite = ET.parse(junit).getroot()
    assert (suite.tag, suite.get("failures"), suite.get("errors")) == ("testsuites", "0", "0")
    # ... and the same proof naming a check this service keeps is a real failure (exit 1)
    assert main(["run", "terminal_401", "--scale", "0.2", "--report", str(tmp_path), "--service-policy",
                 "codes=whatsmeow", "--expect-fail", ATTEMPTS_WITHIN_MAX]) == 1
    summary = (tmp_path / "latest" / "summary.md").read_text()
    assert "**1 real failure(s)**" in summary and f"- '{ATTEMPTS_WITHIN_MAX}' did not fail" in summary
    assert len([p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]) == 3


def test_a_second_live_socket_for_a_session_fails_one_live_socket(run_chaos, chaos_lab):
    """Stands in for a service that never closes its old socket: while the link is down, a rogue
    client logs the same session in directly at the stand-in; the service's reconnect makes two."""
    from websockets.sync.client import connect

    from service.transports.wire_protocol import encode

    scenario = catalog.at_scale("flaky_wifi", 0.1)
    logged_in, run_over = threading.Event(), threading.Event()

    def log_in_a_second_socket() -> None:
        def disabled_link() -> list[str]:  # this run's proxy is named "<scenario>-<tag>-whatsapp"
            return [p.name for p in chaos_lab.toxiproxy.proxies().values()
                    if p.name.startswith(scenario.name) and p.name.endswith("-whatsapp") and not p.enabled]
        wait_for(lambda: bool(disabled_link()), 60.0, "the WhatsApp proxy disabled")
        session_id = disabled_link()[0].removesuffix("-whatsapp") + "-s0"
        host, port = chaos_lab.whatsapp_address
        with connect(f"ws://{host}:{port}/ws/{session_id}", proxy=None) as ws:
            ws.send(encode("hello", session_id=session_id, credentials=""))
            ws.recv(timeout=5.0)
            logged_in.set()
            run_over.wait(timeout=60.0)

    helper = threading.Thread(target=log_in_a_second_socket, daemon=True)
    helper.start()
    try:
        [result] = run_chaos([scenario], subdir="broken", intended_failures=(ONE_LIVE_SOCKET,))
    finally:
        run_over.set()
        helper.join(timeout=10.0)
    assert logged_in.is_set(), "the rogue socket never logged in"
    assert result.status == "failed", result.explain()
    assert ONE_LIVE_SOCKET in failed_names(result), result.explain()
