"""The harness's helpers that need no server: the Toxiproxy facade with nothing listening, and
free ports. With real servers: tests/integration/test_toxiproxy_facade.py and
test_managed_process.py."""

from __future__ import annotations

import socket

import pytest

from chaos.toxiproxy import Toxiproxy, ToxiproxyUnreachableError
from tests.fixtures.process import free_port


def test_no_server_raises_unreachable_without_status() -> None:
    client = Toxiproxy(port=free_port(), timeout_s=1.0)

    with pytest.raises(ToxiproxyUnreachableError) as caught:
        client.version()

    assert caught.value.status is None
    assert "no response" in str(caught.value)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
