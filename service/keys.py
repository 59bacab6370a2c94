"""Redis key names shared by the service, the back office (which writes statuses when an
account is deleted) and the stand-ins. One place, so nobody spells a key twice.

Two layouts (`KeyLayout`), chosen by the kind of Redis (see chaos/CONTRACT.md):
- single server and Sentinel (`SINGLE`): the names below, exactly (`rl:status:<id>`, one
  outbox stream `rl:outbox`): the gateway contract;
- Redis Cluster (`KeyLayout(shards=n)`): every key of a session carries its shard's hash tag
  (`rl:{s07}:status:<id>`, shard = crc32 of the id mod n), so each script touches one slot; the
  outbox is a stream per shard (`rl:{s07}:outbox`) with its idempotency keys and dead letters
  in the same shard, and a session's updates all go to its shard's stream (their order holds).
Must not: talk to Redis.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

PREFIX = "rl"
MAX_SHARDS = 1024
DEFAULT_CLUSTER_SHARDS = 16  # the `redis_cluster_shards` setting's default


def check_session_id(session_id: str) -> str:
    """The id, if it can name a session's keys; else `ValueError` naming what it got."""
    if not isinstance(session_id, str) or not session_id:
        raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
    return session_id


def status_key(session_id: str) -> str:
    """The session's status string (`active` / `connecting` / `inactive`), shared with the back office."""
    return f"{PREFIX}:status:{session_id}"


def session_key(session_id: str) -> str:
    """Hash of the service's reconnect bookkeeping: attempt, due_at, owner (B5)."""
    return f"{PREFIX}:session:{session_id}"


def lease_key(session_id: str) -> str:
    """The owning process id, with a TTL (B4)."""
    return f"{PREFIX}:lease:{session_id}"


def fence_key(session_id: str) -> str:
    """The session's fencing token: a counter incremented on every lease acquisition (B9)."""
    return f"{PREFIX}:fence:{session_id}"


OUTBOX_KEY = f"{PREFIX}:outbox"  # pending back-office updates, kept until acknowledged (B6)


def seq_key(session_id: str) -> str:
    """Per-session counter (INCR) giving each back-office update its `seq` (B6)."""
    return f"{PREFIX}:seq:{session_id}"


OUTBOX_DEAD_KEY = f"{PREFIX}:outbox:dead"  # outbox entries that could not be decoded, kept for a person to read


def update_id_key(update_id: str) -> str:
    """The seq assigned to one back-office update, so a retried append is a no-op (B6)."""
    return f"{PREFIX}:outbox:id:{update_id}"


@dataclass(frozen=True)
class KeyLayout:
    """Where each key lives: `shards` 0 is the single-Redis layout (the functions above), n > 0
    the cluster layout with n hash-tagged shards. Every Redis part (store, outbox, leases,
    scripts) takes one, so they agree."""

    shards: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.shards, int) or isinstance(self.shards, bool) or not 0 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"KeyLayout shards must be an int in 0..{MAX_SHARDS}, got {self.shards!r}")

    @property
    def is_sharded(self) -> bool:
        return self.shards > 0

    def shard_of(self, session_id: str) -> int:
        """The session's shard (0 in the single layout): stable across processes and restarts."""
        return zlib.crc32(session_id.encode("utf-8", "surrogatepass")) % self.shards if self.shards else 0

    def _base(self, shard: int) -> str:
        return f"{PREFIX}:{{s{shard:02d}}}" if self.shards else PREFIX

    def _of(self, session_id: str, kind: str) -> str:
        return f"{self._base(self.shard_of(session_id))}:{kind}:{session_id}"

    def status_key(self, session_id: str) -> str:
        return self._of(session_id, "status")

    def session_key(self, session_id: str) -> str:
        return self._of(session_id, "session")

    def lease_key(self, session_id: str) -> str:
        return self._of(session_id, "lease")

    def fence_key(self, session_id: str) -> str:
        return self._of(session_id, "fence")

    def seq_key(self, session_id: str) -> str:
        return self._of(session_id, "seq")

    def outbox_key(self, shard: int = 0) -> str:
        """The outbox stream of `shard` (the one stream of the single layout)."""
        return f"{self._base(shard)}:outbox"

    def dead_key(self, shard: int = 0) -> str:
        """Where `shard`'s outbox entries that must not be sent again are kept."""
        return f"{self._base(shard)}:outbox:dead"

    def outbox_of(self, session_id: str) -> str:
        return self.outbox_key(self.shard_of(session_id))

    def update_id_key(self, session_id: str, update_id: str) -> str:
        """An update's idempotency key, in its session's shard."""
        return f"{self._base(self.shard_of(session_id))}:outbox:id:{update_id}"

    def write_keys(self, session_id: str, update_id: str) -> tuple[str, ...]:
        """The fenced write's keys (`service.redis_scripts.WRITE_LUA`'s order): fence, status,
        pending record, outbox, seq, `update_id`'s idempotency key, outbox quarantine; the same
        names as the methods above, from one shard lookup (a storm writes thousands a second)."""
        base = self._base(self.shard_of(session_id))
        outbox = f"{base}:outbox"
        return (f"{base}:fence:{session_id}", f"{base}:status:{session_id}", f"{base}:session:{session_id}",
                outbox, f"{base}:seq:{session_id}", f"{base}:outbox:id:{update_id}", outbox + ":malformed")

    def outbox_shards(self) -> range:
        """Every shard that has an outbox stream (one in the single layout)."""
        return range(max(1, self.shards))


SINGLE = KeyLayout()
