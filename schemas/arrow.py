"""The Avro <-> Arrow type mapping.

=====================================  ===========================================================
Avro                                   Arrow
=====================================  ===========================================================
null                                   null
boolean                                bool
int                                    int32
long                                   int64
float                                  float32
double                                 float64
bytes                                  binary
string                                 string (utf8)
record                                 struct (fields in order; name, doc, aliases in metadata)
array<T>                               list<item: T>
map<T>                                 map<string, T> (keys non-null)
enum                                   dictionary<int32, string> (symbols, default in metadata)
fixed(n)                               fixed_size_binary(n) (name, size in metadata)
["null", T] or [T, "null"]             nullable T (``avro.null = last`` for [T, "null"])
other unions (["null", "string",       dense_union, one child per Avro branch in declaration order:
"long"], [A, B] of records, ...)       child i is branch i, type code i, named as Avro's JSON
                                       encoding names the branch (``null``, ``string``, ``long`` for
                                       any long, ``array``, ``map``, a named type's full name); the
                                       null branch is a child of Arrow type null (a null value is
                                       that branch's type code), other children are non-nullable;
                                       the field is nullable iff the union has a null branch
int date                               date32
int time-millis                        time32(ms)
long time-micros                       time64(us)
long timestamp-millis                  timestamp(ms, UTC)
long timestamp-micros                  timestamp(us, UTC)
long local-timestamp-millis            timestamp(ms) (no time zone)
long local-timestamp-micros            timestamp(us) (no time zone)
bytes/fixed decimal(p, s)              decimal128(p, s) (decimal256 when p > 38)
string uuid                            string (logicalType kept in metadata)
recursive types                        refused (Arrow types are finite trees)
nesting deeper than MAX_NESTING (32)   refused with SchemaError naming the field path (see below)
unknown / mismatched logical types     the underlying type (the Avro type is kept in metadata)
=====================================  ===========================================================

Non-union fields are non-nullable in Arrow. Field metadata (all values UTF-8, JSON where noted):
``avro.doc`` (the field doc), ``avro.default`` (JSON), ``avro.aliases`` (JSON list),
``avro.type`` (JSON: the attributes of a named, logical or annotated type that the Arrow type
alone does not carry: a record's name/doc/aliases, an enum's symbols, a fixed's name and size,
``uuid``, custom properties), ``avro.null`` (``last`` for [T, "null"]), ``avro.union`` (JSON: the
branch names in Avro order, which are the type codes: a reader maps type code i to Avro branch i
without knowing Avro's rules; on a dense union field). The schema-level metadata
``avro.type`` holds the top record's name, namespace-qualified, doc and aliases, and marks the
Arrow schema as made by `to_arrow`: `from_arrow` then trusts the field metadata (a nullable field
without ``avro.default`` has no default), so ``from_arrow(to_arrow(s))`` returns ``s``.

`from_arrow` on plain Arrow (no ``avro.*`` metadata): int8/16/32, uint8/16 -> int; int64, uint32 ->
long; uint64 -> SchemaError (it does not fit a long); float16/32 -> float; float64 -> double;
string, large_string, string_view -> string; binary, large_binary -> bytes; fixed_size_binary ->
fixed; bool -> boolean; date32/64 -> date; time32 -> time-millis; time64 -> time-micros;
timestamp(s|ms) -> timestamp-millis; timestamp(us|ns) -> timestamp-micros (nanosecond data is
then cast safely on append: a value with sub-microsecond digits is refused, never truncated);
timestamps with a time zone -> timestamp-*, without -> local-timestamp-*; decimal -> bytes
decimal; list, large_list, fixed_size_list -> array; struct -> record named after its path; map
with string keys -> map; dictionary<_, V> -> V (an enum only with ``avro.type`` metadata);
nullable fields -> ["null", T] with default null; dense and sparse unions -> a union of their
children's types (a null child -> "null"; type codes need not be 0..n-1). Anything else raises
SchemaError.

Unions with one non-null branch keep the nullable-T mapping (logs written before general unions
read as before); the writers' rules for union values (which branch a Python value takes) are in
`schemas.unions`.

Nesting: Arrow's IPC reader refuses a type nested 64 levels deep ("Max recursion depth reached"),
so a schema whose data could be appended but never read back is refused up front. A field's
*nesting* counts the Arrow levels inside it: one per record (struct) and array (list), two per map
(a list of key/value structs), one per union stored as a dense union; a plain column is 0.
`MAX_NESTING` (32) is half of what Arrow reads back, leaving room for the readers that wrap rows
(SQL, exports). The limit is checked on
the expanded tree (named types referenced by name count where they are used).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from logstore.errors import SchemaError
from schemas.avro import (
    _LEVELS,
    _NAME_RE,
    MAX_NESTING,
    NAMED,
    PRIMITIVES,
    branch_name,
    check_nesting,
    expand,
    full_form,
    nesting_error,
    non_null,
    short_name,
    type_name,
)

_PRIM = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
_LOGICAL = {  # (base, logicalType) -> Arrow type
    ("int", "date"): pa.date32(),
    ("int", "time-millis"): pa.time32("ms"),
    ("long", "time-micros"): pa.time64("us"),
    ("long", "timestamp-millis"): pa.timestamp("ms", tz="UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", tz="UTC"),
    ("long", "local-timestamp-millis"): pa.timestamp("ms"),
    ("long", "local-timestamp-micros"): pa.timestamp("us"),
}
_META_TYPE = b"avro.type"


# --------------------------------------------------------------------------- Avro -> Arrow
def to_arrow(schema: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of an Avro record schema (see the table above)."""
    check_nesting(schema)  # before expanding: absurd depths must not hit Python's recursion limit
    return tree_to_arrow(expand(schema))


