"""`redis_url` forms read into a `RedisTarget`: Sentinel lists, service names, databases,
credentials; a bad one is a `ValueError` that names what is wrong and never shows the password."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.config_checks import check_redis_url, redact_url
from service.logging import redact_text
from service.redis_connect import RedisTarget, parse_redis_url


def test_sentinel_url_lists_every_sentinel_the_service_and_the_db() -> None:
    target = parse_redis_url("redis+sentinel://127.0.0.1:26379,[::1]:26380,sentinel-3.lan:5/rl-primary/3")
    assert target == RedisTarget("sentinel", sentinels=(("127.0.0.1", 26379), ("::1", 26380), ("sentinel-3.lan", 5)),
                                 service_name="rl-primary", db=3)


def test_sentinel_url_credentials_are_percent_decoded_and_the_db_defaults_to_0() -> None:
    target = parse_redis_url("redis+sentinel://app:p%40ss%2Fw@h:1/m")
    assert (target.username, target.password, target.db) == ("app", "p@ss/w", 0)
    assert parse_redis_url("REDIS+SENTINEL://:pw@h:1/m/").password == "pw"


def test_a_single_server_url_is_passed_on_as_it_is() -> None:
    assert parse_redis_url("redis://:pw@h:6379/2") == RedisTarget("single", url="redis://:pw@h:6379/2")


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel://h:26379", "service name"),
    ("redis+sentinel://h:26379/", "service name"),
    ("redis+sentinel://h/m", "host:port"),
    ("redis+sentinel://h:0/m", "1..65535"),
    ("redis+sentinel://h:1,/m", "host:port"),
    ("redis+sentinel://h:1/m/x", "database"),
    ("redis+sentinel://h:1/m/1000001", "database"),
    ("redis+sentinel://h:1/m?db=1", "?query"),
    ("redis+sentinel://" + ",".join(["h:1"] * 17) + "/m", "at most 16"),
    ("redis+sentinel://h:1/" + "m" * 129, "service name"),
    ("redis+sentinel://u@h:1/m", "':'"),
    ("redis+sentinel://h!:1/m", "not a host"),
])
def test_bad_sentinel_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        check_redis_url(url)
    assert says in str(err.value)


@given(password=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs")), min_size=6, max_size=30),
       tail=st.sampled_from(["h:1/m", "h/m", "h:0/m", "h:1,/m", "h:1/m/x", "h:1", "h:1/m?x=1", ""]))
def test_no_error_shows_the_password(password: str, tail: str) -> None:
    """The password occurs in the message no more often than in the same error for another
    password (a password such as `redis+` is also a piece of the message's own example URL)."""
    def error(secret: str) -> str:
        try:
            check_redis_url(f"redis+sentinel://:{secret}@{tail}")
        except ValueError as err:
            return str(err)
        return ""

    shown, placeholder = error(password), error("0" * len(password) if "0" not in password else "1" * len(password))
    assert shown.count(password) == placeholder.count(password)


@given(password=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs"), blacklist_characters="/?#[]"),
                        min_size=6, max_size=30))
def test_the_log_form_masks_the_password(password: str) -> None:
    """A password as a URL carries it (`/ ? # [ ]` percent-encoded; `@` raw or encoded, as redis-py
    reads both) is masked in what is logged, by the settings' form and by the log redaction."""
    assert urllib.parse.urlsplit(f"redis://:{password}@h:1/0").password == password
    assert redact_url(f"redis+sentinel://:{password}@h:1,h:2/m/0") == "redis+sentinel://:***@h:1,h:2/m/0"
    assert redact_text(f"cannot reach redis://u:{password}@h:1/0 now") == "cannot reach redis://u:***@h:1/0 now"


