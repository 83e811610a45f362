"""Which rules of a policy can match a request, found without trying them all: the index behind ``Policy.match``.

A policy with hundreds of rules (an ingress-wide forward-auth for hundreds of hosts) must not pay for every rule on
every request. Rules are filed by what a request must have for them to match:

- by host: each exact pattern in a dict, each wildcard ``*.example.com`` under its suffix ``.example.com``, and the
  rules without a host condition apart. A host is looked up whole, then by its suffixes from the last dot on while
  they lead to a wildcard's suffix: the cost follows the host, not the number of rules;
- within each of those, by the literal text their path regex requires at the start (``^/admin(/|$)`` needs
  ``/admin``, see :func:`literal_prefix`): one dict per prefix length, looked up with the start of the path.

The index only narrows: it hands out *runs*, tuples of rule indices in rule order, that hold every rule that can
match (a superset); the caller tries each run in order and keeps the lowest index whose every condition holds, which
is what trying every rule in order returns. A rule whose prefix cannot be read safely is filed with an empty prefix,
which every path has: it is tried on every request for its host, as before.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

from mfa_gateway.core.hosts import HostSet

Run = tuple[int, ...]

_SPECIAL = frozenset(".^$*+?{}[]\\|()")  # outside verbose mode (an inline flag, refused below)
_ESCAPED_LITERALS = frozenset(string.punctuation)  # ``\.``, ``\/``: the character itself
_MAY_BE_ABSENT = frozenset("?*{")  # quantifiers that allow zero of the literal before them
_VERBOSE = re.compile(r"[aiLmsux]*x")  # after ``(?``: inline flags that turn verbose mode on


def literal_prefix(pattern: str) -> str:
    """Text that every string matched by ``re.match(pattern, ...)`` starts with; ``""`` when none is read.

    ``pattern`` compiles (the policy checked it). Conservative: only a run of plain or escaped-punctuation literals
    at the very start (after ``^`` or ``\\A``) counts, and a literal made optional by a quantifier after it is
    dropped. A pattern that starts with a group (inline flags such as ``(?i)`` included) has none, nor one with a
    ``|`` outside any group, nor one in verbose mode anywhere.
    """
    if not _one_branch(pattern):
        return ""
    size, at = len(pattern), 0
    while True:  # re.match anchors at the start; without an inline flag ``^`` cannot mean a line start
        if pattern.startswith("^", at):
            at += 1
        elif pattern.startswith("\\A", at):
            at += 2
        else:
            break
    literal: list[str] = []
    while at < size:
        char = pattern[at]
        if char == "\\":
            escaped = pattern[at + 1 : at + 2]
            if escaped not in _ESCAPED_LITERALS:
                break  # a class (``\d``), an anchor (``\b``), a code (``\x41``) or a back-reference (``\1``)
            literal.append(escaped)
            at += 2
        elif char in _SPECIAL:
            break
        else:
            literal.append(char)
            at += 1
    if at < size and pattern[at] in _MAY_BE_ABSENT and literal:
        literal.pop()
    return "".join(literal)


def _one_branch(pattern: str) -> bool:
    """No ``|`` outside groups and classes, counted so that a miscount refuses rather than accepts.

    A ``(?#...)`` comment may hold a ``(`` but never a bare ``)``: the count then ends above zero, refused. Only
    verbose mode's comments could hold a ``)`` and hide a ``|``, so verbose mode is refused outright.
    """
    size, at, depth = len(pattern), 0, 0
    while at < size:
        char = pattern[at]
        if char == "\\":
            at += 2
            continue
        if char == "[":
            at = _class_end(pattern, at)
            continue
        if char == "(":
            if pattern.startswith("?", at + 1) and _VERBOSE.match(pattern, at + 2):
                return False  # its ``#`` comments run to the end of the line and may hold ``)`` or ``|``
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return False
        at += 1
    return depth == 0


def _class_end(pattern: str, start: int) -> int:
    """The index after the ``]`` closing the class that opens at ``start`` (a ``]`` first in it is a literal)."""
    size, at = len(pattern), start + 1
    if pattern.startswith("^", at):
        at += 1
    if pattern.startswith("]", at):
        at += 1
    while at < size:
        if pattern[at] == "\\":
            at += 2
        elif pattern[at] == "]":
            return at + 1
        else:
            at += 1
    return size


class PathIndex:
    """Rule indices filed by the literal prefix of their path pattern.

    One dict per prefix length, ascending, keyed by every prefix of that length *and* by the start of each longer
    one (its *stem*, with an empty run): when the start of the path is neither, no longer prefix can match either,
    and the lookups stop. A path that starts like no rule costs one lookup.
    """

    __slots__ = ("_always", "_by_length")

    def __init__(self, entries: Iterable[tuple[int, str]]) -> None:
        """``entries``: (rule index, literal prefix, ``""`` for none), in rule order."""
        entries = list(entries)
        self._always = tuple(index for index, prefix in entries if not prefix)
        prefixes: dict[str, list[int]] = {}
        for index, prefix in entries:
            if prefix:
                prefixes.setdefault(prefix, []).append(index)
        self._by_length: tuple[tuple[int, dict[str, Run]], ...] = tuple(
            (
                length,
                {
                    prefix[:length]: tuple(prefixes.get(prefix[:length], ()))
                    for prefix in prefixes
                    if len(prefix) >= length
                },
            )
            for length in sorted({len(prefix) for prefix in prefixes})
        )

    def collect(self, path: str, runs: list[Run]) -> None:
        """Append the runs of rules whose prefix ``path`` starts with (and those without one)."""
        if self._always:
            runs.append(self._always)
        for length, table in self._by_length:
            run = table.get(path[:length])  # a shorter path is no key: every key has ``length`` characters
            if run is None:
                return
            if run:
                runs.append(run)


_NOT_A_TAIL = PathIndex(())


class RuleIndex:
    """Rule indices filed by host pattern, then by path prefix."""

    __slots__ = ("_exact", "_tails", "hostless", "scoped")

    def __init__(self, rules: Iterable[tuple[HostSet | None, str]]) -> None:
        """``rules``: per rule, in order, its host patterns (``None`` for any host) and its path's literal prefix."""
        hostless: list[tuple[int, str]] = []
        exact: dict[str, list[tuple[int, str]]] = {}
        suffixes: dict[str, list[tuple[int, str]]] = {}
        for index, (hosts, prefix) in enumerate(rules):
            if hosts is None:
                hostless.append((index, prefix))
                continue
            for host in hosts.exact:
                exact.setdefault(host, []).append((index, prefix))
            for suffix in hosts.suffixes:
                suffixes.setdefault(suffix, []).append((index, prefix))
        self.hostless = PathIndex(hostless)
        self.scoped = bool(exact or suffixes)  # whether any rule reads the host
        self._exact = {host: PathIndex(entries) for host, entries in exact.items()}
        # Each wildcard's suffix (``.docs.example.com`` for ``*.docs.example.com``) and, as None, the shorter
        # suffixes on the way to it (``.example.com``, ``.com``), walked from the end of the host.
        self._tails: dict[str, PathIndex | None] = {}
        for suffix in suffixes:
            dot = suffix.rfind(".")
            while dot > 0:
                self._tails.setdefault(suffix[dot:], None)
                dot = suffix.rfind(".", 0, dot)
        self._tails.update((suffix, PathIndex(entries)) for suffix, entries in suffixes.items())

    def runs(self, host: str, path: str) -> list[Run]:
        """The runs for a *normalised* host (:func:`~mfa_gateway.core.hosts.parse_authority`) and path."""
        runs: list[Run] = []
        self.hostless.collect(path, runs)
        bucket = self._exact.get(host)
        if bucket is not None:
            bucket.collect(path, runs)
        tails = self._tails
        if tails:
            # ``*.example.com`` matches a host that ends with ``.example.com`` after at least one character: each
            # suffix of the host that starts at a dot, shortest first, until one is no wildcard's tail.
            dot = host.rfind(".")
            while dot > 0:
                tail = tails.get(host[dot:], _NOT_A_TAIL)
                if tail is _NOT_A_TAIL:
                    break
                if tail is not None:
                    tail.collect(path, runs)
                dot = host.rfind(".", 0, dot)
        return runs
