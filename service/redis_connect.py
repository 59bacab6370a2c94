"""Which Redis the service talks to and how: a `redis_url` read into a `RedisTarget`, and the
asyncio clients built for it — a single server, a primary found through Sentinel that
every connection follows across a failover, or a Redis Cluster (redis-py's `RedisCluster`,
which follows slots as they move) — with writes that wait for replicas (`WAIT`).

Owns: the URL forms (`redis[s]://`, `unix://`, `redis+sentinel://`, `redis+cluster://`), their validation (one
`ValueError` naming what is wrong, never showing a password), the connection pools (a
blocking pool: waiting for a free connection queues behind our own work, it is no fault),
and the replica wait after each write. Must not: know key names or scripts (the store,
outbox and lease do), or retry (callers turn a `RedisError` into `StoreError` and retry).

Sentinel: `redis+sentinel://[[user]:password@]host:port[,host:port...]/service-name[/db]`.
The password (and user) authenticate to the primary and replicas; the sentinels are asked
without one. Each pool asks the sentinels for the primary's address whenever it opens a
connection, drops idle connections when the address changed, and a connection that finds
its server demoted (`READONLY`) is closed and raised as a `ConnectionError`: the caller's
retry lands on the new primary (redis-py's `SentinelConnectionPool`).

Cluster: `redis+cluster://[[user]:password@]host:port[,host:port...][/]`: any nodes of the
cluster (the client asks them for the slot map); database 0 only. Keys are laid out by
`service.keys.KeyLayout(shards=...)` so no script or transaction crosses a slot. Replica
waits are not offered with Cluster (`replica_waits` must be 0: see service/README.md).

Packing: redis-py parses replies with hiredis's C parser once `hiredis` is installed (a
dependency), but packs commands in Python on its asyncio connections (its sync ones use
hiredis); `HiredisPacking` packs them with `hiredis.pack_command` instead, byte for byte the
same (14 -> 3 us to pack one fenced write, measured): whatever hiredis does not take exactly as
redis-py would (a `str`/`int` subclass, a `memoryview`, another encoding) goes to redis-py's own.

Replica waits (`replica_waits` > 0): every MULTI/EXEC and every script call (EVAL/EVALSHA:
the fenced writes, the outbox appends and the lease scripts) is followed on the same
connection by `WAIT replica_waits timeout_ms` (WAIT cannot run inside MULTI or a script).
Fewer replicas acknowledging in time raises `ReplicaWaitError`: the write is on the primary
but may not survive its failover, so the caller treats it as failed and retries it (every
such write is idempotent or fenced). The connection is closed too: a primary cut off from
its replicas may have been replaced, and a new connection asks the sentinels again. With 0 (the default) nothing waits: a failover can lose
the writes of the last replication delay (see service/README.md, "Redis Sentinel").
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import hiredis

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from service.keys import DEFAULT_CLUSTER_SHARDS, SINGLE, KeyLayout

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_EXAMPLE = "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0"
MAX_SENTINELS = 16
CLUSTER_SCHEME = "redis+cluster"
CLUSTER_EXAMPLE = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"
MAX_CLUSTER_NODES = 64
MAX_DB = 1_000_000
_SERVICE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_WAITED_COMMANDS = frozenset({"EVAL", "EVALSHA"})  # the writes that carry ownership and the outbox


class ReplicaWaitError(RedisError):
    """A write reached the primary but fewer replicas than asked acknowledged it in time:
    it may be lost in a failover, so it counts as failed (retry it)."""


@dataclass(frozen=True)
class RedisTarget:
    """A parsed `redis_url`: `url` for a single server (kind "single"), the sentinels'
    addresses, the primary's service name and the database (kind "sentinel"), or the
    cluster's startup `nodes` (kind "cluster")."""

    kind: str
    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    nodes: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url[:len(SENTINEL_SCHEME) + 3].lower() == SENTINEL_SCHEME + "://"


def is_cluster_url(url: str) -> bool:
    return url[:len(CLUSTER_SCHEME) + 3].lower() == CLUSTER_SCHEME + "://"


def parse_cluster_url(url: str) -> RedisTarget:
    """`redis+cluster://[[user]:password@]h:p[,h:p...][/]` → `RedisTarget`; raises `ValueError`
    naming what is wrong (never the password)."""
    username, password, nodes, path = _hosts_url(url, CLUSTER_SCHEME, "cluster node", CLUSTER_EXAMPLE,
                                                 MAX_CLUSTER_NODES)
    if path.rstrip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has one database (0): nothing may follow the nodes but '/' "
                         f"(like {CLUSTER_EXAMPLE})")
    return RedisTarget("cluster", nodes=nodes, username=username, password=password)


