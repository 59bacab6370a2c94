"""Smoke tests of the server fixtures: real Redis behind a real Toxiproxy proxy."""

from __future__ import annotations

import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.toxiproxy import Proxy, Toxiproxy
from tests.fixtures.servers import RedisServer

pytestmark = pytest.mark.integration


def proxied_client(proxy: Proxy) -> redis.Redis:
    """A client through the proxy that fails fast: no retries, short timeouts."""
    return redis.Redis(
        host=proxy.listen_host, port=proxy.listen_port,
        socket_timeout=2.0, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0),
    )


def test_set_get_through_proxy(redis_client: redis.Redis, redis_proxy: Proxy) -> None:
    via_proxy = proxied_client(redis_proxy)

    assert via_proxy.set("greeting", "hola")

    assert redis_client.get("greeting") == b"hola"
    assert via_proxy.get("greeting") == b"hola"


def test_disabled_proxy_refuses_new_clients_until_enabled(redis_client: redis.Redis, redis_proxy: Proxy) -> None:
    with redis_proxy.disabled() as snapshot:
        assert snapshot.enabled is False
        with pytest.raises(redis.exceptions.ConnectionError):
            proxied_client(redis_proxy).ping()

    assert redis_proxy.refresh().enabled is True
    assert proxied_client(redis_proxy).ping() is True


def test_disabling_closes_open_connections(redis_client: redis.Redis, redis_proxy: Proxy) -> None:
    client = proxied_client(redis_proxy)
    assert client.ping() is True

    with redis_proxy.disabled():
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()


def test_reset_clears_toxics_and_enables_every_proxy(toxiproxy: Toxiproxy, redis_proxy: Proxy) -> None:
    redis_proxy.add_toxic("latency", latency=50, jitter=5)
    redis_proxy.add_toxic("bandwidth", stream="upstream", rate=0)
    redis_proxy.disable()
    assert len(redis_proxy.toxics()) == 2

    toxiproxy.reset()

    assert redis_proxy.toxics() == []
    assert all(proxy.enabled for proxy in toxiproxy.proxies().values())
    assert redis_proxy.name in toxiproxy.proxies()  # reset does not delete proxies


def test_toxic_context_manager_applies_then_removes(redis_client: redis.Redis, redis_proxy: Proxy) -> None:
    client = proxied_client(redis_proxy)
    client.ping()  # connect before the toxic; latency also applies to open links

    with redis_proxy.toxic("latency", latency=300) as name:
        assert [toxic["name"] for toxic in redis_proxy.toxics()] == [name]
        started = time.monotonic()
        client.ping()
        assert time.monotonic() - started >= 0.3  # latency is a floor, never less

    assert redis_proxy.toxics() == []


def test_toxic_context_manager_removes_on_error(redis_proxy: Proxy) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with redis_proxy.toxic("timeout", timeout=0):
            raise RuntimeError("boom")

    assert redis_proxy.toxics() == []


@pytest.mark.parametrize("listen", ["0.0.0.0:0", ":1234", "192.0.2.1:0", "localhost:0", "127.0.0.1"])
def test_create_proxy_rejects_non_loopback_or_hostless_listen(
    toxiproxy: Toxiproxy, redis_server: RedisServer, listen: str
) -> None:
    with pytest.raises(ValueError, match="listen address"):
        toxiproxy.create_proxy("must-not-exist", f"127.0.0.1:{redis_server.port}", listen=listen)

    assert "must-not-exist" not in toxiproxy.proxies()


def test_redis_restart_keeps_port_and_forgets_data(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    redis_client.set("volatile", "1")
    old_pid = redis_server.pid

    redis_server.restart()

    assert redis_server.pid != old_pid
    fresh = redis_server.client()
    assert fresh.ping() is True
    assert fresh.get("volatile") is None  # --save "" --appendonly no: nothing persisted


def test_redis_client_fixture_restarts_a_stopped_server(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    redis_server.stop()
    assert not redis_server.running

    client = request.getfixturevalue("redis_client")  # as a later test would get it

    assert redis_server.running
    assert client.ping() is True
