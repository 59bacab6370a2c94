"""B7: bad input from every side gives a clear, logged, counted error, and the other
sessions carry on — malformed frames from the WhatsApp stand-in, garbage and 500s from
the back office, unusable values in Redis, and invalid configuration.
"""

from __future__ import annotations

import json

import pytest
import redis

from service.cli import main
from tests.fixtures.redis_cluster import SERVICE_ON_BOTH, RedisView
from tests.fixtures.service import ascrape, eventually_metric, log_records, metric_value, run_service, statuses
from tests.fixtures.standins import eventually

IDS = ["s0", "s1", "s2"]


def active(redis_: redis.Redis | RedisView, ids=IDS) -> bool:
    # a status the test planted as garbage reads as "not active yet", not as an error
    return set(statuses(redis_, ids).values()) == {"active"}


@pytest.mark.integration
async def test_malformed_frames_are_counted_logged_and_ignored(
        service_settings, standins_clean, redis_client, service_log) -> None:
    s = standins_clean
    s.backoffice.add_accounts(IDS)
    async with run_service(service_settings(sessions="s0,s1,s2")) as service:
        await eventually(lambda: active(redis_client), 5, "all active")
        assert s.whatsapp.garbage("s0", "not json {") == 1
        assert s.whatsapp.garbage("s0", '{"type": "bogus"}') == 1
        assert s.whatsapp.garbage("s1", "x" * 70_000) == 1  # larger than a frame may be
        assert s.whatsapp.garbage("s0", "\xff\xfe", binary=True) == 1
        port = service.server.port
        await eventually_metric(port, lambda text: metric_value(text, "reconnect_lab_malformed_input_total",
                                                                source="wire") >= 4, 3, "malformed frames counted")
        assert active(redis_client), "a malformed frame must not take any session down"
        assert s.whatsapp.session("s0")["connects"] == 1
    logged = [r for r in log_records(service_log) if "malformed" in r["event"]]
    assert logged and any(r.get("session_id") == "s0" for r in logged)


@pytest.mark.integration
@SERVICE_ON_BOTH  # the undelivered updates wait in the outbox: one stream, or a stream per shard
@pytest.mark.parametrize("mode", ["garbage", "error500"])
async def test_backoffice_garbage_or_500_is_retried_and_sessions_carry_on(
        mode, service_settings, standins_clean, service_redis, service_log) -> None:
    s, r = standins_clean, service_redis
    s.backoffice.add_accounts(IDS)
    async with run_service(service_settings(sessions="s0,s1,s2")) as service:
        await eventually(lambda: active(r), 5, "all active")
        await eventually(lambda: r.outbox_length() == 0, 3, "start-up updates delivered")
        s.backoffice.set_mode(mode)
        s.whatsapp.close("s0")
        # validation cannot ask the back office: Redis's answer stands, so s0 reconnects
        await eventually(lambda: s.whatsapp.session("s0")["connects"] == 2 and active(r), 5,
                         "s0 reconnected while the back office answers garbage")
        await eventually(lambda: service.outbox.retries >= 1, 3, "the failed batch is retried")
        port = service.server.port
        text = await ascrape(port)
        assert metric_value(text, "reconnect_lab_outbox_depth") >= 2, "undelivered updates stay queued"
        assert metric_value(text, "reconnect_lab_outbox_failed_batches") >= 1
        slots = metric_value(text, "reconnect_lab_validation_slots")  # the adaptive limit, read at the scrape
        assert 64 <= slots <= service.settings.max_inflight and slots == service.gateway.ctx.validation_slot().limit
        s.backoffice.set_mode("ok")
        await eventually(lambda: r.outbox_length() == 0, 5, "outbox drained once it answers")
    got = [(u["status"], u["seq"]) for u in s.backoffice.updates()["updates"] if u["session_id"] == "s0"]
    assert got == [("connecting", 1), ("active", 2), ("connecting", 3), ("active", 4)]
    failures = [r for r in log_records(service_log) if r["event"] == "outbox_batch_failed"]
    assert failures and ("not JSON" in failures[0]["error"] or "HTTP 500" in failures[0]["error"])


@pytest.mark.integration
@SERVICE_ON_BOTH
async def test_unusable_redis_values_are_counted_and_do_not_spread(
        service_settings, standins_clean, service_redis, service_log) -> None:
    s, r = standins_clean, service_redis
    ids = ["s0", "s1", "s2", "s3"]
    s.backoffice.add_accounts(ids)
    r.sync.set(r.layout.status_key("s1"), "connecting")
    r.sync.hset(r.layout.session_key("s1"), mapping={"attempt": "two", "due_at_s": "soon"})
    r.sync.set(r.layout.status_key("s2"), b"\xff\xfebanana")
    async with run_service(service_settings(sessions="s0,s1,s2,s3")) as service:
        await eventually(lambda: active(r, ids), 5, "every session started despite the garbage")
        # garbage written while s3 waits for its reconnect: validation refuses it, s3 alone is dropped
        s.whatsapp.reject("s3", 500)
        s.whatsapp.close("s3")
        await eventually(lambda: s.whatsapp.session("s3")["connects"] == 2, 3, "s3 attempt 1 failed")
        r.sync.set(r.layout.status_key("s3"), "banana")
        await eventually(lambda: "s3" not in service.gateway.runners, 5, "s3 cancelled")
        assert s.whatsapp.session("s3")["connects"] == 2
        assert active(r, ["s0", "s1", "s2"])
        text = await ascrape(service.server.port)
        assert metric_value(text, "reconnect_lab_malformed_input_total", source="redis") >= 3
        assert metric_value(text, "reconnect_lab_reconnects_cancelled_total") == 1
    events = [r for r in log_records(service_log) if r["event"] in ("malformed_input", "status_malformed")]
    assert {r.get("session_id") for r in events} >= {"s1", "s2", "s3"}
    assert any("banana" in r.get("detail", "") for r in events)


