"""R8 and B8 from the outside: /metrics counters move as sessions drop and recover,
/healthz answers, and no token, credential or password reaches any log line or the
timeline — with a Redis that really requires a password and a stand-in that really
checks the credentials.
"""

from __future__ import annotations

import json
import shutil

import pytest

from service.cli import main
from tests.fixtures.process import ManagedProcess, free_port
from tests.fixtures.redis_cluster import SERVICE_ON_BOTH
from tests.fixtures.servers import redis_answers_ping
from tests.fixtures.service import ascrape, eventually_metric, log_records, metric_value, run_service, statuses
from tests.fixtures.standins import eventually

pytestmark = pytest.mark.integration

IDS = ["s0", "s1", "s2", "s3", "s4"]


def count(text: str, name: str, **labels: str) -> float:
    return metric_value(text, name, **labels)


@SERVICE_ON_BOTH  # /healthz's Redis probe too: a server's client, or the cluster's
async def test_metrics_move_as_sessions_drop_and_recover(service_settings, standins_clean, service_redis) -> None:
    s = standins_clean
    s.backoffice.add_accounts(IDS)
    async with run_service(service_settings(sessions="s{0..4}")) as service:
        port = service.server.port
        await eventually(lambda: set(statuses(service_redis, IDS).values()) == {"active"}, 5, "all active")
        before = await eventually_metric(port, lambda t: count(t, "reconnect_lab_sessions", status="active") == 5,
                                         3, "5 active in the gauge")
        assert count(before, "reconnect_lab_session_closes_total", code="None") == 0

        s.whatsapp.close("s0")
        s.whatsapp.close("s1")
        after = await eventually_metric(
            port, lambda t: count(t, "reconnect_lab_reconnect_attempts_total", outcome="opened") == 2
            and count(t, "reconnect_lab_sessions", status="active") == 5, 5, "two reconnects counted")
        assert count(after, "reconnect_lab_session_closes_total", code="None") == 2
        assert count(after, "reconnect_lab_backoff_seconds_count") == 2
        assert count(after, "reconnect_lab_reconnect_lateness_seconds_count") == 2

        s.whatsapp.reject("s2", 500)
        s.whatsapp.close("s2")
        s.whatsapp.close("s3", 401)
        final = await eventually_metric(
            port, lambda t: count(t, "reconnect_lab_give_ups_total") == 1, 8, "s2 gave up after 5 failures")
        assert count(final, "reconnect_lab_reconnect_attempts_total", outcome="failed") == 5
        assert count(final, "reconnect_lab_terminal_closes_total", code="401") == 1
        assert count(final, "reconnect_lab_sessions", status="inactive") == 2
        assert count(final, "reconnect_lab_sessions", status="active") == 3
        assert count(final, "reconnect_lab_illegal_transitions_total") == 0
        assert count(final, "reconnect_lab_event_loop_lag_seconds_count") > count(
            before, "reconnect_lab_event_loop_lag_seconds_count")  # probed every 50 ms
        # s2's five validations (R4) went to the back office as batch requests
        assert s.backoffice.updates()["validity_batches"] >= 5
        health = json.loads(await ascrape(port, "/healthz"))
        assert health["ok"] is True and health["redis"] == "ok" and health["sessions"] == 3


@pytest.fixture
def redis_with_password(server_log_dir, tmp_path):
    password = "rEdis-pw-5ecret-771"
    port = free_port()
    argv = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--requirepass", password, "--dir", str(tmp_path)]
    process = ManagedProcess(f"redis-pw-{port}", argv, ready=lambda: _auth_ping(port, password),
                             log_dir=server_log_dir)
    process.start()
    try:
        yield f"redis://:{password}@127.0.0.1:{port}/0", password
    finally:
        process.stop()


def _auth_ping(port: int, password: str) -> bool:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n".encode())
        return sock.recv(64).startswith(b"+OK") or redis_answers_ping("127.0.0.1", port)


async def test_no_token_credential_or_password_in_any_log_line(
        service_settings, standins_clean, redis_with_password, service_log, tmp_path, capsys) -> None:
    s = standins_clean
    redis_url, redis_password = redis_with_password
    credentials = "wa-cred-Zq81-secret"
    token = s.backoffice_token.reveal()
    s.backoffice.add_accounts(["s0", "s1"])
    s.whatsapp.set_credentials("s0", credentials)  # the stand-in checks them: they are really sent
    s.whatsapp.set_credentials("s1", "something-else")  # s1's hello is refused with 401
    settings = service_settings(sessions="s0,s1", redis_url=redis_url, session_credentials=credentials)
    async with run_service(settings) as service:
        await eventually(lambda: service.store.round_trips > 0 and "s1" not in service.gateway.runners, 5,
                         "s1 refused")
        await eventually(lambda: s.whatsapp.session("s0")["live"] == 1, 5, "s0 open with its credentials")
        s.backoffice.set_mode("error500")  # errors carry request details into the logs
        s.whatsapp.close("s0")
        await eventually(lambda: service.outbox.retries >= 1 and s.whatsapp.session("s0")["live"] == 1, 5,
                         "s0 back while the back office fails")
        s.backoffice.set_mode("ok")
    assert main(["--check-config", "--sessions", "s0", "--redis-url", redis_url, "--session-credentials", credentials,
                 "--backoffice-token", token]) == 0
    printed = capsys.readouterr()
    texts = {"service log": service_log.read_text(), "timeline": (tmp_path / "timeline.jsonl").read_text(),
             "--check-config": printed.out + printed.err}
    logged = {record.get("event") for record in log_records(service_log)}
    # the lines that carry settings, request details and a refused hello were all written
    assert logged >= {"service_starting", "outbox_batch_failed", "validation_backoffice_unreachable",
                      "session_terminal"}, logged
    for where, text in texts.items():
        for secret in (token, credentials, redis_password):
            assert secret not in text, f"a secret leaked into the {where}"
    assert "***" in texts["service log"]


@pytest.mark.parametrize("path", ["structlog", "stdlib"])
def test_redaction_masks_secrets_wherever_they_sit(path, service_log) -> None:
    import logging

    from service.logging import get_logger
    from service.ports import Secret

    secrets = ["tok-AAA111", "cred-BBB222", "pw-CCC333", "bearer-DDD444", "hdr-EEE555"]
    fields = {"credentials": Secret(secrets[1]), "nested": {"Authorization": f"Bearer {secrets[3]}",
                                                            "items": [{"password": secrets[2]}]},
              "webhook_token": secrets[0], "note": f"redis://:{secrets[2]}@127.0.0.1:1/0 sent token={secrets[0]}",
              "header_line": f"Authorization: Bearer {secrets[4]}", "plain_secret_value": Secret(secrets[1])}
    if path == "structlog":
        get_logger(component="test").warning("redaction_probe", **fields)
    else:
        try:
            raise RuntimeError(f"connect failed for redis://user:{secrets[2]}@h/0 with password={secrets[2]}")
        except RuntimeError:
            logging.getLogger("service.test").exception("redaction probe %s", f"token={secrets[0]}",
                                                        extra={"credentials": secrets[1]})
    text = service_log.read_text()
    assert "redaction" in text
    for secret in secrets:
        assert secret not in text, f"{secret} leaked through the {path} path: {text}"
