"""Prometheus metrics: what the gateway counts, and how one scrape sees every worker process.

Labels are small fixed sets (route class, decision, method, result, status class): never a user name, path, address
or secret. Use-case metrics (verifications, lockouts, enrollments) come from the audit stream (``MetricsAudit``), so
they count exactly what the audit log records.

With ``--workers N`` every process writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode, set up by ``web.server`` before any worker starts) and the admin listener merges them; with one
worker the samples stay in memory.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from mfa_gateway.core.model import AuditEvent
from mfa_gateway.ports import AuditSink

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
VERIFY_EVENTS = frozenset(
    {
        "mfa.verify",
        "login.mfa",
        "mfa.enroll.verify",
        "mfa.disable.verify",
        "mfa.backup_codes.verify",
        "mfa.webauthn.remove.verify",
        "device.used",
        "login.passkey",
    }
)
METHODS = frozenset({"otp", "backup", "webauthn", "device", "passkey"})
"""The ``method`` label's values (audit details name the method so): a fixed set, anything else is ``unknown``."""
ENROLL_EVENTS = {
    "mfa.enroll.start": "started",
    "mfa.enroll.activate": "activated",
    "mfa.disable": "disabled",
    "mfa.reset": "reset",
    "mfa.webauthn.register": "webauthn_added",
    "mfa.webauthn.remove": "webauthn_removed",
    "device.trusted": "device_trusted",
    "device.revoked": "device_revoked",
}


def multiprocess() -> bool:
    return MULTIPROCESS_ENV in os.environ


class Metrics:
    """The gateway's own metric objects, in a registry of their own (tests build as many gateways as they like)."""

    def __init__(self) -> None:
        if multiprocess() and values.ValueClass is values.MutexValue:
            raise RuntimeError(f"prometheus_client was imported before {MULTIPROCESS_ENV} was set")
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mfa_gateway_requests",
            "Requests by route class (proxy, forward_auth, gateway) and decision.",
            ["route", "decision"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mfa_gateway_request_duration_seconds",
            "Time from request to response headers (proxy: including the upstream), by route class.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.verifications = Counter(
            "mfa_gateway_mfa_verifications",
            "Second-factor checks by method (otp, backup, webauthn, device: a remembered device standing in, passkey: "
            "a passkey sign-in, both factors) and "
            "result (success, failure, locked_out, busy).",
            ["method", "result"],
            registry=self.registry,
        )
        self.lockouts = Counter(
            "mfa_gateway_lockout_refusals",
            "Code or password attempts refused because the user or address is locked out.",
            ["kind"],
            registry=self.registry,
        )
        self.enrollments = Counter(
            "mfa_gateway_enrollments",
            "Enrollment changes (started, activated, disabled, reset, webauthn_added, webauthn_removed, "
            "device_trusted, device_revoked).",
            ["change"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "mfa_gateway_upstream_errors",
            "Requests the app could not answer: unavailable (502) or timeout (504).",
            ["kind"],
            registry=self.registry,
        )
        self._route_children: dict[tuple[str, str], Callable[[float], None]] = {}

    def observe(self, route: str, decision: str, seconds: float) -> None:
        """One request: counted by decision, timed by route class (label children resolved once per pair)."""
        record = self._route_children.get((route, decision))
        if record is None:
            record = self._route_children[(route, decision)] = sampler(
                self.requests.labels(route, decision), self.latency.labels(route)
            )
        record(seconds)

    def exposition(self, *scrape_time: Collector) -> bytes:
        """The text format for one scrape: every worker's samples, plus values gathered at scrape time."""
        if multiprocess():
            merged = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]  # prometheus-client has no annotation
            body = generate_latest(merged)
        else:
            body = generate_latest(self.registry)
        extra = CollectorRegistry(auto_describe=False)
        for collector in scrape_time:
            extra.register(collector)
        return body + generate_latest(extra)


def sampler(counter: Counter, histogram: Histogram) -> Callable[[float], None]:
    """``counter.inc()`` and ``histogram.observe(seconds)`` for label children, as one call per request.

    It increments the children's value cells directly, as prometheus-client's own methods do once they have
    checked that they are children (these are) and looked for the bucket: half the cost per request, whatever the
    value class (in memory, or the files of multiprocess mode). ``tests/unit/runtime/test_metrics.py`` pins that
    it exposes exactly what those methods would; a prometheus-client without these cells gets the methods."""
    try:
        count, total = counter._value, histogram._sum  # see the docstring
        buckets, bounds = histogram._buckets, tuple(histogram._upper_bounds)
    except AttributeError:  # pragma: no cover - another prometheus-client's insides

        def record(seconds: float) -> None:
            counter.inc()
            histogram.observe(seconds)

        return record

    def record_cells(seconds: float) -> None:
        count.inc(1)
        total.inc(seconds)
        buckets[bisect_left(bounds, seconds)].inc(1)  # the first bucket whose upper bound is >= seconds

    return record_cells


class Gauges(Collector):
    """Gauges measured at scrape time by the serving process (dependency health, pending challenges, secrets)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


class MetricsAudit(AuditSink):
    """Counts use-case outcomes from the audit stream: one definition of what happened, for the log and metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def emit(self, event: AuditEvent) -> None:
        detail = dict(event.detail or {})
        if event.event in VERIFY_EVENTS:
            method = detail.get("method", "unknown")
            self._metrics.verifications.labels(method if method in METHODS else "unknown", event.result).inc()
            if event.result == "locked_out":
                self._metrics.lockouts.labels("code").inc()
        elif event.event == "login.password" and event.result == "locked_out":
            self._metrics.lockouts.labels("password").inc()
        elif event.event in ENROLL_EVENTS and event.result == "success":
            self._metrics.enrollments.labels(ENROLL_EVENTS[event.event]).inc()
