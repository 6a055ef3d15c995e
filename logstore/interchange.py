"""Moving topics in and out of the log as files other tools read: Avro, Parquet, JSON lines.

Built on the public `Log` API only (`read`, `schema`, `schemas`, `create_topic`, `writer`).

The format comes from the file's extension (`EXTENSIONS`: ``.avro``, ``.parquet``, ``.jsonl``,
``.ndjson``, any case) unless given; a given format that the extension contradicts (``--format
parquet`` for ``out.avro``) is refused, as is a name whose extension says nothing without one.

Export (`export_topic`):

- ``avro``: an Avro object container file (zstandard codec) whose writer schema is the topic's
  latest schema; records are resolved to it. Only the topic's fields are written, so any Avro
  reader, and `import_file`, sees exactly what producers wrote.
- ``parquet`` and ``jsonl``: the table `Log.read` returns, system columns (`_partition`,
  `_offset`, `_append_time`) included, for analysis elsewhere. Parquet has no unions: a union
  column is written as a struct of its branches (the row's branch set, the others null), which
  import reads back as the union. JSON lines use the forms of
  `logstore.jsonvalues`: ISO 8601 times, base64 bytes, decimals as strings, maps as objects.

Every file appears whole or not at all (written to a temp name, fsynced, renamed).

Import (`import_file`) appends a file to a topic. System columns are recognised and dropped (a
topic's schema cannot use those names, and the log assigns them afresh), so an export of any
format re-appends to a topic of the same schema as the same records, with new offsets and
append times. The file is read twice: the first pass checks every record and writes nothing; the
second appends, in batches of `BATCH` records. A rejected file therefore leaves the log as it
was, and the error (a `RecordValidationError`) names the record, the field, the reason and where
in the file: ``line N`` of JSON lines (counting every line from 1), ``row N`` of Parquet
(from 0, as the record index). Only an I/O failure during the second pass leaves a prefix.

- ``parquet`` and ``jsonl``: the topic must exist; records are validated against its latest
  schema exactly as `append` validates them (JSON values first decoded per field type by
  `logstore.jsonvalues`).
- ``avro``: the topic is created from the file's schema if missing. If the file's schema is one
  of the topic's versions, frames are written under that version; else if the topic's latest
  schema can read it, records are resolved to the latest; else the file's schema is registered
  as a new version under the topic's compatibility mode (refused with every reason when
  incompatible).
"""

from __future__ import annotations

import codecs
import json
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa

from schemas import avrofile, resolve
from schemas.avro import expand, full_form
from schemas.compat import reader_writer_issues
from schemas.conform import conform

from .errors import ArgumentError, LogIOError, LogstoreError, RecordValidationError
from .files import replacing
from .jsonvalues import JsonValueError, json_default, json_rows, record_reader
from .names import SYSTEM_COLUMNS

if TYPE_CHECKING:
    from .log import Log

