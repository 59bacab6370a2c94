"""Commands packed by hiredis (`service.redis_connect.HiredisPacking`) are byte for byte what
redis-py's own asyncio connection packs, for every argument type redis-py takes, and refused
alike (`DataError`) for the ones it refuses."""

from __future__ import annotations

import enum

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from service.core import Status
from service.redis_connect import HiredisPacking, RedisOptions, open_client, parse_redis_url, with_hiredis_packing


class Level(enum.IntEnum):
    HIGH = 1


PLAIN = Connection()
PACKED = with_hiredis_packing(Connection)()
FAST = st.one_of(st.text(), st.binary(), st.integers(), st.floats(allow_nan=False),
                 st.sampled_from([1e300, float("inf"), -0.0, 2**70]))  # packed by hiredis
ARGS = st.one_of(FAST, st.sampled_from([Status.ACTIVE, Level.HIGH]),  # an Enum: redis-py's own packing
                 st.binary().map(memoryview), st.binary().map(bytearray))
NAMES = st.sampled_from(["EVALSHA", "SCRIPT LOAD", "GET", b"CLIENT  SETNAME", b"HSET", "\tPING "])


def joined(chunks: list[bytes | memoryview]) -> bytes:
    return b"".join(bytes(chunk) for chunk in chunks)


@given(st.lists(st.tuples(NAMES, st.lists(FAST, max_size=25) | st.lists(ARGS, max_size=25)), min_size=1,
                max_size=30))
def test_a_pipeline_packs_to_the_same_bytes_as_redis_pys(commands) -> None:
    commands = [(name, *args) for name, args in commands]
    for command in commands:
        assert joined(PACKED.pack_command(*command)) == joined(PLAIN.pack_command(*command))
    assert joined(PACKED.pack_commands(commands)) == joined(PLAIN.pack_commands(commands))


@pytest.mark.parametrize("bad", [None, True, [1], {"a": 1}])
def test_an_argument_redis_py_refuses_is_refused_alike(bad) -> None:
    with pytest.raises(DataError) as plain:
        PLAIN.pack_command("SET", "k", bad)
    with pytest.raises(DataError) as packed:
        PACKED.pack_command("SET", "k", bad)
    assert str(packed.value) == str(plain.value)


def test_another_encoding_is_packed_by_redis_py() -> None:
    latin = with_hiredis_packing(Connection)(encoding="latin-1")
    assert joined(latin.pack_command("SET", "k", "é")) == joined(Connection(encoding="latin-1").pack_command(
        "SET", "k", "é")) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "unix:///tmp/redis.sock"])
async def test_the_service_client_packs_with_hiredis_whatever_the_url(url) -> None:
    client = open_client(parse_redis_url(url), RedisOptions(max_connections=2, pool_wait_s=1.0, timeout_s=1.0))
    try:
        cls = client.connection_pool.connection_class
        assert issubclass(cls, HiredisPacking)
        assert issubclass(cls, UnixDomainSocketConnection if url.startswith("unix") else Connection)
        assert with_hiredis_packing(cls) is cls
    finally:
        await client.aclose()


def test_sentinel_pools_pack_with_hiredis_too() -> None:
    client = open_client(parse_redis_url("redis+sentinel://127.0.0.1:1/m"),
                         RedisOptions(max_connections=2, pool_wait_s=1.0, timeout_s=1.0))
    assert issubclass(client.connection_pool.connection_class, HiredisPacking)
    assert isinstance(client, aioredis.Redis)