def parse_sentinel_url(url: str) -> RedisTarget:
    """`redis+sentinel://[[user]:password@]h:p[,h:p...]/service-name[/db]` → `RedisTarget`;
    raises `ValueError` naming what is wrong (never the password)."""
    username, password, sentinels, path = _hosts_url(url, SENTINEL_SCHEME, "sentinel", SENTINEL_EXAMPLE,
                                                     MAX_SENTINELS)
    service_name, _, db_text = path.partition("/")
    if not service_name or not set(service_name) <= _SERVICE_NAME_CHARS or len(service_name) > 128:
        raise ValueError(f"needs the primary's service name after the sentinels: 1-128 of A-Z a-z 0-9 _ . - "
                         f"(like {SENTINEL_EXAMPLE})")
    db_text = db_text.rstrip("/")
    if db_text and (not db_text.isascii() or not db_text.isdigit() or int(db_text) > MAX_DB):
        raise ValueError(f"database must be a number, like {SENTINEL_EXAMPLE}")
    return RedisTarget("sentinel", sentinels=sentinels, service_name=service_name, db=int(db_text or 0),
                       username=username, password=password)


def _hosts_url(url: str, scheme: str, what: str, example: str,
               max_hosts: int) -> tuple[str | None, str | None, tuple[tuple[str, int], ...], str]:
    """`scheme://[[user]:password@]h:p[,h:p...][/path]` → (user, password, hosts, path)."""
    # credentials end at the last '@' (host lists and service names hold none), so a password
    # never reaches a message below, whatever it holds
    userinfo, at, rest = url[len(scheme) + 3:].rpartition("@")
    username, password = _credentials(userinfo, scheme) if at else (None, None)
    if "?" in rest or "#" in rest:
        raise ValueError(f"must not have a ?query or #fragment (like {example})")
    hosts, _, path = rest.partition("/")
    addresses = tuple(_address(item, what, example) for item in hosts.split(","))
    if len(addresses) > max_hosts:
        raise ValueError(f"names {len(addresses)} {what}s, at most {max_hosts}")
    return username, password, addresses, path


