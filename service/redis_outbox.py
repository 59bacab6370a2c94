"""The outbox's queue in Redis (`service.outbox.OutboxQueue`) and `RedisOutbox`, the flusher
over it.

Owns: reading, deleting and dead-lettering entries of the outbox streams the key layout
names (`service.keys.KeyLayout`): one stream (`rl:outbox`) with a single Redis or Sentinel;
a stream per shard (`rl:{s07}:outbox`) with Redis Cluster, each with its dead letters in the
same slot. With several streams an entry's id is `<shard>/<stream id>`, and a read takes
the oldest entries of all streams together (merged by stream id, Redis's clock in ms): it
is a prefix of every stream, so one session's updates (all in its shard's stream) keep
their order. Must not: decide what is sent or when (the flusher does), or write entries
(they are appended by the status write's script).
"""

from __future__ import annotations

from typing import Any

from service.dead_letters import dead_fields
from service.keys import KeyLayout
from service.outbox import OutboxFlusher, RawEntry, redis_text
from service.ports import BackOffice
from service.redis_connect import layout_for


def _stream_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisQueue:
    """The outbox's entries in the layout's stream(s), oldest first; dead letters beside them."""

    def __init__(self, redis: Any, layout: KeyLayout | None = None) -> None:
        self.redis = redis
        self.layout = layout = layout_for(redis, layout)
        self.streams = [layout.outbox_key(shard) for shard in layout.outbox_shards()]
        self.round_trips = 0

    def _split(self, entry_id: str) -> tuple[int, str]:
        """(shard, stream id) of an entry id this queue handed out."""
        if not self.layout.is_sharded:
            return 0, entry_id
        shard, _, stream_id = entry_id.partition("/")
        return int(shard), stream_id

    async def _each_stream(self, command: str, *args: Any) -> list[Any]:
        """`command stream *args` on every stream, in one pipeline (per node with a cluster)."""
        self.round_trips += 1
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                getattr(pipe, command)(stream, *args)
            return list(await pipe.execute())

    async def read(self, count: int) -> list[RawEntry]:
        if not self.layout.is_sharded:
            self.round_trips += 1
            return list(await self.redis.xrange(self.streams[0], "-", "+", count=count))
        merged = []
        for shard, entries in enumerate(await self._each_stream("xrange", "-", "+", count)):
            for entry_id, fields in entries:
                stream_id = redis_text(entry_id, "outbox id")
                merged.append((_stream_order(stream_id), shard, f"{shard}/{stream_id}", fields))
        merged.sort(key=lambda item: item[:2])
        return [(entry_id, fields) for _, _, entry_id, fields in merged[:count]]

    def _by_shard(self, entry_ids: list[str]) -> dict[int, list[str]]:
        if not self.layout.is_sharded:  # one stream: the ids as they are (a batch deletes hundreds)
            return {0: list(entry_ids)} if entry_ids else {}
        grouped: dict[int, list[str]] = {}
        for entry_id in entry_ids:
            shard, stream_id = self._split(entry_id)
            grouped.setdefault(shard, []).append(stream_id)
        return grouped

    async def delete(self, entry_ids: list[str]) -> None:
        self.round_trips += 1
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard, stream_ids in self._by_shard(entry_ids).items():
                pipe.xdel(self.layout.outbox_key(shard), *stream_ids)
            await pipe.execute()

    async def move_dead(self, entries: list[RawEntry], reason: str, detail: list[str]) -> None:
        """XADD each to its shard's dead stream with why + XDEL it from the outbox, in one
        MULTI per shard (a shard's streams share a slot)."""
        by_shard: dict[int, list[tuple[str, Any, str]]] = {}
        for (entry_id, fields), why in zip(entries, detail):
            shard, stream_id = self._split(redis_text(entry_id, "outbox id"))
            by_shard.setdefault(shard, []).append((stream_id, fields, why))
        for shard, moved in by_shard.items():
            async with self.redis.pipeline(transaction=True) as pipe:
                for stream_id, fields, why in moved:
                    pipe.xadd(self.layout.dead_key(shard), dead_fields(fields, stream_id, reason, why))
                    pipe.xdel(self.layout.outbox_key(shard), stream_id)
                await pipe.execute()
            self.round_trips += 1

    async def depth(self) -> int:
        return sum(int(n) for n in await self._each_stream("xlen"))

    async def oldest_age_s(self, now_s: float) -> float:
        heads = [entries[0][0] for entries in await self._each_stream("xrange", "-", "+", 1) if entries]
        if not heads:
            return 0.0
        appended_ms = min(_stream_order(redis_text(head, "outbox id"))[0] for head in heads)
        return max(0.0, now_s - appended_ms / 1000.0)


class RedisOutbox(OutboxFlusher):
    """The service's outbox: the flusher over the Redis stream(s) (`RedisQueue`)."""

    def __init__(self, redis: Any, backoffice: BackOffice, *, layout: KeyLayout | None = None, **options: Any) -> None:
        super().__init__(RedisQueue(redis, layout), backoffice, **options)
