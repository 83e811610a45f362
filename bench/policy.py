"""In-process cost of policy matching against the number of rules: what one request pays in ``Policy.match``.

    .venv/bin/python bench/policy.py [--rules 1 100 1000] [--repeat 30] [--seconds 0.005]

Four cases, each measured at every N:

    host, no match     N host-scoped rules (exact ``app{i}.example.com``, wildcard ``*.t{i}.example.com``, exact
                       with a path), a request to a host none of them names
    host, last match   the same rules, a request that only the last rule matches
    path, no match     N path-only rules (``^/area{i}(/|$)``, ``^/files{i}/``, ``^/page{i}$``,
                       ``/api/v{i}/[^/]+/items``), a path none of them matches
    path, last match   the same rules, a path that only the last rule matches

Per-request cost: the best of ``--repeat`` timings of about ``--seconds`` each, in microseconds (this process, not
pinned), and its ratio to the cost at the smallest N. Many short timings: on a shared machine the best of them is
one that nothing else interrupted. ``bench/run.py`` runs it too and puts the table in its report.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass

try:
    from mfa_gateway.core.policy import Action, Policy, Rule
except ImportError:  # pragma: no cover - a clear message instead of a traceback
    sys.exit("bench/policy.py needs the project's virtualenv: run `.venv/bin/python bench/policy.py`")

RULE_COUNTS = (1, 100, 1000)
REPEAT, SECONDS = 30, 0.005
ACTIONS = (Action.BYPASS, Action.IDENTITY, Action.DENY)


@dataclass(frozen=True)
class Request:
    host: str
    path: str
    method: str = "GET"
    client_ip: str | None = "192.0.2.10"


NO_MATCH = Request(host="www.example.org", path="/nothing/here")


def host_rule(i: int, kind: int) -> tuple[Rule, Request]:
    """A host-scoped rule of one of three kinds, and a request that it matches (and no other rule of the set)."""
    action = ACTIONS[i % len(ACTIONS)]
    if kind == 0:
        return Rule(f"host-{i}", action, hosts=(f"app{i}.example.com",)), Request(f"app{i}.example.com:443", "/x")
    if kind == 1:
        return Rule(f"wild-{i}", action, hosts=(f"*.t{i}.example.com",)), Request(f"a.t{i}.example.com", "/x")
    rule = Rule(f"admin-{i}", Action.MFA, hosts=(f"api{i}.example.com",), path=r"^/admin(/|$)", max_age=300.0)
    return rule, Request(f"api{i}.example.com", "/admin/users")


def path_rule(i: int, kind: int) -> tuple[Rule, Request]:
    """A path-only rule of one of four kinds, and a request that it matches (and no other rule of the set)."""
    action = ACTIONS[i % len(ACTIONS)]
    host = "www.example.org"
    if kind == 0:
        return Rule(f"area-{i}", action, path=rf"^/area{i}(/|$)"), Request(host, f"/area{i}/x")
    if kind == 1:
        return Rule(f"files-{i}", action, path=rf"^/files{i}/"), Request(host, f"/files{i}/a.txt")
    if kind == 2:
        return Rule(f"page-{i}", action, path=rf"^/page{i}$"), Request(host, f"/page{i}")
    return Rule(f"api-{i}", action, path=rf"/api/v{i}/[^/]+/items"), Request(host, f"/api/v{i}/shop/items")


def rules_of(make: Callable[[int, int], tuple[Rule, Request]], kinds: int, n: int) -> tuple[list[Rule], Request]:
    """``n`` rules cycling through the kinds so that the last one is always of kind 0 (the late match compares alike
    across N), and the request the last one matches."""
    made = [make(i, (n - 1 - i) % kinds) for i in range(n)]
    return [rule for rule, _ in made], made[-1][1]


@dataclass(frozen=True)
class Row:
    case: str
    costs_us: dict[int, float]  # N -> microseconds per request


def cost_us(policy: Policy, request: Request, expected: str, repeat: int, seconds: float) -> float:
    match = policy.match
    host, path, method, client_ip = request.host, request.path, request.method, request.client_ip
    found = match(host=host, path=path, method=method, client_ip=client_ip).name
    if found != expected:
        raise SystemExit(f"bench/policy.py: the request matched {found!r}, not {expected!r}")
    timer = timeit.Timer(lambda: match(host=host, path=path, method=method, client_ip=client_ip))
    calls, took = timer.autorange()  # at least 0.2 s: calibrates the number of calls per timing
    number = max(1, round(calls * seconds / took))
    return min(timer.repeat(repeat=repeat, number=number)) * 1e6 / number


def measure(counts: tuple[int, ...] = RULE_COUNTS, repeat: int = REPEAT, seconds: float = SECONDS) -> list[Row]:
    cases = ("host, no match", "host, last match", "path, no match", "path, last match")
    rows = {case: Row(case, {}) for case in cases}
    for n in counts:
        for kind, make, kinds in (("host", host_rule, 3), ("path", path_rule, 4)):
            rules, late = rules_of(make, kinds, n)
            policy = Policy(rules, default=Action.MFA)
            rows[f"{kind}, no match"].costs_us[n] = cost_us(policy, NO_MATCH, "default", repeat, seconds)
            rows[f"{kind}, last match"].costs_us[n] = cost_us(policy, late, rules[-1].name, repeat, seconds)
    return list(rows.values())


def report(rows: list[Row], repeat: int, seconds: float) -> list[str]:
    counts = sorted(rows[0].costs_us)
    first, last = counts[0], counts[-1]
    lines = [
        f"Policy matching in-process (`bench/policy.py`; best of {repeat} timings of {seconds:g} s, not pinned), "
        f"microseconds per request and the ratio to N={first:,}:",
        "",
        "| case | " + " | ".join(f"N={n:,}" for n in counts) + f" | {last:,} / {first:,} |",
        "|---|" + "---:|" * (len(counts) + 1),
    ]
    for row in rows:
        costs = " | ".join(f"{row.costs_us[n]:.2f}" for n in counts)
        lines.append(f"| {row.case} | {costs} | {row.costs_us[last] / row.costs_us[first]:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-process cost of Policy.match against the number of rules.")
    parser.add_argument("--rules", type=int, nargs="+", default=list(RULE_COUNTS), help="rule counts (1 100 1000)")
    parser.add_argument("--repeat", type=int, default=REPEAT, help=f"timings per cell, the best is kept ({REPEAT})")
    parser.add_argument("--seconds", type=float, default=SECONDS, help=f"length of one timing ({SECONDS} s)")
    args = parser.parse_args(argv)
    counts = tuple(sorted(set(args.rules)))
    print("\n".join(report(measure(counts, args.repeat, args.seconds), args.repeat, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
