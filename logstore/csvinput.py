"""CSV input for `append` and `import`: streamed in blocks, each cell turned into its field's value.

The first line names the columns, which must be fields of the topic (a field left out gets its
Avro default, or null). Cells are text; each is read per its field's type:

==============================  ==============================================================
field type                      cell
==============================  ==============================================================
string, enum                    as it is; an empty cell is null when the field is nullable
int, long                       a decimal integer (``1.5`` is refused, never truncated)
float, double                   a number (``nan``, ``inf`` too)
boolean                         true/false, t/f, yes/no, 1/0 (any case)
timestamp, date, time           ISO 8601, as JSON lines take it (`logstore.jsonvalues`)
bytes, fixed, decimal           base64, base64, a number
record, array, map, union       JSON text (what ``cat --format csv`` writes for nested values); a
                                union with a string branch takes text that is not JSON as a string
==============================  ==============================================================

An empty cell is null for a nullable field of any type; for a non-nullable string it is the
empty string, and for any other non-nullable type it is refused. A cell that is not its type's
text raises `RecordValidationError` naming the record (counted from 0 over the file's data rows),
the field and the reason, with ``row N of FILE`` (data rows counted from 1, the header not
counted); `schemas.conform` then checks every record as `append` does. Quoted cells may hold the
delimiter and newlines. Memory is one block of the file (`BLOCK_BYTES`) and its records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from schemas.conform import conform

from .errors import ArgumentError, LogIOError, RecordValidationError
from .jsonvalues import JsonValueError, record_reader
from .names import SYSTEM_COLUMNS

__all__ = ["BLOCK_BYTES", "csv_batches"]

BLOCK_BYTES = 4 << 20  # bytes of CSV parsed at a time
TRUE = frozenset({"true", "t", "yes", "y", "1"})
FALSE = frozenset({"false", "f", "no", "n", "0"})

Cell = Callable[[str], Any]


class _Bad(Exception):
    """A cell that is not its field's text (reason)."""


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _Bad(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise _Bad(f"{text!r} is not a number") from None


def _bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise _Bad(f"{text!r} is not a boolean (true/false, yes/no, 1/0)")


def _via_json(field: pa.Field, nested: bool) -> Cell:
    """A cell read as its JSON form: parsed as JSON first when the type is nested. A union with a
    string branch takes a cell that is not JSON as that string (``hello`` as ``"hello"``)."""
    decode = record_reader(pa.schema([field]))
    text_branch = pa.types.is_union(field.type) and any(pa.types.is_string(f.type) for f in field.type)

    def cell(text: str) -> Any:
        value: Any = text
        if nested:
            try:
                value = json.loads(text)
            except ValueError:
                if not text_branch:
                    raise _Bad(f"{text[:60]!r} is not JSON (a {field.type} is written as JSON text)") from None
        try:
            return decode({field.name: value})[field.name]
        except JsonValueError as e:
            raise _Bad(e.reason) from None

    return cell


def _reader(field: pa.Field) -> Cell | None:
    """What reads a cell of `field` (None: the text as it is)."""
    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return None
    if pa.types.is_integer(t):
        return _int
    if pa.types.is_floating(t):
        return _float
    if pa.types.is_boolean(t):
        return _bool
    if pa.types.is_decimal(t):
        return _via_json(field, nested=False)
    nested = pa.types.is_nested(t) and not pa.types.is_dictionary(t)
    return _via_json(field, nested=nested)


def _column(
    cells: list[str], field: pa.Field, read: Cell | None, first: int, where: str, topic: str | None
) -> list[Any]:
    """The values of one column of a block; raises `RecordValidationError` at the first bad cell."""
    out: list[Any] = []
    empty_is_null = field.nullable
    for i, text in enumerate(cells):
        if text == "":
            if empty_is_null:
                out.append(None)
                continue
            if read is None:
                out.append("")
                continue
            raise RecordValidationError(
                first + i, field.name, f"empty cell, but the field is not nullable (row {first + i + 1} of {where})"
            )
        if read is None:
            out.append(text)
            continue
        try:
            out.append(read(text))
        except _Bad as e:
            raise RecordValidationError(
                first + i, field.name, f"{e} (row {first + i + 1} of {where})", topic=topic
            ) from None
    return out


def csv_batches(
    path: str | os.PathLike[str],
    topic: str,
    schema: dict[str, Any],
    arrow: pa.Schema,
    where: str,
    delimiter: str = ",",
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(index of the first record, batch of the topic's schema) for each block of the CSV file."""
    import pyarrow.csv as pcsv

    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
    if len(delimiter) != 1:
        raise ArgumentError(f"--delimiter {delimiter!r}: must be one character (use '\\t' for a tab)")
    fields = {f.name: f for f in arrow}
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in fields},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except FileNotFoundError:
        raise LogIOError(f"read CSV file {os.fspath(path)}: no such file") from None
    except pa.ArrowInvalid as e:
        raise ArgumentError(f"{os.fspath(path)} is not CSV this can read: {e}") from None
    names = [n for n in reader.schema.names if n not in SYSTEM_COLUMNS]
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise ArgumentError(
            f"{where}: column(s) {unknown} are not fields of topic {topic!r} (its fields: {', '.join(fields)})"
        )
    readers = {n: _reader(fields[n]) for n in names}
    first = 0
    while True:
        try:
            block = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as e:
            raise ArgumentError(f"{where}: CSV after row {first} cannot be read: {e}") from None
        columns = {n: _column(block.column(n).to_pylist(), fields[n], readers[n], first, where, topic) for n in names}
        try:
            data: Any = pa.RecordBatch.from_arrays(
                [pa.array(columns[n], type=_plain(fields[n].type)) for n in names],
                schema=pa.schema([_plain_field(fields[n]) for n in names]),
            )
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            # a value Arrow refuses (a nested value of the wrong type): the rows go to `conform`,
            # whose slow path names the record, field and reason
            data = [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        try:
            yield first, conform(data, schema, arrow, topic=topic, offset_index=first)
        except RecordValidationError as e:
            row = f"row {e.index + 1} of {where}" if e.index is not None else f"in {where}"
            raise type(e)(e.index, e.field, f"{e.reason} ({row})", topic=e.topic or topic) from None
        first += block.num_rows


def _plain(t: pa.DataType) -> pa.DataType:
    """An enum's dictionary column is built from its strings; `conform` makes the dictionary."""
    return t.value_type if pa.types.is_dictionary(t) else t


def _plain_field(f: pa.Field) -> pa.Field:
    return pa.field(f.name, _plain(f.type), nullable=True)