def tree_to_arrow(tree: Any) -> pa.Schema:
    """`to_arrow` on an already expanded tree (see `schemas.avro.expand`)."""
    if not isinstance(tree, dict) or tree.get("type") != "record":
        raise SchemaError(f"a topic schema must be an Avro record, found {type_name(tree)}")
    fields = [_field(f["name"], f["type"], f, f["name"], 0) for f in tree["fields"]]
    attrs = {k: v for k, v in tree.items() if k not in ("fields", "type")}
    return pa.schema(fields, metadata={_META_TYPE: json.dumps({"type": "record", **attrs})})


def _field(name: str, t: Any, fdef: dict[str, Any] | None, path: str, depth: int) -> pa.Field:
    """The Arrow field of Avro type `t`; `depth`: the Arrow levels the enclosing types take."""
    inner, nullable = non_null(t)
    meta: dict[bytes, bytes] = {}
    if isinstance(inner, list):
        arrow_type, type_meta, nullable = _union(inner, path, depth), None, "null" in inner
        meta[b"avro.union"] = json.dumps([branch_name(b) for b in inner]).encode()
    elif inner == "null":
        arrow_type, type_meta, nullable = pa.null(), None, True
    else:
        arrow_type, type_meta = _type(inner, path, depth)
    if type_meta is not None:
        meta[_META_TYPE] = json.dumps(type_meta).encode()
    if nullable and isinstance(t, list) and t[0] != "null":
        meta[b"avro.null"] = b"last"
    if fdef is not None:
        if "doc" in fdef:
            meta[b"avro.doc"] = str(fdef["doc"]).encode()
        if "default" in fdef:
            meta[b"avro.default"] = json.dumps(fdef["default"]).encode()
        if "aliases" in fdef:
            meta[b"avro.aliases"] = json.dumps(fdef["aliases"]).encode()
        extra = {k: v for k, v in fdef.items() if k not in ("name", "type", "doc", "default", "aliases")}
        if extra:
            meta[b"avro.props"] = json.dumps(extra).encode()
    return pa.field(name, arrow_type, nullable=nullable, metadata=meta or None)


def _type(t: Any, path: str, depth: int) -> tuple[pa.DataType, dict[str, Any] | None]:
    if isinstance(t, str):
        return _PRIM[t], None
    kind = t["type"]
    if kind in _LEVELS:
        depth += _LEVELS[kind]
        if depth > MAX_NESTING:
            raise nesting_error(path, depth)
    if kind in PRIMITIVES:
        logical = t.get("logicalType")
        extra = set(t) - {"type", "logicalType"}
        if (kind, logical) in _LOGICAL and not extra:
            return _LOGICAL[(kind, logical)], None
        if kind == "bytes" and logical == "decimal" and extra <= {"precision", "scale"}:
            return _decimal(t, path), None
        return _PRIM[kind], t  # uuid, unknown logical types, custom properties: keep the Avro type
    if kind == "record":
        fields = [_field(f["name"], f["type"], f, f"{path}.{f['name']}", depth) for f in t["fields"]]
        return pa.struct(fields), {k: v for k, v in t.items() if k != "fields"}
    if kind == "enum":
        return pa.dictionary(pa.int32(), pa.string()), t
    if kind == "fixed":
        if t.get("logicalType") == "decimal":
            return _decimal(t, path), t
        return pa.binary(int(t["size"])), t
    if kind == "array":
        return pa.list_(_field("item", t["items"], None, path + "[]", depth)), _annotations(t, "items")
    if kind == "map":
        key = pa.field("key", pa.string(), nullable=False)
        return pa.map_(key, _field("value", t["values"], None, path + "{}", depth)), _annotations(t, "values")
    raise SchemaError(f"field {path!r}: unknown Avro type {kind!r}")  # pragma: no cover (fastavro refuses first)


