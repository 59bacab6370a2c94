"""The transports' settings, checked when a transport is built (no link opened, no server):
`wire` and `neonize`. Their links over real sockets: tests/integration/test_wire_transport.py
and tests/integration/test_neonize_transport.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ConfigError
from service.ports import Secret
from service.transports.neonize_transport import NeonizeTransport
from service.transports.wire import WireTransport
from tests.fixtures.due_work import DueWorkProbe


@pytest.mark.parametrize(("url", "interval_s", "misses", "named"), [
    ("http://127.0.0.1:1", 1.0, 3, "wire url"),
    ("ws://127.0.0.1:1/ws/s1", 1.0, 3, "base URL"),
    ("ws://127.0.0.1:1", 0.0, 3, "keepalive_interval_s"),
    ("ws://127.0.0.1:1", 1.0, 0, "keepalive_misses"),
    ("ws://127.0.0.1:1", 1.0, 2.5, "keepalive_misses"),
])
def test_bad_settings_raise_config_error(url: str, interval_s: float, misses: int, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        WireTransport(url, keepalive_interval_s=interval_s, keepalive_misses=misses)


def test_bad_settings_get_clear_errors() -> None:
    with pytest.raises(ConfigError, match="socks5h and socks4"):
        NeonizeTransport("socks5h://user:hunter2@127.0.0.1:1080")
    with pytest.raises(ConfigError) as err:
        NeonizeTransport("ftp://user:hunter2@127.0.0.1:21")
    assert "hunter2" not in str(err.value)
    with pytest.raises(ConfigError, match="spare_workers"):
        NeonizeTransport(spare_workers=-1)
    with pytest.raises(ConfigError, match="clients_per_worker"):
        NeonizeTransport(clients_per_worker=0)
    with pytest.raises(ConfigError, match="worker_max_connects"):
        NeonizeTransport(worker_max_connects=True)
    with pytest.raises(ConfigError, match="stop_grace_s"):
        NeonizeTransport(stop_grace_s=0)
    with pytest.raises(ConfigError, match="credentials"):
        NeonizeTransport().new_link("s1", Secret(""))


def test_the_service_builds_this_transport_from_its_settings(tmp_path: Path) -> None:
    from service.config import Settings
    from service.runtime.app import make_transport

    settings = Settings(transport="neonize", sessions="s0", neonize_clients_per_worker=7, neonize_spare_workers=2)
    handed_on: list[str] = []
    transport = make_transport(settings, keepalive_interval_s=1.0, keepalive_misses=3,
                               due_work=DueWorkProbe(lambda: handed_on.append("due")))
    transport.fleet._on_message()  # what a worker's message runs first: the due timers' hand-on
    assert handed_on == ["due"]
    assert isinstance(transport, NeonizeTransport) and transport.dead_link_after_s == 3.0
    assert (transport.fleet.clients_per_worker, transport.fleet.spare_workers) == (7, 2)
    template = Secret(str(tmp_path / "{session_id}.db"))
    link = transport.new_link("alice", template)
    assert link._credentials.reveal() == str(tmp_path / "alice.db")
    with pytest.raises(ConfigError, match="cannot name a store"):
        transport.new_link("..", template)
