"""The Toxiproxy facade against a real toxiproxy-server: errors, names, timeouts."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator

import pytest

from chaos.toxiproxy import (
    Proxy,
    Toxiproxy,
    ToxiproxyConflictError,
    ToxiproxyError,
    ToxiproxyNotFoundError,
    ToxiproxyUnreachableError,
)
from tests.fixtures.servers import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A loopback socket that accepts TCP connections but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


def test_version_is_the_pinned_release(toxiproxy: Toxiproxy) -> None:
    assert toxiproxy.version() == "2.12.0"


def test_create_get_list_delete(toxiproxy: Toxiproxy, redis_server: RedisServer) -> None:
    upstream = f"127.0.0.1:{redis_server.port}"

    created = toxiproxy.create_proxy("facade-crud", upstream)

    assert (created.listen_host, created.enabled, created.upstream) == ("127.0.0.1", True, upstream)
    assert created.listen_port > 0
    assert toxiproxy.get_proxy("facade-crud") == created
    assert toxiproxy.proxies()["facade-crud"] == created
    toxiproxy.delete_proxy("facade-crud")
    assert "facade-crud" not in toxiproxy.proxies()


def test_proxy_is_a_frozen_value(redis_proxy: Proxy) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        redis_proxy.enabled = False  # type: ignore[misc]


def test_unknown_proxy_raises_not_found_with_status(toxiproxy: Toxiproxy) -> None:
    with pytest.raises(ToxiproxyNotFoundError) as caught:
        toxiproxy.get_proxy("no-such-proxy")

    assert caught.value.status == 404
    assert "404" in str(caught.value) and "proxy not found" in str(caught.value)
    assert isinstance(caught.value, ToxiproxyError)
    assert not isinstance(caught.value, KeyError)


def test_deleting_unknown_proxy_raises_not_found(toxiproxy: Toxiproxy) -> None:
    with pytest.raises(ToxiproxyNotFoundError, match="404"):
        toxiproxy.delete_proxy("no-such-proxy")


def test_duplicate_proxy_raises_conflict(toxiproxy: Toxiproxy, redis_proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyConflictError) as caught:
        toxiproxy.create_proxy(redis_proxy.name, redis_proxy.upstream)

    assert caught.value.status == 409
    assert "409" in str(caught.value)


def test_server_side_500_raises_toxiproxy_error_not_key_error(
    toxiproxy: Toxiproxy, redis_server: RedisServer, listening_socket: socket.socket
) -> None:
    host, port = listening_socket.getsockname()

    with pytest.raises(ToxiproxyError) as caught:  # the server cannot bind a taken port
        toxiproxy.create_proxy("port-taken", f"127.0.0.1:{redis_server.port}", listen=f"{host}:{port}")

    assert caught.value.status == 500
    assert "address already in use" in str(caught.value)


def test_unknown_toxic_removal_raises_not_found(redis_proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyNotFoundError, match="toxic not found"):
        redis_proxy.remove_toxic("no-such-toxic")


def test_duplicate_toxic_raises_conflict(redis_proxy: Proxy) -> None:
    redis_proxy.add_toxic("latency", name="slow", latency=10)

    with pytest.raises(ToxiproxyConflictError, match="409"):
        redis_proxy.add_toxic("latency", name="slow", latency=20)


def test_add_toxic_sends_kind_stream_toxicity_and_attributes(redis_proxy: Proxy) -> None:
    name = redis_proxy.add_toxic("slicer", stream="upstream", toxicity=0.5, average_size=8, size_variation=2, delay=1)

    assert name == "slicer_upstream"
    [toxic] = redis_proxy.toxics()
    assert toxic["type"] == "slicer" and toxic["stream"] == "upstream" and toxic["toxicity"] == 0.5
    assert toxic["attributes"] == {"average_size": 8, "size_variation": 2, "delay": 1}


@pytest.mark.parametrize(
    ("kind", "attributes", "message"),
    [
        ("earthquake", {}, "unknown toxic kind"),
        ("latency", {"rate": 1}, "unknown rate"),
        ("latency", {"latency": -1}, "non-negative int"),
        ("latency", {"latency": 1.5}, "non-negative int"),
    ],
)
def test_bad_toxic_is_rejected_before_any_request(
    redis_proxy: Proxy, kind: str, attributes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        redis_proxy.add_toxic(kind, **attributes)  # type: ignore[arg-type]

    assert redis_proxy.toxics() == []


def test_bad_stream_and_toxicity_are_rejected(redis_proxy: Proxy) -> None:
    with pytest.raises(ValueError, match="stream"):
        redis_proxy.add_toxic("latency", stream="sideways", latency=1)
    with pytest.raises(ValueError, match="toxicity"):
        redis_proxy.add_toxic("latency", toxicity=1.5, latency=1)


@pytest.mark.parametrize("name", ["has space", "has/slash", "../up", "", "émoji", "x" * 200])
def test_unsafe_names_are_rejected_clearly(toxiproxy: Toxiproxy, redis_server: RedisServer, name: str) -> None:
    before = set(toxiproxy.proxies())

    with pytest.raises(ValueError, match="invalid proxy name"):
        toxiproxy.create_proxy(name, f"127.0.0.1:{redis_server.port}")
    with pytest.raises(ValueError, match="invalid proxy name"):
        toxiproxy.get_proxy(name)

    assert set(toxiproxy.proxies()) == before


def test_unsafe_toxic_name_is_rejected(redis_proxy: Proxy) -> None:
    with pytest.raises(ValueError, match="invalid toxic name"):
        redis_proxy.add_toxic("latency", name="a/b", latency=1)


def test_upstream_must_be_host_and_port(toxiproxy: Toxiproxy) -> None:
    with pytest.raises(ValueError, match="upstream"):
        toxiproxy.create_proxy("bad-upstream", "127.0.0.1")


def test_silent_server_times_out_instead_of_hanging(listening_socket: socket.socket) -> None:
    host, port = listening_socket.getsockname()
    client = Toxiproxy(host, port, timeout_s=0.3)
    started = time.monotonic()

    with pytest.raises(ToxiproxyUnreachableError):
        client.proxies()

    assert time.monotonic() - started < 5.0
