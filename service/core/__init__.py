"""The pure reconnect core: policy values, one session's state machine, timeline records.

Owns every reconnect decision. Must not do I/O, read a clock or import asyncio, simpy,
redis, socket, time, http or neonize: shells pass `now` and a `random.Random` in and
carry the returned commands out.
"""

from service.core.errors import CoreError, IllegalTransition, PolicyError
from service.core.codes import Action, CodeTable, build_code_table, code_table
from service.core.policy import Backoff, Jitter, Policy, Timeouts, build_policy
from service.core.machine import SessionMachine, State
from service.core.statuses import Priority, Status
from service.core.timeline import TimelineRecord, read_jsonl, write_jsonl
from service.core.vocabulary import (
    DROP_EVENTS, GIVE_UP_EVENTS, CloseReason, Connection, DropReason, FailReason, GiveUpLimit, LogEvent,
    ReleaseReason, ScheduleReason,
)

__all__ = [
    "Action",
    "Backoff",
    "CloseReason",
    "CodeTable",
    "Connection",
    "CoreError",
    "DROP_EVENTS",
    "DropReason",
    "FailReason",
    "GIVE_UP_EVENTS",
    "GiveUpLimit",
    "IllegalTransition",
    "Jitter",
    "LogEvent",
    "Policy",
    "PolicyError",
    "Priority",
    "ReleaseReason",
    "ScheduleReason",
    "SessionMachine",
    "State",
    "Status",
    "TimelineRecord",
    "Timeouts",
    "build_code_table",
    "build_policy",
    "code_table",
    "read_jsonl",
    "write_jsonl",
]
