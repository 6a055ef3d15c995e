"""Generated row encoders: one Python function per schema version that checks a record's values and
writes its Avro binary encoding directly (the live path's commit: `schemas.rowcodec`).

`compile_row` generates, for a record schema whose fields are all of the common types (``string``,
``bytes``, ``boolean``, ``int``, ``long``, ``float``, ``double``, ``timestamp-micros``,
``timestamp-millis``, enums, arrays, maps, ``["null", T]`` of those, and records of those as T),
a function
``encode(row) -> bytes`` (or ``(bytes, event time)`` with an event-time field) that raises
`Decline` where the row codec's converters decline, and otherwise returns the very bytes
``fastavro.schemaless_writer`` writes for the converted record. So it accepts exactly what the
converters and fastavro accept (same rules, same order of checks does not matter: any refusal
declines the whole commit) and stores the same values; `tests/schemas/test_rowencode.py` checks
both against the converter path by property. Other schemas (general unions, records inside them)
get None: the row codec's converters and fastavro encode them. A record's missing key is null (as
the converters take it: no default inside a record).

Two fastavro behaviours are kept on purpose: a finite double beyond float32's range written to a
``float`` is infinity (C's conversion), and strings are encoded strict UTF-8 (a lone surrogate
raises `UnicodeEncodeError`, which declines).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
EXACT_FLOAT_INT = 2**53  # ints a double holds exactly
_PACK_F = struct.Struct("<f").pack
_PACK_D = struct.Struct("<d").pack
_INF4, _NINF4 = _PACK_F(float("inf")), _PACK_F(float("-inf"))
_EVENT_KINDS = ("int", "long", "timestamp-micros", "timestamp-millis")  # event-time fields encoded here

Encoder = Callable[[Any], Any]


class Decline(Exception):
    """A value the row path is not certain of: the batch path decides."""


class _Unsupported(Exception):
    """A type this module does not generate code for."""


def micros(v: Any) -> int:
    """A timestamp-micros value: an int in the long range, or a datetime (naive taken as UTC)."""
    t = type(v)
    if t is int:
        if not INT64[0] <= v <= INT64[1]:
            raise Decline
        return v  # type: ignore[no-any-return]
    if t is datetime:
        delta = v - (_EPOCH_NAIVE if v.tzinfo is None else _EPOCH)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds  # type: ignore[no-any-return]
    raise Decline


def millis(v: Any) -> int:
    """A timestamp-millis value: a datetime on a whole millisecond, or an int (taken as is)."""
    if type(v) is datetime:
        delta = v - (_EPOCH_NAIVE if v.tzinfo is None else _EPOCH)
        if delta % timedelta(milliseconds=1):
            raise Decline  # sub-millisecond: how the batch path rounds is its business
        return delta // timedelta(milliseconds=1)
    return micros(v)


def _varint(out: bytearray, n: int) -> None:
    """Append Avro's zig-zag varint of `n` (a long) to `out`."""
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _float4(x: float) -> bytes:
    """`x` as a little-endian float32, as fastavro writes it (C's conversion: infinity past the range)."""
    try:
        return _PACK_F(x)
    except OverflowError:
        return _INF4 if x > 0 else _NINF4


def _zigzag_byte(n: int) -> int:
    """The one-byte varint of a small non-negative `n` (a union branch index)."""
    assert 0 <= n < 64
    return n << 1


