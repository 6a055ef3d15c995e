"""Avro schema resolution applied to Arrow data: read columns written under an old schema version
with the current one, column by column (no per-row Python).

Rules (Avro spec, "Schema Resolution"; `schemas.compat` decides beforehand what is allowed):
fields are matched by name, then by the reader field's aliases; a reader field missing from the
writer gets its default (a constant column); writer fields the reader lacks are dropped;
promotions are Arrow casts (int32 -> int64/float32/float64, float32 -> float64, string <->
binary with UTF-8 validation, timestamp/time millis -> micros, wider decimals); enum
dictionaries are re-indexed onto the reader's symbols (unknown symbols take the reader enum's
default); structs, lists and maps are rebuilt from resolved children; T -> ["null", T] just
becomes nullable, and ["null", T] -> T is refused if a null is actually present. Unions (dense
unions): a writer union's branch goes into the reader union's first branch that reads it
(`schemas.compat.best_branch`: the same type first, as Java's Avro resolves); a writer union read
as a plain type resolves each branch as that type, and a row of a branch it cannot read raises
SchemaError at read time (the Avro spec); a plain writer goes into the reader union's branch
for its type.
"""

from __future__ import annotations

import base64
import decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logstore.errors import SchemaError
from schemas import unions
from schemas.arrow import tree_to_arrow
from schemas.avro import base_type, branch_name, expand, full_form, is_union, non_null, nullable, type_name
from schemas.compat import best_branch, reader_writer_issues
from schemas.unions import contains_union

_CACHE: dict[tuple[int, int], tuple[dict[str, Any], dict[str, Any], Any, Any, pa.Schema, bool]] = {}


def _plan(writer: dict[str, Any], reader: dict[str, Any]) -> tuple[Any, Any, pa.Schema, bool]:
    key = (id(writer), id(reader))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is writer and hit[1] is reader:
        return hit[2:]
    wt, rt = expand(writer), expand(reader)
    same = full_form(writer) == full_form(reader)
    plan = (wt, rt, tree_to_arrow(rt), same)
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[key] = (writer, reader, *plan)
    return plan


def resolve(
    data: pa.RecordBatch | pa.Table, writer: dict[str, Any], reader: dict[str, Any]
) -> pa.RecordBatch | pa.Table:
    """`data` (written under `writer`) as the `reader` schema sees it: same kind, schema to_arrow(reader)."""
    wt, rt, target, same = _plan(writer, reader)
    if same and data.schema.equals(target, check_metadata=False):
        cols = [_view(c, f.type) for c, f in zip(data.columns, target)]
        return _assemble(data, cols, target)
    wfields = {f["name"]: f for f in wt["fields"]}
    n = data.num_rows
    cols = []
    for rf, af in zip(rt["fields"], target):
        wf = _match(rf, wfields)
        if wf is None:
            if "default" not in rf:
                raise SchemaError(
                    f"field '{rf['name']}': not in the writer schema and has no default in the reader "
                    f"schema; cannot resolve old records"
                )
            cols.append(default_array(rf["default"], rf["type"], af.type, n, rf["name"]))
            continue
        col = data.column(wf["name"])
        if isinstance(col, pa.ChunkedArray):
            chunks = [_resolve(c, rf["type"], wf["type"], af.type, rf["name"]) for c in col.chunks]
            cols.append(pa.chunked_array(chunks, type=af.type))
        else:
            cols.append(_resolve(col, rf["type"], wf["type"], af.type, rf["name"]))
    return _assemble(data, cols, target)


def _assemble(data: Any, cols: list[Any], target: pa.Schema) -> Any:
    if isinstance(data, pa.Table):
        return pa.Table.from_arrays(cols, schema=target)
    return pa.RecordBatch.from_arrays(cols, schema=target)


