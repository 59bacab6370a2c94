"""The shared vocabulary: one spelling per word, the strings the wire contract already carries."""

import io
import json
import random
import re
from pathlib import Path

import pytest

from service.core import (
    DROP_EVENTS, GIVE_UP_EVENTS, DropReason, LogEvent, ReleaseReason, ScheduleReason, TimelineRecord, read_jsonl,
    write_jsonl,
)
from service.core import vocabulary
from service.core.events import Closed, Drop, Emit, Opened, ScheduleReconnect, Start
from service.core.machine import SessionMachine
from service.core.policy import build_policy

CONTRACT = Path(__file__).resolve().parents[2] / "chaos" / "CONTRACT.md"

# the strings timelines, logs and chaos/CONTRACT.md carry today: changing one is a wire change
WIRE_EVENT_NAMES = {
    "connection_update", "session_closed", "reconnect_scheduled", "reconnect_running", "session_starting",
    "session_open", "reconnect_failed", "max_attempts_reached", "reconnect_cancelled", "session_terminal",
    "duplicate_close_ignored", "session_resumed", "session_released",
}


def test_event_names_are_the_wire_strings():
    assert {member.value for member in LogEvent} == WIRE_EVENT_NAMES


def test_the_contract_names_only_events_the_core_knows():
    section = CONTRACT.read_text().split("## 5. The timeline", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", section))
    assert named & WIRE_EVENT_NAMES, "the contract's timeline section names no event at all"
    assert named - {"backoff_ms"} <= {member.value for member in LogEvent}


@pytest.mark.parametrize("enum", [LogEvent, DropReason, ReleaseReason, ScheduleReason, vocabulary.GiveUpLimit,
                                  vocabulary.CloseReason, vocabulary.FailReason, vocabulary.Connection])
def test_members_are_their_strings(enum):
    for member in enum:
        assert member == member.value and str(member) == member.value and f"{member}" == member.value
        assert hash(member) == hash(member.value) and member.value in {member}
        assert json.dumps(member) == json.dumps(member.value)


def test_only_a_backoff_is_counted():
    assert [reason for reason in ScheduleReason if reason.counted] == [ScheduleReason.BACKOFF]


def test_drop_and_give_up_events_are_events():
    assert GIVE_UP_EVENTS < DROP_EVENTS <= set(LogEvent)


def test_machine_speaks_only_the_vocabulary():
    machine = SessionMachine("s1", build_policy({"base_s": 0.1, "max_attempts": 2}), random.Random(1))
    commands = machine.handle(Start(), 0.0) + machine.handle(Opened(), 0.1) + machine.handle(Closed(1006), 0.2)
    commands += machine.handle(Closed(401), 0.3)
    events = [command.record.event for command in commands if isinstance(command, Emit)]
    assert events and {LogEvent(event) for event in events} >= {LogEvent.SESSION_OPEN, LogEvent.SESSION_TERMINAL}
    scheduled = [command for command in commands if isinstance(command, ScheduleReconnect)]
    assert [type(command.reason) for command in scheduled] == [ScheduleReason]
    assert [command.reason for command in commands if isinstance(command, Drop)] == [DropReason.TERMINAL]


def test_records_read_back_from_json_equal_the_emitted_ones():
    machine = SessionMachine("s1", build_policy({"base_s": 0.1}), random.Random(1))
    commands = machine.handle(Start(), 0.0) + machine.handle(Closed(1006), 0.2)
    records = [command.record for command in commands if isinstance(command, Emit)]
    stream = io.StringIO()
    write_jsonl(stream, records)
    stream.seek(0)
    back = list(read_jsonl(stream))
    assert back == records and type(back[0].event) is str


def test_old_import_path_still_works():
    from service.core.machine import LogEvent as Old

    assert Old is LogEvent
    assert TimelineRecord(0.0, "s", LogEvent.SESSION_OPEN).event == "session_open"


def respelled_event_names(source: str) -> list[str]:
    """String literals in `source` that spell an event name instead of naming the `LogEvent`."""
    import ast

    names = {member.value for member in LogEvent}
    return [node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names]


def test_no_module_of_service_sim_or_chaos_re_spells_an_event_name():
    root = Path(__file__).resolve().parents[2]
    found = {}
    for package in ("service", "sim", "chaos"):
        for path in sorted((root / package).rglob("*.py")):
            if path.name == "vocabulary.py" and path.parent.name == "core":
                continue
            spelled = respelled_event_names(path.read_text(encoding="utf-8"))
            if spelled:
                found[str(path.relative_to(root))] = spelled
    assert found == {}, f"use service.core.LogEvent instead of these strings: {found}"


def test_a_re_spelled_event_name_is_found():
    assert respelled_event_names('if record.event == "session_starting": pass') == ["session_starting"]
    assert respelled_event_names('if record.event == LogEvent.SESSION_STARTING: pass') == []
