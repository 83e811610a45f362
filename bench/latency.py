"""Latency at fixed rates with ``h2load --h1 --rps`` (BENCHMARK.md: U1 at 25/50/80 % of the minimal proxy's
capacity), free of the coordinated omission of a closed-loop tool such as wrk, with the clients out of phase
(``h2load_argv`` says why).

``h2load``'s ``--rps`` is a rate per client, so a run of ``rate`` requests per second uses ``clients_for(rate)``
clients of ``rate / clients`` each: few enough requests per connection that an HTTP/1.1 connection (one request at
a time) is free again long before its next request is due, even with U1's 10 ms. h2load prints min, max, mean and
standard deviation only; the percentiles come from its ``--log-file`` (one line per request: start time in
microseconds since the epoch, status, microseconds until the end of the response), computed here
(``parse_log``, ``percentile``, ``figures``).

Used by bench/run.py (U1 cells and S7's soak); the pure functions are unit-tested in tests/unit/bench/.
"""

from __future__ import annotations

import math
import random
import re
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import LOAD_CPU

PER_CLIENT_RATE = 20.0
"""Most requests per second one client sends: one every 50 ms, five times U1's 10 ms."""


class H2loadError(Exception):
    """h2load failed or measured nothing; the message says why."""


def clients_for(rate: float, per_client: float = PER_CLIENT_RATE, minimum: int = 8) -> int:
    """Clients for ``rate`` requests per second, none sending more than ``per_client`` a second."""
    return max(minimum, math.ceil(rate / per_client))


def h2load_argv(
    urls: Path,
    *,
    clients: int,
    rate: float,
    seconds: float,
    warmup: float,
    log: Path,
    headers: dict[str, str],
    pin: bool,
) -> list[str]:
    """One fixed-rate run over HTTP/1.1: ``clients`` keep-alive connections sending ``rate`` requests per second
    in all for ``warmup`` + ``seconds`` (``measured`` keeps the part after ``warmup``), cycling through ``urls``.

    ``--rps`` is a timer per client, and clients started together all fire on the same tick: the "fixed rate" would
    be a burst of ``clients`` requests once per interval (127 requests within 2 ms every 50 ms, measured), whose
    queue is most of the latency measured. So the clients connect as many per millisecond as the run sends requests
    per millisecond (``connect_pace``): spread over one interval, they send out of phase. h2load's ``-r`` excludes
    ``-D``, hence a request count (``-n``) instead of a duration."""
    connections, period_ms = connect_pace(rate, clients)
    argv = [
        "h2load",
        "--h1",
        "-t1",
        f"-c{clients}",
        f"-r{connections}",
        f"--rate-period={period_ms}ms",
        f"--rps={rate / clients:.6f}",
        f"-n{max(clients, math.ceil(rate * (warmup + seconds)))}",
        f"--log-file={log}",
        f"-i{urls}",
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    return ["taskset", "-c", LOAD_CPU, *argv] if pin else argv


def connect_pace(rate: float, clients: int) -> tuple[int, int]:
    """h2load's ``-r`` and ``--rate-period`` (whole milliseconds): connections per period about as fast as the run
    sends requests (within 10 %), so the clients connect over about one request interval and send out of phase; the
    shortest period that comes that close, so each batch connecting (and then sending) together stays small."""
    per_ms = rate / 1000
    if per_ms >= clients:
        return clients, 1  # all within a millisecond: the interval is shorter still
    for period in range(1, 1001):
        count = round(per_ms * period)
        if 1 <= count <= clients and abs(count / period - per_ms) <= 0.1 * per_ms:
            return count, period
    return 1, 1000  # below one request a second: one client a second


@dataclass(frozen=True)
class Row:
    start_us: int
    status: int
    latency_us: int


def parse_log(text: str) -> list[Row]:
    """h2load's ``--log-file``: tab-separated start time (us since the epoch), status, latency (us) per request;
    further columns (later versions may add some) are ignored. A status of -1 is a request that failed."""
    rows = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or not parts[0].strip():
            continue
        rows.append(Row(int(parts[0]), int(parts[1]), int(parts[2])))
    return rows


def measured(rows: list[Row], warmup: float, seconds: float) -> list[Row]:
    """The requests started within ``seconds`` after the first ``warmup`` seconds of the run."""
    if not rows:
        return []
    begins = min(row.start_us for row in rows) + warmup * 1e6
    return [row for row in rows if begins <= row.start_us < begins + seconds * 1e6]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100) of values sorted ascending: the smallest value with at least q %
    of the values at or below it."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