@pytest.mark.parametrize(("args", "names"), [
    (["--policy", "base_s=-1"], "base_s must be > 0"),
    (["--policy", "cap_s=1", "--policy", "base_s=2"], "cap_s"),
    (["--policy", "max_attempts=0"], "max_attempts must be >= 1"),
    (["--policy", "jitter=sometimes"], "unknown jitter 'sometimes'"),
    (["--policy", "codes=klingon"], "unknown close-code table 'klingon'"),
    (["--policy", "nope=1"], "unknown policy setting(s) ['nope']"),
    (["--metrics-port", "70000"], "'metrics_port' (from command line)"),
    (["--transport", "carrier-pigeon"], "'transport' (from command line)"),
    (["--backoffice-validity", "sometimes"], "'backoffice_validity' (from command line)"),
    (["--backoffice-validity-batch-size", "0"], "'backoffice_validity_batch_size' (from command line)"),
    (["--redis-url", "http://x"], "'redis_url'"),
    (["--sessions", "s{9..1}"], "'sessions' (from command line)"),
])
def test_invalid_config_exits_2_naming_the_setting(args, names, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RECONNECT_LAB_BACKOFFICE_TOKEN", "t0ken-value")
    code = main(["--sessions", "s0", *args, "--check-config"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert names in err
    assert "t0ken-value" not in err


def test_invalid_config_file_and_env(capsys, monkeypatch, tmp_path) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("lease_ttl_s = [\n")
    monkeypatch.setenv("RECONNECT_LAB_BACKOFFICE_TOKEN", "t0ken-value")
    monkeypatch.setenv("RECONNECT_LAB_SESSIONS", "s0")
    assert main(["--config", str(bad_toml), "--check-config"]) == 2
    assert "is not valid TOML" in capsys.readouterr().err
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('lease_ttl_s = "long"\n[policy]\nbase_s = 0.5\n')
    assert main(["--config", str(wrong_type), "--check-config"]) == 2
    assert f"'lease_ttl_s' (from config file {wrong_type})" in capsys.readouterr().err
    monkeypatch.setenv("RECONNECT_LAB_LEASE_TTL", "5")
    assert main(["--check-config"]) == 2
    assert "unknown environment variable RECONNECT_LAB_LEASE_TTL" in capsys.readouterr().err
    monkeypatch.delenv("RECONNECT_LAB_LEASE_TTL")
    monkeypatch.setenv("RECONNECT_LAB_POLICY_FACTOR", "0.5")
    assert main(["--check-config"]) == 2
    assert "factor must be >= 1" in capsys.readouterr().err
    monkeypatch.delenv("RECONNECT_LAB_BACKOFFICE_TOKEN")
    monkeypatch.delenv("RECONNECT_LAB_POLICY_FACTOR")
    assert main([]) == 2  # refused before anything starts
    assert "'backoffice_token' is required" in capsys.readouterr().err
    assert main(["--check-config"]) == 0  # a check of what was given lists what is still to give
    assert json.loads(capsys.readouterr().out)["not_set"] == ["backoffice_token"]


@pytest.mark.integration
async def test_status_write_lost_to_a_redis_outage_is_repaired(
        service_settings, standins_clean, redis_client, redis_proxy, service_log) -> None:
    s = standins_clean
    s.backoffice.add_accounts(["s0", "s1"])
    host, port = redis_proxy.address
    async with run_service(service_settings(sessions="s0,s1", redis_url=f"redis://{host}:{port}/0")):
        await eventually(lambda: active(redis_client, ["s0", "s1"]), 5, "both active")
        redis_proxy.disable()  # Redis unreachable: the terminal close cannot write `inactive`
        try:
            s.whatsapp.close("s0", 401)
            await eventually(lambda: any(r["event"] == "status_write_deferred" and r.get("session_id") == "s0"
                                         for r in log_records(service_log)), 3, "the failed write is kept")
            assert statuses(redis_client, ["s0"])["s0"] == "active"  # not written yet
        finally:
            redis_proxy.enable()
        await eventually(lambda: statuses(redis_client, ["s0"])["s0"] == "inactive", 5, "repaired in Redis")
        await eventually(lambda: any(u["session_id"] == "s0" and u["status"] == "inactive" and u["priority"] == "high"
                                     for u in s.backoffice.updates()["updates"]), 3, "back office told")
        assert statuses(redis_client, ["s1"])["s1"] == "active"
        assert s.whatsapp.session("s0")["connects"] == 1
    assert any(r["event"] == "status_write_repaired" and r.get("session_id") == "s0" for r in log_records(service_log))
