"""Which Arrow casts keep a value as Avro's rules allow (int widening, float32 -> float64,
timestamp units and zones, large_string -> string, ...): what `conform` and `unions` cast safely."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["castable"]


def castable(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether an Arrow column of type `src` may be cast (safely) to `dst` under Avro's rules."""
    t = pa.types
    if src.equals(dst) or t.is_null(src):
        return True
    if t.is_dictionary(src) and not t.is_dictionary(dst):
        return castable(src.value_type, dst)
    if t.is_dictionary(dst):
        inner = src.value_type if t.is_dictionary(src) else src
        return bool(t.is_string(inner) or t.is_large_string(inner))
    if t.is_integer(dst):
        return bool(t.is_integer(src))  # overflow is caught by the safe cast
    if t.is_floating(dst):
        return bool(t.is_integer(src) or (t.is_floating(src) and src.bit_width <= dst.bit_width))
    if t.is_string(dst) or t.is_large_string(dst):
        return bool(
            t.is_string(src)
            or t.is_large_string(src)
            or t.is_binary(src)
            or t.is_large_binary(src)
            or getattr(t, "is_string_view", lambda _: False)(src)
        )
    if t.is_binary(dst) or t.is_large_binary(dst):
        return bool(t.is_binary(src) or t.is_large_binary(src) or t.is_string(src) or t.is_large_string(src))
    if t.is_fixed_size_binary(dst):
        return bool(t.is_fixed_size_binary(src) and src.byte_width == dst.byte_width)
    if t.is_timestamp(dst):
        return bool(t.is_timestamp(src))
    if t.is_date(dst):
        return bool(t.is_date(src))
    if t.is_time(dst):
        return bool(t.is_time(src))
    if t.is_decimal(dst):
        return bool(t.is_decimal(src) or t.is_integer(src))
    if t.is_list(dst) or t.is_large_list(dst):
        return (t.is_list(src) or t.is_large_list(src) or t.is_fixed_size_list(src)) and castable(
            src.value_type, dst.value_type
        )
    if t.is_map(dst):
        return bool(t.is_map(src) and castable(src.key_type, dst.key_type) and castable(src.item_type, dst.item_type))
    if t.is_struct(dst):
        return (
            t.is_struct(src)
            and [c.name for c in src] == [c.name for c in dst]
            and all(castable(a.type, b.type) for a, b in zip(src, dst))
        )
    return False