class _Gen:
    """Source lines of one encoder and the constants they name."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "Decline": Decline,
            "_varint": _varint,
            "_float4": _float4,
            "_pack_d": _PACK_D,
            "_micros": micros,
            "_millis": millis,
        }
        self.lines: list[str] = []
        self._n = 0

    def const(self, value: Any) -> str:
        self._n += 1
        name = f"_k{self._n}"
        self.ns[name] = value
        return name

    def var(self) -> str:
        self._n += 1
        return f"v{self._n}"

    def put(self, ind: int, line: str) -> None:
        self.lines.append("    " * ind + line)

    def text(self, v: str, ind: int, kind: type) -> None:
        """A string (UTF-8) or bytes value: its length, then its bytes."""
        b, k = self.var(), self.var()
        self.put(ind, f"if type({v}) is not {kind.__name__}:")
        self.put(ind + 1, "raise Decline")
        self.put(ind, f"{b} = {v}.encode()" if kind is str else f"{b} = {v}")
        self.put(ind, f"{k} = len({b})")
        self.put(ind, f"if {k} < 64:")
        self.put(ind + 1, f"out.append({k} << 1)")
        self.put(ind, "else:")
        self.put(ind + 1, f"_varint(out, {k})")
        self.put(ind, f"out += {b}")

    def real(self, v: str, ind: int, want: str | None, width: int) -> None:
        x = want or self.var()
        self.put(ind, f"if type({v}) is float:")
        self.put(ind + 1, f"{x} = {v}")
        self.put(ind, f"elif type({v}) is int and {-EXACT_FLOAT_INT} <= {v} <= {EXACT_FLOAT_INT}:")
        self.put(ind + 1, f"{x} = float({v})")
        self.put(ind, "else:")
        self.put(ind + 1, "raise Decline")
        self.put(ind, f"out += _float4({x})" if width == 4 else f"out += _pack_d({x})")

    def emit(self, t: Any, v: str, ind: int, want: str | None = None) -> None:
        """Code checking value `v` of Avro type `t` and appending its encoding to ``out``; the
        converted value (a scalar's) is left in `want` when given."""
        if isinstance(t, list):
            self.nullable(t, v, ind, want)
            return
        if isinstance(t, str):
            t = {"type": t}
        if not isinstance(t, dict):
            raise _Unsupported
        kind, logical = t.get("type"), t.get("logicalType")
        if not isinstance(kind, str):
            raise _Unsupported
        if logical is not None:
            if kind != "long" or logical not in ("timestamp-micros", "timestamp-millis"):
                raise _Unsupported
            x = want or self.var()
            self.put(ind, f"{x} = {'_micros' if logical == 'timestamp-micros' else '_millis'}({v})")
            self.put(ind, f"_varint(out, {x})")
            return
        if want is not None and kind not in ("int", "long"):
            raise _Unsupported  # event times of other types: the converters' business
        if kind in ("string", "bytes"):
            self.text(v, ind, str if kind == "string" else bytes)
        elif kind == "boolean":
            self.put(ind, f"if {v} is True:")
            self.put(ind + 1, "out.append(1)")
            self.put(ind, f"elif {v} is False:")
            self.put(ind + 1, "out.append(0)")
            self.put(ind, "else:")
            self.put(ind + 1, "raise Decline")
        elif kind in ("int", "long"):
            lo, hi = INT32 if kind == "int" else INT64
            self.put(ind, f"if type({v}) is not int or not {lo} <= {v} <= {hi}:")
            self.put(ind + 1, "raise Decline")
            self.put(ind, f"_varint(out, {v})")
            if want is not None:
                self.put(ind, f"{want} = {v}")
        elif kind in ("float", "double"):
            self.real(v, ind, want, 4 if kind == "float" else 8)
        elif kind == "enum":
            symbols = self.const({s: bytes(_encoded_index(i)) for i, s in enumerate(t["symbols"])})
            x = self.var()
            self.put(ind, f"{x} = {symbols}.get({v}) if type({v}) is str else None")
            self.put(ind, f"if {x} is None:")
            self.put(ind + 1, "raise Decline")
            self.put(ind, f"out += {x}")
        elif kind == "array":
            item = self.var()
            self.put(ind, f"if type({v}) is not list:")
            self.put(ind + 1, "raise Decline")
            self.put(ind, f"if {v}:")
            self.put(ind + 1, f"_varint(out, len({v}))")
            self.put(ind + 1, f"for {item} in {v}:")
            self.emit(t["items"], item, ind + 2)
            self.put(ind, "out.append(0)")
        elif kind == "map":
            key, value = self.var(), self.var()
            self.put(ind, f"if type({v}) is not dict:")
            self.put(ind + 1, "raise Decline")
            self.put(ind, f"if {v}:")
            self.put(ind + 1, f"_varint(out, len({v}))")
            self.put(ind + 1, f"for {key}, {value} in {v}.items():")
            self.text(key, ind + 2, str)
            self.emit(t["values"], value, ind + 2)
            self.put(ind, "out.append(0)")
        elif kind == "record":  # reached only where the row codec takes records (nullable, union branches)
            names = self.const(frozenset(f["name"] for f in t["fields"]))
            self.put(ind, f"if type({v}) is not dict or not {names}.issuperset({v}):")
            self.put(ind + 1, "raise Decline")
            for f in t["fields"]:
                x = self.var()
                self.put(ind, f"{x} = {v}.get({f['name']!r})")
                self.emit(f["type"], x, ind)
        else:  # fixed, null, ...
            raise _Unsupported

    def nullable(self, t: list[Any], v: str, ind: int, want: str | None) -> None:
        """``["null", T]`` or ``[T, "null"]``: the branch index, then T's encoding."""
        branches = [b for b in t if b != "null"]
        if len(t) != 2 or len(branches) != 1:
            raise _Unsupported  # a general union: the converters choose its branch
        null = t.index("null")
        self.put(ind, f"if {v} is None:")
        self.put(ind + 1, f"out.append({_zigzag_byte(null)})")
        if want is not None:
            self.put(ind + 1, f"{want} = None")
        self.put(ind, "else:")
        self.put(ind + 1, f"out.append({_zigzag_byte(1 - null)})")
        self.emit(branches[0], v, ind + 1, want)


def _encoded_index(i: int) -> bytearray:
    out = bytearray()
    _varint(out, i)
    return out


def compile_row(fields: list[tuple[str, Any, Any]], event: str | None) -> Encoder | None:
    """The generated encoder of a record of `fields` ((name, expanded Avro type, value of a missing
    key)), returning ``bytes``, or ``(bytes, event time)`` when `event` names a field; None when a
    field's type is outside this module's (see the module docstring)."""
    g = _Gen()
    names = g.const(frozenset(name for name, _, _ in fields))
    g.put(0, "def encode(row):")
    g.put(1, f"if type(row) is not dict or not {names}.issuperset(row):")
    g.put(2, "raise Decline")
    g.put(1, "get = row.get")
    g.put(1, "out = bytearray()")
    try:
        for name, t, missing in fields:
            v = g.var()
            key = repr(name)  # a str literal
            g.put(1, f"{v} = get({key})" if missing is None else f"{v} = get({key}, {g.const(missing)})")
            if name == event:
                if _base_kind(t) not in _EVENT_KINDS:
                    return None
                g.emit(t, v, 1, want="event")
            else:
                g.emit(t, v, 1)
    except _Unsupported:
        return None
    if event is not None:
        g.put(1, "if event is None:")
        g.put(2, "raise Decline")
        g.put(1, "return bytes(out), event")
    else:
        g.put(1, "return bytes(out)")
    source = "\n".join(g.lines) + "\n"
    exec(compile(source, "<schemas.rowencode>", "exec"), g.ns)  # noqa: S102 - our own generated code
    encode: Encoder = g.ns["encode"]
    encode.__doc__ = source  # what it does, for whoever debugs it
    return encode


def _base_kind(t: Any) -> str | None:
    """The kind of a scalar type or of the T of ``["null", T]``: a timestamp's logical type."""
    if isinstance(t, list):
        rest = [b for b in t if b != "null"]
        if len(t) != 2 or len(rest) != 1:
            return None
        t = rest[0]
    if isinstance(t, str):
        return t
    if isinstance(t, dict) and isinstance(t.get("type"), str):
        return str(t.get("logicalType") or t["type"])
    return None