def test_health_gives_a_redis_request_its_wait_for_replicas() -> None:
    """/healthz calls a validation stuck past the bound of its Redis request: with replica
    waits that request may also wait `redis_wait_timeout_ms` for its replicas."""
    from service.config import Settings
    from service.runtime.app import REDIS_TIMEOUT_S, _redis_bound_s
    base = {"sessions": "s0", "backoffice_token": "t"}
    assert _redis_bound_s(Settings(**base, redis_wait_timeout_ms=30_000)) == REDIS_TIMEOUT_S
    assert _redis_bound_s(Settings(**base, redis_replica_waits=1, redis_wait_timeout_ms=30_000)) == REDIS_TIMEOUT_S + 30


def test_cluster_url_lists_every_node_and_its_credentials() -> None:
    target = parse_redis_url("redis+cluster://app:p%40ss@127.0.0.1:7000,[::1]:7001,node-3.lan:7002/")
    assert target == RedisTarget("cluster", nodes=(("127.0.0.1", 7000), ("::1", 7001), ("node-3.lan", 7002)),
                                 username="app", password="p@ss")
    assert parse_redis_url("REDIS+CLUSTER://h:1").nodes == (("h", 1),)
    assert parse_redis_url("redis+cluster://h:1/0").nodes == (("h", 1),)


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster://h/", "host:port"),
    ("redis+cluster://h:70000/", "1..65535"),
    ("redis+cluster://h:1,/", "host:port"),
    ("redis+cluster://h:1/3", "one database"),
    ("redis+cluster://h:1/m/0", "one database"),
    ("redis+cluster://h:1/?x=1", "?query"),
    ("redis+cluster://" + ",".join(["h:1"] * 65) + "/", "at most 64"),
    ("redis+cluster://u@h:1/", "':'"),
    ("redis+cluster://h!:1/", "not a host"),
    ("redis+cluster://h:1/ ", "spaces"),
])
def test_bad_cluster_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        check_redis_url(url)
    assert says in str(err.value)


@given(password=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs")), min_size=6, max_size=30),
       tail=st.sampled_from(["h:1/", "h/", "h:0/", "h:1,/", "h:1/3", "h:1?x=1", ""]))
def test_no_cluster_url_error_shows_the_password(password: str, tail: str) -> None:
    try:
        check_redis_url(f"redis+cluster://:{password}@{tail}")
    except ValueError as err:
        assert password not in str(err)


def test_cluster_settings_take_the_tagged_layout_and_refuse_replica_waits() -> None:
    from service.config import Settings
    from service.errors import ConfigError
    from service.keys import SINGLE, KeyLayout
    base = {"sessions": "s0", "backoffice_token": "t"}
    assert Settings(**base).key_layout() == SINGLE
    assert Settings(**base, redis_url="redis+sentinel://h:1/m").key_layout() == SINGLE
    cluster = Settings(**base, redis_url="redis+cluster://:secret-pw@h:1,h:2/", redis_cluster_shards=8)
    assert cluster.key_layout() == KeyLayout(8)
    assert "secret-pw" not in str(cluster.safe_dict())
    with pytest.raises((ValueError, ConfigError), match="redis_replica_waits must be 0"):
        Settings(**base, redis_url="redis+cluster://h:1/", redis_replica_waits=1)


@pytest.mark.parametrize("shards", [0, -1, True, 1.5, "16", None])
def test_a_cluster_layout_needs_a_whole_number_of_shards(shards: object) -> None:
    """What the service's settings and the back-office stand-in both build their layout with."""
    from service.keys import SINGLE, KeyLayout
    from service.redis_connect import layout_for_url
    with pytest.raises(ValueError, match="cluster_shards"):
        layout_for_url("redis+cluster://h:1/", shards)  # type: ignore[arg-type]
    assert layout_for_url("redis://h:1/0", shards) is SINGLE  # type: ignore[arg-type]
    assert layout_for_url("redis+sentinel://h:1/m", shards) is SINGLE  # type: ignore[arg-type]
    assert layout_for_url("redis+cluster://h:1/") == KeyLayout(16)
