"""Turning Arrow rows into text: JSON lines, CSV, aligned tables (text into records: `interchange`).

Shared by the `logstore` and `replay` CLIs so both print the same way. JSON output (jsonl, json,
nested CSV and table cells) uses the forms of `logstore.jsonvalues`: ISO times, base64 bytes,
decimals as strings, maps as objects.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Iterable
from typing import IO, Any

import pyarrow as pa

from .errors import ArgumentError
from .jsonvalues import json_default, json_rows
from .term import style


def write_jsonl(batches: Iterable[pa.RecordBatch], out: IO[str], limit: int | None = None) -> int:
    """Write rows as JSON lines; returns rows written."""
    n = 0
    for batch in batches:
        for row in json_rows(batch):
            if limit is not None and n >= limit:
                return n
            out.write(json.dumps(row, default=json_default, ensure_ascii=False))
            out.write("\n")
            n += 1
        out.flush()
    return n


def _cell(value: Any, width: int = 40) -> str:
    if value is None:
        text = "∅"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=json_default, ensure_ascii=False)
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(table: pa.Table, limit: int | None = None, color: bool = False) -> str:
    """An aligned plain-text table of (the first `limit`) rows; `color` makes the header bold."""
    rows = json_rows(table.slice(0, limit) if limit is not None else table)
    names = table.column_names
    cells = [[_cell(r[c]) for c in names] for r in rows]
    widths = [max([len(n)] + [len(row[i]) for row in cells]) for i, n in enumerate(names)]
    header = style("  ".join(n.ljust(w) for n, w in zip(names, widths)), "bold", color)
    lines = [header, "  ".join("-" * w for w in widths)]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if limit is not None and table.num_rows > limit:
        lines.append(f"... {table.num_rows - limit} more rows")
    lines.append(f"({table.num_rows} rows)")
    return "\n".join(lines)


def write_csv(table: pa.Table, out: IO[str]) -> None:
    """Rows as CSV with a header (nested values as JSON)."""
    w = csv.writer(out)
    w.writerow(table.column_names)
    for row in json_rows(table):
        w.writerow(
            [
                json.dumps(v, default=json_default)
                if isinstance(v, (dict, list))
                else (v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v)
                for v in row.values()
            ]
        )


def write_table(
    table: pa.Table, fmt: str, out: IO[str] | None = None, limit: int | None = None, color: bool = False
) -> None:
    """Print `table` as 'table' (`color`: a bold header), 'csv', 'json' (an array) or 'jsonl'."""
    out = out or sys.stdout
    if fmt == "table":
        out.write(format_table(table, limit, color) + "\n")
    elif fmt == "csv":
        write_csv(table if limit is None else table.slice(0, limit), out)
    elif fmt == "jsonl":
        write_jsonl(table.to_batches(), out, limit)
    elif fmt == "json":
        rows = json_rows(table if limit is None else table.slice(0, limit))
        out.write(json.dumps(rows, default=json_default, ensure_ascii=False, indent=1) + "\n")
    else:
        raise ArgumentError(f"unknown format {fmt!r}: use table, csv, json or jsonl")