SUMMARY = re.compile(
    r"requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, (?P<succeeded>\d+) succeeded, "
    r"(?P<failed>\d+) failed, (?P<errored>\d+) errored, (?P<timeout>\d+) timeout"
)
STATUSES = re.compile(r"status codes: (?P<s2xx>\d+) 2xx, (?P<s3xx>\d+) 3xx, (?P<s4xx>\d+) 4xx, (?P<s5xx>\d+) 5xx")


def parse_summary(text: str) -> dict[str, int]:
    """The request counts of h2load's summary (``total``, ``succeeded``, ``failed``, ``errored``, ``timeout``,
    ``s2xx`` ... ``s5xx``)."""
    found = SUMMARY.search(text)
    statuses = STATUSES.search(text)
    if found is None or statuses is None:
        raise H2loadError(f"h2load printed no summary: {text[-500:]!r}")
    return {name: int(value) for name, value in {**found.groupdict(), **statuses.groupdict()}.items()}


@dataclass
class Figures:
    """One fixed-rate run: what was asked, what was done, and the latency of the requests logged."""

    rate: float  # asked, requests per second
    achieved: float  # logged requests per second of measured time
    requests: int
    errors: int  # requests that failed (errored, timed out) or were answered other than 2xx
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def figures(rows: list[Row], summary: dict[str, int], rate: float, seconds: float) -> Figures:
    """The latency percentiles of the measured requests, and errors from both the log and the summary (which
    counts the warm-up too)."""
    if not rows:
        raise H2loadError("h2load logged no request")
    ordered = sorted(row.latency_us / 1000 for row in rows)
    bad_rows = sum(1 for row in rows if not 200 <= row.status < 300)
    not_2xx = summary["s3xx"] + summary["s4xx"] + summary["s5xx"]
    errors = max(bad_rows, summary["failed"], not_2xx)  # the counts overlap (errored and timed out are failed too)
    return Figures(
        rate=rate,
        achieved=len(rows) / seconds,
        requests=len(rows),
        errors=errors,
        p50_ms=percentile(ordered, 50),
        p90_ms=percentile(ordered, 90),
        p99_ms=percentile(ordered, 99),
        max_ms=ordered[-1],
    )


def url_file(directory: Path, base: str, paths: Sequence[str]) -> Path:
    """The URLs an h2load run cycles through (``-i``), written once per base."""
    path = directory / ("urls-" + re.sub(r"[^0-9A-Za-z]+", "-", base).strip("-"))
    path.write_text("".join(f"{base}{item}\n" for item in paths))
    return path


@dataclass
class Started:
    """An h2load run under way (``finish`` waits for it)."""

    popen: subprocess.Popen[str]
    scratch: tempfile.TemporaryDirectory[str]
    log: Path
    rate: float
    seconds: float
    warmup: float


def start(
    urls: Path,
    *,
    rate: float,
    seconds: float,
    warmup: float,
    headers: dict[str, str],
    pin: bool,
    clients: int | None = None,
    workdir: Path | None = None,
) -> Started:
    """Starts ``rate`` requests per second for ``warmup`` + ``seconds``."""
    scratch = tempfile.TemporaryDirectory(prefix="h2load-", dir=workdir)
    log = Path(scratch.name) / "requests.tsv"
    argv = h2load_argv(
        urls,
        clients=clients or clients_for(rate),
        rate=rate,
        seconds=seconds,
        warmup=warmup,
        log=log,
        headers=headers,
        pin=pin,
    )
    popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Started(popen, scratch, log, rate, seconds, warmup)


