"""Per-feature input drift: the PSI of every input feature, each later window against the first.

    table = feature_drift(con, tmp, "inputs", "1 day")     # FEATURE_DRIFT_SCHEMA

The features of an input topic, by column type (`DESCRIBE`):

* a numeric column (integers, floats, decimals) is a numeric feature, named as the column;
* a map of VARCHAR to numbers (`features` of model_input) gives a numeric feature per key,
  named ``column.key`` (the `replay.models` spelling); a key a row lacks is a missing value;
* a VARCHAR or BOOLEAN column, or a map of VARCHAR to VARCHAR (`enrichment`), gives categorical
  features, compared by category frequencies, if it has at most `MAX_CATEGORIES` distinct values
  (more is an identifier or free text, e.g. `raw`: skipped);
* `request_id`, `event_time`, `raw`, `swap` and the log's system columns are not features, nor
  are other types (timestamps, lists, structs). Hot-swap tokens (`swap` set) are not requests.

Each request counts once (its earliest row by event time), in the window of its event time
(aligned on UTC, as `requests.sql`). `replay/sql/feature_drift.sql` bins and sums (its header
states the binning, psi.sql's rule); reference = the feature's first window, current = each
later window. At most `MAX_FEATURES` features, the first by name.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from logstore.names import SYSTEM_COLUMNS, quote_ident

from .queries import TempTables, run_sql

__all__ = ["FEATURE_DRIFT_SCHEMA", "MAX_CATEGORIES", "MAX_FEATURES", "feature_drift", "summary_rows"]

MAX_CATEGORIES = 50
MAX_FEATURES = 200
NOT_FEATURES = frozenset({"request_id", "event_time", "raw", "swap", *SYSTEM_COLUMNS})

FEATURE_DRIFT_SCHEMA = pa.schema(
    [
        pa.field("feature", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("window_start", pa.timestamp("us", "UTC")),
        pa.field("reference_window", pa.timestamp("us", "UTC")),
        pa.field("n_reference", pa.int64()),
        pa.field("n_current", pa.int64()),
        pa.field("missing_reference", pa.float64()),
        pa.field("missing_current", pa.float64()),
        pa.field("psi", pa.float64()),
        pa.field("psi_flag", pa.string()),
    ]
)

_NUMERIC = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U(TINY|SMALL|BIG|HUGE)?INT(EGER)?|FLOAT|DOUBLE|REAL|DECIMAL.*)$"
)
_CATEGORICAL = re.compile(r"^(VARCHAR|BOOLEAN)$")
_MAP = re.compile(r"^MAP\(VARCHAR, (.+)\)$")


def _kind(type_name: str) -> str | None:
    if _NUMERIC.match(type_name):
        return "numeric"
    if _CATEGORICAL.match(type_name):
        return "categorical"
    return None


def _columns(con: Any, inputs: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {quote_ident(inputs)}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _stage(con: Any, tmp: TempTables, inputs: str, window: str, columns: dict[str, str]) -> str:
    """A TEMP table of the input rows: one per request, its window and its feature columns."""
    keep = [c for c, t in columns.items() if c not in NOT_FEATURES and (_kind(t) or _MAP.match(t))]
    picked = "".join(f", {quote_ident(c)}" for c in keep)
    tokens = " AND swap IS NULL" if "swap" in columns else ""
    query = (
        "SELECT timezone('UTC', time_bucket(CAST($window AS INTERVAL), "
        f"timezone('UTC', CAST(event_time AS TIMESTAMPTZ)))) AS window_start{picked} "
        f"FROM {{{{inputs}}}} WHERE request_id IS NOT NULL AND event_time IS NOT NULL{tokens} "
        "QUALIFY row_number() OVER (PARTITION BY CAST(request_id AS VARCHAR) ORDER BY event_time) = 1"
    )
    return tmp.create("feature_rows", query, {"window": window}, inputs=inputs)


def _distinct(con: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    return con.execute(sql, params).fetchall()


def _sources(con: Any, base: str, columns: dict[str, str]) -> list[tuple[str, str, str, str | None]]:
    """(feature, kind, column, map key or None) of every feature, sorted by feature name."""
    out: list[tuple[str, str, str, str | None]] = []
    table = quote_ident(base)
    for c, t in columns.items():
        if c in NOT_FEATURES:
            continue
        col = quote_ident(c)
        kind, entry = _kind(t), _MAP.match(t)
        if kind == "numeric":
            out.append((c, kind, c, None))
        elif kind == "categorical":
            (n,) = _distinct(con, f"SELECT count(DISTINCT {col}) FROM {table}", {})[0]
            if n <= MAX_CATEGORIES:
                out.append((c, kind, c, None))
        elif entry and _kind(entry.group(1)):
            value_kind = _kind(entry.group(1))
            counts = _distinct(
                con,
                f"SELECT e.key, count(DISTINCT e.value) FROM (SELECT unnest(map_entries({col})) AS e FROM {table}) "
                "GROUP BY e.key",
                {},
            )
            for key, n in counts:
                if key is not None and (value_kind == "numeric" or n <= MAX_CATEGORIES):
                    out.append((f"{c}.{key}", str(value_kind), c, str(key)))
    return sorted(out)[:MAX_FEATURES]


def _long_form(con: Any, tmp: TempTables, base: str, sources: list[tuple[str, str, str, str | None]]) -> str:
    """The TEMP table feature_drift.sql reads: one row per (request, feature)."""
    target = tmp.name("feature_values")
    con.execute(
        f"CREATE TEMP TABLE {quote_ident(target)} (feature VARCHAR, kind VARCHAR, "
        "window_start TIMESTAMPTZ, num DOUBLE, cat VARCHAR)"
    )
    for feature, kind, column, key in sources:
        col = quote_ident(column)
        value = col if key is None else f"map_extract({col}, $key)[1]"
        num, cat = (f"CAST({value} AS DOUBLE)", "NULL") if kind == "numeric" else ("NULL", f"CAST({value} AS VARCHAR)")
        params: dict[str, Any] = {"feature": feature, "kind": kind}
        if key is not None:
            params["key"] = key
        select = f"SELECT $feature, $kind, window_start, {num}, {cat} FROM {quote_ident(base)}"
        con.execute(f"INSERT INTO {quote_ident(target)} {select}", params)
    return target


def feature_drift(con: Any, tmp: TempTables, inputs: str, window: str, psi_shift: float, psi_alert: float) -> pa.Table:
    """The PSI of every feature of `inputs` per later window vs its first (FEATURE_DRIFT_SCHEMA);
    empty when the topic has no feature or a single window."""
    columns = _columns(con, inputs)
    base = _stage(con, tmp, inputs, window, columns)
    sources = _sources(con, base, columns)
    if not sources:
        return FEATURE_DRIFT_SCHEMA.empty_table()
    values = _long_form(con, tmp, base, sources)
    out = run_sql(con, "feature_drift", {"psi_shift": psi_shift, "psi_alert": psi_alert}, feature_values=values)
    return out.cast(FEATURE_DRIFT_SCHEMA)


def summary_rows(table: pa.Table) -> list[dict[str, Any]]:
    """One row per feature: windows compared, the worst window (PSI, flag, window) and the last."""
    by_feature: dict[str, list[dict[str, Any]]] = {}
    for r in table.to_pylist():
        by_feature.setdefault(r["feature"], []).append(r)
    out = []
    for feature, rows in sorted(by_feature.items()):
        rows.sort(key=lambda r: r["window_start"])
        worst = max(rows, key=lambda r: r["psi"])
        out.append(
            {
                "feature": feature,
                "kind": rows[0]["kind"],
                "reference_window": rows[0]["reference_window"],
                "windows": len(rows),
                "psi_max": worst["psi"],
                "window_max": worst["window_start"],
                "psi_flag": worst["psi_flag"],
                "psi_last": rows[-1]["psi"],
                "missing_last": rows[-1]["missing_current"],
            }
        )
    return out
