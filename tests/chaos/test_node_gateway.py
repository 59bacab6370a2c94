"""The Baileys-style Node.js gateway (examples/baileys-style-gateway) under the same harness,
judged black-box: with the note's fixes it passes S1–S3 and the matrix; each of the note's five
original bugs, put back alone, is caught by the invariant named for it; `legacy` fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from chaos import catalog
from chaos.checkers import (ATTEMPTS_WITHIN_MAX, BLACK_BOX, FINAL_STATUS_AS_EXPECTED, NO_CONNECT_AFTER_END,
                            ONE_LIVE_SOCKET)
from chaos.gateway import GatewaySpec, load_gateway

pytestmark = [pytest.mark.chaos]

NODE_DIR = Path(__file__).resolve().parents[2] / "examples" / "baileys-style-gateway"
QUICK = 0.1
# Each bug of the note's original code → the scenario that meets it → the invariant that catches it.
LEGACY_BUGS = {
    "connecting_rejected": ("flaky_wifi", FINAL_STATUS_AS_EXPECTED),  # its own `connecting` cancels the reconnect
    "no_cap": ("long_outage", ATTEMPTS_WITHIN_MAX),  # 2.5 s retries through a 2-minute outage
    "stale_cache": ("deleted_mid_retry", NO_CONNECT_AFTER_END),  # the cached "active" outlives the deletion
    "no_validation": ("deleted_mid_retry", NO_CONNECT_AFTER_END),  # the timer reconnects a deleted account
    "socket_before_close": ("matrix_whatsapp_keepalive_silence", ONE_LIVE_SOCKET),  # the dead link's socket stays
}


def node_gateway(tmp_path: Path, *, bugs: str = "", file: str = "gateway.toml") -> GatewaySpec:
    """The example's gateway file, with `GATEWAY_BUGS` set, run from the example's folder."""
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        pytest.fail(f"{NODE_DIR} has no node_modules: run `make node-gateway` (npm ci)")
    text = (NODE_DIR / file).read_text(encoding="utf-8")
    text = text.replace('cwd = "."', f'cwd = "{NODE_DIR}"').replace('GATEWAY_BUGS = ""', f'GATEWAY_BUGS = "{bugs}"')
    path = tmp_path / f"gateway-{bugs or 'fixed'}.toml"
    path.write_text(text, encoding="utf-8")
    return load_gateway(path)


def failed_names(result) -> set[str]:
    return {c.name for c in result.failed_checks}


def test_the_fixed_gateway_passes_the_note_scenarios_black_box(run_chaos, tmp_path):
    gateway = node_gateway(tmp_path)
    results = run_chaos([catalog.at_scale(n, QUICK) for n in catalog.names("note")], concurrent=True,
                        gateway=gateway, subdir="node")
    for result in results:
        assert result.status == "passed", result.explain()
        assert {c.evidence for c in result.checks} == {BLACK_BOX}, result.explain()
        assert result.prediction is None  # no timeline to compare with the replay


EXTRAS = ["terminal_401", "deactivated_mid_retry", "redis_restart_mid_reconnect", "kill_mid_backoff"]
BATCHES = {upstream: [n for n in catalog.names("matrix") if upstream in catalog.get(n).tags]
           for upstream in ("whatsapp", "redis", "backoffice")} | {"extra": EXTRAS}


@pytest.mark.parametrize("batch", sorted(BATCHES))
def test_the_fixed_gateway_passes_the_black_box_matrix(run_chaos, tmp_path, batch):
    """One upstream's matrix at once (each scenario has its own proxies, sessions and gateway); the
    extras one by one (a Redis restart is felt by every scenario sharing that Redis)."""
    results = run_chaos([catalog.at_scale(name) for name in BATCHES[batch]], concurrent=batch != "extra",
                        gateway=node_gateway(tmp_path), subdir="node")
    assert [r.name for r in results] == BATCHES[batch]
    assert [r.explain() for r in results if r.status != "passed"] == []


@pytest.mark.parametrize("bug", sorted(LEGACY_BUGS))
def test_each_bug_of_the_note_is_caught_by_its_invariant(run_chaos, tmp_path, bug):
    name, invariant = LEGACY_BUGS[bug]
    [result] = run_chaos([catalog.at_scale(name, QUICK)], gateway=node_gateway(tmp_path, bugs=bug),
                         subdir=f"node-legacy-{bug}", intended_failures=(invariant,))
    assert result.status == "failed" and result.verdict == "caught", result.explain()
    assert invariant in failed_names(result), result.explain()


def test_the_legacy_gateway_fails_the_note_scenarios(run_chaos, tmp_path):
    gateway = node_gateway(tmp_path, file="gateway-legacy.toml")
    assert gateway.name == "baileys-style-legacy"
    # S1 is left out: it passes in legacy mode (8/8 checks seen): with no validation the reconnect never meets the
    # `connecting` status that would reject it (connecting_rejected alone is caught above).
    results = {r.name: r for r in run_chaos([catalog.at_scale(n, QUICK) for n in ("long_outage", "deleted_mid_retry")],
                                            concurrent=True, gateway=gateway, subdir="node-legacy",
                                            intended_failures=())}
    assert ATTEMPTS_WITHIN_MAX in failed_names(results["long_outage"]), results["long_outage"].explain()
    assert NO_CONNECT_AFTER_END in failed_names(results["deleted_mid_retry"]), results["deleted_mid_retry"].explain()
    assert {r.verdict for r in results.values()} == {"caught"}, "\n".join(r.explain() for r in results.values())


@pytest.mark.parametrize("env, words", [
    ({"POLICY": '{"jitter": "full"}'}, "POLICY.jitter: only none is supported"),
    ({"POLICY": '{"retries": 3}'}, "POLICY.retries: unsupported key"),
    ({"POLICY": "[1]"}, "POLICY must be a JSON object"),
    ({"GATEWAY_BUGS": "no_cap,typo"}, 'unknown bug "typo"'),
    ({"WHATSAPP_URL": "http://x"}, "WHATSAPP_URL must start with ws://"),
    ({"BACKOFFICE_TOKEN": ""}, "BACKOFFICE_TOKEN is required"),
])
def test_the_node_gateway_refuses_a_bad_setting_with_exit_2_and_one_line(env, words):
    base = {"WHATSAPP_URL": "ws://127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0",
            "BACKOFFICE_URL": "http://127.0.0.1:1", "BACKOFFICE_TOKEN": "t0ken-never-shown", "SESSIONS": "s1"}
    done = subprocess.run(["node", "gateway.js"], cwd=NODE_DIR, env={"PATH": os.environ["PATH"], **base, **env},
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and words in done.stderr and "t0ken-never-shown" not in done.stderr
