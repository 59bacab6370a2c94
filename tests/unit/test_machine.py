"""The session machine pinned command by command against R1–R7 and the note's flow."""

import random

import pytest

from service.core import IllegalTransition, Priority, SessionMachine, State, Status, build_policy
from service.core.codes import TABLES
from service.core.events import (
    BackoffElapsed, CancelReconnect, ClearCache, ClearPending, Closed, CloseSocket, Drop, Emit, KeepaliveMissed,
    MarkStarted, Opened, OpenSocket, RecordPending, Released, Resumed, ScheduleReconnect, SetStatus, Start,
    StartFailed, Validate, Validated, ValidationFailed,
)
from service.core.statuses import is_valid_status
from tests.unit.script import drive, open_session


@pytest.mark.parametrize(
    ("status", "for_reconnect", "valid"),
    [
        (Status.ACTIVE, False, True), (Status.ACTIVE, True, True),
        (Status.CONNECTING, False, False), (Status.CONNECTING, True, True),
        (Status.INACTIVE, False, False), (Status.INACTIVE, True, False),
    ],
)
def test_r1_validity_truth_table(status, for_reconnect, valid):
    assert is_valid_status(status, for_reconnect=for_reconnect) is valid


def test_long_outage_delays_are_2_4_8_16_32_and_the_fifth_failure_gives_up():
    run = drive(open_session(), Closed(), link_up_at_s=10_000)
    delays = [c.delay_s for _, c in run.of(ScheduleReconnect)]
    assert delays == [2, 4, 8, 16, 32]
    assert [t for t, c in run.of(OpenSocket)] == [2, 6, 14, 30, 62]
    final = run.commands[-5:]
    assert [type(c) for _, c in final] == [SetStatus, ClearPending, Emit, CloseSocket, Drop]
    assert final[0][1] == SetStatus(Status.INACTIVE, Priority.HIGH)
    assert final[2][1].record.event == "max_attempts_reached"
    assert final[2][1].record.status == "inactive"
    assert run.machine.state is State.DROPPED
    assert not [c for t, c in run.commands if t > 62]


def test_every_close_starts_with_clear_cache():
    machine = open_session()
    assert isinstance(machine.handle(Closed(code=500), 1.0)[0], ClearCache)
    # a duplicate close while the timer is pending: still cleared first, no second timer
    duplicate = machine.handle(Closed(code=500), 1.5)
    assert isinstance(duplicate[0], ClearCache)
    assert not [c for c in duplicate if isinstance(c, ScheduleReconnect)]
    # a failed start is a close too
    machine.handle(BackoffElapsed(), 3.0)
    machine.handle(Validated(ok=True), 3.0)
    assert isinstance(machine.handle(StartFailed("refused"), 3.0)[0], ClearCache)


@pytest.mark.parametrize(
    ("table", "code"),
    [(name, code) for name, table in TABLES.items() for code in table.terminal_codes()],
)
def test_every_terminal_code_marks_inactive_high_and_opens_nothing(table, code):
    machine = open_session(codes=table)
    commands = machine.handle(Closed(code=code), 1.0)
    assert SetStatus(Status.INACTIVE, Priority.HIGH) in commands
    assert not [c for c in commands if isinstance(c, OpenSocket | ScheduleReconnect)]
    assert isinstance(commands[-1], Drop)
    assert machine.state is State.DROPPED
    with pytest.raises(IllegalTransition):
        machine.handle(BackoffElapsed(), 3.0)


def test_terminal_code_during_backoff_cancels_the_timer():
    machine = open_session()
    machine.handle(Closed(), 1.0)
    commands = machine.handle(Closed(code=401), 1.5)
    assert CancelReconnect() in commands
    assert SetStatus(Status.INACTIVE, Priority.HIGH) in commands


def test_failed_validation_drops_and_opens_no_socket():
    run = drive(open_session(), Closed(), link_up_at_s=10_000, valid_until_s=1.0)
    opened_after_close = [c for c in run.of(OpenSocket)]
    assert opened_after_close == []
    assert "reconnect_cancelled" in run.events()
    assert run.of(Drop)[-1][1] == Drop("invalid")
    # B10: the session ends `inactive` (high priority), never left `connecting`
    assert [c for _, c in run.of(SetStatus)] == [SetStatus(Status.CONNECTING), SetStatus(Status.INACTIVE, Priority.HIGH)]


