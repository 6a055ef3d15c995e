"""Hypothesis strategies: Avro record schemas that logstore can store, and valid records for them."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from hypothesis import strategies as st

UTC = dt.UTC
_MIN = dt.datetime(1900, 1, 1)
_MAX = dt.datetime(2200, 1, 1)

PRIMITIVE = ["boolean", "int", "long", "float", "double", "bytes", "string"]
LOGICAL = [
    {"type": "int", "logicalType": "date"},
    {"type": "int", "logicalType": "time-millis"},
    {"type": "long", "logicalType": "time-micros"},
    {"type": "long", "logicalType": "timestamp-millis"},
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "long", "logicalType": "local-timestamp-millis"},
    {"type": "long", "logicalType": "local-timestamp-micros"},
    {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3},
    {"type": "string", "logicalType": "uuid"},
]


class _Names:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def _type(draw, names: _Names, depth: int):
    choices = ["primitive", "logical", "enum", "fixed"]
    if depth < 2:
        choices += ["array", "map", "record"]
    kind = draw(st.sampled_from(choices))
    if kind == "primitive":
        return draw(st.sampled_from(PRIMITIVE))
    if kind == "logical":
        return dict(draw(st.sampled_from(LOGICAL)))
    if kind == "enum":
        symbols = draw(st.lists(st.sampled_from(["A", "B", "C", "D", "E"]), min_size=1, max_size=4, unique=True))
        return {"type": "enum", "name": names("Enum"), "symbols": symbols}
    if kind == "fixed":
        return {"type": "fixed", "name": names("Fixed"), "size": draw(st.integers(1, 8))}
    if kind == "array":
        return {"type": "array", "items": _field_type(draw, names, depth + 1)}
    if kind == "map":
        return {"type": "map", "values": _field_type(draw, names, depth + 1)}
    return _record(draw, names, depth + 1, names("Rec"))


def _field_type(draw, names: _Names, depth: int):
    t = _type(draw, names, depth)
    return ["null", t] if draw(st.booleans()) else t


def _record(draw, names: _Names, depth: int, name: str, namespace: str | None = None) -> dict:
    fields = []
    for i in range(draw(st.integers(1 if depth else 1, 4))):
        t = _field_type(draw, names, depth)
        f = {"name": f"f{i}", "type": t}
        if draw(st.booleans()):
            f["doc"] = draw(st.text(max_size=10))
        if isinstance(t, list) and draw(st.booleans()):
            f["default"] = None
        elif t in ("int", "long") and draw(st.booleans()):
            f["default"] = draw(st.integers(-5, 5))
        elif t == "string" and draw(st.booleans()):
            f["default"] = "x"
        fields.append(f)
    rec = {"type": "record", "name": name, "fields": fields}
    if namespace:
        rec["namespace"] = namespace
    return rec


@st.composite
def avro_schemas(draw) -> dict:
    """A record schema: primitive, logical, nullable, array, map, enum, fixed and nested fields."""
    return _record(draw, _Names(), 0, "Top", draw(st.sampled_from([None, "test.ns"])))


def _named(schema: dict) -> dict:
    """Named types by short name (the strategies never reuse a name)."""
    out = {}

    def walk(t):
        if isinstance(t, list):
            for b in t:
                walk(b)
        elif isinstance(t, dict):
            if t.get("type") in ("record", "enum", "fixed"):
                out[t["name"]] = t
            for f in t.get("fields", ()):
                walk(f["type"])
            if "items" in t:
                walk(t["items"])
            if "values" in t:
                walk(t["values"])

    walk(schema)
    return out


def values(t):
    """A strategy of Python values fastavro accepts for `t` and Arrow stores exactly."""
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        if len(branches) > 1:  # a general union: a value of any branch
            return st.one_of([st.none()] * ("null" in t) + [values(b) for b in branches])
        return st.none() | values(branches[0])
    if isinstance(t, str):
        return {
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.binary(max_size=8),
            "string": st.text(max_size=8),
        }[t]
    logical = t.get("logicalType")
    if logical == "date":
        return st.dates(dt.date(1900, 1, 1), dt.date(2200, 1, 1))
    if logical == "time-millis":
        return st.times().map(lambda x: x.replace(microsecond=x.microsecond // 1000 * 1000))
    if logical == "time-micros":
        return st.times()
    if logical in ("timestamp-millis", "local-timestamp-millis"):
        s = st.datetimes(_MIN, _MAX).map(lambda x: x.replace(microsecond=x.microsecond // 1000 * 1000))
        return s.map(lambda x: x.replace(tzinfo=UTC)) if logical == "timestamp-millis" else s
    if logical in ("timestamp-micros", "local-timestamp-micros"):
        s = st.datetimes(_MIN, _MAX)
        return s.map(lambda x: x.replace(tzinfo=UTC)) if logical == "timestamp-micros" else s
    if logical == "decimal":
        p, s = t["precision"], t["scale"]
        return st.integers(-(10**p) + 1, 10**p - 1).map(lambda i: decimal.Decimal(i).scaleb(-s))
    if logical == "uuid":
        return st.uuids().map(str)
    kind = t["type"]
    if kind == "enum":
        return st.sampled_from(t["symbols"])
    if kind == "fixed":
        return st.binary(min_size=t["size"], max_size=t["size"])
    if kind == "array":
        return st.lists(values(t["items"]), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=4), values(t["values"]), max_size=3)
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in t["fields"]})
    raise AssertionError(t)


def normalize(v):
    """Compare values regardless of fastavro's uuid.UUID and map representations."""
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [normalize(x) for x in v]
    return v
