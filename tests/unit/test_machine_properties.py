"""Property tests: any event sequence keeps the machine's invariants."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core import Action, IllegalTransition, SessionMachine, State, Status, build_policy
from service.core.presets import PRESETS
from service.core.events import (
    BackoffElapsed, CloseSocket, Closed, Drop, KeepaliveMissed, Opened, OpenSocket,
    Released, ScheduleReconnect, SetStatus, Start, StartFailed, Validated, ValidationFailed,
)

CODES = [None, 401, 405, 428, 440, 500, 515, "TemporaryBan", "StreamReplaced", "Disconnected"]

events = st.one_of(
    st.just(Opened()),
    st.builds(Closed, code=st.sampled_from(CODES), wait_s=st.sampled_from([None, 5.0])),
    st.builds(StartFailed, code=st.sampled_from(CODES)),
    st.just(KeepaliveMissed()),
    st.just(BackoffElapsed()),
    st.builds(Validated, ok=st.booleans()),
    st.just(ValidationFailed("RecursionError")),
    st.just(Released()),
)


def run_sequence(policy_settings, sequence, seed):
    """Feed legal events only (illegal ones must raise and change nothing); return the commands."""
    machine = SessionMachine("s", build_policy(policy_settings), random.Random(seed))
    commands = list(machine.handle(Start(), 0.0))
    now = 0.0
    for event in sequence:
        now += 0.5
        before = (machine.state, machine.status, machine.attempts, machine.has_socket)
        try:
            commands += machine.handle(event, now)
        except IllegalTransition:
            assert (machine.state, machine.status, machine.attempts, machine.has_socket) == before
    return machine, commands


policies = st.fixed_dictionaries({
    "max_attempts": st.integers(1, 7),
    "jitter": st.sampled_from(["none", "full", "equal", "decorrelated", "proportional"]),
    "codes": st.sampled_from(["original", "baileys", "whatsmeow", "baileys_readme"]),
})

# every preset, given a give-up deadline (some have no attempt cap at all)
deadline_policies = st.fixed_dictionaries({
    "preset": st.sampled_from(list(PRESETS)),
    "max_elapsed_s": st.sampled_from([0.5, 1.0, 3.0, 10.0, 40.0]),
})

_CLOSES = (Closed, StartFailed, KeepaliveMissed)


@settings(max_examples=500, deadline=None)
@given(policies, st.lists(events, max_size=60), st.integers(0, 2**32))
def test_never_more_than_max_attempts_per_episode(policy_settings, sequence, seed):
    _, commands = run_sequence(policy_settings, sequence, seed)
    counted_in_episode = 0
    for command in commands:
        if isinstance(command, ScheduleReconnect) and command.attempt > counted_in_episode:
            counted_in_episode = command.attempt
        # an Opened resets the count: detect it by a fresh attempt-1 schedule after success
        assert counted_in_episode <= policy_settings["max_attempts"]


@settings(max_examples=500, deadline=None)
@given(policies, st.lists(events, max_size=60), st.integers(0, 2**32))
def test_never_two_open_sockets(policy_settings, sequence, seed):
    _, commands = run_sequence(policy_settings, sequence, seed)
    live = 0
    for command in commands:
        if isinstance(command, OpenSocket):
            live += 1
        elif isinstance(command, CloseSocket):
            live -= 1
        assert 0 <= live <= 1


@settings(max_examples=500, deadline=None)
@given(policies, st.lists(events, max_size=60), st.integers(0, 2**32))
def test_no_open_after_a_terminal_code_or_a_drop(policy_settings, sequence, seed):
    machine = SessionMachine("s", build_policy(policy_settings), random.Random(seed))
    machine.handle(Start(), 0.0)
    finished = False
    for event in sequence:
        try:
            commands = machine.handle(event, 1.0)
        except IllegalTransition:
            continue
        assert not (finished and commands), "a dropped session still produced commands"
        code = getattr(event, "code", None) if isinstance(event, Closed | StartFailed) else "x"
        if code != "x" and machine.policy.codes.action_for(code) is Action.TERMINAL:
            assert not [c for c in commands if isinstance(c, OpenSocket | ScheduleReconnect)]
            assert machine.state is State.DROPPED
        if any(isinstance(c, Drop) for c in commands):
            assert not [c for c in commands if isinstance(c, OpenSocket)]
            finished = True


@settings(max_examples=500, deadline=None)
@given(policies, st.lists(events, max_size=60), st.integers(0, 2**32))
def test_every_jittered_delay_within_its_formula(policy_settings, sequence, seed):
    policy = build_policy(policy_settings)
    _, commands = run_sequence(policy_settings, sequence, seed)
    previous_s = None
    for command in commands:
        if not isinstance(command, ScheduleReconnect) or not command.counted:
            continue
        if command.attempt == 1:
            previous_s = None
        lo, hi = policy.backoff.bounds_s(command.attempt, previous_s)
        assert lo <= command.delay_s <= hi
        previous_s = command.delay_s


@settings(max_examples=500, deadline=None)
@given(policies, st.lists(events, max_size=60), st.integers(0, 2**32))
def test_a_session_that_ends_is_never_left_connecting(policy_settings, sequence, seed):
    """B10: every drop but a release (give-up, terminal code, failed validation) ends with a
    status other than `connecting`, written in the same step as the drop or before it."""
    machine = SessionMachine("s", build_policy(policy_settings), random.Random(seed))
    written = [c.status for c in machine.handle(Start(), 0.0) if isinstance(c, SetStatus)]
    for event in sequence:
        try:
            commands = machine.handle(event, 1.0)
        except IllegalTransition:
            continue
        written += [c.status for c in commands if isinstance(c, SetStatus)]
        drops = [c for c in commands if isinstance(c, Drop)]
        if drops and not isinstance(event, Released):
            assert written[-1] is not Status.CONNECTING, (drops, written)
            assert machine.status is written[-1]


@settings(max_examples=500, deadline=None)
@given(deadline_policies, st.lists(events, max_size=60), st.integers(0, 2**32))
def test_no_counted_attempt_starts_past_the_deadline(policy_settings, sequence, seed):
    policy = build_policy(policy_settings)
    machine = SessionMachine("s", policy, random.Random(seed))
    machine.handle(Start(), 0.0)
    episode_start_s, now, scheduled = None, 0.0, 0
    for event in sequence:
        now += 0.5
        try:
            commands = machine.handle(event, now)
        except IllegalTransition:
            continue
        if isinstance(event, Opened):
            episode_start_s = None
        elif isinstance(event, _CLOSES) and episode_start_s is None:
            episode_start_s = now
        for command in commands:
            if isinstance(command, ScheduleReconnect) and command.counted:
                scheduled += 1
                assert now + command.delay_s - episode_start_s <= policy.backoff.max_elapsed_s + 1e-9
    if machine.state is State.DROPPED and scheduled:
        assert policy.backoff.gives_up
