"""The per-request metric sample (``Metrics.observe``) records exactly what prometheus-client's own methods would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mfa_gateway.runtime.metrics import LATENCY_BUCKETS, sampler

SECONDS = (0.0, 0.0004, 0.001, 0.0010001, 0.0025, 0.004, 0.5, 29.9, 30.0, 31.0, 1e9)


def _metrics() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry(auto_describe=True)
    counter = Counter("requests", "Requests.", ["route", "decision"], registry=registry)
    histogram = Histogram("duration_seconds", "Time.", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    return registry, counter, histogram


def _exposed(registry: CollectorRegistry) -> list[str]:
    """The exposition without its ``_created`` timestamps (each metric's creation time)."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_sampler_exposes_what_the_library_methods_would() -> None:
    """Counting and timing through ``sampler`` (straight onto the value cells) and through ``Counter.inc`` and
    ``Histogram.observe`` give the same exposition: every bucket, on and beside each bound, the sum and the count."""
    fast, fast_counter, fast_histogram = _metrics()
    slow, slow_counter, slow_histogram = _metrics()
    record = sampler(fast_counter.labels("forward_auth", "allow"), fast_histogram.labels("forward_auth"))
    for seconds in SECONDS:
        record(seconds)
        slow_counter.labels("forward_auth", "allow").inc()
        slow_histogram.labels("forward_auth").observe(seconds)
    assert _exposed(fast) == _exposed(slow)
    assert f'requests_total{{decision="allow",route="forward_auth"}} {float(len(SECONDS))}' in _exposed(fast)