def finish(started: Started) -> Figures:
    """Waits for the run; the figures of its measured part."""
    limit = started.seconds + started.warmup + 120
    try:
        out, err = started.popen.communicate(timeout=limit)
        if started.popen.returncode != 0:
            raise H2loadError(f"h2load exited with {started.popen.returncode}: {(err or out)[-500:]}")
        rows = parse_log(started.log.read_text()) if started.log.exists() else []
        kept = measured(rows, started.warmup, started.seconds)
        return figures(kept, parse_summary(out), started.rate, started.seconds)
    except subprocess.TimeoutExpired as exc:
        raise H2loadError(f"h2load did not finish within {limit:.0f} s") from exc
    finally:
        if started.popen.poll() is None:  # interrupted or late: h2load is ours, stop it too
            started.popen.kill()
            started.popen.wait()
        started.scratch.cleanup()


def run(urls: Path, **options: Any) -> Figures:
    """``start`` and ``finish``: a fixed-rate run, its figures."""
    return finish(start(urls, **options))


# -- U1: the same fixed rates through each scenario ----------------------------------------------------------------


@dataclass
class FixedRates:
    """Fixed-rate runs per (scenario, load in % of ``capacity``), every repetition's figures."""

    capacity: float  # req/s the rates are taken from
    loads: tuple[int, ...]
    runs: dict[tuple[str, int], list[Figures]] = field(default_factory=dict)

    def rate(self, load: int) -> float:
        return self.capacity * load / 100

    def median(self, scenario: str, load: int, name: str) -> float | None:
        figures = self.runs.get((scenario, load))
        return float(statistics.median(getattr(f, name) for f in figures)) if figures else None

    def added(self, scenario: str, load: int, name: str, base: str = "S0") -> float | None:
        """The scenario's median ``name`` (p50_ms, p99_ms) minus the base's, at the same rate."""
        value, reference = self.median(scenario, load, name), self.median(base, load, name)
        return None if value is None or reference is None else value - reference


def fixed_rates(
    targets: dict[str, tuple[Path, dict[str, str]]],
    *,
    capacity: float,
    loads: Sequence[int],
    repetitions: int,
    seconds: float,
    warmup: float,
    pin: bool,
    workdir: Path,
    order: random.Random,
    progress: Callable[[str, int, Figures], None],
) -> FixedRates:
    """Every (scenario, load) once per repetition, in an order shuffled per repetition: ``targets`` maps a
    scenario to its URL file and headers."""
    result = FixedRates(capacity, tuple(loads))
    cells = [(name, load) for name in targets for load in loads]
    for _ in range(repetitions):
        order.shuffle(cells)
        for name, load in cells:
            urls, headers = targets[name]
            figures = run(
                urls, rate=result.rate(load), seconds=seconds, warmup=warmup, headers=headers, pin=pin, workdir=workdir
            )
            result.runs.setdefault((name, load), []).append(figures)
            progress(name, load, figures)
    return result


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else f"{value:{spec}}"


def report_lines(result: FixedRates, what: dict[str, str]) -> list[str]:
    """The U1 table: per scenario and load, medians over the repetitions, and the latency added over S0."""
    lines = [
        "| scenario | load | rate req/s | done req/s | p50 ms | p90 ms | p99 ms | max ms | errors | +p50 ms vs S0 "
        "| +p99 ms vs S0 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in what:
        for load in result.loads:
            figures = result.runs.get((name, load))
            if not figures:
                continue
            added50 = result.added(name, load, "p50_ms") if name != "S0" else None
            added99 = result.added(name, load, "p99_ms") if name != "S0" else None
            lines.append(
                f"| {name} ({what[name]}) | {load} % | {result.rate(load):,.0f} "
                f"| {_fmt(result.median(name, load, 'achieved'), ',.0f')} "
                f"| {_fmt(result.median(name, load, 'p50_ms'))} | {_fmt(result.median(name, load, 'p90_ms'))} "
                f"| {_fmt(result.median(name, load, 'p99_ms'))} | {_fmt(result.median(name, load, 'max_ms'))} "
                f"| {sum(f.errors for f in figures)} | {_fmt(added50, '+.2f') if name != 'S0' else '-'} "
                f"| {_fmt(added99, '+.2f') if name != 'S0' else '-'} |"
            )
    return lines
