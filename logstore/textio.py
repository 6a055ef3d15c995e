"""Turning Arrow rows into text (JSON lines, CSV, aligned tables) and text into records.

Shared by the `logstore` and `replay` CLIs so both print the same way.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import sys
import uuid
from collections.abc import Iterable
from typing import IO, Any

import pyarrow as pa

import schemas.avrofile

from .errors import ArgumentError, ArgumentTypeError


def json_default(value: Any) -> Any:
    """JSON for values the json module does not know: ISO times, base64 bytes, decimals as strings."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise ArgumentTypeError(f"cannot write {type(value).__name__} as JSON")


def write_jsonl(batches: Iterable[pa.RecordBatch], out: IO[str], limit: int | None = None) -> int:
    """Write rows as JSON lines; returns rows written."""
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
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


def format_table(table: pa.Table, limit: int | None = None) -> str:
    """An aligned plain-text table of (the first `limit`) rows."""
    rows = table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()
    names = table.column_names
    cells = [[_cell(r[c]) for c in names] for r in rows]
    widths = [max([len(n)] + [len(row[i]) for row in cells]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths)), "  ".join("-" * w for w in widths)]
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
    for row in table.to_pylist():
        w.writerow(
            [
                json.dumps(v, default=json_default)
                if isinstance(v, (dict, list))
                else (v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v)
                for v in row.values()
            ]
        )


def write_table(table: pa.Table, fmt: str, out: IO[str] | None = None, limit: int | None = None) -> None:
    """Print `table` as 'table', 'csv', 'json' (an array) or 'jsonl'."""
    out = out or sys.stdout
    if fmt == "table":
        out.write(format_table(table, limit) + "\n")
    elif fmt == "csv":
        write_csv(table if limit is None else table.slice(0, limit), out)
    elif fmt == "jsonl":
        write_jsonl(table.to_batches(), out, limit)
    elif fmt == "json":
        rows = (table if limit is None else table.slice(0, limit)).to_pylist()
        out.write(json.dumps(rows, default=json_default, ensure_ascii=False, indent=1) + "\n")
    else:
        raise ArgumentError(f"unknown format {fmt!r}: use table, csv, json or jsonl")


def parse_json_records(text_lines: Iterable[str], schema: pa.Schema) -> list[dict[str, Any]]:
    """Parse JSON lines into dicts, turning ISO strings into datetimes for timestamp fields."""
    stamp = {f.name for f in schema if pa.types.is_timestamp(f.type)}
    dates = {f.name for f in schema if pa.types.is_date(f.type)}
    out = []
    for i, line in enumerate(text_lines):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise ArgumentError(f"line {i + 1}: not valid JSON ({e})") from e
        if not isinstance(rec, dict):
            raise ArgumentError(f"line {i + 1}: expected a JSON object, found {type(rec).__name__}")
        for k in stamp & rec.keys():
            v = rec[k]
            if isinstance(v, str):
                try:
                    t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
                except ValueError as e:
                    raise ArgumentError(f"line {i + 1}: field {k!r}: {v!r} is not an ISO-8601 time") from e
                rec[k] = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
        for k in dates & rec.keys():
            if isinstance(rec[k], str):
                rec[k] = dt.date.fromisoformat(rec[k])
        out.append(rec)
    return out


def read_input(path: str, fmt: str | None, schema: pa.Schema) -> pa.Table | list[dict[str, Any]]:
    """Read records from a file (or '-' for stdin) in jsonl, csv, parquet or avro."""
    if fmt is None:
        lower = path.lower()
        fmt = next(
            (
                f
                for ext, f in (
                    (".parquet", "parquet"),
                    (".avro", "avro"),
                    (".csv", "csv"),
                    (".jsonl", "jsonl"),
                    (".json", "jsonl"),
                    (".ndjson", "jsonl"),
                )
                if lower.endswith(ext)
            ),
            "jsonl",
        )
    if fmt == "jsonl":
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
        try:
            return parse_json_records(stream, schema)
        finally:
            if stream is not sys.stdin:
                stream.close()
    if fmt == "csv":
        import pyarrow.csv as pcsv

        types = {f.name: f.type for f in schema if not pa.types.is_nested(f.type)}
        data = sys.stdin.buffer.read() if path == "-" else None
        return pcsv.read_csv(
            io.BytesIO(data) if data is not None else path, convert_options=pcsv.ConvertOptions(column_types=types)
        )
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(sys.stdin.buffer if path == "-" else path)
    if fmt == "avro":
        if path == "-":
            raise ArgumentError("read Avro from a file, not stdin")
        return schemas.avrofile.read(path)[1]
    raise ArgumentError(f"unknown input format {fmt!r}: use jsonl, csv, parquet or avro")