MAX_BRANCHES = 127  # Arrow's type codes are int8


def _union(branches: list[Any], path: str, depth: int) -> pa.DataType:
    """The dense union of Avro union `branches`: child i is branch i, type code i (module docstring)."""
    depth += 1
    if depth > MAX_NESTING:
        raise nesting_error(path, depth)
    if len(branches) > MAX_BRANCHES:
        raise SchemaError(f"field {path!r}: a union of {len(branches)} branches; Arrow holds at most {MAX_BRANCHES}")
    names = [branch_name(b) for b in branches]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SchemaError(f"field {path!r}: union {type_name(branches)} holds {', '.join(twice)} more than once")
    children = [
        pa.field("null", pa.null()) if b == "null" else _field(name, b, None, path, depth)
        for name, b in zip(names, branches)
    ]
    return pa.dense_union(children, list(range(len(children))))


def _annotations(t: dict[str, Any], child: str) -> dict[str, Any] | None:
    extra = {k: v for k, v in t.items() if k not in ("type", child)}
    return {"type": t["type"], **extra} if extra else None


def _decimal(t: dict[str, Any], path: str) -> pa.DataType:
    precision, scale = int(t.get("precision", 0)), int(t.get("scale", 0))
    if precision < 1:
        raise SchemaError(f"field {path!r}: decimal needs a precision >= 1, found {precision}")
    if precision <= 38:
        return pa.decimal128(precision, scale)
    if precision <= 76:
        return pa.decimal256(precision, scale)
    raise SchemaError(f"field {path!r}: decimal precision {precision} exceeds Arrow's maximum of 76")


# --------------------------------------------------------------------------- Arrow -> Avro
def from_arrow(schema: pa.Schema, name: str = "record") -> dict[str, Any]:
    """An Avro record schema for an Arrow schema; the inverse of `to_arrow` on its output."""
    meta = _meta_json(schema.metadata, _META_TYPE)
    trusted = meta is not None
    top = dict(meta) if isinstance(meta, dict) and meta.get("type") == "record" else {"type": "record", "name": name}
    conv = _FromArrow(trusted)
    top_name = top["name"]
    if not all(_NAME_RE.match(p) for p in top_name.split(".")):
        raise SchemaError(f"record name {top_name!r} is not a valid Avro name")
    conv.defined[top_name] = "<top>"
    top["fields"] = [conv.field(f, f.name, top_name) for f in schema]
    return top


def _meta_json(metadata: dict[bytes, bytes] | None, key: bytes) -> Any:
    if not metadata or key not in metadata:
        return None
    try:
        return json.loads(metadata[key])
    except ValueError:
        raise SchemaError(f"Arrow metadata {key.decode()} is not valid JSON: {metadata[key]!r:.80}") from None