FORMATS = ("avro", "parquet", "jsonl")  # what export writes
IMPORT_FORMATS = (*FORMATS, "csv")  # what import (and append) reads
EXTENSIONS = {".avro": "avro", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
BATCH = 65536  # records per batch read from a file (and per append on import)

Batches = Callable[[], Iterator[tuple[int, pa.RecordBatch]]]  # (index of its first record, batch)


def file_format(path: str | os.PathLike[str], format: str | None = None, verb: str = "export") -> str:  # noqa: A002
    """The format of the file at `path`: `format` if given (refused if the extension names
    another one), else the one its extension names (refused if it names none)."""
    known = FORMATS if verb == "export" else IMPORT_FORMATS
    if format is not None and format not in known:
        raise ArgumentError(f"unknown {verb} format {format!r}; expected one of {', '.join(known)}")
    ext = pathlib.Path(path).suffix.lower()
    implied = EXTENSIONS.get(ext)
    if implied is not None and implied not in known:
        implied = None if format is not None else implied
    if format is None:
        if implied is None or implied not in known:
            names = ", ".join(e for e, f in EXTENSIONS.items() if f in known)
            raise ArgumentError(
                f"cannot tell the format of {os.fspath(path)!r} from its extension {ext or '(none)'}: "
                f"name it {names} or give --format ({'|'.join(known)})"
            )
        return implied
    if implied is not None and implied != format:
        raise ArgumentError(
            f"--format {format} does not match the extension of {os.fspath(path)!r} ({ext} is {implied}): "
            "drop --format or rename the file"
        )
    return format


class ImportInterrupted(LogstoreError):
    """An import stopped (an I/O error, Ctrl-C) after committing the file's first `committed`
    records: those are in the topic, durable, and the rest is not. The message says how to go on
    (``--skip``), so a retry never stores a record twice."""

    def __init__(self, message: str, committed: int) -> None:
        self.committed = committed
        super().__init__(message)


def export_topic(
    log: Log,
    topic: str,
    path: str | os.PathLike[str],
    format: str | None = None,  # noqa: A002
    start: Any = None,
    end: Any = None,
    *,
    progress: bool = False,
) -> int:
    """Write records [start, end) of `topic` to `path` as `format` (default: from the extension);
    returns the number of records.

    The bounds are resolved once, on one snapshot (what was committed when the export began,
    however much is appended meanwhile), and the records stream batch by batch: memory is one
    batch, not the topic. `progress` draws a bar on a terminal's stderr (`logstore.progress`)."""
    from .progress import Progress

    fmt = file_format(path, format, "export")
    lo, hi = _offset_range(log, topic, start, end)
    total = sum(hi[p] - lo[p] for p in lo)
    path = pathlib.Path(path)
    done = 0
    with Progress(total, f"export {topic}", unit="records", enabled=None if progress else False) as bar:

        def batches() -> Iterator[pa.RecordBatch]:
            nonlocal done
            for batch in log.reader(topic, lo, hi):
                done += batch.num_rows
                bar.update(done)
                yield batch

        if fmt == "avro":
            user = (_without_system(b) for b in batches())
            return avrofile.write(path, log.schema(topic), user, codec="zstandard")
        with replacing(path, f"export {topic!r} to") as tmp:
            if fmt == "parquet":
                _write_parquet(tmp, log.arrow_schema(topic, system_columns=True), batches())
            else:
                with open(tmp, "w", encoding="utf-8") as out:
                    for batch in batches():
                        out.writelines(
                            json.dumps(row, default=json_default, ensure_ascii=False) + "\n" for row in json_rows(batch)
                        )
    return done


def _offset_range(log: Log, topic: str, start: Any, end: Any) -> tuple[dict[int, int], dict[int, int]]:
    """[start, end) as per-partition offsets on one snapshot of `topic` (times: append times)."""
    snaps = log.snapshot(topic)

    def resolve(bound: Any, default: str) -> dict[int, int]:
        out = {}
        for p, snap in snaps.items():
            first, last = snap.start_offset, snap.end_offset
            if bound is None:
                at = first if default == "start" else last
            elif isinstance(bound, dict):
                at = bound.get(p, first if default == "start" else last)
            elif isinstance(bound, int):
                at = bound
            else:
                at = log.offset_for_time(topic, p, bound, snap)
            out[p] = min(max(int(at), first), last)
        return out

    lo, hi = resolve(start, "start"), resolve(end, "end")
    return lo, {p: max(lo[p], hi[p]) for p in lo}


def _undictionary(t: pa.DataType) -> pa.DataType:
    """`t` with every dictionary (an enum) inside a nested type made its plain value type."""
    if pa.types.is_dictionary(t):
        return t.value_type
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_undictionary(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_undictionary(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_undictionary(t.value_type)))
    if pa.types.is_map(t):
        return pa.map_(t.key_field, t.item_field.with_type(_undictionary(t.item_type)))
    return t


def _parquet_form(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Enums nested in structs, lists or maps as plain strings: Parquet readers cannot stream a
    nested dictionary column whose dictionary changes between row groups (top-level ones can)."""
    cols, fields = [], []
    for f, col in zip(batch.schema, batch.columns, strict=True):
        t = f.type if pa.types.is_dictionary(f.type) else _undictionary(f.type)
        cols.append(col if t.equals(f.type) else _cast_nested(col, t))
        fields.append(f.with_type(t))
    return pa.RecordBatch.from_arrays(cols, schema=pa.schema(fields, batch.schema.metadata))


def _cast_nested(col: pa.Array, t: pa.DataType) -> pa.Array:
    """`col` as type `t` (its nested enums as strings). Arrow's cast decodes the dictionary under
    null parents too, where the indices mean nothing (an empty dictionary's 0): then by value."""
    try:
        return col.cast(t)
    except (pa.ArrowIndexError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array(col.to_pylist(), type=t)


def _write_parquet(path: str | os.PathLike[str], schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> None:
    import pyarrow.parquet as pq

    from schemas import unions

    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches:
            batch = _parquet_form(unions.map_columns(batch, unions.storable))  # a union: a struct of branches
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
            writer.write_batch(batch)
        if writer is None:  # nothing to export: a file with the schema and no rows
            empty = _parquet_form(unions.map_columns(pa.RecordBatch.from_pylist([], schema=schema), unions.storable))
            pq.write_table(pa.Table.from_batches([empty]), path, compression="zstd")
    finally:
        if writer is not None:
            writer.close()


def import_file(
    log: Log,
    topic: str,
    path: str | os.PathLike[str],
    format: str | None = None,  # noqa: A002
    durability: str = "fsync",
    *,
    skip: int = 0,
    delimiter: str = ",",
    resume_hint: str | None = None,
    progress: bool = False,
) -> int:
    """Append the records of the file at `path` to `topic` (all of them or, raising, none);
    returns the number of records appended. `format` defaults to the one the extension names.

    `skip` leaves out the file's first records (what an interrupted import committed);
    `delimiter` is CSV's; `resume_hint` is the command that continues an interrupted import
    with ``--skip N`` appended (`ImportInterrupted`); `progress` draws a bar on a terminal."""
    fmt = file_format(path, format, "import")
    if skip < 0:
        raise ArgumentError(f"skip {skip}: must be 0 or more")
    if fmt == "avro":
        return import_avro(log, topic, path, durability, skip=skip, resume_hint=resume_hint, progress=progress)
    schema, arrow = log.schema(topic), log.arrow_schema(topic)
    where = pathlib.Path(path).name

    def batches() -> Iterator[tuple[int, pa.RecordBatch]]:
        if fmt == "csv":
            from .csvinput import csv_batches

            return csv_batches(path, topic, schema, arrow, where, delimiter)
        reader = _jsonl_batches if fmt == "jsonl" else _parquet_batches
        return reader(path, topic, schema, arrow, where)

    return _append_checked(
        log, topic, batches, where, durability=durability, skip=skip, resume_hint=resume_hint, progress=progress
    )


def import_avro(
    log: Log,
    topic: str,
    path: str | os.PathLike[str],
    durability: str = "fsync",
    *,
    skip: int = 0,
    resume_hint: str | None = None,
    progress: bool = False,
) -> int:
    """Append the records of an Avro container file to `topic`; returns the number of records
    appended (`import_file` says what `skip` and `resume_hint` are)."""
    file_schema = avrofile.read_schema(path)
    exists = topic in log.topics()
    resolve_to: dict[str, Any] | None = None
    pin: dict[str, Any] | None = file_schema
    if exists:
        form = full_form(file_schema)
        latest = log.schema(topic)
        if not any(full_form(v.schema) == form for v in log.schemas(topic)) and not reader_writer_issues(
            expand(latest), expand(file_schema)
        ):
            resolve_to, pin = latest, None
    where = pathlib.Path(path).name

    def batches() -> Iterator[tuple[int, pa.RecordBatch]]:
        first = 0
        try:
            for schema, batch in avrofile.iter_batches(path, BATCH):
                yield first, batch if resolve_to is None else resolve(batch, schema, resolve_to)
                first += batch.num_rows
        except RecordValidationError as e:
            raise _located(e, 0, f"in {where}", topic) from None
        except LogstoreError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged block fails in fastavro or its codec (EOFError, ZstdError, ...)
            raise ArgumentError(
                f"{os.fspath(path)}: Avro data after record {first} cannot be read ({type(e).__name__}: {e})"
            ) from None

    return _append_checked(
        log,
        topic,
        batches,
        where,
        pin=pin,
        create=None if exists else file_schema,
        durability=durability,
        skip=skip,
        resume_hint=resume_hint,
        progress=progress,
    )


def _append_checked(
    log: Log,
    topic: str,
    batches: Batches,
    where: str,
    *,
    pin: dict[str, Any] | None = None,
    create: dict[str, Any] | None = None,
    durability: str = "fsync",
    skip: int = 0,
    resume_hint: str | None = None,
    progress: bool = False,
) -> int:
    """Pass 1 reads and checks every batch, writing nothing; pass 2 appends them, each batch one
    commit (records before `skip` left out). A failure in pass 2 raises `ImportInterrupted`
    saying how many of the file's records are committed."""
    total = sum(int(batch.num_rows) for _, batch in batches())
    if skip > total:
        raise ArgumentError(f"--skip {skip}: {where} holds only {total} records")
    if create is not None:
        log.create_topic(topic, schema=create)
    from .progress import Progress

    done = skip  # records of the file that are in the topic
    bar = Progress(total - skip, f"import {where}", unit="records", enabled=None if progress else False)
    try:
        with bar, log.writer(topic, schema=pin, durability=durability, linger_ms=None) as w:
            for first, batch in batches():
                end = first + batch.num_rows
                if end <= done:
                    continue
                part = batch if first >= done else batch.slice(done - first)
                try:
                    w.append_batch(part)
                except RecordValidationError as e:  # e.g. over max_record_bytes: only the writer knows
                    raise _located(e, max(first, done), f"in {where}", topic) from None
                done = end
                bar.update(done - skip)
    except RecordValidationError:
        if done == skip:
            raise
        raise _interrupted(where, topic, done, total, "a record was refused", resume_hint) from None
    except KeyboardInterrupt:
        if done == skip:
            raise
        raise KeyboardInterrupt(str(_interrupted(where, topic, done, total, "interrupted", resume_hint))) from None
    except LogstoreError as e:
        if done == skip:
            raise
        raise _interrupted(where, topic, done, total, str(e).splitlines()[0], resume_hint) from None
    return total - skip


def _interrupted(where: str, topic: str, done: int, total: int, why: str, hint: str | None) -> ImportInterrupted:
    go_on = f"; continue with: {hint} --skip {done}" if hint else f"; continue with skip={done}"
    return ImportInterrupted(
        f"{why}: the first {done} of the {total} records of {where} are committed to {topic!r}, "
        f"the other {total - done} are not{go_on}",
        done,
    )


def _located(e: RecordValidationError, first: int, where: str, topic: str | None) -> RecordValidationError:
    """`e` with its record counted from the start of the file and `where` added to its reason."""
    index = None if e.index is None else e.index + first
    return type(e)(index, e.field, f"{e.reason} ({where})", topic=e.topic or topic)


def _without_system(batch: pa.RecordBatch) -> pa.RecordBatch:
    keep = [n for n in batch.schema.names if n not in SYSTEM_COLUMNS]
    return batch if len(keep) == batch.num_columns else batch.select(keep)


def _parquet_batches(
    path: str | os.PathLike[str], topic: str, schema: dict[str, Any], arrow: pa.Schema, where: str
) -> Iterator[tuple[int, pa.RecordBatch]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except OSError as e:
        raise LogIOError(f"read Parquet file {os.fspath(path)}: {e.strerror or e}") from None
    except pa.ArrowException as e:
        raise ArgumentError(f"{os.fspath(path)} is not a readable Parquet file: {e}") from None
    first = 0
    with pf:
        try:
            for batch in pf.iter_batches(batch_size=BATCH):
                try:
                    yield first, conform(_without_system(batch), schema, arrow, topic=topic, offset_index=first)
                except RecordValidationError as e:
                    row = f"row {e.index} of {where}" if e.index is not None else f"in {where}"
                    raise _located(e, 0, row, topic) from None
                first += batch.num_rows
        except pa.ArrowException as e:
            raise ArgumentError(f"{os.fspath(path)}: Parquet data after row {first} cannot be read: {e}") from None


def _jsonl_batches(
    path: str | os.PathLike[str], topic: str, schema: dict[str, Any], arrow: pa.Schema, where: str
) -> Iterator[tuple[int, pa.RecordBatch]]:
    decode = record_reader(arrow)
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise LogIOError(f"read JSON lines file {os.fspath(path)}: {e.strerror or e}") from None
    rows: list[dict[str, Any]] = []
    lines: list[int] = []  # the line number of each row
    first = 0

    def bad(line: int, field: str | None, reason: str) -> RecordValidationError:
        return RecordValidationError(first + len(rows), field, f"{reason} (line {line} of {where})", topic=topic)

    def batch() -> pa.RecordBatch:
        try:
            return conform(rows, schema, arrow, topic=topic, offset_index=first)
        except RecordValidationError as e:
            if e.index is None:
                raise _located(e, 0, f"in {where}", topic) from None
            raise _located(e, 0, f"line {lines[e.index - first]} of {where}", topic) from None

    with fh:
        for number, raw in enumerate(fh, 1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise bad(number, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
            if not text:
                continue
            try:
                rec = json.loads(text)
            except ValueError as e:
                detail = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
                raise bad(number, None, f"not valid JSON ({detail})") from None
            if not isinstance(rec, dict):
                raise bad(number, None, f"expected a JSON object, found {type(rec).__name__}")
            for name in SYSTEM_COLUMNS:
                rec.pop(name, None)
            try:
                rows.append(decode(rec))
            except JsonValueError as e:
                raise bad(number, e.field, e.reason) from None
            lines.append(number)
            if len(rows) >= BATCH:
                yield first, batch()
                first += len(rows)
                rows, lines = [], []
    if rows:
        yield first, batch()


def append_file(
    log: Log,
    topic: str,
    path: str,
    format: str | None = None,  # noqa: A002
    durability: str = "fsync",
    *,
    skip: int = 0,
    delimiter: str = ",",
    resume_hint: str | None = None,
    stdin: IO[bytes] | None = None,
    progress: bool = False,
) -> int:
    """`logstore append`: `import_file` into an existing topic, from a file or ('-') `stdin`.

    The format is `format`, else the extension's (``.json`` is JSON lines too), else JSON lines.
    Standard input is spooled to a temporary file first (the check pass and the append pass each
    read it), so memory stays one batch whatever the input's size."""
    log.arrow_schema(topic)  # append never creates a topic: a missing one is TopicNotFoundError
    if format is None:
        ext = pathlib.Path(path).suffix.lower()
        format = "jsonl" if path == "-" or ext == ".json" else EXTENSIONS.get(ext, "jsonl")  # noqa: A001
    if path != "-":
        return import_file(
            log,
            topic,
            path,
            format,
            durability,
            skip=skip,
            delimiter=delimiter,
            resume_hint=resume_hint,
            progress=progress,
        )
    import shutil
    import sys
    import tempfile

    source = stdin if stdin is not None else sys.stdin.buffer
    with tempfile.NamedTemporaryFile(prefix="logstore-append-", suffix=f".{format}") as spool:
        shutil.copyfileobj(source, spool, 1 << 20)
        spool.flush()
        return import_file(log, topic, spool.name, format, durability, skip=skip, delimiter=delimiter, resume_hint=None)
