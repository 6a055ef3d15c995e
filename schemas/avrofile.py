"""Avro object container files (the `.avro` files any Avro reader opens), via fastavro.

`write` streams Arrow batches to a file with the topic's Avro schema as the writer schema
(default codec ``zstandard``: fastavro needs ``backports.zstd`` for it on Python < 3.14, a
declared dependency). The file appears whole or not at all: it is written to a temp name,
fsynced and renamed (`logstore.files.replacing`), through ``os.open``/``os.write`` only, like
every file the project writes. `read` / `iter_batches` return the data as ``to_arrow(writer schema)``.

Values cross as fastavro's Python objects: Arrow maps (lists of pairs) become dicts on write,
fastavro's uuid.UUID become strings on read. Unions are written to the branch each value is
stored in (fastavro's ``(branch name, value)`` notation) and read back by the writers' branch
rules (`schemas.validate.choose`), except that a value of a named branch (record, enum, fixed)
comes back to its own branch (fastavro's ``return_named_type``), so a plain dict, str or bytes is
a map, string or bytes. Every value reads back equal, and to its branch, except in a union of
both int and long (or float and double): a long 5 of ``["int", "long"]`` reads back as the int 5.
"""

from __future__ import annotations

import json
import os
import pathlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, cast

import fastavro
import pyarrow as pa

from logstore.errors import LogIOError, SchemaError
from logstore.files import CLOEXEC, NOFOLLOW, replacing, write_all
from schemas import unions
from schemas.arrow import to_arrow
from schemas.avro import base_type, branch_name, expand, is_union, non_null
from schemas.conform import conform
from schemas.parse import parse

CODECS = ("null", "deflate", "snappy", "zstandard", "bzip2", "xz", "lz4")


def value_converter(t: Any, on_write: bool, tagged: bool = False) -> Callable[[Any], Any] | None:
    """A function converting one value between Arrow's and fastavro's Python forms, or None.

    Union values are ``(branch name, value)`` tuples on write (`schemas.unions.tagged_pylist`:
    fastavro then writes that branch); on read, with `tagged` (fastavro's ``return_named_type``),
    a named type in a union comes as such a tuple, which a general union keeps (the branch it was
    written to) and a ``["null", T]`` field drops."""
    if is_union(t):
        return _union_converter(t, on_write, tagged)
    inner, _ = non_null(t)
    if tagged and isinstance(t, list) and base_type(inner) in ("record", "enum", "fixed"):
        sub = value_converter(inner, on_write, tagged)
        return lambda v: (v[1] if sub is None else sub(v[1])) if type(v) is tuple else (v if sub is None else sub(v))
    kind = base_type(inner)
    logical = inner.get("logicalType") if isinstance(inner, dict) else None
    if kind == "string" and logical == "uuid" and not on_write:
        return lambda v: str(v) if isinstance(v, uuid.UUID) else v
    if kind == "map":
        sub = value_converter(inner["values"], on_write, tagged)
        if on_write:
            if sub is None:
                return lambda v: None if v is None else dict(v)
            conv = sub
            return lambda v: None if v is None else {k: conv(x) for k, x in v}
        if sub is None:
            return None
        conv_r = sub
        return lambda v: None if v is None else {k: conv_r(x) for k, x in v.items()}
    if kind == "array":
        sub = value_converter(inner["items"], on_write, tagged)
        return None if sub is None else (lambda v: None if v is None else [sub(x) for x in v])
    if kind == "record":
        subs = [
            (f["name"], s) for f in inner["fields"] if (s := value_converter(f["type"], on_write, tagged)) is not None
        ]
        if not subs:
            return None

        def fix(v: Any) -> Any:
            if v is None:
                return None
            v = dict(v)
            for name, s in subs:
                if name in v:
                    v[name] = s(v[name])
            return v

        return fix
    return None


def _union_converter(t: list[Any], on_write: bool, tagged: bool) -> Callable[[Any], Any] | None:
    subs = {branch_name(b): value_converter(b, on_write, tagged) for b in t if b != "null"}
    if on_write:
        if not any(subs.values()):
            return None
        return lambda v: v if v is None else (v[0], s(v[1]) if (s := subs[v[0]]) is not None else v[1])
    kinds = {branch_name(b) for b in t}
    # with named branches tagged, a plain dict is a map, a plain str a string, plain bytes bytes
    plain = [(dict, "map"), (list, "array"), (str, "string"), (uuid.UUID, "string"), (bytes, "bytes")]

    def read(v: Any) -> Any:
        if type(v) is tuple:  # a named branch, as fastavro's return_named_type gives it
            s = subs.get(v[0])
            return (v[0], v[1] if s is None else s(v[1]))
        for py, kind in plain:
            if isinstance(v, py) and kind in kinds:
                s = subs[kind]
                v = str(v) if isinstance(v, uuid.UUID) else v
                v = v if s is None else s(v)
                return (kind, v) if tagged else v
        return v

    return read