def test_close_socket_precedes_every_reconnect_open():
    run = drive(open_session(), Closed(), link_up_at_s=7.0)  # attempts at +2, +6 fail; +14 opens
    kinds = [type(c) for _, c in run.commands if isinstance(c, CloseSocket | OpenSocket)]
    assert kinds == [CloseSocket, OpenSocket] * 3


def test_success_resets_attempts_and_sets_active():
    run = drive(open_session(), Closed(), link_up_at_s=5.0)
    assert run.machine.state is State.OPEN
    assert run.machine.attempts == 0
    assert run.of(SetStatus)[-1][1] == SetStatus(Status.ACTIVE, Priority.NORMAL)
    # a later drop starts again at attempt 1 with the base delay
    commands = run.machine.handle(Closed(), 100.0)
    assert [c.delay_s for c in commands if isinstance(c, ScheduleReconnect)] == [2]


def test_restart_required_reconnects_at_once_without_counting():
    machine = open_session(codes="baileys")
    commands = machine.handle(Closed(code=515), 1.0)
    assert [c for c in commands if isinstance(c, ScheduleReconnect)] == [
        ScheduleReconnect(0.0, 0, "reconnect_now")]
    assert machine.attempts == 0


def test_endless_restart_required_falls_back_to_counted_backoff():
    machine = open_session(codes="baileys")
    delays = []
    now = 0.0
    for _ in range(20):
        if machine.state is State.DROPPED:
            break
        commands = machine.handle(Closed(code=515) if machine.state is State.OPEN else StartFailed(code=515), now)
        delays += [c.delay_s for c in commands if isinstance(c, ScheduleReconnect)]
        if machine.state is State.BACKOFF:
            machine.handle(BackoffElapsed(), now)
            machine.handle(Validated(ok=True), now)
    assert delays == [0, 0, 0, 0, 0, 2, 4, 8, 16, 32]
    assert machine.state is State.DROPPED


def test_temporary_ban_waits_for_its_expiry_uncounted():
    machine = open_session(codes="whatsmeow")
    commands = machine.handle(Closed(code="TemporaryBan", wait_s=900.0), 1.0)
    assert ScheduleReconnect(900.0, 0, "temporary_ban") in commands
    assert machine.attempts == 0


def test_keepalive_missed_is_a_close():
    machine = open_session()
    commands = machine.handle(KeepaliveMissed(), 1.0)
    assert isinstance(commands[0], ClearCache)
    assert ScheduleReconnect(2.0, 1) in commands


def test_resumed_session_picks_up_its_pending_attempt():
    machine = SessionMachine("s1", build_policy(), status=Status.CONNECTING)
    commands = machine.handle(Resumed(attempt=3, remaining_s=1.25), 0.0)
    assert ScheduleReconnect(1.25, 3) in commands
    assert not [c for c in commands if isinstance(c, SetStatus)]  # already connecting
    spent = SessionMachine("s2", build_policy(), status=Status.CONNECTING)
    commands = spent.handle(Resumed(attempt=6), 0.0)
    assert SetStatus(Status.INACTIVE, Priority.HIGH) in commands


BOOKKEEPING = (SetStatus, RecordPending, MarkStarted, ClearPending, Validate)


def test_crash_bookkeeping_of_one_recovery_comes_in_write_pairs():
    """Drop at 0 s, attempt 1 (due 2 s) fails, attempt 2 (due 6 s) opens: every reconnect is
    recorded with its due time beside the status, spent as its validation starts, and the
    record is cleared with the status that ends the disconnection."""
    run = drive(open_session(), Closed(), link_up_at_s=5.0)
    assert [(t, c) for t, c in run.commands if isinstance(c, BOOKKEEPING)] == [
        (0.0, SetStatus(Status.CONNECTING)), (0.0, RecordPending(1, 2.0)),
        (2.0, MarkStarted(1, 2.0)), (2.0, Validate()),
        (2.0, RecordPending(2, 6.0)),  # the status is unchanged: a write of its own
        (6.0, MarkStarted(2, 6.0)), (6.0, Validate()),
        (6.0, SetStatus(Status.ACTIVE)), (6.0, ClearPending()),
    ]
    commands = [c for _, c in run.commands]
    for first, second in [(SetStatus(Status.CONNECTING), RecordPending(1, 2.0)), (MarkStarted(1, 2.0), Validate()),
                          (MarkStarted(2, 6.0), Validate()), (SetStatus(Status.ACTIVE), ClearPending())]:
        at = commands.index(first)
        assert commands[at + 1] == second, commands[at:at + 2]  # a shell writes each pair at once


