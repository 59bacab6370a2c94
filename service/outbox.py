"""Durable outbox for back-office status updates (B6), kept in Redis until acknowledged: the
Redis implementation of `service.ports.Outbox`.

Owns: the flusher task that delivers batches from a durable queue (`OutboxQueue`: for Redis,
`service.redis_outbox.RedisQueue` over the outbox stream or, with Redis Cluster, a stream
per shard) to a `service.ports.BackOffice` and deletes what it acknowledged, and how an
entry is decoded. The per-session `seq` counters are assigned in Redis (`KeyLayout.seq_key`). Must not: decide
statuses (the core does), talk HTTP itself (the `BackOffice` does), or drop an update
that the back office has not acknowledged.

Delivery guarantee. Delivery to the back office is *at-least-once*: an update stays in
Redis until the back office has acknowledged it, so a crash, a timeout or a lost reply
makes it be sent again. Every `StatusUpdate` carries a unique `update_id` (its
idempotency key) and a per-session `seq`, assigned by `INCR` on a per-session counter in
Redis in the same transaction that appends the update, so the receiver can drop
duplicates (an `update_id` it has already seen) and order one session's updates (a
higher `seq` is newer). Updates are sent in append order; one session's later update is
never removed before its earlier ones are acknowledged.

How it moves. Appends ride in the status write's script (`service.store.queue_write`,
called by `service.store.RedisStatusStore.set_status`), so a status write and its update
commit together or not at all. `notify()` after the commit wakes the
flusher at once: a `high` update makes it send everything waiting (the earlier updates
go first, in order); a full batch makes it send full batches only. Anything left is sent
when `flush_interval_s` has passed since the last send-everything, so a normal update
waits at most about one interval and batches stay large when traffic allows. A failed
batch (back office down, slow, 5xx, garbage, or Redis down) is retried after a capped
exponential backoff (`service.retry`: `retry_base_s * 2**(n-1)`, at most `retry_cap_s`). An update the
back office never acknowledges is retried forever and holds the queue behind it:
`oldest_age_s()` shows it. Entries that cannot be decoded, or that the back office
refuses (its rules checked before sending; a batch it rejects with 400/422 split until the
refused entry stands alone), are moved to the dead letters (`KeyLayout.dead_key`) with the reason and
counted (`service.dead_letters`), never sent as a guess and never left to stall the rest.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from redis.exceptions import RedisError

from service.core import Priority, Status
from service.dead_letters import DeadLetters
from service.due_work import NO_DUE_WORK, DueWork
from service.errors import BackOfficeError, ConfigError, MalformedInput
from service.logging import get_logger
from service.ports import BackOffice, StatusUpdate
from service.retry import RetryPolicy, Retrying

log = get_logger(component="outbox")

_FIELDS = ("update_id", "session_id", "status", "priority", "seq", "at_s")


def redis_text(value: Any, what: str) -> str:
    """A Redis reply value as text; bytes that are not UTF-8 or other types raise `MalformedInput`."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MalformedInput("redis", f"{what} is not UTF-8: {value[:40]!r}") from err
    if isinstance(value, str):
        return value
    raise MalformedInput("redis", f"{what} has unexpected type {type(value).__name__}")


_STATUS_OF = {member.value.encode(): member for member in Status}
_PRIORITY_OF = {member.value.encode(): member for member in Priority}


def decode_entry(fields: dict[Any, Any]) -> StatusUpdate:
    """One stream entry's fields → `StatusUpdate`; raises `MalformedInput("redis", ...)`.
    Fields as Redis returns them (UTF-8 bytes) decode on a short path (an outbox batch holds
    hundreds); anything else, on `_decode_checked`, which names what is wrong."""
    try:
        if len(fields) == len(_FIELDS):  # the six names and no other key (a str twin of one would be a 7th)
            get = fields.__getitem__
            return StatusUpdate.trusted(get(b"update_id").decode(), get(b"session_id").decode(),
                                        _STATUS_OF[get(b"status")], _PRIORITY_OF[get(b"priority")],
                                        int(get(b"seq").decode()), float(get(b"at_s").decode()))
    except (AttributeError, KeyError, TypeError, UnicodeDecodeError, ValueError):
        pass
    return _decode_checked(fields)


def _decode_checked(fields: dict[Any, Any]) -> StatusUpdate:
    text = {redis_text(k, "outbox field name"): v for k, v in fields.items()}
    missing = [name for name in _FIELDS if name not in text]
    if missing:
        raise MalformedInput("redis", f"outbox entry lacks {', '.join(missing)}")
    values = {name: redis_text(text[name], f"outbox field {name}") for name in _FIELDS}
    try:
        return StatusUpdate(update_id=values["update_id"], session_id=values["session_id"],
                            status=Status(values["status"]), priority=Priority(values["priority"]),
                            seq=int(values["seq"]), at_s=float(values["at_s"]))
    except ValueError as err:
        raise MalformedInput("redis", f"outbox entry has a bad value: {err}") from err


