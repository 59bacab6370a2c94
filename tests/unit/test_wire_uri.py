"""A `wire` link's WebSocket URI is built from the transport's once-parsed base, not parsed per
open: it must equal what websockets' own `parse_uri` makes of the link's URL, for any session id
the transport accepts and any base URL form."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.uri import parse_uri

from service.errors import ConfigError
from service.ports import Secret
from service.transports.wire import WireTransport

BASES = ["ws://127.0.0.1:8765", "ws://127.0.0.1:8765/", "wss://example.test", "ws://user:pw@localhost:9",
         "ws://[::1]:8080"]
SESSION_IDS = st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s)


def transport(url: str) -> WireTransport:
    return WireTransport(url, keepalive_interval_s=1.0, keepalive_misses=2)


@pytest.mark.parametrize("base", BASES)
@given(session_id=SESSION_IDS)
def test_a_links_uri_is_what_parse_uri_makes_of_its_url(base: str, session_id: str) -> None:
    wire = transport(base)
    link = wire.new_link(session_id, Secret(""))
    assert wire.uri_for(session_id) == parse_uri(link.url)


@given(session_id=SESSION_IDS)
def test_under_a_non_ascii_host_the_id_is_encoded_once(session_id: str) -> None:
    """`parse_uri` of a whole IRI quotes its path a second time (`%3A` -> `%253A`); the link's
    path is the id percent-encoded once, as under an ASCII host, and the host is IDNA."""
    uri = transport("ws://h\u00e9llo.test:81").uri_for(session_id)
    assert (uri.host, uri.port) == ("xn--hllo-bpa.test", 81)
    assert urllib.parse.unquote(uri.path.removeprefix("/ws/"), errors="strict") == session_id


def test_a_user_without_a_password_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="wire url"):
        transport("ws://user@127.0.0.1:9")