def test_a_fresh_start_clears_an_old_record_with_its_status():
    commands = SessionMachine("s1", build_policy()).handle(Start(), 0.0)
    assert commands[:2] == [SetStatus(Status.CONNECTING), ClearPending()]


@pytest.mark.parametrize("ending", ["give_up", "terminal", "invalid"])
def test_a_session_that_ends_clears_its_record_with_its_final_status(ending):
    machine = open_session(max_attempts=1)
    machine.handle(Closed(), 1.0)
    machine.handle(BackoffElapsed(), 3.0)
    if ending == "invalid":
        commands = machine.handle(Validated(ok=False), 3.0)
    else:
        machine.handle(Validated(ok=True), 3.0)
        commands = machine.handle(StartFailed(code=401 if ending == "terminal" else None), 3.5)
    at = commands.index(SetStatus(Status.INACTIVE, Priority.HIGH))
    assert commands[at + 1] == ClearPending()
    assert not [c for c in commands if isinstance(c, RecordPending | MarkStarted)]


def test_uncounted_waits_are_recorded_uncounted_and_never_marked_started():
    machine = open_session(codes="whatsmeow")
    commands = machine.handle(Closed(code="TemporaryBan", wait_s=900.0), 1.0)
    assert RecordPending(0, 901.0, counted=False) in commands
    assert not [c for c in machine.handle(BackoffElapsed(), 901.0) if isinstance(c, MarkStarted)]


def test_a_release_keeps_the_record_for_the_next_owner():
    machine = open_session()
    machine.handle(Closed(), 1.0)
    commands = machine.handle(Released("shutdown"), 1.5)
    assert not [c for c in commands if isinstance(c, RecordPending | MarkStarted | ClearPending)]


def test_resumed_uncounted_wait_keeps_its_due_time_and_spends_no_attempt():
    machine = SessionMachine("s1", build_policy({"codes": "whatsmeow"}), status=Status.CONNECTING)
    commands = machine.handle(Resumed(attempt=2, remaining_s=30.0, counted=False), 100.0)
    assert ScheduleReconnect(30.0, 2, "resumed") in commands
    assert RecordPending(2, 130.0, counted=False) in commands
    assert machine.attempts == 2
    machine.handle(BackoffElapsed(), 130.0)
    machine.handle(Validated(ok=True), 130.0)
    commands = machine.handle(StartFailed(), 131.0)
    assert [c.attempt for c in commands if isinstance(c, ScheduleReconnect)] == [3]


def test_released_session_stops_locally_without_touching_status():
    machine = open_session()
    machine.handle(Closed(), 1.0)
    commands = machine.handle(Released("lease_lost"), 1.5)
    assert CancelReconnect() in commands and Drop("lease_lost") in commands
    assert not [c for c in commands if isinstance(c, SetStatus)]


def test_fork_copies_the_state_and_shares_the_random_stream():
    rng = random.Random(3)
    machine = SessionMachine("s1", build_policy({"jitter": "full"}), rng)
    machine.handle(Start(), 0.0)
    machine.handle(Opened(), 0.0)
    machine.handle(Closed(), 1.0)
    twin = machine.fork("s2")
    assert (twin.state, twin.status, twin.attempts, twin.has_socket) == (
        machine.state, machine.status, machine.attempts, machine.has_socket)
    twin.handle(BackoffElapsed(), 2.0)
    assert machine.state is State.BACKOFF and twin.state is State.VALIDATING
    expected = random.Random(3)
    expected.uniform(0, 2)  # the draw the original made for attempt 1
    machine.handle(Closed(code=401), 2.5)  # the original's fate does not change the twin's
    twin.handle(Validated(ok=True), 2.0)
    delays = [c.delay_s for c in twin.handle(StartFailed(), 2.0) if isinstance(c, ScheduleReconnect)]
    assert delays == [expected.uniform(0, 4)]


def test_illegal_event_raises_and_changes_nothing():
    machine = open_session()
    before = (machine.state, machine.status, machine.attempts, machine.has_socket)
    with pytest.raises(IllegalTransition, match="BackoffElapsed is not allowed in state open"):
        machine.handle(BackoffElapsed(), 1.0)
    assert (machine.state, machine.status, machine.attempts, machine.has_socket) == before


def test_first_start_opens_without_closing_anything():
    machine = SessionMachine("s1", build_policy())
    commands = machine.handle(Start(), 0.0)
    assert commands[0] == SetStatus(Status.CONNECTING, Priority.NORMAL)
    assert commands[-1] == OpenSocket(attempt=0)
    assert not [c for c in commands if isinstance(c, CloseSocket)]


