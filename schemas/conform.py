"""Validation of appended data: rows (dicts) or Arrow input in, one RecordBatch of the topic's
Arrow schema out, or a RecordValidationError naming the first bad record, the field path, what
was expected and what was found.

This is on the append hot path, so it is two-speed:

- fast path, rows: ``RecordBatch.from_pylist(rows, schema)`` (which refuses rows that are not
  mappings) plus checks that run in C loops: no unknown keys (``set().union(*rows) <=
  fieldnames``; a per-row ``issuperset`` builds a set per row and costs twice as much), no
  floats in integer columns (pyarrow would truncate 1.5 to 1 silently), no unknown keys in
  nested records, and column checks on the result (``null_count`` of non-nullable fields,
  nested children included; enum dictionaries within the symbols). Measured cost: about 5-10%
  of from_pylist, nearly all of it the unknown-key check (one hash lookup per key).
- fast path, Arrow: the same column checks when the schema already matches (metadata ignored);
  otherwise columns are selected by name and cast safely where Avro's rules allow
  (int widening, float32 -> float64, timestamp units and zones, large_string -> string, ...).
- slow path, only when something failed (a check or a pyarrow exception): a per-record
  pure-Python walk over the Avro type finds the exact record, field and reason.
- union columns (Avro unions, Arrow dense unions) are built apart by `schemas.unions` (pyarrow
  cannot convert Python values into a union): each value's branch is chosen by
  `schemas.validate.choose`, which checks it in full; columns without unions keep the path above.
  Arrow input for a union field may be a union (branches matched by name), the Parquet form of
  one (`schemas.unions.storable`) or a plain column (into the branch of its type).

Defaults: a record (or an Arrow input) lacking a non-nullable field that has an Avro default gets
the default, as fastavro's writer does, so a producer built against an older version of an evolved
schema keeps writing (an explicit null in such a field is still refused). A missing nullable
field is null.

Lenient where pyarrow is and no value changes: bytes for strings (valid UTF-8), str for bytes,
naive datetimes for UTC timestamps (taken as UTC), ints for timestamps/dates/times, lists of
(key, value) pairs for maps. Known limit: a float inside a *nested* int field is truncated by
pyarrow without notice (top-level int fields are checked), as is the time of a datetime given
for a date.
"""

from __future__ import annotations

from itertools import chain, repeat
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from logstore.encodings import decode_runs, run_end_decode, whole_runs
from logstore.errors import RecordValidationError
from schemas import unions
from schemas.avro import expand
from schemas.casts import castable
from schemas.resolve import default_array, default_value
from schemas.unions import contains_union
from schemas.validate import first_error, show_value, suggest

_NoneType = type(None)
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class _Plan:
    """Everything derived once per (schema, arrow_schema) pair."""

    def __init__(self, schema: dict[str, Any], arrow_schema: pa.Schema) -> None:
        self.schema = schema
        self.arrow_schema = arrow_schema
        self.names = arrow_schema.names
        self.fieldnames = frozenset(self.names)
        self.int_cols = [f.name for f in arrow_schema if pa.types.is_int32(f.type) or pa.types.is_int64(f.type)]
        self.checks = [(i, node) for i, f in enumerate(arrow_schema) if (node := _node(f)) is not None]
        self.key_checks = [kc for f in arrow_schema for kc in _key_checks(f.type, [("get", f.name)])]
        # top-level non-nullable fields with an Avro default: filled in where a record lacks them
        self.defaults = [
            (i, f)
            for i, f in enumerate(schema.get("fields", []))
            if "default" in f and not arrow_schema.field(i).nullable
        ]
        # columns holding a union: built by `schemas.unions` (pyarrow cannot), defaults included
        self.union_cols = [i for i, f in enumerate(arrow_schema) if contains_union(f.type)]
        self._tree = None
        self._union_defaults: dict[int, Any] | None = None

    @property
    def union_defaults(self) -> dict[int, Any]:
        if self._union_defaults is None:
            fields = self.tree["fields"]
            self._union_defaults = {
                i: default_value(f["default"], fields[i]["type"]) for i, f in self.defaults if i in self.union_cols
            }
        return self._union_defaults

    @property
    def tree(self) -> Any:
        if self._tree is None:
            self._tree = expand(self.schema)
        return self._tree


