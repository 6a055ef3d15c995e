"""Avro schemas: parsing, normalization, Parsing Canonical Form and the CRC-64-AVRO fingerprint.

A *schema* here is always a plain JSON-compatible dict (a record schema) as the user wrote it,
minus fastavro's private keys and with ``{"type": "int"}`` shortened to ``"int"``. It is what the
registry stores on disk and what `fingerprint` hashes.

Internally the other modules work on an *expanded tree* (`expand`): every named type (record,
enum, fixed) is a dict whose ``name`` is its full name, references to a named type are replaced
by the definition itself, and ``aliases`` are full names. Recursive types are refused there:
Arrow cannot store them.

The canonical form and the fingerprint (CRC-64-AVRO, the Rabin fingerprint of the Avro
specification's "Schema Fingerprints", as Java's ``SchemaNormalization.parsingFingerprint64``)
are fastavro's; the spec's vectors are checked in the tests. Note that the canonical form strips ``doc``,
``default``, ``aliases`` and logical types, so two schemas that differ only there share a
fingerprint: the registry compares `full_form` to decide whether a schema is new.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import fastavro.schema

from logstore.errors import SchemaError

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHIPPED_DIR = pathlib.Path(__file__).resolve().parent

# Nesting (see schemas.arrow): Arrow levels inside one top-level field, one per record and array,
# two per map (a list of key/value structs). Arrow IPC reads back up to 63; we allow half.
MAX_NESTING = 32
_LEVELS = {"record": 1, "error": 1, "array": 1, "map": 2}


# --------------------------------------------------------------------------- names
def _fullname(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _namespace_of(fullname: str) -> str | None:
    return fullname.rsplit(".", 1)[0] if "." in fullname else None


def short_name(fullname: str) -> str:
    """`a.b.R` -> `R`."""
    return fullname.rsplit(".", 1)[-1]


def _check_fullname(fullname: str, what: str) -> None:
    for part in fullname.split("."):
        if not _NAME_RE.match(part):
            raise SchemaError(f"{what}: invalid Avro name {fullname!r} (expected [A-Za-z_][A-Za-z0-9_]* parts)")


# --------------------------------------------------------------------------- nesting
def nesting_error(path: str, levels: int) -> SchemaError:
    """The SchemaError for field `path` nested `levels` Arrow levels deep (over `MAX_NESTING`)."""
    return SchemaError(
        f"field {path!r}: nested {levels} levels deep, over the limit of {MAX_NESTING} (one level per "
        f"record and array, two per map; Arrow IPC cannot read back data nested 64 levels deep)"
    )


def check_nesting(schema: Any) -> None:
    """Refuse a schema *as written* (before names are resolved) nested deeper than `MAX_NESTING`.

    Iterative, so any depth is refused with a SchemaError rather than a RecursionError. A type
    referenced by name counts nothing here (it may count where it is used), so this never refuses
    a schema the exact check on the expanded tree (`schemas.arrow`) would accept.
    """
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), list):
        return
    stack: list[tuple[Any, str, int]] = []
    for f in schema["fields"]:
        if isinstance(f, dict) and isinstance(f.get("name"), str):
            stack.append((f.get("type"), f["name"], 0))
    while stack:
        t, path, depth = stack.pop()
        if isinstance(t, list):
            if is_union(t):  # a dense union: one Arrow level
                depth += 1
                if depth > MAX_NESTING:
                    raise nesting_error(path, depth)
            stack.extend((b, path, depth) for b in t)
            continue
        if not isinstance(t, dict):
            continue
        kind = t.get("type")
        if isinstance(kind, (dict, list)):
            stack.append((kind, path, depth))
            continue
        if not isinstance(kind, str) or kind not in _LEVELS:
            continue
        depth += _LEVELS[kind]
        if depth > MAX_NESTING:
            raise nesting_error(path, depth)
        if kind == "array":
            stack.append((t.get("items"), path + "[]", depth))
        elif kind == "map":
            stack.append((t.get("values"), path + "{}", depth))
        elif isinstance(t.get("fields"), list):
            for f in t["fields"]:
                if isinstance(f, dict) and isinstance(f.get("name"), str):
                    stack.append((f.get("type"), f"{path}.{f['name']}", depth))


# --------------------------------------------------------------------------- expansion
def expand(schema: Any, recursive: bool = False) -> Any:
    """The expanded tree of `schema` (see the module docstring). Raises SchemaError on recursion,
    unless `recursive`: then a record used inside itself is the same dict (a cyclic tree, for the
    compatibility checks, which answer the Avro question whatever Arrow can store)."""
    return _Expander(recursive).run(schema, None, "schema")


class _Expander:
    def __init__(self, recursive: bool = False) -> None:
        self.recursive = recursive
        self.named: dict[str, Any] = {}
        self.in_progress: set[str] = set()

    def run(self, s: Any, ns: str | None, where: str) -> Any:
        if isinstance(s, str):
            if s in PRIMITIVES:
                return s
            for cand in (_fullname(s, ns), s):
                if cand in self.in_progress and not self.recursive:
                    raise SchemaError(f"{where}: recursive type {cand!r} cannot be stored in Arrow")
                if cand in self.named:
                    return self.named[cand]
            raise SchemaError(f"{where}: unknown type {s!r}")
        if isinstance(s, list):
            return [self.run(b, ns, where) for b in s]
        if not isinstance(s, dict) or "type" not in s:
            raise SchemaError(f"{where}: expected a type name, a list (union) or an object with 'type', found {s!r}")
        t = s["type"]
        if isinstance(t, (dict, list)) or (
            isinstance(t, str) and t not in PRIMITIVES and t not in NAMED and t not in ("array", "map")
        ):
            # {"type": {...}} or {"type": "SomeNamedType"}: a wrapped type
            return self.run(t, ns, where)
        if t in PRIMITIVES:
            extra = {k: v for k, v in s.items() if k != "type" and not k.startswith("__")}
            return {"type": t, **extra} if extra else t
        if t == "array":
            out = {k: v for k, v in s.items() if not k.startswith("__")}
            out["items"] = self.run(s["items"], ns, where + "[]")
            return out
        if t == "map":
            out = {k: v for k, v in s.items() if not k.startswith("__")}
            out["values"] = self.run(s["values"], ns, where + "{}")
            return out
        # named types
        full = _fullname(s["name"], s.get("namespace", ns))
        _check_fullname(full, where)
        if full in self.named or full in PRIMITIVES:
            raise SchemaError(f"{where}: type {full!r} is defined twice")
        inner_ns = _namespace_of(full)
        out = {k: v for k, v in s.items() if not k.startswith("__") and k != "namespace"}
        out["type"] = "record" if t == "error" else t
        out["name"] = full
        if "aliases" in s:
            out["aliases"] = [_fullname(a, inner_ns) for a in s["aliases"]]
        if t in ("record", "error"):
            self.in_progress.add(full)
            if self.recursive:
                self.named[full] = out  # references inside it are this very dict
            fields = []
            seen = set()
            for f in s["fields"]:
                fname = f["name"]
                if not _NAME_RE.match(fname):
                    raise SchemaError(f"{where}: invalid field name {fname!r}")
                if fname in seen:
                    raise SchemaError(f"{where}: field {fname!r} appears twice in record {full!r}")
                seen.add(fname)
                path = fname if where == "schema" else f"{where}.{fname}"
                nf = {k: v for k, v in f.items() if not k.startswith("__")}
                nf["type"] = self.run(f["type"], inner_ns, path)
                fields.append(nf)
            out["fields"] = fields
            self.in_progress.discard(full)
        self.named[full] = out
        return out


# --------------------------------------------------------------------------- normalization
def _strip(s: Any) -> Any:
    """Drop fastavro's private keys, shorten {"type": "int"}; keep everything else as written."""
    if isinstance(s, list):
        return [_strip(b) for b in s]
    if isinstance(s, dict):
        out = {}
        for k, v in s.items():
            if k.startswith("__fastavro") or k.startswith("__named"):
                continue
            if k in ("type", "items", "values"):
                v = _strip(v)
            elif k == "fields":
                v = [{fk: (_strip(fv) if fk == "type" else fv) for fk, fv in f.items()} for f in v]
            out[k] = v
        if set(out) == {"type"} and isinstance(out["type"], str) and out["type"] in PRIMITIVES:
            return out["type"]
        return out
    return s


