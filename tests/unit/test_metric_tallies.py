"""The metrics a storm moves for every session are plain numbers (`Tally`, `PlainHistogram`),
not prometheus-client's locked children; a scrape must read what prometheus-client's own
Counter, Gauge and Histogram would show for the same bumps, name for name, sample for sample."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.core import Status
from service.metrics import BACKOFF_BUCKETS_S, LATENESS_BUCKETS_S, ServiceMetrics

TALLIED = ("reconnect_lab_reconnect_attempts", "reconnect_lab_sessions", "reconnect_lab_session_closes",
           "reconnect_lab_backoff_seconds", "reconnect_lab_reconnect_lateness_seconds")


def samples(text: bytes) -> dict[tuple, float]:
    """Every sample of the tallied metrics, `_created` ones aside (their times differ)."""
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name.startswith(TALLIED) and not sample.name.endswith("_created"):
                value = "nan" if math.isnan(sample.value) else sample.value
                found[(sample.name, tuple(sorted(sample.labels.items())))] = value
    return found


def created(text: bytes) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text.decode()) for sample in family.samples
            if sample.name.startswith(TALLIED) and sample.name.endswith("_created")}


class Reference:
    """The same metrics as prometheus-client's own objects (what the service exported before)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.attempts = Counter("reconnect_lab_reconnect_attempts", "d", ["outcome"], registry=r)
        self.sessions = Gauge("reconnect_lab_sessions", "d", ["status"], registry=r)
        self.backoff = Histogram("reconnect_lab_backoff_seconds", "d", buckets=BACKOFF_BUCKETS_S, registry=r)
        self.lateness = Histogram("reconnect_lab_reconnect_lateness_seconds", "d", buckets=LATENESS_BUCKETS_S,
                                  registry=r)
        self.closes = Counter("reconnect_lab_session_closes", "d", ["code"], registry=r)
        for status in Status:
            self.sessions.labels(status=status.value).set(0)
        for outcome in ("opened", "failed"):
            self.attempts.labels(outcome=outcome)


statuses = st.sampled_from([None, *Status])
seconds = st.one_of(st.sampled_from([*BACKOFF_BUCKETS_S, *LATENESS_BUCKETS_S, 0.0, -1.0, math.inf, math.nan]),
                    st.floats(min_value=0, max_value=5000))
bumps = st.one_of(
    st.tuples(st.just("status"), statuses, statuses),
    st.tuples(st.just("attempt"), st.sampled_from(["opened", "failed"])),
    st.tuples(st.just("close"), st.sampled_from([503, 1000, "503", None, "keepalive_timeout", 428])),
    st.tuples(st.just("backoff"), seconds),
    st.tuples(st.just("lateness"), seconds),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(bumps, max_size=40))
def test_a_scrape_reads_what_prometheus_clients_own_metrics_would(moves) -> None:
    metrics, reference = ServiceMetrics(), Reference()
    for kind, *args in moves:
        if kind == "status":
            metrics.status_changed(*args)
            old, new = args
            if old is not new:
                if old is not None:
                    reference.sessions.labels(status=old.value).dec()
                if new is not None:
                    reference.sessions.labels(status=new.value).inc()
        elif kind == "attempt":
            metrics.count_attempt(args[0])
            reference.attempts.labels(outcome=args[0]).inc()
        elif kind == "close":
            metrics.count_close(args[0])
            reference.closes.labels(code=str(args[0])).inc()
        else:
            getattr(metrics, kind).observe(args[0])
            getattr(reference, kind).observe(args[0])
    text, expected = metrics.render(), generate_latest(reference.registry)
    assert samples(text) == samples(expected)
    assert created(text) == created(expected)


def test_an_unknown_attempt_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="'opened' or 'failed'"):
        ServiceMetrics().count_attempt("maybe")
