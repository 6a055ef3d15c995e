"""The slow path of `schemas.conform`: checking records value by value against the Avro tree, to
name the first bad record, its field and the reason ("expected X, found Y"). Runs only when a batch
failed the fast, columnar checks."""

from __future__ import annotations

import datetime as _dt
import decimal
import difflib
import numbers
import uuid
from typing import Any

from schemas.avro import base_type, branch_name, is_union, non_null, nullable, type_name

_NoneType = type(None)

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def first_error(rows: list[Any], tree: dict[str, Any]) -> tuple[int, str | None, str] | None:
    """(index, field path, reason) of the first row that does not match `tree`, or None."""
    for i, row in enumerate(rows):
        found = _check_record(row, tree, "")
        if found is not None:
            return (i, *found)
    return None


def show_value(v: Any) -> str:
    text = repr(v)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(v).__name__} {text}"


def suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_record(row: Any, t: dict[str, Any], path: str) -> tuple[str | None, str] | None:
    if not isinstance(row, dict):
        return (path or None, f"expected a record (dict) of {t['name']}, found {show_value(row)}")
    names = _lookup(t, "fields")
    for key in row:
        if key not in names:
            where = f"{path}.{key}" if path else str(key)
            return (where, f"unknown field {key!r} not in schema{suggest(str(key), list(names))}")
    for f in t["fields"]:
        where = f"{path}.{f['name']}" if path else f["name"]
        if f["name"] not in row:
            if nullable(f["type"]) or ("default" in f and not path):  # top level: filled in
                continue
            return (where, f"missing required field (expected {_expected(f['type'])})")
        found = _check(row[f["name"]], f["type"], where)
        if found is not None:
            return found
    return None


_NAMES: dict[tuple[int, str], tuple[dict[str, Any], dict[str, Any]]] = {}


def _lookup(t: dict[str, Any], key: str) -> dict[str, Any]:
    """The field names (`key` "fields") or symbols ("symbols") of named type `t`, as a dict (ordered,
    hashed for lookups: a wide record must not cost a list scan per key), cached by identity."""
    hit = _NAMES.get((id(t), key))
    if hit is not None and hit[0] is t:
        return hit[1]
    names = dict.fromkeys(f["name"] for f in t["fields"]) if key == "fields" else dict.fromkeys(t["symbols"])
    if len(_NAMES) > 4096:
        _NAMES.clear()
    _NAMES[(id(t), key)] = (t, names)
    return names


def _expected(t: Any) -> str:
    if is_union(t):
        return "a value of one of the branches " + ", ".join(type_name(b) for b in t)
    inner, null_ok = non_null(t)
    kind = base_type(inner)
    logical = inner.get("logicalType") if isinstance(inner, dict) else None
    text = {
        "timestamp-micros": "a timestamp (datetime or int microseconds)",
        "timestamp-millis": "a timestamp (datetime or int milliseconds)",
        "local-timestamp-micros": "a local timestamp (datetime or int microseconds)",
        "local-timestamp-millis": "a local timestamp (datetime or int milliseconds)",
        "date": "a date (datetime.date or int days)",
        "time-millis": "a time (datetime.time or int milliseconds)",
        "time-micros": "a time (datetime.time or int microseconds)",
        "uuid": "a uuid string",
    }.get(logical or "")
    if text is None and logical == "decimal":
        text = f"a decimal.Decimal with precision {inner.get('precision')} and scale {inner.get('scale', 0)}"
    if text is None:
        text = {
            "null": "null",
            "boolean": "a boolean",
            "int": "an int (32-bit integer)",
            "long": "a long (64-bit integer)",
            "float": "a float (number)",
            "double": "a double (number)",
            "bytes": "bytes",
            "string": "a string",
            "array": "a list",
            "map": "a map (dict with string keys)",
            "record": "a record (dict)",
        }.get(kind)
    if text is None and kind == "enum":
        text = f"one of the enum symbols {inner['symbols']}"
    if text is None and kind == "fixed":
        text = f"{inner['size']} bytes (fixed {inner['name']})"
    text = text or type_name(inner)
    return text + " or null" if null_ok else text


