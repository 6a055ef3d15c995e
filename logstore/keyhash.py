"""The partitioner: which partition a record's key goes to, stable across processes and versions.

Key hash, version 1 (a frozen contract: changing it would scatter a key's history over two
partitions). For a key's bytes ``b`` (UTF-8 for strings, as-is for binary, 8 bytes little-endian
two's complement for integers), zero-padded to a multiple of 8 and read as little-endian 64-bit
words ``w_0 .. w_{k-1}``, with all arithmetic modulo 2**64::

    h = 0x9E3779B97F4A7C15 ^ (len(b) * 0xC2B2AE3D27D4EB4F)
    for w in words:  h = ((h ^ w) * 0x100000001B3) ;  h ^= h >> 29
    h = fmix64(h)            # MurmurHash3's finaliser: h ^= h>>33; h *= 0xFF51AFD7ED558CCD;
                             # h ^= h>>33; h *= 0xC4CEB9FE1A85EC53; h ^= h>>33
    partition = h % partitions

A null key goes to partition 0. `key_hash` is the scalar reference; `partitions_for` computes the
same thing vectorized over an Arrow column with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .errors import ArgumentTypeError

_SEED = 0x9E3779B97F4A7C15
_LEN_MUL = 0xC2B2AE3D27D4EB4F
_MUL = 0x100000001B3
_MASK = (1 << 64) - 1


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK
    h ^= h >> 33
    return h


def key_bytes(key: object) -> bytes:
    """The bytes a key hashes as."""
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key).to_bytes(8, "little", signed=True)
    raise ArgumentTypeError(f"keys must be str, bytes or int, found {type(key).__name__}")


def key_hash(key: object) -> int:
    """The 64-bit hash of one key (the scalar reference implementation)."""
    b = key_bytes(key)
    h = _SEED ^ ((len(b) * _LEN_MUL) & _MASK)
    padded = b + b"\0" * (-len(b) % 8)
    for i in range(0, len(padded), 8):
        w = int.from_bytes(padded[i : i + 8], "little")
        h = ((h ^ w) * _MUL) & _MASK
        h ^= h >> 29
    return _fmix64(h)


def partition_of(key: object, partitions: int) -> int:
    """The partition of one key (None -> 0)."""
    if key is None:
        return 0
    return key_hash(key) % partitions


def _fmix64_np(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def _hash_words(words: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Vectorized hash of rows of little-endian words (shape N x k) with byte lengths."""
    with np.errstate(over="ignore"):
        h = np.uint64(_SEED) ^ (lengths.astype(np.uint64) * np.uint64(_LEN_MUL))
        mul, shift = np.uint64(_MUL), np.uint64(29)
        for j in range(words.shape[1]):
            # rows shorter than this word hash only their own words
            active = lengths > 8 * j
            if active.all():
                h = (h ^ words[:, j]) * mul
                h ^= h >> shift
            else:
                nh = (h ^ words[:, j]) * mul
                nh ^= nh >> shift
                h = np.where(active, nh, h)
        return _fmix64_np(h)


def _binary_hashes(arr: pa.Array) -> np.ndarray:
    off_dtype: type[np.signedinteger[Any]]
    if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        off_dtype = np.int64
    else:
        off_dtype = np.int32
    bufs = arr.buffers()
    offsets: np.ndarray[Any, np.dtype[np.signedinteger[Any]]] = np.frombuffer(
        bufs[1], dtype=off_dtype, count=len(arr) + 1, offset=arr.offset * np.dtype(off_dtype).itemsize
    )
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    starts = offsets[:-1].astype(np.int64)
    lengths = (offsets[1:] - offsets[:-1]).astype(np.int64)
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint64)
    width = int(-(-int(lengths.max(initial=0)) // 8) * 8) or 8
    first = int(lengths[0])
    if np.all(lengths == first) and first % 8 == 0 and first > 0 and np.all(np.diff(starts) == first):
        start = int(starts[0])
        mat = data[start : start + n * first].reshape(n, first)
    else:
        cols = np.arange(width, dtype=np.int64)
        idx = starts[:, None] + cols[None, :]
        mask = cols[None, :] < lengths[:, None]
        if len(data):
            mat = np.where(mask, data[np.minimum(idx, len(data) - 1)], 0).astype(np.uint8)
        else:
            mat = np.zeros((n, width), np.uint8)
    words = np.ascontiguousarray(mat).view("<u8")
    return _hash_words(words, lengths)


def hashes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Vectorized `key_hash` over an Arrow column of strings, binaries or integers (nulls -> 0)."""
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 0:
            return np.zeros(0, np.uint64)
        return np.concatenate([hashes(c) for c in column.chunks])
    t = column.type
    if pa.types.is_dictionary(t):
        return hashes(column.dictionary_decode())
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        out = _binary_hashes(column)
    elif pa.types.is_integer(t):
        vals = column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
        out = _hash_words(vals.reshape(-1, 1), np.full(len(vals), 8, np.int64))
    else:
        raise ArgumentTypeError(f"a key column must hold strings, binaries or integers, found {t}")
    if column.null_count:
        out = out.copy()
        out[np.asarray(column.is_null())] = 0  # replaced by partition 0 below
    return out


def partitions_for(column: pa.Array | pa.ChunkedArray, partitions: int) -> np.ndarray:
    """Partition number (int64) of every row's key; null keys go to partition 0."""
    if partitions == 1:
        return np.zeros(len(column), np.int64)
    parts = (hashes(column) % np.uint64(partitions)).astype(np.int64)
    if column.null_count:
        parts[np.asarray(column.is_null())] = 0
    return parts