def removable_ids(entries: list[tuple[str, StatusUpdate]], acked: set[str]) -> list[str]:
    """Stream ids safe to delete: per session, the acknowledged prefix only, so a later update
    of a session is never removed while an earlier one of the same session is still pending."""
    blocked: set[str] = set()
    removable = []
    for entry_id, update in entries:
        if update.session_id in blocked:
            continue
        if update.update_id in acked:
            removable.append(entry_id)
        else:
            blocked.add(update.session_id)
    return removable


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"outbox {name} must be a positive number, got {value!r}")


RawEntry = tuple[Any, Any]  # (entry id, fields) as the queue stores them


class OutboxQueue(Protocol):
    """Where the outbox's entries wait (a Redis Stream, or a list in memory): oldest first."""

    round_trips: int

    async def read(self, count: int) -> list[RawEntry]:
        """The oldest `count` entries, in append order."""

    async def delete(self, entry_ids: list[str]) -> None: ...

    async def move_dead(self, entries: list[RawEntry], reason: str, detail: list[str]) -> None:
        """Move each entry out of the queue into the dead letters, with why (all or nothing)."""

    async def depth(self) -> int: ...

    async def oldest_age_s(self, now_s: float) -> float:
        """Seconds since the oldest waiting entry was appended (0.0 when empty)."""


