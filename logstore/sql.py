"""DuckDB views over topics.

`attach(log, con)` gives a DuckDB connection one view per topic, named exactly as the topic
(quoted, never pasted: a name is an identifier, ``"`` doubled), holding the topic's user columns and
`_partition`, `_offset`, `_append_time` over all partitions, sealed and active segments alike. The
views read one consistent snapshot of every partition's committed end taken when they are
attached: a writer appending meanwhile never shows up as a partial frame.

DuckDB cannot push a query's filters into a Python data source, so pruning is asked for when
attaching: ``start``/``end`` (offsets or datetimes; datetimes select by append time through the
index, or by event time with ``by="event_time"``) restrict what is read, so the last 10% of a topic
reads about 10% of its bytes. Uncompressed topics are mapped zero-copy.
"""

from __future__ import annotations

from typing import Any, Sequence

from .reader import Bound


def quote_ident(name: str) -> str:
    """`name` as a DuckDB identifier: double-quoted, embedded quotes doubled."""
    if "\x00" in name:
        raise ValueError("identifiers cannot contain NUL")
    return '"' + name.replace('"', '""') + '"'


def attach(log: Any, con: Any = None, *, topics: Sequence[str] | None = None, start: Bound = None,
           end: Bound = None, by: str = "append_time", columns: dict[str, Sequence[str]] | None = None):
    """Create (or replace) one view per topic on `con` (a new in-memory connection by default)."""
    import duckdb

    if con is None:
        con = duckdb.connect()
    names = list(topics) if topics is not None else log.topics()
    for i, name in enumerate(names):
        cols = (columns or {}).get(name)
        table = log.read(name, start, end, by=by, columns=cols)
        internal = f"__logstore_topic_{i}"
        con.register(internal, table)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT * FROM {quote_ident(internal)}")
    return con


def query(log: Any, sql: str, *, params: Any = None, topics: Sequence[str] | None = None, start: Bound = None,
          end: Bound = None, by: str = "append_time"):
    """Run `sql` over the topics' views; returns a pyarrow Table."""
    con = attach(log, None, topics=topics, start=start, end=end, by=by)
    try:
        rel = con.sql(sql, params=params) if params is not None else con.sql(sql)
        if rel is None:  # a statement, not a query
            return None
        return fetch_arrow(rel)
    finally:
        con.close()


def fetch_arrow(result: Any):
    """A DuckDB relation as a pyarrow Table (DuckDB 1.x and 2.x spellings)."""
    fetch = getattr(result, "to_arrow_table", None) or getattr(result, "fetch_arrow_table", None) or result.arrow
    return fetch()