def _check_defaults(tree: Any, where: str = "", seen: set[int] | None = None) -> None:
    """Union defaults must match the first branch (the Avro spec; Java readers enforce it)."""
    seen = set() if seen is None else seen
    if isinstance(tree, list):
        for b in tree:
            _check_defaults(b, where, seen)
        return
    if not isinstance(tree, dict) or id(tree) in seen:
        return
    if tree["type"] == "record":
        seen.add(id(tree))
        for f in tree["fields"]:
            path = f"{where}.{f['name']}" if where else f["name"]
            if "default" in f and isinstance(f["type"], list) and f["type"]:
                first = f["type"][0]
                if (f["default"] is None) != (first == "null"):
                    raise SchemaError(
                        f"field {path!r}: a union's default must match its first branch "
                        f"({type_name(first)}), found default {f['default']!r}; "
                        + ('put "null" first' if f["default"] is None else "reorder the branches")
                    )
            _check_defaults(f["type"], path, seen)
    elif tree["type"] == "array":
        _check_defaults(tree["items"], where + "[]", seen)
    elif tree["type"] == "map":
        _check_defaults(tree["values"], where + "{}", seen)


# --------------------------------------------------------------------------- shipped schemas
def names() -> list[str]:
    """Names of the record types shipped with logstore (the .avsc files next to this module)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.avsc"))


def canonical_form(schema: Any) -> str:
    """Avro Parsing Canonical Form (specification, "Parsing Canonical Form for Schemas"), by fastavro
    (after the spec's [INTEGERS] rule, which fastavro leaves to the schema: a fixed's size as an int)."""
    return str(fastavro.schema.to_parsing_canonical_form(_int_sizes(schema)))


def _int_sizes(s: Any) -> Any:
    if isinstance(s, list):
        return [_int_sizes(b) for b in s]
    if not isinstance(s, dict):
        return s
    out = {k: _int_sizes(v) if k in ("type", "items", "values") else v for k, v in s.items()}
    if "fields" in s:
        out["fields"] = [{**f, "type": _int_sizes(f.get("type"))} if isinstance(f, dict) else f for f in s["fields"]]
    if s.get("type") == "fixed" and isinstance(s.get("size"), str) and s["size"].strip().isdigit():
        out["size"] = int(s["size"])
    return out


def fingerprint(schema: Any) -> int:
    """CRC-64-AVRO (the spec's Rabin fingerprint) of the Parsing Canonical Form, as an unsigned
    64-bit int. fastavro gives its 8 bytes little-endian (as Avro single-object encoding stores them)."""
    digest = fastavro.schema.fingerprint(canonical_form(schema), "CRC-64-AVRO")
    return int.from_bytes(bytes.fromhex(digest), "little")


def full_form(schema: Any) -> str:
    """Like the canonical form but keeping every attribute (doc, default, aliases, logical types, ...).

    Names are full, keys sorted, no whitespace: two schemas with the same full form are the same
    schema for every purpose (registry idempotence, round-trip tests).
    """

    def norm(s: Any, ns: str | None) -> Any:
        if isinstance(s, str):
            return s if s in PRIMITIVES else _fullname(s, ns)
        if isinstance(s, list):
            return [norm(b, ns) for b in s]
        t = s["type"]
        if isinstance(t, (dict, list)):
            return norm(t, ns)
        out = {k: v for k, v in s.items() if not k.startswith("__") and k != "namespace"}
        if t in PRIMITIVES and set(out) == {"type"}:
            return t
        if t in NAMED:
            full = _fullname(s["name"], s.get("namespace", ns))
            out["name"] = full
            ns = _namespace_of(full)
            if "aliases" in s:
                out["aliases"] = sorted(_fullname(a, ns) for a in s["aliases"])
            if t == "error":
                out["type"] = "record"
        elif t not in PRIMITIVES and t not in ("array", "map"):
            return _fullname(t, ns)
        if "fields" in out:
            out["fields"] = [{**f, "type": norm(f["type"], ns)} for f in s["fields"]]
        if "items" in out:
            out["items"] = norm(s["items"], ns)
        if "values" in out:
            out["values"] = norm(s["values"], ns)
        return out

    return json.dumps(norm(schema, None), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def type_name(t: Any) -> str:
    """A short human name of an (expanded) Avro type, for messages: int, record a.R, ["null","int"]."""
    if isinstance(t, str):
        return t
    if isinstance(t, list):
        return "[" + ", ".join(type_name(b) for b in t) + "]"
    kind = t["type"]
    if isinstance(kind, (dict, list)):
        return type_name(kind)
    if kind in NAMED:
        return f"{'record' if kind == 'error' else kind} {t['name']}"
    if kind == "array":
        return f"array<{type_name(t['items'])}>"
    if kind == "map":
        return f"map<{type_name(t['values'])}>"
    if "logicalType" in t:
        return f"{kind} ({t['logicalType']})"
    return str(kind)


def base_type(t: Any) -> str:
    """The kind of an expanded type: a primitive name, record/enum/fixed/array/map, or union."""
    if isinstance(t, str):
        return t
    if isinstance(t, list):
        return "union"
    return str(t["type"])


def is_union(t: Any) -> bool:
    """Whether `t` is a union stored as an Arrow dense union: any list but T, [T], ["null", T] and
    [T, "null"] (those are a plain, possibly nullable, T)."""
    if not isinstance(t, list):
        return False
    rest = [b for b in t if b != "null"]
    return not (len(rest) == 1 and len(t) <= 2)


def nullable(t: Any) -> bool:
    """Whether a value of type `t` may be null: "null" or a union with a null branch."""
    return t == "null" or (isinstance(t, list) and "null" in t)


def branch_name(t: Any) -> str:
    """The name of a union branch as Avro's JSON encoding spells it: the primitive's name (a logical
    type's base: ``long`` for timestamp-micros), ``array``, ``map``, or a named type's full name."""
    if isinstance(t, str):
        return t
    kind = t["type"]
    if isinstance(kind, (dict, list)):
        return branch_name(kind)
    if kind in NAMED:
        return str(t["name"])
    return str(kind)


def non_null(t: Any) -> tuple[Any, bool]:
    """(T, nullable) for T, ["null", T] or [T, "null"]; unions of other shapes are returned as is."""
    if isinstance(t, list):
        rest = [b for b in t if b != "null"]
        if len(rest) == 1 and len(t) == 2:
            return rest[0], True
        if len(rest) == 1 and len(t) == 1:
            return rest[0], False
    return t, False