_BAD = ("", "")  # _check_value's answer for "not of the type": _check words it (only then)


def _check(v: Any, t: Any, path: str) -> tuple[str | None, str] | None:
    if is_union(t):
        return choose(v, t, path)[2]
    inner, null_ok = non_null(t)
    if v is None:
        if null_ok or inner == "null":
            return None
        return (path, f"null is not allowed (expected {_expected(t)})")
    found = _check_value(v, t, inner, path)
    if found is _BAD:
        return (path, f"expected {_expected(t)}, found {show_value(v)}")
    return found


def _check_value(v: Any, t: Any, inner: Any, path: str) -> tuple[str | None, str] | None:
    """None if non-null `v` is of type `t` (`inner` without its null branch), else _BAD or the reason."""
    bad = _BAD
    kind = base_type(inner)
    logical = inner.get("logicalType") if isinstance(inner, dict) else None
    if logical in ("timestamp-micros", "timestamp-millis", "local-timestamp-micros", "local-timestamp-millis"):
        ok = (
            isinstance(v, _dt.datetime)
            or (isinstance(v, numbers.Integral) and not isinstance(v, bool))
            or type(v).__name__ == "datetime64"
        )
        return None if ok else bad
    if logical == "date":
        ok = isinstance(v, _dt.date) or (isinstance(v, numbers.Integral) and not isinstance(v, bool))
        return None if ok else bad
    if logical in ("time-millis", "time-micros"):
        ok = isinstance(v, _dt.time) or (isinstance(v, numbers.Integral) and not isinstance(v, bool))
        return None if ok else bad
    if logical == "decimal":
        if isinstance(v, bool) or not isinstance(v, (decimal.Decimal, numbers.Integral)):
            return bad
        d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(int(v))
        scale, precision = int(inner.get("scale", 0)), int(inner["precision"])
        try:
            q = d.quantize(decimal.Decimal(1).scaleb(-scale), context=decimal.Context(prec=100))
        except decimal.InvalidOperation:
            return bad
        if q != d:
            return (path, f"expected {_expected(t)}, found {show_value(v)} with more than {scale} decimal places")
        if len(q.as_tuple().digits) > precision and q != 0:
            return (path, f"expected {_expected(t)}, found {show_value(v)} with more than {precision} digits")
        return None
    if kind == "boolean":
        return None if isinstance(v, bool) else bad
    if kind in ("int", "long"):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            return bad
        lo, hi = _INT_RANGE[kind]
        return None if lo <= int(v) <= hi else (path, f"expected {_expected(t)}, found {v} out of range [{lo}, {hi}]")
    if kind in ("float", "double"):
        return None if isinstance(v, numbers.Real) and not isinstance(v, bool) else bad
    if kind == "string":
        if isinstance(v, str):
            return None
        if isinstance(v, bytes):
            try:
                v.decode("utf-8")
                return None
            except UnicodeDecodeError:
                return (path, f"expected {_expected(t)}, found bytes that are not valid UTF-8: {show_value(v)}")
        return bad
    if kind == "bytes":
        return None if isinstance(v, (bytes, bytearray, memoryview, str)) else bad
    if kind == "fixed":
        if not isinstance(v, (bytes, bytearray)):
            return bad
        return None if len(v) == int(inner["size"]) else (path, f"expected {_expected(t)}, found {len(v)} bytes")
    if kind == "enum":
        return None if isinstance(v, str) and v in _lookup(inner, "symbols") else bad
    if kind == "array":
        if isinstance(v, (str, bytes, dict)) or not hasattr(v, "__iter__"):
            return bad
        for i, item in enumerate(v):
            found = _check(item, inner["items"], f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if kind == "map":
        items = v.items() if isinstance(v, dict) else v
        if not isinstance(v, (dict, list, tuple)):
            return bad
        for pair in items:
            if not (isinstance(pair, tuple) and len(pair) == 2) or not isinstance(pair[0], str):
                return (path, f"expected {_expected(t)}, found key or entry {show_value(pair)}")
            found = _check(pair[1], inner["values"], f"{path}[{pair[0]!r}]")
            if found is not None:
                return found
        return None
    if kind == "record":
        return _check_record(v, inner, path)
    if kind == "null":
        return bad
    return None


# --------------------------------------------------------------------------- union branches
_KINDS: tuple[tuple[type | tuple[type, ...], frozenset[str]], ...] = (
    (bool, frozenset({"boolean"})),
    (numbers.Integral, frozenset({"int", "long"})),
    (numbers.Real, frozenset({"float", "double"})),
    (str, frozenset({"string", "enum"})),
    ((bytes, bytearray, memoryview, decimal.Decimal), frozenset({"bytes", "fixed"})),
    (dict, frozenset({"record"})),
    ((list, tuple), frozenset({"array"})),
    ((_dt.datetime, _dt.date, _dt.time), frozenset({"int", "long"})),
)


def _natural(v: Any) -> frozenset[str]:
    """The branch kinds a Python value of `v`'s type takes first (before the lenient ones)."""
    if v is None:
        return frozenset({"null"})
    for py, kinds in _KINDS:
        if isinstance(v, py):
            return kinds
    return frozenset()


def _uuid_branch(b: Any) -> bool:
    return isinstance(b, dict) and b.get("logicalType") == "uuid"


def _check_uuid(v: Any, b: Any, path: str) -> tuple[str | None, str] | None:
    """A uuid branch takes only a UUID's text (so "A" of [uuid, SomeEnum] is the enum's)."""
    found = _check(v, b, path)
    if found is not None:
        return found
    try:
        uuid.UUID(v if isinstance(v, str) else bytes(v).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, TypeError):
        return (path, f"expected a UUID's text, found {show_value(v)}")
    return None


Choice = tuple[int, Any, None] | tuple[None, None, tuple[str | None, str]]


def choose(v: Any, branches: list[Any], path: str) -> Choice:
    """The branch of union `branches` a value takes: (index, the branch's value, None), or (None,
    None, (path, reason)) naming the branches tried.

    Rules, in order: a ``(branch name, value)`` tuple takes that branch; then the first branch, in
    declaration order, of the kinds natural to the value's Python type that accepts it (bool:
    boolean; int: int, long (in range; also their logical types, as datetimes and dates are); float:
    float, double; str: string, enum; bytes, Decimal: bytes, fixed; dict: record (a record branch
    whose fields fit); list: array; None: null); then the first other branch that accepts it as
    the non-union rules do (an int for a double, a list of pairs or a dict for a map, str for bytes,
    ...); last, Avro's JSON form ``{"branch name": value}``. A uuid branch takes a UUID's text only.
    """
    names = [branch_name(b) for b in branches]
    if type(v) is tuple and len(v) == 2 and isinstance(v[0], str) and v[0] in names:
        i = names.index(v[0])
        found = _check(v[1], branches[i], path)
        if found is None:
            return i, v[1], None
        return None, None, (found[0], f"{found[1]} (the value given for branch {v[0]})")
    natural = _natural(v)
    tried: list[str] = []
    for first in (True, False):
        for i, b in enumerate(branches):
            if (base_type(b) in natural) != first:
                continue
            found = _check(v, b, path) if not _uuid_branch(b) else _check_uuid(v, b, path)
            if found is None:
                return i, v, None
            if first:
                where = f"{found[0]}: " if found[0] and found[0] != path else ""
                tried.append(f"{names[i]}: {where}{found[1]}")
    if type(v) is dict and len(v) == 1:
        ((key, inner),) = v.items()
        if key in names and _check(inner, branches[names.index(key)], path) is None:
            return names.index(key), inner, None
    if v is None:
        return None, None, (path, f"null is not allowed (union {type_name(branches)} has no null branch)")
    detail = f"; tried {'; '.join(tried)}" if tried else ""
    return None, None, (path, f"no branch of union {type_name(branches)} takes {show_value(v)}{detail}")