def test_jitter_comes_from_the_injected_rng_only():
    def delays(seed):
        machine = SessionMachine("s1", build_policy({"jitter": "full"}), random.Random(seed))
        machine.handle(Start(), 0.0)
        machine.handle(Opened(), 0.0)
        return [c.delay_s for c in machine.handle(Closed(), 1.0) if isinstance(c, ScheduleReconnect)]

    assert delays(5) == delays(5)
    assert delays(5) != delays(6)


def test_trace_off_emits_nothing_but_decides_the_same():
    traced = drive(open_session(), Closed(), link_up_at_s=7.0)
    quiet_machine = SessionMachine("s1", build_policy(), trace=False)
    quiet_machine.handle(Start(), 0.0)
    quiet_machine.handle(Opened(), 0.0)
    quiet = drive(quiet_machine, Closed(), link_up_at_s=7.0)
    assert not quiet.of(Emit)
    assert [c for _, c in quiet.commands] == [c for _, c in traced.commands if not isinstance(c, Emit)]


def test_a_failed_validation_counts_as_a_failed_attempt_and_ends_in_a_give_up():
    """No exception in the check may leave a session validating: the policy bounds it."""
    machine = open_session()
    machine.handle(Closed(code=500), 1.0)
    now = 1.0
    for attempt in range(1, 6):
        assert machine.state is State.BACKOFF and machine.attempts == attempt
        now += 100.0
        machine.handle(BackoffElapsed(), now)
        assert machine.state is State.VALIDATING
        commands = machine.handle(ValidationFailed("RecursionError"), now)
        failed = [c.record for c in commands if isinstance(c, Emit) and c.record.event == "reconnect_failed"]
        assert failed and failed[0].detail["reason"] == "RecursionError"
        assert not [c for c in commands if isinstance(c, OpenSocket)]
        if attempt < 5:
            assert [c.attempt for c in commands if isinstance(c, ScheduleReconnect)] == [attempt + 1]
    assert machine.state is State.DROPPED
    assert SetStatus(Status.INACTIVE, Priority.HIGH) in commands
    with pytest.raises(IllegalTransition):
        open_session().handle(ValidationFailed(), 1.0)  # only an asked validation can fail


def test_a_shell_that_never_resumes_gets_no_crash_bookkeeping():
    """`persist=False` (the simulation): the same decisions, without the B5 commands."""
    kept = drive(open_session(), Closed(), link_up_at_s=5.0)
    machine = SessionMachine("s1", build_policy(), persist=False)
    machine.handle(Start(), 0.0)
    machine.handle(Opened(), 0.0)
    skipped = drive(machine, Closed(), link_up_at_s=5.0)
    bookkeeping = (RecordPending, MarkStarted, ClearPending)
    assert not [c for _, c in skipped.commands if isinstance(c, bookkeeping)]
    assert [c for _, c in skipped.commands] == [c for _, c in kept.commands if not isinstance(c, bookkeeping)]
    assert skipped.machine.fork().persist is False


def test_a_records_detail_leaves_out_what_is_none_and_is_its_own():
    machine = open_session()
    records = [c.record for c in machine.handle(Closed(code=503), 1.0) if isinstance(c, Emit)]
    assert {r.event: r.detail for r in records}["session_closed"] == {"code": 503}  # no reason: left out
    assert all(None not in r.detail.values() for r in records)
    machine.handle(BackoffElapsed(), 3.0)
    machine.handle(Validated(ok=True), 3.0)
    failed = [c.record for c in machine.handle(StartFailed("refused"), 3.0) if isinstance(c, Emit)]
    assert {r.event: r.detail for r in failed}["session_closed"] == {"reason": "refused"}  # no code: left out
    details = [r.detail for r in records + failed]
    assert len({id(detail) for detail in details}) == len(details)  # no record shares another's
    uncapped = SessionMachine("s2", build_policy({"max_attempts": "unlimited"}), status=Status.ACTIVE)
    uncapped.handle(Start(), 0.0)
    uncapped.handle(Opened(), 0.0)
    scheduled = [c.record for c in uncapped.handle(Closed(code=503), 1.0)
                 if isinstance(c, Emit) and c.record.event == "reconnect_scheduled"]
    assert scheduled and "max_attempts" not in scheduled[0].detail and scheduled[0].attempt == 1
    assert set(scheduled[0].detail) == {"backoff_ms", "reason"}
