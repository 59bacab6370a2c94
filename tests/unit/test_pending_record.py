"""The B5 pending record's Redis shape (`service.pending`): what the core's bookkeeping
commands write reads back as the same record, the uncounted flag included."""

import pytest

from service.core.events import MarkStarted, RecordPending
from service.errors import MalformedInput
from service.pending import PendingReconnect, parse_pending, pending_mapping, record_of


@pytest.mark.parametrize("command", [RecordPending(2, 1700000010.5), RecordPending(0, 1700000900.0, counted=False),
                                     MarkStarted(3, 1700000020.25)])
def test_a_bookkeeping_command_reads_back_as_its_record(command):
    record = record_of(command)
    raw = {k.encode(): v.encode() for k, v in pending_mapping(record).items()}
    assert parse_pending(raw, "s1") == record
    assert (record.started_at_s is not None) is isinstance(command, MarkStarted)


def test_an_older_record_without_the_flag_is_counted():
    assert parse_pending({b"attempt": b"2", b"due_at_s": b"5.0"}, "s1") == PendingReconnect(2, 5.0)


@pytest.mark.parametrize("raw", [{b"attempt": b"x", b"due_at_s": b"1"}, {b"due_at_s": b"1"}, {b"attempt": b"1"}])
def test_an_unusable_record_is_malformed(raw):
    with pytest.raises(MalformedInput):
        parse_pending(raw, "s1")