class OutboxFlusher:
    """The flusher over a durable queue. One flusher per process; several processes may
    flush the same queue (duplicates are possible, losses are not)."""

    def __init__(self, queue: OutboxQueue, backoffice: BackOffice, *, batch_size: int,
                 flush_interval_s: float, retry_base_s: float, retry_cap_s: float,
                 due_work: DueWork = NO_DUE_WORK) -> None:
        """`due_work` (due reconnect timers) is handed on between the stretches of a batch
        (reply read, entries decoded, back office answered)."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"outbox batch_size must be an int >= 1, got {batch_size!r}")
        for name, value in (("flush_interval_s", flush_interval_s), ("retry_base_s", retry_base_s),
                            ("retry_cap_s", retry_cap_s)):
            _check_positive(name, value)
        if retry_cap_s < retry_base_s:
            raise ConfigError(f"outbox retry_cap_s ({retry_cap_s}) must be >= retry_base_s ({retry_base_s})")
        self.queue = queue
        self.backoffice = backoffice
        self.batch_size = batch_size
        self.flush_interval_s = float(flush_interval_s)
        self.retry_base_s = float(retry_base_s)
        self.retry_cap_s = float(retry_cap_s)
        self._retry = Retrying(RetryPolicy(self.retry_base_s, self.retry_cap_s, what="outbox retry"))
        self._due_work = due_work
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False  # checked after every await: see stop()
        self._appended_since_flush = 0
        self._urgent: str | None = None  # why the next wake-up must drain everything
        # counters, read by metrics and tests
        self.sent_batches = 0
        self.sent_updates = 0
        self.acked_updates = 0
        self.retries = 0
        self.malformed = 0
        self.dead = DeadLetters(queue.move_dead)  # entries moved out of the way: malformed or refused
        self.flushes = {"start": 0, "high": 0, "full": 0, "interval": 0}  # wake-ups by cause
        self.last_error = ""

    # -- appending ------------------------------------------------------------------

    def notify(self, update: StatusUpdate) -> None:
        """An update was committed: wake the flusher now if it is `high` or a batch is full."""
        self._appended_since_flush += 1
        priority = update.priority
        if (priority if type(priority) is Priority else Priority(priority)) is Priority.HIGH:
            self._urgent = "high"
            self._wake.set()
        elif self._appended_since_flush >= self.batch_size:
            self._wake.set()

    # -- metrics ------------------------------------------------------------------------

    @property
    def round_trips(self) -> int:
        return self.queue.round_trips

    async def depth(self) -> int:
        """Updates waiting in the queue (all processes' together)."""
        return await self.queue.depth()

    async def oldest_age_s(self, *, now_s: float | None = None) -> float:
        """Seconds since the oldest waiting update was appended (0.0 when empty)."""
        return await self.queue.oldest_age_s(time.time() if now_s is None else now_s)

    def stats(self) -> dict[str, float | int | str]:
        """Counters as a plain dict for logs and metrics."""
        return {"sent_batches": self.sent_batches, "sent_updates": self.sent_updates,
                "acked_updates": self.acked_updates, "retries": self.retries,
                "malformed": self.malformed, "refused": self.dead.counts["refused"],
                "round_trips": self.round_trips,
                **{f"flushes_{cause}": n for cause, n in self.flushes.items()},
                "last_error": self.last_error}

    # -- delivering --------------------------------------------------------------------

    async def _deliver_batch(self, *, full_only: bool, check_stop: bool) -> int:
        async with self._send_lock:
            raw = await self.queue.read(self.batch_size)
            self._due_work.run_due_now()
            if not raw or (full_only and len(raw) < self.batch_size):
                return 0
            entries = await self.dead.checked(await self._decode_or_quarantine(raw))
            self._due_work.run_due_now()
            if not entries:
                return len(raw)
            if check_stop:
                self._exit_if_stopping()
            self._appended_since_flush = 0
            acked, dead = await self.dead.send_isolating(self.backoffice.send_statuses, entries)
            self._due_work.run_due_now()
            if check_stop:  # a stopped flusher acts like a killed one: it processes no reply
                self._exit_if_stopping()
            self.sent_batches += 1
            self.sent_updates += len(entries)
            done = removable_ids([e for e in entries if e[0] not in dead], acked)
            if done:
                # shielded: a stop() landing here must not leave the entries deleted but uncounted
                await asyncio.shield(self._delete_acked(done))
            if not done and not dead:
                raise BackOfficeError(f"back office acknowledged none of a batch of {len(entries)} updates")
            return len(raw)

    async def _delete_acked(self, entry_ids: list[str]) -> None:
        await self.queue.delete(entry_ids)
        self.acked_updates += len(entry_ids)

    async def _decode_or_quarantine(self, raw: list[Any]) -> list[tuple[str, StatusUpdate]]:
        entries, bad, why = [], [], []
        for entry_id, fields in raw:
            entry_id = redis_text(entry_id, "outbox id")
            try:
                entries.append((entry_id, decode_entry(fields)))
            except MalformedInput as err:
                self.malformed += 1
                log.error("outbox_entry_malformed", entry_id=entry_id, detail=err.detail)
                bad.append((entry_id, fields))
                why.append(err.detail)
        await self.dead.move(bad, "malformed", why)
        return entries

    async def drain(self, *, full_only: bool = False) -> None:
        """Deliver batches until the queue is empty or a batch is partial (with `full_only`,
        send full batches only); raises on failure."""
        await self._drain(full_only=full_only, check_stop=False)

    async def _drain(self, *, full_only: bool, check_stop: bool) -> None:
        while True:
            if check_stop:
                self._exit_if_stopping()
            read = await self._deliver_batch(full_only=full_only, check_stop=check_stop)
            self._retry.succeeded()
            if read < self.batch_size:
                return

    def _exit_if_stopping(self) -> None:
        if self._stopping:
            raise asyncio.CancelledError("outbox stopping")

    async def _drain_with_retries(self, *, full_only: bool) -> None:
        while True:
            self._exit_if_stopping()
            try:
                await self._drain(full_only=full_only, check_stop=True)
                return
            except Exception as err:  # noqa: BLE001 - the flusher must outlive any one failure
                expected = isinstance(err, (BackOfficeError, RedisError, MalformedInput, OSError))
                self.retries += 1
                self.last_error = str(err)
                wait_s = self._retry.failed()
                log.warning("outbox_batch_failed", exc_info=not expected,
                            error=str(err), retry_in_s=wait_s, failures=self._retry.failures)
                self._exit_if_stopping()
                await self._retry.wait()

    async def _run(self) -> None:
        """Wake on `high`/start (drain all), a full batch (full batches only) or the interval
        (drain all); the interval counts from the last drain-all, so nothing waits longer."""
        loop = asyncio.get_running_loop()
        interval_due = loop.time() + self.flush_interval_s
        while True:
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow our stop()'s cancel
                async with asyncio.timeout(max(0.0, interval_due - loop.time())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._exit_if_stopping()
            self._wake.clear()
            cause = self._urgent or ("interval" if loop.time() >= interval_due else "full")
            self._urgent = None
            self.flushes[cause] += 1
            await self._drain_with_retries(full_only=cause == "full")
            if cause != "full":
                interval_due = loop.time() + self.flush_interval_s

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the flusher task (idempotent). It first delivers what an earlier process left."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._urgent = "start"
            self._wake.set()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-flusher")

    async def stop(self, *, timeout_s: float = 10.0) -> bool:
        """Cancel the flusher (mid-batch, like a kill). Nothing is lost: undelivered updates
        stay in Redis. Besides `cancel()`, a flag ends the loop at its next step: redis-py
        8.1 with a socket timeout can swallow a cancellation that lands inside a command
        (the command then returns normally), and stop() must not wait forever on that.
        Returns False only if the flusher was still running after `timeout_s`."""
        task, self._task = self._task, None
        if task is None:
            return True
        self._stopping = True
        self._wake.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            log.error("outbox_stop_timed_out", timeout_s=timeout_s)
            return False
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox_flusher_failed", error=repr(task.exception()))
        return True

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()
