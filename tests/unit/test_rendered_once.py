"""A storm's records are rendered once per content (`TimelineRecord.content_key`): the timeline
line (`service.runtime.timeline.render_line`) and the R8 log line (`EventLog.log_record`) built
from the kept parts are the lines the full rendering writes, whatever came before with an equal
key (0 and 0.0 and -0.0 and False, 1 and True, a text and its enum member, NaN), and lines that
orjson cannot render as json does (big integers, text beyond ASCII, DEL) or that shadow a
bound or a line's own key (timestamp, level, session_id, event, token) keep their old form."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import service.logging as logging_module
from service.core import Connection, LogEvent, Status, TimelineRecord
from service.logging import EventLog, configure_logging, get_logger, json_line
from service.metrics import ServiceMetrics
from service.runtime import report as report_module
from service.runtime import timeline as timeline_module
from service.runtime.report import SessionReport
from service.runtime.timeline import TimelineWriter, render_line

NOW_S = 1_764_434_400.25
VALUES = [0, 0.0, -0.0, False, 1, 1.0, True, "1", None, float("nan"), float("inf"), 2**64, -(2**63) - 1, 1e16,
          1e-7, "é", "\x7f", "open", Connection.OPEN, "active", Status.ACTIVE, "Bearer abc", "redis://:pw@h/0",
          [1], {"a": 1}]
KEYS = ["code", "reason", "backoff_ms", "level", "timestamp", "event", "session_id", "token", "é"]

records = st.builds(
    TimelineRecord,
    t=st.sampled_from([NOW_S, 0.0, -0.0, 1e16, 1, True, float("nan")]),
    session_id=st.sampled_from(["s1", "s2", "é", "\x7f", 1, True]),
    event=st.sampled_from([*LogEvent, "session_closed", "é"]),
    attempt=st.sampled_from([0, 1, False, True, 2**64, 1.0]),
    status=st.sampled_from([None, "active", Status.ACTIVE, "connecting", "\x7f"]),
    detail=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=4),
)


@pytest.fixture(autouse=True)
def fresh_tables():
    tables = (timeline_module._rendered, timeline_module._session_text, logging_module._bodies, report_module._kept)
    for table in tables:
        table.clear()
    yield
    for table in tables:
        table.clear()


@settings(max_examples=300, deadline=None)
@given(st.lists(records, min_size=1, max_size=6))
def test_a_timeline_line_is_what_the_full_rendering_writes(batch: list[TimelineRecord]) -> None:
    for record in batch:
        assert render_line(record) == json_line(record.to_dict(), str, sort_keys=True)
        assert render_line(record, record.content_key()) == json_line(record.to_dict(), str, sort_keys=True)


def log_line(write) -> str:
    stream = io.StringIO()
    configure_logging(stream, "info")
    try:
        write()
    finally:
        configure_logging(stream=None, level="info")
    return stream.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(records, min_size=1, max_size=6), st.sampled_from(["info", "warning", "debug"]))
def test_a_log_line_is_what_the_full_rendering_writes(batch: list[TimelineRecord], level: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging_module.time, "time", lambda: NOW_S)
        check_log_lines(batch, level)


def check_log_lines(batch: list[TimelineRecord], level: str) -> None:
    bound = get_logger(component="session").bind(session_id="s1")
    for record in batch:
        fields = {k: v for k, v in record.detail.items() if k not in ("session_id", "event")}

        def full() -> None:
            EventLog(bound).log(level, record.event, attempt=record.attempt, status=record.status, **fields)

        def kept_line() -> None:
            EventLog(bound).log_record(level, record, record.content_key())

        try:
            expected = log_line(full)
        except TypeError:  # a detail key `level`: the call cannot be made, as before
            with pytest.raises(TypeError):
                log_line(kept_line)
            continue
        kept = log_line(kept_line)
        assert kept == expected
        assert (kept == "") == (level == "debug")


@settings(max_examples=300, deadline=None)
@given(st.lists(records, min_size=1, max_size=6))
def test_a_reports_lines_are_what_the_full_renderings_write(batch: list[TimelineRecord]) -> None:
    """`SessionReport.emit` finds both renderings of a content in one table: each record's timeline
    line and log line (at its event's level) are the ones the full renderings write."""
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as folder:
        patch.setattr(logging_module.time, "time", lambda: NOW_S)
        bound = get_logger(component="session").bind(session_id="s1")
        writer = TimelineWriter(Path(folder) / "timeline.jsonl")
        report = SessionReport(writer, ServiceMetrics(), bound)
        for record in batch:
            level = report_module._LEVEL.get(record.event, "info")
            fields = {k: v for k, v in record.detail.items() if k not in ("session_id", "event")}
            try:
                expected = log_line(lambda: EventLog(bound).log(level, record.event, attempt=record.attempt,
                                                                status=record.status, **fields))
            except TypeError:  # a detail key `level`: the call cannot be made, as before
                with pytest.raises(TypeError):
                    log_line(lambda: report.emit(record))
                continue
            assert log_line(lambda: report.emit(record)) == expected
            lines = writer.path.read_text(encoding="utf-8").splitlines()
            assert lines[-1] == json_line(record.to_dict(), str, sort_keys=True)
        writer.close()


def test_equal_contents_share_one_rendering_and_differ_in_time_and_session() -> None:
    first = TimelineRecord(NOW_S, "s1", "session_closed", 1, "connecting", {"code": 503})
    second = TimelineRecord(NOW_S + 1.5, "s2", "session_closed", 1, "connecting", {"code": 503})
    assert first.content_key() == second.content_key()
    render_line(first)
    assert len(timeline_module._rendered) == 1
    assert json.loads(render_line(second)) == second.to_dict()
    assert len(timeline_module._rendered) == 1


@pytest.mark.parametrize(("one", "other"), [(0.0, -0.0), (1, True), (1, 1.0), (0, False), ("open", 1)])
def test_values_equal_in_python_but_rendered_apart_have_apart_keys(one, other) -> None:
    keys = [TimelineRecord(0.0, "s", "e", 0, None, {"code": value}).content_key() for value in (one, other)]
    assert keys[0] != keys[1]


@pytest.mark.parametrize("zero", [-0.0, 0, False])
def test_a_zero_float_beside_other_floats_keeps_its_key_apart(zero) -> None:
    records = [TimelineRecord(0.0, "s", "reconnect_scheduled", 1, "connecting", {"backoff_ms": 1500.0, "wait": value})
               for value in (0.0, zero)]
    assert records[0].content_key() != records[1].content_key()
    for record in records:
        assert render_line(record) == json_line(record.to_dict(), str, sort_keys=True)


def test_records_with_equal_floats_share_one_key() -> None:
    records = [TimelineRecord(t, s, "reconnect_scheduled", 1, "connecting", {"backoff_ms": ms, "max_attempts": 5})
               for t, s, ms in ((1.0, "s1", 2000.0), (2.5, "s2", 2000.0), (3.0, "s3", float("2e3")))]
    assert len({record.content_key() for record in records}) == 1
    nan = [TimelineRecord(0.0, "s", "e", 0, None, {"x": float("nan")}) for _ in range(2)]
    assert render_line(nan[0]) == render_line(nan[1]) == json_line(nan[0].to_dict(), str, sort_keys=True)


def test_contents_of_nested_or_unknown_values_have_no_key() -> None:
    for value in ([1], {"a": 1}, object(), b"x"):
        assert TimelineRecord(0.0, "s", "e", 0, None, {"code": value}).content_key() is None


def test_the_tables_stay_bounded() -> None:
    for code in range(timeline_module._MAX_RENDERED + 10):
        record = TimelineRecord(0.0, "s", "session_closed", 0, None, {"code": code})
        assert render_line(record) == json_line(record.to_dict(), str, sort_keys=True)
    assert len(timeline_module._rendered) <= timeline_module._MAX_RENDERED