def _has_union(t: Any) -> bool:
    """Whether the expanded tree `t` holds a union stored as a dense union."""
    if is_union(t):
        return True
    if isinstance(t, list):
        return any(_has_union(b) for b in t)
    if isinstance(t, dict):
        if t.get("type") == "record":
            return any(_has_union(f["type"]) for f in t["fields"])
        return _has_union(t.get("items")) or _has_union(t.get("values"))
    return False


def write(
    path: str | os.PathLike[str], schema: Any, batches: Iterable[pa.RecordBatch | pa.Table], codec: str = "zstandard"
) -> int:
    """Write `batches` (Arrow data of `schema`) as an Avro container file; returns rows written."""
    schema = parse(schema)
    if codec not in CODECS:
        raise SchemaError(f"unknown Avro codec {codec!r}; expected one of {', '.join(CODECS)}")
    tree = expand(schema)
    fix = value_converter(tree, on_write=True)
    count = [0]

    def records() -> Iterator[dict[str, Any]]:
        for b in batches:
            rows = unions.tagged_rows(b)
            count[0] += len(rows)
            yield from (map(fix, rows) if fix else rows)

    path = pathlib.Path(path)
    with replacing(path, "write Avro file") as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW | CLOEXEC, 0o644)
        try:
            out = _FdWriter(fd)
            fastavro.writer(
                cast(IO[Any], out), fastavro.parse_schema(schema, _write_hint=False), records(), codec=codec
            )
            out.flush()
        finally:
            os.close(fd)
    return count[0]


class _FdWriter:
    """The file object fastavro writes to: buffered, emptied with ``os.write`` (`write_all`)."""

    LIMIT = 1 << 20

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= self.LIMIT:
            self.flush()
        return len(data)

    def seekable(self) -> bool:
        return False  # a new file: fastavro must not try to read it back for appending

    def flush(self) -> None:
        if self.buffer:
            write_all(self.fd, self.buffer)
            self.buffer.clear()


def read_schema(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The writer schema of an Avro container file, normalized."""
    try:
        with open(path, "rb") as fh:
            reader = fastavro.reader(fh)
            return parse(json.loads(reader.metadata["avro.schema"]))
    except OSError as e:
        raise LogIOError(f"read Avro file {path}: {e.strerror or e}") from None
    except (ValueError, KeyError) as e:
        raise SchemaError(f"{path} is not a readable Avro container file: {e}") from None


def iter_batches(
    path: str | os.PathLike[str], batch_size: int = 65536
) -> Iterator[tuple[dict[str, Any], pa.RecordBatch]]:
    """(writer schema, batch) for each run of up to `batch_size` records in the file."""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise LogIOError(f"read Avro file {path}: {e.strerror or e}") from None
    with fh:
        try:
            schema = parse(json.loads(fastavro.reader(fh).metadata["avro.schema"]))
            tree = expand(schema)
            tagged = _has_union(tree)  # named branches come back tagged: records, enums, fixed exactly
            fh.seek(0)
            reader = fastavro.reader(fh, return_named_type=tagged)
        except (ValueError, KeyError) as e:
            raise SchemaError(f"{path} is not a readable Avro container file: {e}") from None
        arrow_schema = to_arrow(schema)
        fix = value_converter(tree, on_write=False, tagged=tagged)
        chunk: list[Any] = []
        index = 0
        for rec in reader:
            chunk.append(fix(rec) if fix else rec)
            if len(chunk) >= batch_size:
                yield schema, conform(chunk, schema, arrow_schema, offset_index=index)
                index += len(chunk)
                chunk = []
        if chunk or index == 0:
            yield schema, conform(chunk, schema, arrow_schema, offset_index=index)


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], pa.Table]:
    """(writer schema, all records as a Table of `to_arrow(schema)`)."""
    schema = None
    batches = []
    for schema, batch in iter_batches(path):  # noqa: B007 - the last schema is the file's
        batches.append(batch)
    assert schema is not None
    return schema, pa.Table.from_batches(batches, schema=to_arrow(schema))