class _FromArrow:
    def __init__(self, trusted: bool) -> None:
        self.trusted = trusted
        self.defined: dict[str, Any] = {}  # full name -> what identifies its definition

    def field(self, f: pa.Field, path: str, record_name: str) -> dict[str, Any]:
        if not _NAME_RE.match(f.name):
            raise SchemaError(f"column {path!r}: {f.name!r} is not a valid Avro field name ([A-Za-z_][A-Za-z0-9_]*)")
        md = f.metadata or {}
        t = self.type(f, path, f"{record_name}_{f.name}")
        out: dict[str, Any] = {"name": f.name}
        union = isinstance(t, list)
        if f.nullable and t != "null" and not union:
            t = [t, "null"] if md.get(b"avro.null") == b"last" else ["null", t]
        out["type"] = t
        if b"avro.doc" in md:
            out["doc"] = md[b"avro.doc"].decode()
        if b"avro.default" in md:
            out["default"] = _meta_json(md, b"avro.default")
        elif f.nullable and not self.trusted and not (union and t[0] != "null"):
            out["default"] = None
            if t != "null" and t[0] != "null":
                out["type"] = ["null", t[0]]
        if b"avro.aliases" in md:
            out["aliases"] = _meta_json(md, b"avro.aliases")
        props = _meta_json(md, b"avro.props")
        if props:
            out.update({k: v for k, v in props.items() if k not in out})
        return out

    def named(self, definition: dict[str, Any], key: Any = None) -> Any:
        """The definition the first time a name is seen, a reference to it afterwards.

        `key` identifies the definition (the Arrow struct type for records, else the JSON).
        """
        name = definition["name"]
        key = full_form(definition) if key is None else key
        if name in self.defined:
            seen = self.defined[name]
            same = (
                seen.equals(key, check_metadata=True)
                if isinstance(seen, pa.DataType) and isinstance(key, pa.DataType)
                else seen == key
            )
            if not same:
                raise SchemaError(f"two different Arrow types carry the Avro name {name!r}")
            return name
        self.defined[name] = key
        return definition

    def unique(self, name: str) -> str:
        candidate, i = name, 2
        while candidate in self.defined:
            candidate, i = f"{name}{i}", i + 1
        return candidate

    def type(self, f: pa.Field, path: str, derived: str) -> Any:
        at = f.type
        meta = _meta_json(f.metadata, _META_TYPE)
        if pa.types.is_dictionary(at):
            if isinstance(meta, dict) and meta.get("type") == "enum":
                return self.named(dict(meta))
            return self.type(pa.field(f.name, at.value_type, metadata=f.metadata), path, derived)
        if pa.types.is_union(at):
            return self._union(at, path, derived)
        if pa.types.is_struct(at):
            rec = (
                {k: v for k, v in meta.items()}
                if isinstance(meta, dict) and meta.get("type") == "record"
                else {"type": "record", "name": self.unique(derived)}
            )
            if rec["name"] in self.defined:
                return self.named(rec, at)  # a second use of the same record type: a reference
            rec["fields"] = [self.field(c, f"{path}.{c.name}", short_name(rec["name"])) for c in at]
            return self.named(rec, at)
        if (
            pa.types.is_list(at)
            or pa.types.is_large_list(at)
            or pa.types.is_fixed_size_list(at)
            or getattr(pa.types, "is_list_view", lambda _: False)(at)
        ):
            out = {"type": "array", "items": self._child(at.value_field, path + "[]", derived + "_item")}
            return {**meta, **out} if isinstance(meta, dict) and meta.get("type") == "array" else out
        if pa.types.is_map(at):
            if not (pa.types.is_string(at.key_type) or pa.types.is_large_string(at.key_type)):
                raise SchemaError(f"column {path!r}: Avro maps need string keys, found Arrow {at}")
            out = {"type": "map", "values": self._child(at.item_field, path + "{}", derived + "_value")}
            return {**meta, **out} if isinstance(meta, dict) and meta.get("type") == "map" else out
        if isinstance(meta, dict) and meta.get("type") in NAMED:
            return self.named(dict(meta))
        if isinstance(meta, dict) and meta.get("type") in PRIMITIVES:
            return meta
        return _plain(at, path, self, derived)

    def _union(self, at: pa.DataType, path: str, derived: str) -> list[Any]:
        """The Avro union of an Arrow union: a branch per child, in child order (a null child: "null")."""
        return ["null" if pa.types.is_null(c.type) else self.type(c, path, f"{derived}_{i}") for i, c in enumerate(at)]

    def _child(self, f: pa.Field, path: str, derived: str) -> Any:
        t = self.type(f, path, derived)
        if f.nullable and t != "null" and not isinstance(t, list):
            return [t, "null"] if (f.metadata or {}).get(b"avro.null") == b"last" else ["null", t]
        return t


def _plain(at: pa.DataType, path: str, conv: _FromArrow, derived: str) -> Any:
    t = pa.types
    if t.is_null(at):
        return "null"
    if t.is_boolean(at):
        return "boolean"
    if t.is_int8(at) or t.is_int16(at) or t.is_int32(at) or t.is_uint8(at) or t.is_uint16(at):
        return "int"
    if t.is_int64(at) or t.is_uint32(at):
        return "long"
    if t.is_uint64(at):
        raise SchemaError(f"column {path!r}: uint64 does not fit an Avro long; cast it to int64 (or decimal) first")
    if t.is_float16(at) or t.is_float32(at):
        return "float"
    if t.is_float64(at):
        return "double"
    if t.is_string(at) or t.is_large_string(at) or getattr(t, "is_string_view", lambda _: False)(at):
        return "string"
    if t.is_binary(at) or t.is_large_binary(at) or getattr(t, "is_binary_view", lambda _: False)(at):
        return "bytes"
    if t.is_fixed_size_binary(at):
        return conv.named({"type": "fixed", "name": conv.unique(derived), "size": at.byte_width})
    if t.is_decimal(at):
        return {"type": "bytes", "logicalType": "decimal", "precision": at.precision, "scale": at.scale}
    if t.is_date(at):
        return {"type": "int", "logicalType": "date"}
    if t.is_time32(at):
        return {"type": "int", "logicalType": "time-millis"}
    if t.is_time64(at):
        return {"type": "long", "logicalType": "time-micros"}
    if t.is_timestamp(at):
        unit = "millis" if at.unit in ("s", "ms") else "micros"
        local = "" if at.tz else "local-"
        return {"type": "long", "logicalType": f"{local}timestamp-{unit}"}
    raise SchemaError(f"column {path!r}: Arrow type {at} has no Avro equivalent")
