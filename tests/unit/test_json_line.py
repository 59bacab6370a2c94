"""Log and timeline lines rendered by orjson (`service.logging.json_line`) are the lines json
wrote: the same text for every value without floats, the same parsed value with them, json's
own rendering for what orjson refuses or writes otherwise (text beyond ASCII, big integers,
keys that are not text, lone surrogates), and secrets, dataclasses and datetimes through the
`default` hook as before; and a line's timestamp is the ISO UTC form structlog writes."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from service.core import TimelineRecord
from service.logging import MASK, _render_default, json_line
from service.ports import Secret
from service.runtime.timeline import TimelineWriter


@dataclass(frozen=True)
class Token:
    token: str


def old(obj, default=_render_default, sort_keys=False) -> str:
    return json.dumps(obj, default=default, sort_keys=sort_keys, separators=(",", ":"))


ODD = st.sampled_from([Secret("hunter2"), Token("t0ken"), datetime.datetime(2026, 1, 2, 3, 4, 5),
                       {1, 2}, b"raw", 2**70, -(2**64)])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), ODD)
KEYS = st.one_of(st.text(), st.integers(), st.none(), st.booleans())


def values(scalars):
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                        | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20)


@given(values(SCALARS), st.booleans())
def test_without_floats_the_text_is_json_s(value, sort_keys) -> None:
    try:
        expected = old(value, sort_keys=sort_keys)
    except TypeError:  # json refuses to sort keys of mixed types: so must the new rendering
        return
    assert json_line(value, _render_default, sort_keys=sort_keys) == expected


@given(values(st.one_of(SCALARS, st.floats(allow_nan=False, allow_infinity=False))))
def test_with_floats_the_parsed_value_is_json_s(value) -> None:
    assert json.loads(json_line(value, _render_default)) == json.loads(old(value))


def test_secrets_and_dataclasses_reach_the_default_hook() -> None:
    line = json_line({"a": Secret("hunter2"), "b": Token("bearer abc.def")}, _render_default)
    assert "hunter2" not in line and "abc.def" not in line and MASK in line


def test_nesting_past_orjsons_limit_is_rendered_by_json() -> None:
    deep: list = []
    for _ in range(300):
        deep = [deep]
    assert json_line(deep, _render_default) == old(deep)


def test_a_timeline_line_is_the_records_own_json(tmp_path) -> None:
    records = [TimelineRecord(1764400000.123456, "s1", "reconnect_scheduled", 2, "connecting",
                              {"backoff_ms": 4000.0, "reason": "closed", "code": 503}),
               TimelineRecord(2.5, "sé", "session_closed", detail={"error": "caf\u00e9 \udc80", "n": 2**70})]
    writer = TimelineWriter(tmp_path / "t.jsonl")
    for record in records:
        writer.write(record)
    writer.close()
    assert (tmp_path / "t.jsonl").read_text(encoding="utf-8") == "".join(r.to_json() + "\n" for r in records)


@given(st.floats(min_value=1.0, max_value=4_102_444_800.0) | st.integers(1, 4_102_444_800).map(float))
def test_a_timestamp_is_the_iso_utc_form_structlog_writes(now_s) -> None:
    from service.logging import utc_timestamp
    text = utc_timestamp(now_s)
    assert text.endswith("Z")
    parsed = datetime.datetime.fromisoformat(text[:-1]).replace(tzinfo=datetime.timezone.utc)
    exact = datetime.datetime.fromtimestamp(now_s, datetime.timezone.utc)
    assert abs((parsed - exact).total_seconds()) <= 1.5e-6
    if parsed.microsecond:  # isoformat's own shape: six digits of fraction, none when there are none
        assert text == parsed.isoformat().replace("+00:00", "Z")
    else:
        assert text == parsed.replace(microsecond=0).isoformat().replace("+00:00", "Z")