def _credentials(userinfo: str, scheme: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    if not colon:
        raise ValueError(f"has credentials without a ':' before the password (like {scheme}://:PASSWORD@...)")
    return (urllib.parse.unquote(user) or None), urllib.parse.unquote(password)


def _address(item: str, what: str, example: str) -> tuple[str, int]:
    """One `host:port` of a sentinel or cluster node list (IPv6 in brackets)."""
    host, colon, port = item.rpartition(":")
    if not colon or not host or host in ("[]",):
        raise ValueError(f"each {what} must be host:port (like {example}), got {item[:60]!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not all(ch.isalnum() or ch in ".-_:" for ch in host) or len(host) > 253:
        raise ValueError(f"{what} host {host[:60]!r} is not a host name or address")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{what} {item[:60]!r} has a port that is not a number in 1..65535")
    return host, int(port)


def parse_redis_url(url: str) -> RedisTarget:
    """The target a (validated) `redis_url` names."""
    if is_sentinel_url(url):
        return parse_sentinel_url(url)
    if is_cluster_url(url):
        return parse_cluster_url(url)
    return RedisTarget("single", url=url)


# ---- clients ----------------------------------------------------------------------------


class _WaitingPipeline(Pipeline):
    """A pipeline whose MULTI/EXEC is followed by WAIT on the same connection."""

    replica_waits = 0
    wait_timeout_ms = 0

    async def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: bool) -> Any:
        data = await super()._execute_transaction(connection, commands, raise_on_error)
        await wait_for_replicas(connection, self.replica_waits, self.wait_timeout_ms)
        return data


class WaitingRedis(aioredis.Redis):
    """`redis.asyncio.Redis` whose transactions and script calls wait for `replica_waits`
    replicas (none when 0: then it behaves exactly like its base)."""

    replica_waits = 0
    wait_timeout_ms = 0
    sentinel: Sentinel | None = None  # the sentinels' own clients, closed with this one

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel is not None:
            await self.sentinel.aclose()

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if self.replica_waits == 0:
            return super().pipeline(transaction, shard_hint)
        pipe = _WaitingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.replica_waits, pipe.wait_timeout_ms = self.replica_waits, self.wait_timeout_ms
        return pipe

    async def _send_command_parse_response(self, conn: Any, command_name: Any, *args: Any, **options: Any) -> Any:
        reply = await super()._send_command_parse_response(conn, command_name, *args, **options)
        if self.replica_waits and str(command_name).upper() in _WAITED_COMMANDS:
            await wait_for_replicas(conn, self.replica_waits, self.wait_timeout_ms)
        return reply


async def wait_for_replicas(connection: Any, replica_waits: int, timeout_ms: int) -> None:
    """`WAIT replica_waits timeout_ms` on `connection` (after its writes); fewer acknowledgements
    raise `ReplicaWaitError`."""
    if replica_waits <= 0:
        return
    await connection.send_command("WAIT", replica_waits, timeout_ms)
    acked = await connection.read_response()
    if not isinstance(acked, int) or acked < replica_waits:
        # a primary cut off from its replicas may have been replaced: the next connection asks again
        await connection.disconnect()
        raise ReplicaWaitError(f"{acked!r} of the {replica_waits} replicas asked acknowledged a write within "
                               f"{timeout_ms} ms (setting redis_replica_waits): it may not survive a failover")


_PACKED_AS_IS = frozenset({str, bytes, int, float})  # what hiredis packs exactly as redis-py's encoder does
_UTF8 = frozenset({"utf-8", "utf8", "UTF-8", "UTF8"})  # hiredis encodes text as UTF-8


class HiredisPacking:
    """Connection mixin: commands packed by hiredis in C (see the module docstring)."""

    encoder: Any

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if type(first) is str:  # 'SCRIPT LOAD': the words go apart, as redis-py sends them
            args = (*first.encode().split(), *args[1:])
        elif type(first) is bytes and b" " in first:
            args = (*first.split(), *args[1:])
        encoder = self.encoder
        if encoder.encoding in _UTF8 and encoder.encoding_errors == "strict" \
                and _PACKED_AS_IS.issuperset(map(type, args)):
            return [hiredis.pack_command(args)]
        return super().pack_command(*args)  # type: ignore[misc]

    def pack_commands(self, commands: Iterable[Any]) -> list[bytes]:
        return [b"".join([piece for command in commands for piece in self.pack_command(*command)])]


_packing_classes: dict[type, type] = {}


def with_hiredis_packing(connection_class: type) -> type:
    """`connection_class` with `HiredisPacking` mixed in (one class made per base)."""
    if issubclass(connection_class, HiredisPacking):
        return connection_class
    made = _packing_classes.get(connection_class)
    if made is None:
        made = _packing_classes[connection_class] = type(
            "Hiredis" + connection_class.__name__, (HiredisPacking, connection_class), {})
    return made


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (follows the primary) that waits for a free connection instead of failing."""


@dataclass(frozen=True)
class RedisOptions:
    """How every client of one process connects: pool size and wait, timeouts, replica waits."""

    max_connections: int
    pool_wait_s: float
    timeout_s: float
    replica_waits: int = 0
    wait_timeout_ms: int = 1000


def open_client(target: RedisTarget, options: RedisOptions) -> WaitingRedis | RedisCluster:
    """A client with its own pool for `target` (close it with `aclose()`)."""
    socket = {"socket_timeout": options.timeout_s, "socket_connect_timeout": options.timeout_s}
    if target.kind == "cluster":
        return open_cluster_client(target, options)
    if target.kind == "sentinel":
        sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=dict(socket))
        client = sentinel.master_for(
            target.service_name, redis_class=WaitingRedis, connection_pool_class=BlockingSentinelPool,
            db=target.db, username=target.username, password=target.password,
            max_connections=options.max_connections, timeout=options.pool_wait_s, **socket)
        client.sentinel = sentinel
    else:
        pool = aioredis.BlockingConnectionPool.from_url(
            target.url, max_connections=options.max_connections, timeout=options.pool_wait_s, **socket)
        client = WaitingRedis(connection_pool=pool)
    pool = client.connection_pool
    pool.connection_class = with_hiredis_packing(pool.connection_class)
    client.replica_waits, client.wait_timeout_ms = options.replica_waits, options.wait_timeout_ms
    return client



def open_cluster_client(target: RedisTarget, options: RedisOptions) -> RedisCluster:
    """redis-py's asyncio `RedisCluster` on `target.nodes` (at most `max_connections` per node)."""
    if options.replica_waits:
        raise ValueError("redis_replica_waits must be 0 with a Redis Cluster (redis+cluster://): "
                         "replica waits are offered with a single server or Sentinel only")
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
                        username=target.username, password=target.password,
                        max_connections=options.max_connections, socket_timeout=options.timeout_s,
                        socket_connect_timeout=options.timeout_s)


def is_cluster_client(redis: Any) -> bool:
    """Is `redis` a cluster client (no transaction may span slots; scripts load on every primary)?"""
    return isinstance(redis, RedisCluster)


def layout_for(redis: Any, layout: KeyLayout | None = None) -> KeyLayout:
    """`layout` if given, else the default for `redis`: the single-Redis names, or the default
    number of shards on a cluster (the service always passes its settings' layout)."""
    if layout is not None:
        return layout
    return KeyLayout(DEFAULT_CLUSTER_SHARDS) if is_cluster_client(redis) else SINGLE


def layout_for_url(url: str, shards: int = DEFAULT_CLUSTER_SHARDS) -> KeyLayout:
    """The key layout for a `redis_url`: `shards` tagged shards on a cluster, else the
    single-Redis names (the service's settings and the back-office stand-in agree through this)."""
    if not is_cluster_url(url):
        return SINGLE
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"a Redis Cluster's key layout needs cluster_shards >= 1, got {shards!r}")
    return KeyLayout(shards)
