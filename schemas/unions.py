"""Avro unions stored as Arrow dense unions (the mapping is in `schemas.arrow`): building union
columns from Python values, and the Arrow-side operations pyarrow lacks for them.

pyarrow cannot convert Python values into a union (``pa.array``/``from_pylist`` refuse the type),
so a column whose type holds a union anywhere is built here, recursively: a union from its
values' branches (`schemas.validate.choose`: the branch rules) as per-branch child arrays, type
codes and offsets; a struct, list or map around one from its children; anything below without a
union by ``pa.array`` (pyarrow's conversion, as for every other column). Columns without unions
never come here: the batch path's speed is untouched.

A union value is checked in full when its branch is chosen, so what this module builds is valid
Avro; a value no branch takes raises `NoBranch` (a ValueError), and the caller's slow path names
the record, field and reason.

Invariants of the arrays built (and required of union arrays anywhere in the log): type code i
is child i is Avro branch i; a null value is the null branch's; under a null struct row a union
child holds the null branch if there is one, else a null in its first branch's child.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.avro import base_type, expand, non_null
from schemas.validate import choose

_ABSENT = object()  # a struct child's value under a null struct row


class NoBranch(ValueError):
    """A value that no branch of its union takes (the slow path says why); `row` when known."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


ChildCoerce = Callable[[pa.Array, pa.Field, str], pa.Array]


