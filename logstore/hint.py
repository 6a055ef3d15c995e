"""Tail hints: the committed end of a partition, kept in its ``.lock`` file (derived state).

``.lock`` holds two 60-byte hints (slots at bytes 0 and 64), little-endian: slot 0 is rewritten
after every commit, slot 1 when a writer syncs a segment it committed to unsynced (at close, in
"flush" and "none" modes), so it names a recovery point that survives later unsynced commits::

    0 4 magic b"LSH2" | 4 8 active segment base | 12 8 committed size of the active segment |
    20 8 next offset | 28 8 last append time (us) | 36 16 boot id of the writer's machine |
    52 4 flags (bit 0: the commit was fdatasynced before the hint was written; bit 1: *exact*, the
    bytes past the size are a failed commit's, not committed) | 56 4 CRC-32C of 0..55

A hint is derived state (docs/architecture.md, invariant 5) and never synced. It is *trusted*
when its commit was synced, or when it was written in this boot (no power cut can have dropped
what it names); the furthest trusted hint on the active segment is its *recovery point*.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .checksum import crc

_HINT = struct.Struct("<4sqqqq16sI")
_HINT_MAGIC = b"LSH2"
HINT_SYNCED = 1
HINT_EXACT = 2
HINT_SLOT = 64


def _read_boot_id() -> bytes:
    """This boot's id (Linux), or zeros where the system has none: a hint from another boot of an
    unsynced commit may describe bytes a power cut lost, so it is trusted only when synced."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            raw = f.read().strip().replace(b"-", b"")
        return bytes.fromhex(raw.decode())[:16].ljust(16, b"\0")
    except (OSError, ValueError):
        return bytes(16)


BOOT_ID = _read_boot_id()


@dataclass(frozen=True)
class Hint:
    """The tail a writer left: active segment, its committed size, next offset, last append time.

    `synced`: the commit it describes was fdatasynced before the hint was written. `boot`: the
    boot the writer ran in.
    """

    base: int
    size: int
    next_offset: int
    last_append_time: int
    synced: bool = False
    boot: bytes = BOOT_ID
    exact: bool = False  # nothing past `size` is committed (a failed commit left bytes it could not take back)

    def marked(self, *, synced: bool | None = None, exact: bool | None = None) -> Hint:
        """This hint with its `synced` or `exact` flag set as given (`dataclasses.replace`, cheaper)."""
        return Hint(
            self.base,
            self.size,
            self.next_offset,
            self.last_append_time,
            self.synced if synced is None else synced,
            self.boot,
            self.exact if exact is None else exact,
        )

    @property
    def trusted(self) -> bool:
        """True if the bytes it names are on disk: synced, or written in this boot (no power cut since)."""
        return self.synced or (self.boot == BOOT_ID and BOOT_ID != bytes(16))


_CRC = struct.Struct("<I")
PACKED_SIZE = _HINT.size + _CRC.size  # 60 bytes
# the last hints packed or parsed, by their bytes: a writer reads back, at its next commit, the hint
# it wrote at its last one (`tailstate.match_tail`) and gets the very object it holds, unparsed. Exact:
# a parsed hint is a function of its bytes alone, and immutable (`trusted` reads the boot id when asked)
_KNOWN: dict[bytes, Hint] = {}
_KNOWN_MAX = 64


def _remember(raw: bytes, h: Hint) -> None:
    if len(_KNOWN) >= _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN[raw] = h


def pack_hint(h: Hint) -> bytes:
    raw = _HINT.pack(
        _HINT_MAGIC,
        h.base,
        h.size,
        h.next_offset,
        h.last_append_time,
        h.boot,
        (HINT_SYNCED if h.synced else 0) | (HINT_EXACT if h.exact else 0),
    )
    raw += _CRC.pack(crc(raw))
    if len(h.boot) == 16 and type(h.synced) is bool and type(h.exact) is bool:  # what parsing `raw` gives
        _remember(raw, h)
    return raw


def parse_hint(data: bytes) -> Hint | None:
    """The hint in `data`, or None if there is none that passes its checksum and sanity checks."""
    key = bytes(data[:PACKED_SIZE])
    known = _KNOWN.get(key)
    if known is not None:
        return known
    if len(key) < PACKED_SIZE:
        return None
    raw = key[: _HINT.size]
    if raw[:4] != _HINT_MAGIC or _CRC.unpack_from(key, _HINT.size)[0] != crc(raw):
        return None
    _, base, size, nxt, last, boot, flags = _HINT.unpack(raw)
    if base < 0 or size < 0 or nxt < base:
        return None
    h = Hint(base, size, nxt, last, bool(flags & HINT_SYNCED), boot, bool(flags & HINT_EXACT))
    _remember(key, h)
    return h


def _hints(raw: bytes) -> list[Hint]:
    return [h for h in (parse_hint(raw[:HINT_SLOT]), parse_hint(raw[HINT_SLOT : 2 * HINT_SLOT])) if h is not None]


def recovery_point(hints: list[Hint], base: int) -> tuple[int, int, bool] | None:
    """(committed size, next offset, exact) of the furthest trusted hint on segment `base`, or None.

    `exact`: the latest hint says nothing past its size is committed (see `Hint.exact`)."""
    best = None
    for h in hints:
        if h.trusted and h.base == base and (best is None or h.size > best[0]):
            best = (h.size, h.next_offset, h.exact)
    return best
