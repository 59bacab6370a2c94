"""Black-box judging: episodes and attempts from the stand-in's link events alone, the observable
variant of a scenario, and the checkers' verdicts on histories that have no timeline."""

from __future__ import annotations

from chaos import checkers
from chaos.catalog import get
from chaos.checkers import (ATTEMPT_TIMES_MATCH_POLICY, ATTEMPTS_WITHIN_MAX, BLACK_BOX, NOT_JUDGED,
                            RECONNECTS_AS_EXPECTED, check_all)
from chaos.history import BackOfficeUpdate, FaultWindow, History, LinkEvent
from chaos.observed import attempts_observable, observable, observed_episodes
from chaos.scenario import StandinRefusing
from sim.scenarios import LinkDown

S1 = observable(get("flaky_wifi").scaled(0.1))
SID = "s0"


class Links:
    """Link events of one session as the stand-in records them."""

    def __init__(self) -> None:
        self.events: list[LinkEvent] = []
        self.conns = 0

    def opened(self, t: float) -> None:
        self.conns += 1
        self.events += [LinkEvent(t - 0.005, SID, "connect", str(self.conns)), LinkEvent(t, SID, "open", str(self.conns))]

    def refused(self, t: float, code: int = 503) -> None:
        self.conns += 1
        conn = str(self.conns)
        self.events += [LinkEvent(t - 0.005, SID, "connect", conn), LinkEvent(t, SID, "reject", conn, code),
                        LinkEvent(t, SID, "close", conn, code)]

    def closed(self, t: float, code: int = 503) -> None:
        self.events.append(LinkEvent(t, SID, "close", str(self.conns), code))

    def history(self, final: str = "active") -> History:
        updates = [BackOfficeUpdate(0.0, SID, "active", "normal", 1, "u1", 1),
                   BackOfficeUpdate(0.2, SID, "connecting", "normal", 2, "u2", 2),
                   BackOfficeUpdate(0.9, SID, final, "normal", 3, "u3", 3)]
        return History("flaky_wifi", [SID], link_events=self.events, backoffice_updates=updates,
                       faults=[FaultWindow("standin_refusing", "whatsapp", 0.1, 0.6)], final_status={SID: final})


def s1_links(second_s: float = 0.6) -> Links:
    """S1 at 0.1 seen from outside: closed at 0.1, refused at 0.3, opened at `second_s`."""
    links = Links()
    links.opened(0.0)
    links.closed(0.1)
    links.refused(0.3)
    links.opened(second_s)
    return links


def test_episodes_and_attempts_come_from_link_events_alone():
    [episode] = observed_episodes(s1_links().events)
    assert episode.start_s == 0.1 and episode.code == 503
    assert [(a.number, a.outcome) for a in episode.attempts] == [(1, "failed"), (2, "open")]
    assert episode.attempts[0].end_s == 0.3


def test_the_observable_variant_turns_a_link_down_into_the_stand_in_refusing():
    s1 = get("flaky_wifi")
    assert not attempts_observable(s1) and attempts_observable(observable(s1))
    variant = observable(s1)
    assert variant.faults == () and variant.actions == (StandinRefusing(1.0, 6.0),)
    assert variant.prediction_schedule().faults == (LinkDown(1.0, 6.0),)
    assert observable(get("terminal_401")) == get("terminal_401")


def test_a_good_s1_seen_from_outside_passes_every_check_black_box():
    results = check_all(s1_links().history(), S1)
    assert [str(r) for r in results if not r.ok] == []
    assert {r.evidence for r in results} == {BLACK_BOX}


def test_a_gateway_without_a_cap_fails_attempts_per_episode_black_box():
    links = Links()
    links.opened(0.0)
    links.closed(0.1)
    for n in range(1, 8):
        links.refused(0.1 + 0.25 * n)
    result = checkers.attempts_per_episode_within_max(links.history(final="connecting"), S1)
    assert not result.ok and result.evidence == BLACK_BOX
    assert "made 7 connects; the policy allows at most 5" in result.violations[0]


def test_one_late_step_fails_alone_and_the_drift_is_a_note():
    late = s1_links(second_s=0.6 + 0.6).history()  # attempt 2 came 0.6 s after its due time
    assert ATTEMPT_TIMES_MATCH_POLICY in [r.name for r in check_all(late, S1) if not r.ok]
    assert RECONNECTS_AS_EXPECTED in [r.name for r in check_all(late, S1) if not r.ok]
    good = checkers.attempt_times_match_policy(s1_links().history(), S1)
    assert any("attempt 2 drifted" in note for note in good.notes)


def test_attempts_hidden_behind_a_disabled_proxy_are_not_judged_without_a_timeline():
    hidden = get("flaky_wifi").scaled(0.1)
    results = {r.name: r for r in check_all(s1_links().history(), hidden)}
    for name in (ATTEMPTS_WITHIN_MAX, ATTEMPT_TIMES_MATCH_POLICY, RECONNECTS_AS_EXPECTED):
        assert results[name].evidence == NOT_JUDGED and results[name].ok