_PLANS: dict[tuple[int, int], tuple[dict[str, Any], pa.Schema, _Plan]] = {}


def _plan(schema: dict[str, Any], arrow_schema: pa.Schema) -> _Plan:
    key = (id(schema), id(arrow_schema))
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is schema and hit[1] is arrow_schema:
        return hit[2]
    plan = _Plan(schema, arrow_schema)
    if len(_PLANS) > 256:
        _PLANS.clear()
    _PLANS[key] = (schema, arrow_schema, plan)
    return plan


# --------------------------------------------------------------------------- column checks
def _node(f: pa.Field) -> tuple[Any, ...] | None:
    """A check tree for one Arrow field, or None when nothing needs checking."""
    t = f.type
    children: list[Any] = []
    symbols = None
    if pa.types.is_struct(t):
        children = [(i, n) for i, c in enumerate(t) if (n := _node(c)) is not None]
        kind = "struct"
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        n = _node(t.value_field)
        children = [(0, n)] if n is not None else []
        kind = "list"
    elif pa.types.is_map(t):
        n = _node(t.item_field)
        children = [(0, n)] if n is not None else []
        kind = "map"
    elif pa.types.is_union(t):
        children = [(i, n) for i, c in enumerate(t) if (n := _node(c)) is not None]
        return (f.nullable, "union", children, None)
    elif pa.types.is_dictionary(t):
        import json

        meta = json.loads((f.metadata or {}).get(b"avro.type", b"null"))
        if isinstance(meta, dict) and meta.get("type") == "enum":
            symbols = pa.array(meta["symbols"], pa.string())
        kind = "enum"
    else:
        kind = "plain"
    if f.nullable and not children and symbols is None:
        return None
    return (f.nullable, kind, children, symbols)


def _ok(arr: pa.Array, node: tuple[Any, ...], parent_nulls: int) -> bool:
    nullable, kind, children, symbols = node
    if kind == "union":
        return _union_ok(arr, children, parent_nulls)
    if not nullable and arr.null_count != parent_nulls:
        return False
    if kind == "struct":
        if any(pa.types.is_union(c.type) for c in arr.type):  # flatten() aborts on a union child
            return all(
                _union_ok(arr.field(i), child[2], arr.null_count)
                if child[1] == "union"
                else _ok(pc.struct_field(arr, [i]), child, arr.null_count)
                for i, child in children
            )
        flat = arr.flatten()
        return all(_ok(flat[i], child, arr.null_count) for i, child in children)
    if kind == "list" and children:
        return _ok(arr.flatten(), children[0][1], 0)
    if kind == "map" and children:
        offsets = arr.offsets
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        return _ok(arr.items.slice(start, end - start), children[0][1], 0)
    if kind == "enum" and symbols is not None:
        return bool(pc.all(pc.is_in(arr.dictionary, value_set=symbols)).as_py() is not False)
    return True


def _union_ok(arr: pa.Array, children: list[Any], parent_nulls: int) -> bool:
    """A union's children checked; nulls in its non-null branches may only be the placeholders
    under null parents (`schemas.unions`), so at most `parent_nulls` of them."""
    placeholders = 0
    for i, child in children:
        kid = arr.field(i)
        placeholders += kid.null_count
        if not _ok(kid, child, kid.null_count):
            return False
    return placeholders <= parent_nulls


def _key_checks(t: pa.DataType, steps: list[Any]) -> list[Any]:
    """(steps, allowed keys) for every record nested in `t`; steps walk rows down to its dicts."""
    out = []
    if pa.types.is_struct(t):
        out.append((steps, frozenset(c.name for c in t)))
        for c in t:
            out += _key_checks(c.type, steps + [("get", c.name)])
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        out += _key_checks(t.value_type, steps + [("list", None)])
    elif pa.types.is_map(t):
        out += _key_checks(t.item_type, steps + [("map", None)])
    return out


def _nested_keys_ok(rows: list[Any], key_checks: list[Any]) -> bool:
    for steps, allowed in key_checks:
        it: Any = rows
        for kind, name in steps:
            if kind == "get":
                it = filter(None, map(dict.get, it, repeat(name)))
            elif kind == "list":
                it = chain.from_iterable(it)
            else:
                it = chain.from_iterable(map(dict.values, it))
        if not all(map(allowed.issuperset, it)):
            return False
    return True