def _view(col: Any, t: pa.DataType) -> Any:
    if col.type.equals(t, check_metadata=True):
        return col
    if isinstance(col, pa.ChunkedArray):
        return pa.chunked_array([_view(c, t) for c in col.chunks], type=t)
    if contains_union(t):
        return unions.retype(col, t)
    try:
        return col.view(t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        return col.cast(t)


def _match(rf: dict[str, Any], wfields: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if rf["name"] in wfields:
        return wfields[rf["name"]]
    for alias in rf.get("aliases", ()):
        if alias in wfields:
            return wfields[alias]
    return None


def _resolve(arr: pa.Array, rtype: Any, wtype: Any, target: pa.DataType, path: str) -> pa.Array:
    if is_union(rtype) or is_union(wtype):
        return _resolve_union(arr, rtype, wtype, target, path)
    rt, r_null = non_null(rtype)
    wt, w_null = non_null(wtype)
    if w_null and not r_null and arr.null_count:
        first = arr.is_null().to_pylist().index(True)
        raise SchemaError(f"field '{path}': row {first} is null, which the reader type {type_name(rtype)} cannot hold")
    rk, wk = base_type(rt), base_type(wt)
    if rk == "record" and wk == "record":
        return _resolve_struct(arr, rt, wt, target, path)
    if rk == "enum":
        return _resolve_enum(arr, rt, target, path)
    if rk == "array" and wk == "array":
        values = _resolve(arr.values, rt["items"], wt["items"], target.value_type, path + "[]")
        return pa.ListArray.from_arrays(arr.offsets, values, type=target, mask=_mask(arr))
    if rk == "map" and wk == "map":
        items = _resolve(arr.items, rt["values"], wt["values"], target.item_type, path + "{}")
        return pa.MapArray.from_arrays(arr.offsets, arr.keys, items, type=target, mask=_mask(arr))
    if arr.type.equals(target):
        return _view(arr, target)
    try:
        return pc.cast(arr, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SchemaError(
            f"field '{path}': cannot resolve {type_name(wtype)} data as {type_name(rtype)}: {e}"
        ) from None


def _resolve_union(arr: pa.Array, rtype: Any, wtype: Any, target: pa.DataType, path: str) -> pa.Array:
    """Avro's union rules: a writer union's value is resolved as its branch's type (into the reader
    union's first branch that reads it, `schemas.compat.best_branch`; or, for a non-union reader,
    as that type: a row whose branch the reader cannot read raises SchemaError); a non-union
    writer's values go into the reader union's branch for that type (nulls into its null branch)."""
    if not is_union(wtype):
        return _into_union(arr, rtype, wtype, target, path)
    codes, offsets = unions.codes_offsets(arr)
    where = unions.child_index(arr.type)
    lookup = np.zeros(128, dtype=np.int64)
    lookup[list(where)] = list(where.values())
    index = lookup[codes.astype(np.int64)]  # the writer branch of each row
    used = set(np.unique(index).tolist())
    if is_union(rtype):
        return _union_to_union(arr, rtype, wtype, target, path, index, offsets, used)
    parts: list[pa.Array] = []
    for i, wb in enumerate(wtype):
        child = arr.field(i)
        if wb == "null":
            ok = nullable(rtype)
            part = pa.nulls(len(child), target) if ok else None
        else:
            ok = not reader_writer_issues(rtype, wb)
            part = _resolve(child, rtype, wb, target, path) if ok and i in used else None
        if not ok and i in used:
            row = int(np.flatnonzero(index == i)[0])
            raise SchemaError(
                f"field '{path}': row {row} holds a value of branch {type_name(wb)} (writer union {type_name(wtype)}), "
                f"which the reader type {type_name(rtype)} cannot read"
            )
        parts.append(part if part is not None else unions.empty(target))
    return unions.gather(parts, index, offsets, target)


def _union_to_union(
    arr: pa.Array,
    rtype: list[Any],
    wtype: list[Any],
    target: pa.DataType,
    path: str,
    index: np.ndarray,
    offsets: np.ndarray,
    used: set[int],
) -> pa.Array:
    into = np.zeros(len(wtype), dtype=np.int8)  # writer branch -> reader branch
    base = np.zeros(len(wtype), dtype=np.int32)  # where its values start in the reader child
    pieces: dict[int, list[pa.Array]] = {}
    for i, wb in enumerate(wtype):
        j = best_branch(rtype, wb)
        if j is None:
            if i in used:
                row = int(np.flatnonzero(index == i)[0])
                raise SchemaError(
                    f"field '{path}': row {row} holds a value of branch {type_name(wb)}, for which the reader union "
                    f"{type_name(rtype)} has no branch"
                )
            continue
        child = _resolve(arr.field(i), rtype[j], wb, target.field(j).type, path)
        into[i] = j
        base[i] = sum(len(p) for p in pieces.get(j, []))
        pieces.setdefault(j, []).append(child)
    kids = [
        (pa.concat_arrays(pieces[j]) if len(pieces[j]) > 1 else pieces[j][0]) if j in pieces else unions.empty(f.type)
        for j, f in enumerate(target)
    ]
    return unions.dense(target, into[index], offsets + base[index], kids)


def _into_union(arr: pa.Array, rtype: list[Any], wtype: Any, target: pa.DataType, path: str) -> pa.Array:
    wt, _ = non_null(wtype)
    j = best_branch(rtype, wt)
    if j is None:
        raise SchemaError(f"field '{path}': the reader union {type_name(rtype)} has no branch for {type_name(wtype)}")
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    k = unions.null_branch(target)
    if not valid.all() and k is None:
        row = int(np.flatnonzero(~valid)[0])
        raise SchemaError(f"field '{path}': row {row} is null, which the reader union {type_name(rtype)} cannot hold")
    values = arr if valid.all() else arr.filter(pa.array(valid))
    parts = {j: _resolve(values, rtype[j], wt, target.field(j).type, path)}
    codes = np.where(valid, j, -1 if k is None else k).astype(np.int8)
    if k is not None:
        parts[k] = pa.nulls(int((~valid).sum()), pa.null())
    kids = [parts.get(i, unions.empty(f.type)) for i, f in enumerate(target)]
    return unions.dense(target, codes, unions.ranks(codes), kids)


def _mask(arr: pa.Array) -> pa.Array | None:
    return arr.is_null() if arr.null_count else None


def _resolve_struct(
    arr: pa.StructArray, rt: dict[str, Any], wt: dict[str, Any], target: pa.DataType, path: str
) -> pa.Array:
    wfields = {f["name"]: (i, f) for i, f in enumerate(wt["fields"])}
    out = []
    for i, rf in enumerate(rt["fields"]):
        fpath = f"{path}.{rf['name']}"
        hit = wfields.get(rf["name"]) or next((wfields[a] for a in rf.get("aliases", ()) if a in wfields), None)
        ftype = target.field(i).type
        if hit is None:
            if "default" not in rf:
                raise SchemaError(f"field '{fpath}': not in the writer schema and has no default")
            out.append(default_array(rf["default"], rf["type"], ftype, len(arr), fpath))
        else:
            child = arr.field(hit[0])  # sliced like arr; parent nulls stay in the mask below
            out.append(_resolve(child, rf["type"], hit[1]["type"], ftype, fpath))
    return pa.StructArray.from_arrays(out, fields=list(target), mask=_mask(arr))


def _resolve_enum(arr: pa.Array, rt: dict[str, Any], target: pa.DataType, path: str) -> pa.Array:
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr.cast(pa.string()))
    symbols = pa.array(rt["symbols"], pa.string())
    mapping = pc.index_in(arr.dictionary.cast(pa.string()), value_set=symbols)
    if mapping.null_count:
        if "default" in rt:
            mapping = pc.fill_null(mapping, rt["symbols"].index(rt["default"]))
    indices = pc.take(mapping, arr.indices)
    if indices.null_count > arr.null_count:
        bad = pc.and_(indices.is_null(), arr.is_valid())
        row = bad.to_pylist().index(True)
        raise SchemaError(
            f"field '{path}': row {row} holds enum symbol {arr[row].as_py()!r}, unknown to the reader "
            f"enum {rt['name']} (symbols {rt['symbols']}) which has no default"
        )
    return pa.DictionaryArray.from_arrays(indices.cast(target.index_type), symbols)


# --------------------------------------------------------------------------- defaults
def default_value(value: Any, t: Any) -> Any:
    """An Avro JSON default as the Python value pyarrow builds the column from."""
    if is_union(t):  # Avro: a union's default is of its first branch
        return (branch_name(t[0]), default_value(value, t[0])) if t[0] != "null" else None
    if isinstance(t, list):
        return default_value(value, t[0])
    kind = base_type(t)
    if value is None or kind == "null":
        return None
    logical = t.get("logicalType") if isinstance(t, dict) else None
    if kind in ("bytes", "fixed"):
        raw = value.encode("latin-1") if isinstance(value, str) else base64.b64decode(value)
        if logical == "decimal":
            unscaled = int.from_bytes(raw, "big", signed=True)
            return decimal.Decimal(unscaled).scaleb(-int(t.get("scale", 0)))
        return raw
    if kind == "record":
        return {
            f["name"]: default_value(value[f["name"]] if f["name"] in value else f.get("default"), f["type"])
            for f in t["fields"]
        }
    if kind == "array":
        return [default_value(v, t["items"]) for v in value]
    if kind == "map":
        return [(k, default_value(v, t["values"])) for k, v in value.items()]
    if kind in ("float", "double"):
        return float(value)
    return value


def default_array(value: Any, t: Any, arrow_type: pa.DataType, n: int, path: str) -> pa.Array:
    """A column of `n` rows of `arrow_type`, each the Avro default `value` of type `t`."""
    try:
        if contains_union(arrow_type):
            one = unions.build([default_value(value, t)], t, arrow_type, path)
        else:
            one = pa.array([default_value(value, t)], type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, KeyError) as e:
        raise SchemaError(f"field '{path}': default {value!r} does not fit {type_name(t)}: {e}") from None
    return one.take(pa.array(np.zeros(n, dtype=np.int32)))
