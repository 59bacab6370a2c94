"""Timeline records: JSON-lines round trip and clear errors on bad lines."""

import io

import pytest

from service.core import TimelineRecord, read_jsonl, write_jsonl
from service.core.timeline import TimelineFormatError


def test_round_trip_through_json_lines():
    records = [
        TimelineRecord(0.0, "s1", "session_closed", 0, "active", {"code": 428}),
        TimelineRecord(2.0, "s1", "reconnect_running", 1, "connecting"),
    ]
    stream = io.StringIO()
    assert write_jsonl(stream, records) == 2
    stream.seek(0)
    assert list(read_jsonl(stream)) == records


def test_record_detail_is_a_private_copy():
    detail = {"code": 1}
    record = TimelineRecord(0.0, "s", "e", detail=detail)
    detail["code"] = 2
    assert record.detail == {"code": 1}


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("not json", "line 2: timeline line is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"t": 1, "event": "x"}', "lacks field(s) ['session_id']"),
        ('{"t": "soon", "session_id": "s", "event": "x"}', "t must be a number"),
        ('{"t": 1, "session_id": "s", "event": "x", "attempt": "2"}', "attempt must be an integer"),
        ('{"t": 1, "session_id": "s", "event": "x", "colour": "red"}', "unknown field(s) ['colour']"),
    ],
)
def test_bad_lines_name_the_line_and_the_problem(line, fragment):
    good = TimelineRecord(0.0, "s", "e").to_json()
    with pytest.raises(TimelineFormatError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        list(read_jsonl(io.StringIO(good + "\n" + line + "\n")))
