"""Statements built once: the SQL of every sign-in, compiled once per database, run on the driver without
SQLAlchemy's per-call work (statement construction, cache keys, result rows), which cost several times the
database's own work for these one-row statements (docs/performance.md, "MFA verification and hashing")."""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg  # SQLAlchemy's dialect: it imports the asyncpg driver on use only
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""A statement's named parameters; a list of them runs it once per item (executemany)."""

_SQLITE = sqlite.dialect(paramstyle="named")
_POSTGRESQL = asyncpg.dialect()  # type: ignore[no-untyped-call]  # numbered parameters ($1), as asyncpg takes them


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement built once with named ``bindparam``s: ``statement`` for SQLAlchemy (an in-memory SQLite), its
    SQLite text (named parameters) for ``sqlite3``, its PostgreSQL text and parameter order for asyncpg."""

    statement: Executable
    sqlite: str
    postgresql: str
    positions: tuple[str, ...]

    @classmethod
    def of(cls, statement: Executable, columns: Sequence[str] | None = None) -> Prepared:
        """``columns``: the columns an INSERT sets, which a bare ``insert(table)`` needs to compile."""
        assert isinstance(statement, ClauseElement)
        keys = list(columns) if columns is not None else None
        on_postgresql = statement.compile(dialect=_POSTGRESQL, column_keys=keys)
        assert isinstance(on_postgresql, SQLCompiler)
        positions = tuple(on_postgresql.positiontup or ())
        return cls(statement, str(statement.compile(dialect=_SQLITE, column_keys=keys)), str(on_postgresql), positions)

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """``params`` in the order of the PostgreSQL text's numbered parameters."""
        return [params[name] for name in self.positions]


Write = tuple[Prepared, Params]
"""One statement of a write and its parameters."""


def named_row(columns: Iterable[str], values: Iterable[Any]) -> Any:
    """A row whose values are read as attributes named after its columns, as SQLAlchemy's rows are."""
    return _row_class(tuple(columns))(*values)


@functools.cache
def _row_class(columns: tuple[str, ...]) -> type[tuple[Any, ...]]:
    return collections.namedtuple("Row", columns)
