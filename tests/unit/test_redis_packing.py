"""Commands packed by hiredis (`service.redis_connect.HiredisPacking`), and the arguments of a
tick's batched script calls (`service.tick_batch.ScriptBatch`), are byte for byte what redis-py's
own asyncio connection packs, for every argument type redis-py takes, and refused alike
(`DataError`) for the ones it refuses."""

from __future__ import annotations

import enum

import msgpack
import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from service.core import Status
from service.redis_connect import HiredisPacking, RedisOptions, open_client, parse_redis_url, with_hiredis_packing
from service.redis_scripts import BATCH_OPS, READ_STATUS_SHA
from service.tick_batch import ScriptBatch


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


@given(st.lists(ARGS, max_size=25))
def test_a_batched_calls_arguments_reach_redis_as_a_commands_would(args) -> None:
    """`ScriptBatch` carries a tick's calls as one MessagePack array: each argument must unpack
    (as Lua's cmsgpack reads it: raw strings) to the bytes redis-py would have sent it as."""
    batch = ScriptBatch()
    batch.execute_command("EVALSHA", READ_STATUS_SHA, min(1, len(args)), *args)
    sent = msgpack.unpackb(msgpack.packb(batch.items, use_bin_type=False), raw=True)
    assert sent[3:] == [bytes(PLAIN.encoder.encode(arg)) for arg in args]
    assert sent[:3] == [BATCH_OPS[READ_STATUS_SHA], min(1, len(args)), len(args) - min(1, len(args))]


@pytest.mark.parametrize("bad", [None, True, [1], {"a": 1}])
def test_an_argument_redis_py_refuses_is_refused_by_a_batch_alike(bad) -> None:
    with pytest.raises(DataError) as plain:
        PLAIN.pack_command("SET", "k", bad)
    with pytest.raises(DataError) as batched:
        ScriptBatch().execute_command("EVALSHA", READ_STATUS_SHA, 1, "k", bad)
    assert str(batched.value) == str(plain.value)
