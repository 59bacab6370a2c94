"""Bad settings, including those only starting can judge, end `python -m service` with one
line on stderr naming the setting and exit 2 — never a traceback; an unreachable Redis at
start is exit 1, also one line. Run as a real process against a real redis-server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main
from tests.fixtures.process import free_port
from tests.fixtures.servers import RedisServer
from tests.fixtures.service import REPO_ROOT

TOKEN = "t0ken-CONFIG-test"
EXIT_TIMEOUT_S = 60.0


def run_service_process(args: list[str], tmp_path: Path) -> tuple[int, list[str]]:
    """Run `python -m service ARGS` to its exit; (exit code, stderr lines that are not JSON logs)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RECONNECT_LAB_")},
           "RECONNECT_LAB_BACKOFFICE_TOKEN": TOKEN, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "service", *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=EXIT_TIMEOUT_S, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert TOKEN not in done.stderr + done.stdout
    plain = []
    for line in done.stderr.splitlines():
        try:
            json.loads(line)
        except ValueError:
            plain.append(line)
    return done.returncode, plain


@pytest.mark.integration
def test_metrics_port_in_use_exits_2_naming_it(redis_server: RedisServer, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, lines = run_service_process(["--sessions", "s0", "--redis-url", redis_server.url,
                                           "--metrics-port", str(port)], tmp_path)
    assert code == 2, lines
    assert len(lines) == 1 and "metrics_port" in lines[0] and str(port) in lines[0], lines


@pytest.mark.integration
def test_timeline_path_that_cannot_be_opened_exits_2_naming_it(redis_server: RedisServer, tmp_path: Path) -> None:
    code, lines = run_service_process(["--sessions", "s0", "--redis-url", redis_server.url, "--metrics-port", "0",
                                       "--timeline-path", str(tmp_path)], tmp_path)  # a directory
    assert code == 2, lines
    assert len(lines) == 1 and "timeline_path" in lines[0], lines


@pytest.mark.integration
def test_unreachable_redis_at_start_exits_1_in_one_line(tmp_path: Path) -> None:
    code, lines = run_service_process(["--sessions", "s0", "--metrics-port", "0", "--redis-url",
                                       f"redis://:pw-SECRET@127.0.0.1:{free_port()}/0"], tmp_path)
    assert code == 1, lines
    assert len(lines) == 1 and "cannot reach Redis" in lines[0] and "pw-SECRET" not in lines[0], lines


# the values the issue found giving a traceback, exit 1, or accepted and failing later
@pytest.mark.parametrize(("args", "setting"), [
    (["--redis-url", "redis://host:notaport"], "redis_url"),
    (["--redis-url", "redis://127.0.0.1:6379/abc"], "redis_url"),
    (["--lease-ttl-s", "inf"], "lease_ttl_s"),
    (["--backoffice-timeout-s", "inf"], "backoffice_timeout_s"),
    (["--backoffice-timeout-s", "1e9"], "backoffice_timeout_s"),
    (["--outbox-retry-base-s", "5", "--outbox-retry-cap-s", "1"], "outbox_retry_cap_s"),
    (["--policy", "cap_s=1"], "cap_s"),
    (["--sessions", "s{9..1}"], "sessions"),
    (["--sessions", "@/no/such/sessions.txt"], "sessions"),
    (["--sessions", "backoffice"], "sessions"),
    (["--whatsapp-url", "ws://127.0.0.1:8765/ws"], "whatsapp_url"),
    (["--policy", "connect_timeout_s=1e300"], "connect_timeout_s"),
    (["--lease-ttl-s"], "lease_ttl_s"),  # argparse's own usage error, on one line too
])
def test_issue_values_exit_2_with_one_line(args: list[str], setting: str, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONNECT_LAB_BACKOFFICE_TOKEN", TOKEN)
    code = main(["--sessions", "s0", *args, "--check-config"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and setting in err.replace("-", "_"), err
    assert "Traceback" not in err and TOKEN not in err


def test_sessions_is_required(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONNECT_LAB_BACKOFFICE_TOKEN", TOKEN)
    monkeypatch.delenv("RECONNECT_LAB_SESSIONS", raising=False)
    assert main([]) == 2  # refused before anything starts
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'sessions' is required" in err, err
    assert main(["--check-config"]) == 0  # a check of what was given lists what is still to give
    printed = capsys.readouterr()
    assert json.loads(printed.out)["not_set"] == ["sessions"] and "still to give before running: sessions" in printed.err