# --------------------------------------------------------------------------- types
def contains_union(t: pa.DataType) -> bool:
    """Whether Arrow type `t` is or holds a union (dense or sparse) at any depth."""
    if pa.types.is_union(t):
        return True
    if pa.types.is_struct(t):
        return any(contains_union(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return contains_union(t.value_type)
    if pa.types.is_map(t):
        return contains_union(t.item_type)
    return False


def null_branch(t: pa.DataType) -> int | None:
    """The child index of a union type's null branch, or None."""
    return next((i for i, f in enumerate(t) if pa.types.is_null(f.type)), None)


def dense(t: pa.DataType, codes: np.ndarray, offsets: np.ndarray, children: Sequence[pa.Array]) -> pa.Array:
    """A dense union array of exactly type `t` (child i is type code i, as the log stores them)."""
    codes = np.ascontiguousarray(codes, dtype=np.int8)
    offsets = np.ascontiguousarray(offsets, dtype=np.int32)
    return pa.Array.from_buffers(
        t, len(codes), [None, pa.py_buffer(codes), pa.py_buffer(offsets)], children=list(children)
    )


def nulls(n: int, t: pa.DataType) -> pa.Array:
    """`n` nulls of type `t`; a union's are its null branch's (pa.nulls would use child 0)."""
    if not contains_union(t):
        return pa.nulls(n, t)
    if pa.types.is_union(t):
        k = null_branch(t)
        if k is None:
            raise ValueError(f"a union without a null branch cannot hold nulls: {t}")
        kids = [pa.nulls(n, f.type) if i == k else empty(f.type) for i, f in enumerate(t)]
        return dense(t, np.full(n, k), np.arange(n), kids)
    mask = pa.array(np.ones(n, dtype=bool))
    if pa.types.is_struct(t):
        return pa.StructArray.from_arrays([_placeholders(n, f.type) for f in t], fields=list(t), mask=mask)
    offsets = pa.array(np.zeros(n + 1, dtype=np.int32))
    if pa.types.is_map(t):
        return pa.MapArray.from_arrays(offsets, empty(t.key_type), empty(t.item_type), type=t, mask=mask)
    return pa.ListArray.from_arrays(offsets, empty(t.value_type), type=t, mask=mask)


def _placeholders(n: int, t: pa.DataType) -> pa.Array:
    """`n` values of type `t` to sit under null parents (nulls; a union's: see module)."""
    if not pa.types.is_union(t):
        return nulls(n, t)
    k = null_branch(t)
    k = 0 if k is None else k
    kids = [_placeholders(n, f.type) if i == k else empty(f.type) for i, f in enumerate(t)]
    return dense(t, np.full(n, k), np.arange(n), kids)


def empty(t: pa.DataType) -> pa.Array:
    """An empty array of type `t`."""
    if pa.types.is_union(t):
        return dense(t, np.zeros(0), np.zeros(0), [empty(f.type) for f in t])
    if pa.types.is_struct(t) and contains_union(t):
        return pa.StructArray.from_arrays([empty(f.type) for f in t], fields=list(t))
    return pa.array([], type=t) if not contains_union(t) else nulls(0, t)


# --------------------------------------------------------------------------- building from Python
def build(values: list[Any], t: Any, at: pa.DataType, path: str = "") -> pa.Array:
    """An array of Arrow type `at` (Avro type `t`, as `schemas.arrow` maps it) from Python values.
    Raises NoBranch for a union value no branch takes, and whatever pyarrow raises elsewhere."""
    if not contains_union(at):
        return pa.array([None if v is _ABSENT else v for v in values], type=at)
    inner, _ = non_null(t)
    if pa.types.is_union(at):
        return _build_union(values, inner, at, path)
    mask = [v is None or v is _ABSENT for v in values]
    valid = None if not any(mask) else pa.array(mask, pa.bool_())
    if pa.types.is_struct(at):
        fields = {f["name"]: f["type"] for f in inner["fields"]}
        kids = []
        for f in at:
            column = [_ABSENT if m else v.get(f.name) for v, m in zip(values, mask)]
            kids.append(build(column, fields[f.name], f.type, f"{path}.{f.name}"))
        return pa.StructArray.from_arrays(kids, fields=list(at), mask=valid)
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    if pa.types.is_map(at):
        keys: list[Any] = []
        items: list[Any] = []
        for i, v in enumerate(values):
            if not mask[i]:
                pairs = v.items() if isinstance(v, dict) else v
                for k, x in pairs:
                    keys.append(k)
                    items.append(x)
            offsets[i + 1] = len(keys)
        item_arr = build(items, inner["values"], at.item_type, path + "{}")
        return pa.MapArray.from_arrays(pa.array(offsets), pa.array(keys, pa.string()), item_arr, type=at, mask=valid)
    flat: list[Any] = []
    for i, v in enumerate(values):
        if not mask[i]:
            flat.extend(v)
        offsets[i + 1] = len(flat)
    item_arr = build(flat, inner["items"], at.value_type, path + "[]")
    return pa.ListArray.from_arrays(pa.array(offsets), item_arr, type=at, mask=valid)


_NATURAL = {str: ("string", "enum"), bool: ("boolean",), float: ("float", "double"), bytes: ("bytes", "fixed")}
_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _fast(branches: list[Any]) -> tuple[dict[type, int], tuple[int, int, int] | None]:
    """Branches `choose` is certain to pick for any value of an exact Python type (the first branch
    of the type's natural kinds, when it takes every such value), and for ints (index, lo, hi)."""
    kinds = [b if isinstance(b, str) else None for b in branches]  # plain primitives only
    table: dict[type, int] = {}
    if "null" in kinds:
        table[type(None)] = kinds.index("null")
    for py, natural in _NATURAL.items():
        first = next((i for i, b in enumerate(branches) if base_type(b) in natural), None)
        if first is not None and kinds[first] in ("string", "boolean", "float", "double", "bytes"):
            table[py] = first
    first = next((i for i, b in enumerate(branches) if base_type(b) in ("int", "long")), None)
    ints = None
    if first is not None and kinds[first] in _RANGE:
        ints = (first, *_RANGE[str(kinds[first])])
    return table, ints


def _build_union(values: list[Any], branches: list[Any], at: pa.DataType, path: str) -> pa.Array:
    n = len(values)
    table, ints = _fast(branches)
    codes = np.empty(n, dtype=np.int8)
    offsets = np.empty(n, dtype=np.int32)
    groups: list[list[Any]] = [[] for _ in branches]
    k = null_branch(at)
    absent = 0 if k is None else k
    for r, v in enumerate(values):
        fast = table.get(type(v))
        if fast is not None:
            i, x = fast, v
        elif ints is not None and type(v) is int and ints[1] <= v <= ints[2]:
            i, x = ints[0], v
        elif v is _ABSENT:
            i, x = absent, _ABSENT
        else:
            chosen, x, why = choose(v, branches, path)
            if chosen is None:
                raise NoBranch(f"{path}: {why[1] if why else 'no branch'}")
            i = chosen
        codes[r] = i
        offsets[r] = len(groups[i])
        groups[i].append(x)
    kids = [
        pa.nulls(len(g), pa.null()) if b == "null" else build(g, b, f.type, path)
        for g, b, f in zip(groups, branches, at)
    ]
    return dense(at, codes, offsets, kids)


def rows_batch(
    rows: list[Any], tree: dict[str, Any], schema: pa.Schema, defaults: dict[int, Any] | None = None
) -> pa.RecordBatch:
    """`rows` (dicts) as a batch of `schema` (the Arrow schema of record tree `tree`): columns
    without unions by ``from_pylist``, the others by `build`. A row lacking a union column takes
    `defaults[i]` when given (`schemas.resolve.default_value`: tagged with its union's first
    branch), else null."""
    plain = [i for i, f in enumerate(schema) if not contains_union(f.type)]
    sub = pa.schema([schema.field(i) for i in plain], schema.metadata)
    base = pa.RecordBatch.from_pylist(rows, schema=sub) if plain else None
    columns: list[pa.Array] = []
    k = 0
    for i, f in enumerate(schema):
        if base is not None and k < len(plain) and plain[k] == i:
            columns.append(base.column(k))
            k += 1
            continue
        t = tree["fields"][i]["type"]
        if defaults and i in defaults:
            missing = defaults[i]
            column = [r.get(f.name, missing) for r in rows]
        else:
            column = [r.get(f.name) for r in rows]
        columns.append(build(column, t, f.type, f.name))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


# --------------------------------------------------------------------------- Arrow helpers
def codes_offsets(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A union array's type codes and, for each row, its value's index in ``arr.field(code's
    child)`` (a dense union's offsets; a sparse union's row numbers) as numpy."""
    codes = np.asarray(arr.type_codes.to_numpy(zero_copy_only=False), dtype=np.int8)
    if arr.type.mode == "sparse":
        return codes, np.arange(len(arr), dtype=np.int32)
    offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int32)
    return codes, offsets


def child_index(t: pa.DataType) -> dict[int, int]:
    """Type code -> child index of a union type."""
    return {code: i for i, code in enumerate(t.type_codes)}


def retype(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """`arr` as type `t` of the same structure (names, metadata or nullability of fields differ)."""
    if arr.type.equals(t, check_metadata=True):
        return arr
    if pa.types.is_union(t) and pa.types.is_union(arr.type):
        codes, offsets = codes_offsets(arr)
        return dense(t, codes, offsets, [retype(arr.field(i), f.type) for i, f in enumerate(t)])
    if not contains_union(t):
        try:
            return arr.view(t)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
            return arr.cast(t)
    mask = arr.is_null() if arr.null_count else None
    if pa.types.is_struct(t):
        kids = [retype(arr.field(i), f.type) for i, f in enumerate(t)]
        return pa.StructArray.from_arrays(kids, fields=list(t), mask=mask)
    if pa.types.is_map(t):
        items = retype(arr.items, t.item_type)
        return pa.MapArray.from_arrays(arr.offsets, arr.keys, items, type=t, mask=mask)
    return pa.ListArray.from_arrays(arr.offsets, retype(arr.values, t.value_type), type=t, mask=mask)


def gather(parts: list[pa.Array], codes: np.ndarray, offsets: np.ndarray, t: pa.DataType) -> pa.Array:
    """The plain array whose row r is ``parts[codes[r]][offsets[r]]`` (a union flattened, each
    child already of type `t`)."""
    base = np.cumsum([0] + [len(p) for p in parts[:-1]]).astype(np.int64)
    index = base[codes.astype(np.int64)] + offsets
    whole = pa.concat_arrays([p.cast(t) if not p.type.equals(t) else p for p in parts]) if parts else empty(t)
    return whole.take(pa.array(index, pa.int64()))


def tagged_pylist(arr: pa.Array) -> list[Any]:
    """Like ``arr.to_pylist()``, but every value of a union (not its nulls) is a ``(branch name,
    value)`` tuple: the form fastavro writes to a given branch and `schemas.validate.choose` takes."""
    t = arr.type
    if not contains_union(t):
        return arr.to_pylist()  # type: ignore[no-any-return]
    if pa.types.is_union(t):
        kids = [tagged_pylist(arr.field(i)) for i in range(t.num_fields)]
        where = child_index(t)
        names = [f.name for f in t]
        codes, offsets = codes_offsets(arr)
        out: list[Any] = []
        for c, o in zip(codes.tolist(), offsets.tolist()):
            i = where[c]
            v = kids[i][o]
            out.append(None if v is None else (names[i], v))
        return out
    valid = arr.is_valid().to_pylist()
    if pa.types.is_struct(t):
        cols = [(f.name, tagged_pylist(arr.field(i))) for i, f in enumerate(t)]
        return [{name: col[r] for name, col in cols} if ok else None for r, ok in enumerate(valid)]
    offsets = arr.offsets.to_pylist()
    if pa.types.is_map(t):
        keys, items = arr.keys.to_pylist(), tagged_pylist(arr.items)
        return [
            list(zip(keys[offsets[r] : offsets[r + 1]], items[offsets[r] : offsets[r + 1]])) if ok else None
            for r, ok in enumerate(valid)
        ]
    values = tagged_pylist(arr.values)
    return [values[offsets[r] : offsets[r + 1]] if ok else None for r, ok in enumerate(valid)]


def tagged_rows(batch: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    """``batch.to_pylist()``, with union values tagged by their branch (`tagged_pylist`)."""
    if not any(contains_union(t) for t in batch.schema.types):
        return batch.to_pylist()  # type: ignore[no-any-return]
    cols = []
    for c in batch.columns:
        chunks = c.chunks if isinstance(c, pa.ChunkedArray) else [c]
        cols.append([v for ch in chunks for v in tagged_pylist(ch)])
    names = batch.schema.names
    return [dict(zip(names, values)) for values in zip(*cols)]


def avro_branches(t: pa.DataType) -> list[Any]:
    """The Avro union (expanded) a dense union type made by `schemas.arrow` stands for."""
    from schemas.arrow import _FromArrow

    return expand(_FromArrow(trusted=True)._union(t, "union", "union"))  # type: ignore[no-any-return]


def untag(v: Any) -> Any:
    """A `tagged_pylist` value (or any value holding union tuples) with the tags removed."""
    if type(v) is tuple and len(v) == 2 and isinstance(v[0], str):
        return untag(v[1])
    if isinstance(v, dict):
        return {k: untag(x) for k, x in v.items()}
    if isinstance(v, list):
        return [untag(x) for x in v]
    return v


def map_columns(batch: pa.RecordBatch, convert: Callable[[pa.Array], pa.Array]) -> pa.RecordBatch:
    """`batch` with `convert` applied to every column whose type holds a union."""
    if not any(contains_union(t) for t in batch.schema.types):
        return batch
    cols = [convert(c) if contains_union(c.type) else c for c in batch.columns]
    fields = [pa.field(f.name, c.type, f.nullable, f.metadata) for f, c in zip(batch.schema, cols)]
    return pa.RecordBatch.from_arrays(cols, schema=pa.schema(fields, batch.schema.metadata))


# --------------------------------------------------------------------------- Arrow input
def ranks(codes: np.ndarray) -> np.ndarray:
    """Dense union offsets for `codes`: each row's rank among the rows of its code."""
    offsets = np.zeros(len(codes), dtype=np.int32)
    for c in np.unique(codes):
        where = np.flatnonzero(codes == c)
        offsets[where] = np.arange(len(where), dtype=np.int32)
    return offsets


def _assemble(t: pa.DataType, codes: np.ndarray, parts: dict[int, pa.Array]) -> pa.Array:
    """A union of type `t` whose child j holds `parts[j]`, the rows of code j in row order."""
    kids = [parts[j] if j in parts else empty(f.type) for j, f in enumerate(t)]
    return dense(t, codes, ranks(codes), kids)


def coerce(arr: pa.Array, t: pa.DataType, child: ChildCoerce, path: str) -> pa.Array:
    """An Arrow column as union type `t`: a union (dense or sparse; branches matched by name, else
    by type), the Parquet form (`storable`: a struct of nullable branches), a null column, or a
    plain column (into the first branch of its type, else the first it converts to; its nulls into
    the null branch). `child(array, field, path)` converts a branch's values (`schemas.conform`).
    Raises NoBranch when a row fits no branch."""
    src = arr.type
    if pa.types.is_union(src):
        return _from_union(arr, t, child, path)
    names = {f.name: j for j, f in enumerate(t)}
    if pa.types.is_struct(src) and src.num_fields and all(f.name in names for f in src):
        return _from_struct(arr, t, child, path)
    k = null_branch(t)
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if not valid.all() and k is None:
        raise NoBranch(f"null is not allowed (no null branch in {t})", int(np.flatnonzero(~valid)[0]))
    if pa.types.is_null(src):
        return nulls(len(arr), t)
    j = _branch_for(src, t, path)
    codes = np.where(valid, j, -1 if k is None else k).astype(np.int8)
    parts = {j: child(arr.filter(pa.array(valid)), t.field(j), path)}
    if k is not None:
        parts[k] = pa.nulls(int((~valid).sum()), pa.null())
    return _assemble(t, codes, parts)


def _branch_for(src: pa.DataType, t: pa.DataType, path: str) -> int:
    from schemas.casts import castable

    for same in (True, False):
        for j, f in enumerate(t):
            if pa.types.is_null(f.type):
                continue
            if src.equals(f.type) if same else castable(src, f.type):
                return j
    raise NoBranch(f"no branch of {t} takes a column of Arrow type {src}")


def _from_union(arr: pa.Array, t: pa.DataType, child: ChildCoerce, path: str) -> pa.Array:
    src = arr.type
    names = {f.name: j for j, f in enumerate(t)}
    target: dict[int, int] = {}  # source child -> target child
    for i, f in enumerate(src):
        j = names.get(f.name)
        if j is None:
            j = next((k for k, g in enumerate(t) if g.type.equals(f.type) and k not in target.values()), None)
        if j is None:
            raise NoBranch(f"union branch {f.name!r} ({f.type}) is not a branch of {t}")
        target[i] = j
    where = child_index(src)
    raw = np.asarray(arr.type_codes.to_numpy(zero_copy_only=False), dtype=np.int8)
    source = np.array([where[c] for c in raw.tolist()], dtype=np.int64)
    codes = np.array([target[i] for i in source.tolist()], dtype=np.int8)
    if pa.types.is_union(src) and src.mode == "sparse":
        rows = np.arange(len(arr)) + arr.offset
        picks = {i: rows[source == i] for i in target}
    else:
        _, offsets = codes_offsets(arr)
        picks = {i: offsets[source == i] for i in target}
    parts: dict[int, list[pa.Array]] = {}
    for i, j in target.items():
        values = arr.field(i).take(pa.array(picks[i], pa.int64()))
        parts.setdefault(j, []).append(child(values, t.field(j), path))
    if any(len(v) > 1 for v in parts.values()):  # two source branches into one: keep row order
        merged = {}
        for j, pieces in parts.items():
            rows_j = [np.flatnonzero(source == i) for i, jj in target.items() if jj == j]
            order = np.argsort(np.concatenate(rows_j), kind="stable")
            merged[j] = pa.concat_arrays(pieces).take(pa.array(order))
        return _assemble(t, codes, merged)
    return _assemble(t, codes, {j: v[0] for j, v in parts.items()})


def _from_struct(arr: pa.Array, t: pa.DataType, child: ChildCoerce, path: str) -> pa.Array:
    names = {f.name: j for j, f in enumerate(t)}
    n = len(arr)
    codes = np.full(n, -1, dtype=np.int8)
    columns = {}
    for i, f in enumerate(arr.type):
        col = pc.struct_field(arr, [i])
        valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        j = names[f.name]
        codes[(codes == -1) & valid] = j
        columns[j] = col
    k = null_branch(t)
    if (codes == -1).any():
        if k is None:
            raise NoBranch(f"no branch holds a value (no null branch in {t})", int(np.flatnonzero(codes == -1)[0]))
        codes[codes == -1] = k
    parts = {}
    for j, col in columns.items():
        if not pa.types.is_null(t.field(j).type):
            parts[j] = child(col.filter(pa.array(codes == j)), t.field(j), path)
    if k is not None:
        parts[k] = pa.nulls(int((codes == k).sum()), pa.null())
    return _assemble(t, codes, parts)


def rebuild_nested(arr: pa.Array, t: pa.DataType, child: ChildCoerce, path: str) -> pa.Array:
    """A list or map column as list or map type `t` whose values hold a union: values converted."""
    mask = arr.is_null() if arr.null_count else None
    offsets = arr.offsets.cast(pa.int32())
    if pa.types.is_map(t):
        items = child(arr.items, t.item_field, path + "{}")
        return pa.MapArray.from_arrays(offsets, arr.keys.cast(pa.string()), items, type=t, mask=mask)
    return pa.ListArray.from_arrays(offsets, child(arr.values, t.value_field, path + "[]"), type=t, mask=mask)


# --------------------------------------------------------------------------- other consumers
def storable(arr: pa.Array) -> pa.Array:
    """A column with every union replaced by a struct of its non-null branches, each nullable, the
    value in the row's branch and null elsewhere (a null: all null): Parquet has no unions, and
    `coerce` reads this form back (non-null branches never hold nulls, so it is lossless)."""
    t = arr.type
    if not contains_union(t):
        return arr
    if pa.types.is_union(t):
        n = len(arr)
        codes, offsets = codes_offsets(arr)
        where = child_index(t)
        index = np.array([where[c] for c in codes.tolist()], dtype=np.int64)
        kids, fields = [], []
        for i, f in enumerate(t):
            if pa.types.is_null(f.type):
                continue
            pick = np.where(index == i, offsets, -1)
            taken = storable(arr.field(i)).take(pa.array(pick, pa.int64(), mask=pick < 0))
            taken = taken.cast(_all_nullable(taken.type))
            kids.append(taken)
            fields.append(pa.field(f.name, taken.type, True, f.metadata))
        return pa.StructArray.from_arrays(kids, fields=fields) if kids else pa.nulls(n, pa.struct([]))
    out = _convert_nested(arr, storable)
    return out.cast(_all_nullable(out.type))  # nulls under null parents: Parquet wants them nullable


def _all_nullable(t: pa.DataType) -> pa.DataType:
    """`t` with every field inside it nullable (map keys excepted)."""

    def field(f: pa.Field) -> pa.Field:
        return pa.field(f.name, _all_nullable(f.type), True, f.metadata)

    if pa.types.is_struct(t):
        return pa.struct([field(f) for f in t])
    if pa.types.is_map(t):
        return pa.map_(t.key_field, field(t.item_field))
    if pa.types.is_list(t):
        return pa.list_(field(t.value_field))
    return t


def _convert_nested(arr: pa.Array, convert: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """A struct, list or map with `convert` applied to its children (types follow the children)."""
    t = arr.type
    mask = arr.is_null() if arr.null_count else None
    if pa.types.is_struct(t):
        kids = [convert(arr.field(i)) for i in range(t.num_fields)]
        fields = [pa.field(f.name, k.type, f.nullable, f.metadata) for f, k in zip(t, kids)]
        return pa.StructArray.from_arrays(kids, fields=fields, mask=mask)
    offsets = arr.offsets
    if pa.types.is_map(t):
        items = convert(arr.items)
        mt = pa.map_(t.key_field, pa.field(t.item_field.name, items.type, t.item_field.nullable, t.item_field.metadata))
        return pa.MapArray.from_arrays(offsets, arr.keys, items, type=mt, mask=mask)
    values = convert(arr.values)
    lt = pa.list_(pa.field(t.value_field.name, values.type, t.value_field.nullable, t.value_field.metadata))
    return pa.ListArray.from_arrays(offsets, values, type=lt, mask=mask)


def sparse(arr: pa.Array) -> pa.Array:
    """A column with every dense union made sparse (DuckDB reads sparse unions, not dense ones:
    a sparse child is as long as the union, null where the row is of another branch)."""
    t = arr.type
    if not contains_union(t):
        return arr
    if pa.types.is_union(t) and t.mode == "dense":
        codes, offsets = codes_offsets(arr)
        where = child_index(t)
        index = np.array([where[c] for c in codes.tolist()], dtype=np.int64)
        kids, fields = [], []
        for i, f in enumerate(t):
            pick = np.where(index == i, offsets, -1)
            kid = sparse(arr.field(i).take(pa.array(pick, pa.int64(), mask=pick < 0)))
            kids.append(kid)
            fields.append(pa.field(f.name, kid.type, True, f.metadata))
        st = pa.sparse_union(fields, list(t.type_codes))
        return pa.Array.from_buffers(st, len(arr), [None, pa.py_buffer(codes)], children=kids)
    return _convert_nested(arr, sparse)


def sparse_type(t: pa.DataType) -> pa.DataType:
    """The type `sparse` gives a column of type `t`."""
    return sparse(empty(t)).type if contains_union(t) else t
