"""The SQL of an evaluation: the shipped queries in `replay/sql/`, and running them safely.

Each file is a plain query with a header saying which tables it reads (``{{placeholders}}``) and
which ``$parameters`` it takes; `sql(name)` returns the text, `run_sql(con, name, {...}, table=...)`
runs it and returns Arrow. Table names reach the SQL only through `quote_ident` (double quotes,
embedded quotes doubled, control characters refused); values only as DuckDB parameters
(docs/architecture.md, invariant 7).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from logstore.errors import EvaluationError
from logstore.names import quote_ident

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")
_PARAMETER = re.compile(r"\$([A-Za-z_]\w*)")
_COMMENT = re.compile(r"--[^\n]*")
_SQL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def sql_names() -> list[str]:
    """The names of the shipped metric queries (`sql(name)` reads one)."""
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))


def sql(name: str) -> str:
    """The text of the shipped query `replay/sql/<name>.sql` (placeholders not yet filled)."""
    stem = name[:-4] if name.endswith(".sql") else name
    if not _SQL_NAME.match(stem) or not (SQL_DIR / f"{stem}.sql").is_file():
        raise EvaluationError(f"no query named {name!r} in {SQL_DIR}; available: {sql_names()}")
    return (SQL_DIR / f"{stem}.sql").read_text(encoding="utf-8")


def render(text: str, /, **tables: str) -> str:
    """Fill the `{{placeholder}}`s of a query with quoted identifiers (see `quote_ident`)."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in tables:
            raise EvaluationError(f"query needs a table for {{{{{key}}}}}; given: {sorted(tables) or 'none'}")
        return quote_ident(tables[key])

    return _PLACEHOLDER.sub(fill, text)


def placeholders(text: str) -> list[str]:
    """The `{{placeholder}}` names a query needs."""
    return sorted(set(_PLACEHOLDER.findall(text)))


def parameters(text: str) -> list[str]:
    """The `$parameter` names a query uses (outside `--` comments)."""
    return sorted(set(_PARAMETER.findall(_COMMENT.sub("", text))))


def duckdb_relation_type() -> type:
    import duckdb

    return duckdb.DuckDBPyRelation


def _to_arrow(result: Any) -> pa.Table:
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table  # duckdb < 1.4
    return fetch()


def prepare(name_or_text: str, params: dict[str, Any] | None, tables: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """(rendered SQL, the parameters it uses) for a shipped query name or a query text."""
    is_name = _SQL_NAME.match(name_or_text.removesuffix(".sql"))
    text = sql(name_or_text) if is_name else name_or_text
    params = dict(params or {})
    needed = parameters(text)
    missing = [p for p in needed if p not in params]
    if missing:
        raise EvaluationError(f"query needs parameters {missing}; given: {sorted(params)}")
    return render(text, **tables), {k: params[k] for k in needed}


def run_sql(con: Any, name_or_text: str, params: dict[str, Any] | None = None, /, **tables: str):
    """Run a shipped query by name (or any query text) and return a `pyarrow.Table`.

    `params` are DuckDB named parameters (`$cutoff`, `$threshold`, ...); those the query does not
    use are ignored. `tables` fill the query's `{{placeholders}}`, quoted:

        run_sql(con, "outcomes", {"cutoff": cutoff}, outcomes="outcomes")
    """
    rendered, used = prepare(name_or_text, params, tables)
    relation = getattr(con, "sql", None)
    if relation is not None and hasattr(duckdb_relation_type(), "to_arrow_table"):
        return relation(rendered, params=used).to_arrow_table()
    return _to_arrow(con.execute(rendered, used))  # duckdb < 1.4


def scalar(con: Any, query: str, params: dict[str, Any] | None = None, **tables: str):
    """The first row of a query's result (a shipped query by name, or a query text, as `run_sql`)."""
    rendered, used = prepare(query, params, tables)
    return con.execute(rendered, used).fetchall()[0]


class TempTables:
    """Uniquely named TEMP tables for one evaluation, dropped on exit."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.prefix = f"__replay_eval_{uuid.uuid4().hex[:12]}_"
        self.names: list[str] = []

    def name(self, role: str) -> str:
        full = self.prefix + role
        self.names.append(full)
        return full

    def create(self, role: str, query: str, params: dict[str, Any], **tables: str) -> str:
        target = self.name(role)
        rendered, used = prepare(query, params, tables)
        self.con.execute(f"CREATE TEMP TABLE {quote_ident(target)} AS {rendered}", used)
        return target

    def __enter__(self) -> TempTables:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in reversed(self.names):
            try:
                self.con.execute(f"DROP TABLE IF EXISTS temp.{quote_ident(name)}")
            except Exception:  # noqa: BLE001 - cleanup must not hide the real error
                pass