# --------------------------------------------------------------------------- entry point
def conform(
    data: Any,
    schema: dict[str, Any],
    arrow_schema: pa.Schema,
    *,
    topic: str | None = None,
    offset_index: int = 0,
    keep_dictionaries: bool = False,
    keep_runs: bool = False,
) -> pa.RecordBatch:
    """`data` (list of dicts, Table or RecordBatch) as ONE RecordBatch with exactly `arrow_schema`.

    With `keep_dictionaries`, an Arrow column given as a dictionary of strings for a top-level
    string field stays one, with signed codes of at most 32 bits (the field keeps its name,
    nullability and metadata): the log stores it so, without decoding it. With `keep_runs`, a
    run-end encoded column whose values are of its field's type and whose runs cover exactly its
    rows stays so (its values are what is checked); otherwise a run-end encoded column is decoded.

    Raises RecordValidationError(index, field, reason) for the first bad record; `index` counts
    from `offset_index`.
    """
    plan = _plan(schema, arrow_schema)
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return _conform_arrow(data, plan, topic, offset_index, keep_dictionaries, keep_runs)
    rows = data if isinstance(data, list) else list(data)
    return _conform_rows(rows, plan, topic, offset_index)


class _Slow(Exception):
    pass


def _conform_rows(rows: list[Any], plan: _Plan, topic: str | None, offset: int) -> pa.RecordBatch:
    batch = None
    error: Exception | None = None
    try:
        if not set().union(*rows) <= plan.fieldnames:  # C loop over stored key hashes
            raise _Slow
        batch = _build(rows, plan)
        if plan.defaults:
            batch = _fill_defaults(batch, rows, plan)
        for name in plan.int_cols:
            if not set(map(type, map(dict.get, rows, repeat(name)))) <= {int, _NoneType}:
                raise _Slow
        if plan.key_checks and not _nested_keys_ok(rows, plan.key_checks):
            raise _Slow
        if not _columns_ok(batch, plan):
            raise _Slow
        return batch
    except (_Slow, pa.ArrowException, OverflowError, TypeError, ValueError, KeyError, AttributeError) as e:
        error = None if isinstance(e, _Slow) else e
    found = first_error(rows, plan.tree)
    if found is not None:
        i, field, reason = found
        raise RecordValidationError(i + offset, field, reason, topic=topic)
    if batch is not None and _columns_ok(batch, plan):
        return batch  # e.g. numpy integers: the slow path accepts them and pyarrow converted them
    return _localize(rows, plan, topic, offset, error)


def _build(rows: list[Any], plan: _Plan) -> pa.RecordBatch:
    """The batch of `rows` as pyarrow converts them (union columns: `schemas.unions`)."""
    if plan.union_cols:
        return unions.rows_batch(rows, plan.tree, plan.arrow_schema, plan.union_defaults)
    return pa.RecordBatch.from_pylist(rows, schema=plan.arrow_schema)


def _fill_defaults(batch: pa.RecordBatch, rows: list[Any], plan: _Plan) -> pa.RecordBatch:
    """`batch` with each defaulted field's default where its row lacks the key (one C-level
    membership test per row, and only for a column that has nulls)."""
    columns = None
    for i, f in plan.defaults:
        col = batch.column(i)
        if not col.null_count or i in plan.union_cols:  # union columns: filled as built
            continue
        absent = [f["name"] not in r for r in rows]
        if not any(absent):
            continue
        target = plan.arrow_schema.field(i)
        fill = default_array(f["default"], plan.tree["fields"][i]["type"], target.type, len(rows), f["name"])
        columns = list(batch.columns) if columns is None else columns
        columns[i] = fill if all(absent) else pc.if_else(pa.array(absent, pa.bool_()), fill, col)
    return batch if columns is None else pa.RecordBatch.from_arrays(columns, schema=plan.arrow_schema)


def _localize(rows: list[Any], plan: _Plan, topic: str | None, offset: int, error: Exception | None) -> pa.RecordBatch:
    """The slow path found nothing but pyarrow refused: find the first row pyarrow refuses alone."""
    for i, row in enumerate(rows):
        try:
            _build([row], plan)
        except Exception as e:  # noqa: BLE001 - any conversion failure is the answer
            raise RecordValidationError(i + offset, None, f"cannot be converted to Arrow: {e}", topic=topic) from None
    try:
        return _build(rows, plan)
    except Exception as e:  # noqa: BLE001
        raise RecordValidationError(
            None, None, f"the batch cannot be converted to Arrow: {error or e}", topic=topic
        ) from None


