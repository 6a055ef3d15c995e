"""Moving topics in and out of the log as files other tools read: Avro, Parquet, JSON lines.

Built on the public `Log` API only (`read`, `schema`, `schemas`, `create_topic`, `writer`).

- ``avro``: an Avro object container file (zstandard codec) whose writer schema is the topic's
  latest schema; records are resolved to it. Only the topic's fields are written (no system
  columns), so any Avro reader, and `import_avro`, sees exactly what producers wrote.
- ``parquet`` and ``jsonl``: the table `Log.read` returns, system columns (`_partition`,
  `_offset`, `_append_time`) included, for analysis elsewhere. JSON lines write timestamps as
  ISO 8601, bytes as base64, decimals as strings and maps as objects.

Every file appears whole or not at all (written to a temp name, fsynced, renamed).

`import_avro` appends an Avro file to a topic (created from the file's schema if missing). If
the file's schema is one of the topic's versions, frames are written under that version; else
if the topic's latest schema can read it, records are resolved to the latest; else the file's
schema is registered as a new version under the topic's compatibility mode (refused with every
reason when incompatible). Each batch is validated like any append.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from schemas import avrofile, resolve
from schemas.avro import expand, full_form
from schemas.avrofile import value_converter
from schemas.compat import reader_writer_issues

from .errors import LogstoreError
from .files import replacing
from .names import SYSTEM_COLUMNS
from .textio import json_default

if TYPE_CHECKING:
    from .log import Log

FORMATS = ("avro", "parquet", "jsonl")


def export_topic(
    log: Log,
    topic: str,
    path: str | os.PathLike[str],
    format: str = "avro",  # noqa: A002
    start: Any = None,
    end: Any = None,
) -> int:
    """Write records [start, end) of `topic` to `path` as `format`; returns the number of records."""
    if format not in FORMATS:
        raise LogstoreError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    table = log.read(topic, start, end)
    path = pathlib.Path(path)
    if format == "avro":
        schema = log.schema(topic)
        user = table.drop_columns([c for c in SYSTEM_COLUMNS if c in table.column_names])
        return avrofile.write(path, schema, user.to_batches(), codec="zstandard")
    with replacing(path, f"export {topic!r} to") as tmp:
        if format == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp, compression="zstd")
        else:
            _write_jsonl(table, log.schema(topic), tmp)
    return int(table.num_rows)


def _write_jsonl(table: pa.Table, schema: dict[str, Any], path: pathlib.Path) -> None:
    fix = value_converter(expand(schema), on_write=True)  # maps become objects
    with open(path, "w", encoding="utf-8") as out:
        for batch in table.to_batches():
            for row in batch.to_pylist():
                if fix is not None:
                    row = fix(row)
                out.write(json.dumps(row, default=json_default, ensure_ascii=False))
                out.write("\n")


def import_avro(log: Log, topic: str, path: str | os.PathLike[str]) -> int:
    """Append the records of an Avro container file to `topic`; returns the number of records."""
    file_schema = avrofile.read_schema(path)
    if topic not in log.topics():
        log.create_topic(topic, schema=file_schema)
    form = full_form(file_schema)
    latest = log.schema(topic)
    resolve_to: dict[str, Any] | None = None
    pin: dict[str, Any] | None = file_schema
    if not any(full_form(v.schema) == form for v in log.schemas(topic)) and not reader_writer_issues(
        expand(latest), expand(file_schema)
    ):
        resolve_to, pin = latest, None
    count = 0
    with log.writer(topic, schema=pin) as w:
        for schema, batch in avrofile.iter_batches(path):
            if resolve_to is not None:
                batch = resolve(batch, schema, resolve_to)
            w.append_batch(batch)
            count += batch.num_rows
    return count
