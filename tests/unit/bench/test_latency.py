"""bench/latency.py: h2load's per-request log and summary read right, percentiles by nearest rank, and the
command a fixed-rate run starts."""

from __future__ import annotations

import math
from pathlib import Path

import latency
import pytest

SUMMARY = """
finished in 4.01s, 9.33 req/s, 122.76KB/s
requests: 28 total, 32 started, 28 done, 26 succeeded, 2 failed, 1 errored, 1 timeout
status codes: 25 2xx, 1 3xx, 0 4xx, 0 5xx
traffic: 368.29KB (377124) total, 4.35KB (4452) headers (space savings 0.00%), 561.95KB (575432) data
"""


def test_the_log_gives_start_status_and_latency_per_request() -> None:
    text = "1796653383836049\t200\t12485\n1796653383836051\t-1\t5\textra\n\n"
    assert latency.parse_log(text) == [
        latency.Row(1796653383836049, 200, 12485),
        latency.Row(1796653383836051, -1, 5),
    ]


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (1, 1.0), (50, 50.0), (50.5, 51.0), (90, 90.0), (99, 99.0), (99.9, 100.0), (100, 100.0)],
)
def test_percentiles_are_nearest_rank(q: float, expected: float) -> None:
    assert latency.percentile([float(n) for n in range(1, 101)], q) == expected


def test_a_percentile_of_one_value_is_that_value_and_of_none_an_error() -> None:
    assert latency.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        latency.percentile([], 50)


def test_the_summary_counts_are_read() -> None:
    counts = latency.parse_summary(SUMMARY)
    assert counts["total"] == 28
    assert (counts["succeeded"], counts["failed"], counts["errored"], counts["timeout"]) == (26, 2, 1, 1)
    assert (counts["s2xx"], counts["s3xx"], counts["s4xx"], counts["s5xx"]) == (25, 1, 0, 0)


def test_a_run_without_a_summary_is_an_error() -> None:
    with pytest.raises(latency.H2loadError, match="no summary"):
        latency.parse_summary("h2load: connection refused")


def test_figures_take_percentiles_in_ms_and_count_every_kind_of_error() -> None:
    rows = [latency.Row(n, 200, (n + 1) * 1000) for n in range(100)]
    rows[0] = latency.Row(0, 302, 500)
    clean = {"failed": 0, "s3xx": 0, "s4xx": 0, "s5xx": 0}
    got = latency.figures(rows, clean, rate=50.0, seconds=2)
    assert (got.requests, got.achieved) == (100, 50.0)
    assert (got.p50_ms, got.p90_ms, got.p99_ms, got.max_ms) == (50.0, 90.0, 99.0, 100.0)
    assert got.errors == 1  # the 302 in the log, though the summary saw none
    failed = latency.figures(rows, {**clean, "failed": 3}, rate=50.0, seconds=2)
    assert failed.errors == 3


def test_figures_of_no_request_are_an_error() -> None:
    with pytest.raises(latency.H2loadError, match="no request"):
        latency.figures([], {"failed": 0, "s3xx": 0, "s4xx": 0, "s5xx": 0}, rate=1.0, seconds=1)


def test_clients_keep_each_below_the_per_client_rate() -> None:
    assert latency.clients_for(10) == 8  # the minimum
    assert latency.clients_for(1000) == 50
    assert latency.clients_for(1001) == 51
    assert 1001 / latency.clients_for(1001) <= latency.PER_CLIENT_RATE


def test_the_command_is_an_http1_run_at_a_rate_per_client_with_clients_out_of_phase(tmp_path: Path) -> None:
    """40 clients of 62.5 req/s, connecting 5 every 2 ms (as many as the 2,500 req/s send), for 8 s of requests."""
    argv = latency.h2load_argv(
        tmp_path / "urls",
        clients=40,
        rate=2500.0,
        seconds=7,
        warmup=1,
        log=tmp_path / "log",
        headers={"Cookie": "a=b"},
        pin=False,
    )
    assert argv[:3] == ["h2load", "--h1", "-t1"]
    assert "-c40" in argv and "--rps=62.500000" in argv and "-n20000" in argv
    assert "-r5" in argv and "--rate-period=2ms" in argv and not any(arg.startswith("-D") for arg in argv)
    assert f"--log-file={tmp_path / 'log'}" in argv and f"-i{tmp_path / 'urls'}" in argv
    assert argv[-2:] == ["-H", "Cookie: a=b"]
    pinned = latency.h2load_argv(
        tmp_path / "urls", clients=8, rate=8.0, seconds=1, warmup=1, log=tmp_path / "log", headers={}, pin=True
    )
    assert pinned[:4] == ["taskset", "-c", "1", "h2load"]
    assert "-r1" in pinned and "-n16" in pinned  # one client every ~125 ms: 8 req/s in all


@pytest.mark.parametrize("rate", [8.0, 100.0, 968.0, 1270.0, 1936.0, 2540.0, 3169.0, 4064.0, 4411.0, 30000.0])
@pytest.mark.parametrize("clients", [None, 1000])
def test_the_clients_connect_over_one_request_interval_in_small_batches(rate: float, clients: int | None) -> None:
    """h2load connects a batch at once every period, the first at 0: the batches span one request interval (within
    15 %), so the clients' requests are spread over it, and no batch is larger than five clients or a tenth more
    than a millisecond's requests, so the clients that send together are few; as U1 (one client per 20 req/s) and S7
    (1,000) choose."""
    count = clients or latency.clients_for(rate)
    batch, period_ms = latency.connect_pace(rate, count)
    batches = math.ceil(count / batch)
    interval_ms = 1000 * count / rate
    assert 0.85 * interval_ms <= batches * period_ms <= 1.15 * interval_ms
    assert 1 <= batch <= max(5, math.ceil(1.1 * rate / 1000))


def test_clients_fewer_than_a_milliseconds_requests_connect_at_once() -> None:
    assert latency.connect_pace(2540.0, 2) == (2, 1)


def test_only_the_requests_after_the_warmup_are_measured() -> None:
    """From the first request's start: the warm-up's requests and those after the measured seconds are left out."""
    first = 1_700_000_000_000_000
    rows = [
        latency.Row(first + offset, 200, 100) for offset in (0, 999_999, 1_000_000, 2_500_000, 7_999_999, 8_000_000)
    ]
    assert [row.start_us - first for row in latency.measured(rows, 1, 7)] == [1_000_000, 2_500_000, 7_999_999]
    assert latency.measured([], 1, 7) == []


def test_added_latency_is_the_scenarios_median_minus_s0s_at_the_same_load() -> None:
    def at(p50: float, p99: float) -> latency.Figures:
        return latency.Figures(100.0, 100.0, 100, 0, p50, p50, p99, p99)

    result = latency.FixedRates(1000.0, (50,))
    result.runs[("S0", 50)] = [at(10.0, 12.0), at(10.4, 13.0), at(10.2, 30.0)]
    result.runs[("S3", 50)] = [at(11.0, 15.0), at(11.5, 16.0), at(10.9, 40.0)]
    assert result.rate(50) == 500.0
    assert result.added("S3", 50, "p50_ms") == pytest.approx(0.8)
    assert result.added("S3", 50, "p99_ms") == pytest.approx(3.0)
    assert result.added("S2", 50, "p50_ms") is None