def _columns_ok(batch: pa.RecordBatch, plan: _Plan) -> bool:
    return all(_ok(_logical(batch.column(i)), node, 0) for i, node in plan.checks)


def _logical(col: pa.Array) -> pa.Array:
    """The values to check of a column: a run-end encoded one's (whole runs) values."""
    return col.values if pa.types.is_run_end_encoded(col.type) else col


# --------------------------------------------------------------------------- Arrow input
def _one_batch(data: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
    if isinstance(data, pa.RecordBatch):
        return data
    batches = data.combine_chunks().to_batches()
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return pa.RecordBatch.from_arrays([unions.empty(f.type) for f in data.schema], schema=data.schema)
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]  # pragma: no cover


def _conform_arrow(
    data: Any, plan: _Plan, topic: str | None, offset: int, keep_dictionaries: bool = False, keep_runs: bool = False
) -> pa.RecordBatch:
    src = _one_batch(data)
    target = plan.arrow_schema
    kept: dict[int, pa.Array] = {}
    if any(pa.types.is_run_end_encoded(t) for t in src.schema.types):
        src = _runs(src, target, kept if keep_runs else None)
    if keep_dictionaries:
        names = set(src.schema.names)
        for i, f in enumerate(target):
            if pa.types.is_string(f.type) and f.name in names:
                col = src.column(f.name)
                if pa.types.is_dictionary(col.type):
                    encoded = _string_dictionary(col)
                    if encoded is not None:
                        kept[i] = encoded
    if src.schema.equals(target, check_metadata=False):
        cols = [_view(c, f.type) for c, f in zip(src.columns, target)]
    else:
        names = set(src.schema.names)
        for name in src.schema.names:
            if name not in plan.fieldnames:
                raise RecordValidationError(
                    None,
                    name,
                    f"unknown column {name!r} not in schema{suggest(name, plan.names)}"
                    f" (expected columns: {', '.join(plan.names)})",
                    topic=topic,
                )
        cols = []
        for i, f in enumerate(target):
            if f.name not in names:
                default = next((d for j, d in plan.defaults if j == i), None)
                if default is not None:
                    tree_type = plan.tree["fields"][i]["type"]
                    cols.append(default_array(default["default"], tree_type, f.type, src.num_rows, f.name))
                    continue
                if not f.nullable:
                    raise RecordValidationError(
                        None, f.name, f"missing required column (expected {f.type})", topic=topic
                    )
                cols.append(unions.nulls(src.num_rows, f.type))
            elif i in kept:
                cols.append(kept[i])
            else:
                cols.append(_coerce(src.column(f.name), f, f.name, topic, offset))
    if kept:
        target = pa.schema(
            [pa.field(f.name, kept[i].type, f.nullable, f.metadata) if i in kept else f for i, f in enumerate(target)],
            target.metadata,
        )
    batch = pa.RecordBatch.from_arrays(cols, schema=target)
    if _columns_ok(batch, plan):
        return batch
    found = first_error(decode_runs(batch).to_pylist(), plan.tree)
    if found is not None:
        i, field, reason = found
        raise RecordValidationError(i + offset, field, reason, topic=topic)
    if plan.union_cols:  # e.g. a null in a union's non-null child: rebuilt as its null branch
        cols = list(batch.columns)
        for i in plan.union_cols:
            f = batch.schema.field(i)
            cols[i] = unions.build(unions.tagged_pylist(cols[i]), plan.tree["fields"][i]["type"], f.type, f.name)
        return pa.RecordBatch.from_arrays(cols, schema=batch.schema)
    return batch


def _runs(src: pa.RecordBatch, target: pa.Schema, kept: dict[int, pa.Array] | None) -> pa.RecordBatch:
    """`src` with its run-end encoded columns decoded, but those put in `kept` (by target index):
    the ones `kept` (None: none) can take as stored, their values of the field's type, whole runs."""
    where = {f.name: i for i, f in enumerate(target)}
    columns, fields = list(src.columns), list(src.schema)
    for j, f in enumerate(fields):
        if not pa.types.is_run_end_encoded(f.type):
            continue
        i = where.get(f.name)
        col = columns[j]
        if kept is not None and i is not None and f.type.value_type.equals(target.field(i).type) and whole_runs(col):
            kept[i] = col
        else:
            columns[j] = run_end_decode(col)
            fields[j] = pa.field(f.name, f.type.value_type, f.nullable, f.metadata)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, src.schema.metadata))


def _string_dictionary(col: pa.Array) -> pa.Array | None:
    """A dictionary column of strings with signed codes of at most 32 bits (others are cast to
    int32); None if it is not one (other value types, or a null inside the dictionary itself)."""
    t = col.type
    if not pa.types.is_string(t.value_type) or col.dictionary.null_count:
        return None
    if t.index_type in (pa.int8(), pa.int16(), pa.int32()):
        return col
    try:
        return pa.DictionaryArray.from_arrays(col.indices.cast(pa.int32()), col.dictionary)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _view(col: pa.Array, t: pa.DataType) -> pa.Array:
    if col.type.equals(t, check_metadata=True):
        return col
    if contains_union(t):
        return unions.retype(col, t)
    try:
        return col.view(t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        return col.cast(t)


def _coerce(arr: pa.Array, f: pa.Field, path: str, topic: str | None, offset: int) -> pa.Array:
    dst = f.type
    if arr.type.equals(dst):
        return _view(arr, dst)
    if contains_union(dst) and not pa.types.is_struct(dst):
        return _coerce_union(arr, f, path, topic, offset)
    if pa.types.is_struct(arr.type) and pa.types.is_struct(dst):
        src_names = {c.name for c in arr.type}
        dst_names = [c.name for c in dst]
        dst_set = set(dst_names)
        for name in (c.name for c in arr.type):
            if name not in dst_set:
                raise RecordValidationError(
                    None,
                    f"{path}.{name}",
                    f"unknown field {name!r} not in schema (expected fields: {', '.join(dst_names)})",
                    topic=topic,
                )
        children = []
        for c in dst:
            if c.name in src_names:
                children.append(_coerce(arr.field(c.name), c, f"{path}.{c.name}", topic, offset))
            elif c.nullable:
                children.append(unions.nulls(len(arr), c.type))
            else:
                raise RecordValidationError(
                    None, f"{path}.{c.name}", f"missing required field (expected {c.type})", topic=topic
                )
        return pa.StructArray.from_arrays(children, fields=list(dst), mask=arr.is_null() if arr.null_count else None)
    if not castable(arr.type, dst):
        raise RecordValidationError(
            None,
            path,
            f"expected Arrow {dst}, found a column of Arrow type {arr.type} "
            "(no lossless conversion under Avro's rules)",
            topic=topic,
        )
    try:
        return pc.cast(arr, dst, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        row = _first_failing_row(arr, dst)
        raise RecordValidationError(
            row + offset,
            path,
            f"expected {dst}, found {show_value(arr[row].as_py())} that does not convert exactly ({e})",
            topic=topic,
        ) from None


def _coerce_union(arr: pa.Array, f: pa.Field, path: str, topic: str | None, offset: int) -> pa.Array:
    """An Arrow column for a field of type `f.type` holding a union (module docstring of
    `schemas.unions`): a union (children matched by name), its Parquet form (a struct of
    branches), a plain column (into the branch of its type), or a list or map of those."""
    dst = f.type

    def child(a: pa.Array, c: pa.Field, where: str) -> pa.Array:
        return _coerce(a, c, where, topic, offset)

    try:
        if pa.types.is_union(dst):
            return unions.coerce(arr, dst, child, path)
        if (pa.types.is_list(dst) and (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type))) or (
            pa.types.is_map(dst) and pa.types.is_map(arr.type)
        ):
            return unions.rebuild_nested(arr, dst, child, path)
    except unions.NoBranch as e:
        raise RecordValidationError(e.row + offset if e.row is not None else None, path, str(e), topic=topic) from None
    raise RecordValidationError(
        None,
        path,
        f"expected Arrow {dst}, found a column of Arrow type {arr.type} (no lossless conversion under Avro's rules)",
        topic=topic,
    )


def _first_failing_row(arr: pa.Array, dst: pa.DataType) -> int:
    lo, hi = 0, len(arr)  # invariant: arr[lo:hi] fails to cast
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(arr.slice(lo, mid - lo), dst, safe=True)
            lo = mid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            hi = mid
    return lo
