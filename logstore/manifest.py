"""The tier manifest of a partition: ``<partition>/tier.json``, where each sealed segment lives.

A partition without the file keeps every segment on local disk, as a log without a remote always
has. Once segments move to a remote store (`tier.py`) the manifest is the source of truth for
where each one is: a segment it does not name is local; one it names is in the state it gives::

    {"format": 1, "segments": [{"base": 0, "state": "remote", "remote": "s3://bucket/prefix",
      "key": "scores/00000/00000000000000000000.5f3a9c1e.seg", "bytes": ..., "crc": ..., "index_bytes": ...,
      "index_crc": ..., "frames": ..., "end": ..., "first_append": ..., "last_append": ...,
      "min_event": ..., "max_event": ..., "since": ...}, ...], "crc": ...}

- ``uploading``: a move began. The local file is authoritative; the remote object may be absent,
  partial or whole. The next tiering verifies it and finishes the move, or deletes it.
- ``remote``: the remote object is authoritative (verified against ``crc``, the CRC-32C of the
  whole segment file, before this state was written). A local copy left by a crash is ignored by
  readers and evicted by the next tiering.
- ``deleted``: retention removed the segment (readers skip it); its objects are deleted once
  ``since`` (microseconds) is `DELETE_DELAY_US` old, so a read that began before keeps its bytes.

``remote`` is the store's root URI without credentials (they come from the environment, or from
the URI given to `logstore.open` in this process); the index object is ``key`` with ``.idx``.
``crc`` at the end is the CRC-32C of the segments list in canonical JSON: a damaged manifest is
refused (`LogIOError`), never guessed at. The file is replaced whole, durably (temp file, fsync,
rename, fsync of the directory), only under the partition's tier lock (``.tier.lock``).
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from .checksum import crc
from .errors import LogIOError
from .files import read_small, write_atomic

MANIFEST_NAME = "tier.json"
TIER_LOCK = ".tier.lock"
MANIFEST_FORMAT = 1
STATES = ("uploading", "remote", "deleted")
DELETE_DELAY_US = 60_000_000  # a deleted segment's objects outlive its manifest entry by this much


@dataclass(frozen=True)
class Placed:
    """One segment the manifest names: its state, remote object and what readers need of it."""

    base: int
    state: str
    remote: str  # root URI of the store, without credentials
    key: str  # the segment object's key under the root
    bytes: int
    crc: int  # CRC-32C of the whole segment file
    index_bytes: int
    index_crc: int
    frames: int
    end: int  # offset after its last record
    first_append: int
    last_append: int
    min_event: int
    max_event: int
    since: int  # when the state was entered, microseconds

    @property
    def index_key(self) -> str:
        return self.key.removesuffix(".seg") + ".idx"

    @property
    def uri(self) -> str:
        """The segment object's URI (for messages and `describe`)."""
        return self._uri(self.key)

    @property
    def index_uri(self) -> str:
        return self._uri(self.index_key)

    def _uri(self, key: str) -> str:
        root, _, query = self.remote.partition("?")
        return f"{root.rstrip('/')}/{key}" + (f"?{query}" if query else "")

    def summary(self) -> tuple[int, int, int, int, int]:
        """As `summary.load` gives it: (end, first append, last append, min event, max event)."""
        return (self.end, self.first_append, self.last_append, self.min_event, self.max_event)


@dataclass(frozen=True)
class Manifest:
    """A partition's manifest: the segments it names, by base offset."""

    segments: dict[int, Placed]

    def remote_bases(self) -> set[int]:
        return {b for b, e in self.segments.items() if e.state == "remote"}

    def deleted_bases(self) -> set[int]:
        return {b for b, e in self.segments.items() if e.state == "deleted"}

    def remote(self, base: int) -> Placed | None:
        """The entry of segment `base` if the remote copy is authoritative."""
        e = self.segments.get(base)
        return e if e is not None and e.state == "remote" else None

    @cached_property
    def _remote_sorted(self) -> list[int]:
        return sorted(self.remote_bases())

    def following(self, base: int, n: int) -> list[Placed]:
        """The entries of the (at most `n`) remote segments after `base`, in order."""
        bases = self._remote_sorted
        i = bisect.bisect_right(bases, base)
        return [self.segments[b] for b in bases[i : i + n]]

    def with_entry(self, entry: Placed) -> Manifest:
        return Manifest({**self.segments, entry.base: entry})

    def without(self, *bases: int) -> Manifest:
        return Manifest({b: e for b, e in self.segments.items() if b not in bases})


EMPTY = Manifest({})


def _canonical(segments: list[dict[str, Any]]) -> bytes:
    return json.dumps(segments, sort_keys=True, separators=(",", ":")).encode()


def parse(raw: bytes, path: Path) -> Manifest:
    """A manifest's bytes; anything but a whole, valid one raises LogIOError naming `path`."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {doc.get('format') if isinstance(doc, dict) else doc!r}")
        items = doc["segments"]
        if not isinstance(items, list) or crc(_canonical(items)) != doc["crc"]:
            raise ValueError("checksum mismatch")
        names = {f.name for f in fields(Placed)}
        out = {}
        for item in items:
            if not isinstance(item, dict) or set(item) != names:
                raise ValueError(f"entry {item!r:.80}")
            e = Placed(**item)
            numbers = names - {"state", "remote", "key"}
            if e.state not in STATES or not all(type(getattr(e, n)) is int for n in numbers):
                raise ValueError(f"entry {item!r:.80}")
            out[e.base] = e
    except (ValueError, KeyError, TypeError) as e:
        raise LogIOError(f"tier manifest {path} is damaged ({e}): where its segments live is unknown") from None
    return Manifest(out)


def load(directory: Path) -> Manifest | None:
    """The manifest of the partition at `directory`, None if it has none."""
    path = directory / MANIFEST_NAME
    try:
        raw = read_small(path, limit=64 << 20)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LogIOError(f"cannot read tier manifest {path}: {e.strerror or e}") from e
    return parse(raw, path)


def write(directory: Path, manifest: Manifest) -> None:
    """Replace the manifest durably (temp, fsync, rename, fsync dir). Caller holds the tier lock."""
    items = [asdict(manifest.segments[b]) for b in sorted(manifest.segments)]
    doc = {"format": MANIFEST_FORMAT, "segments": items, "crc": crc(_canonical(items))}
    write_atomic(directory / MANIFEST_NAME, (json.dumps(doc, indent=1) + "\n").encode(), "write tier manifest")


def changed(entry: Placed, state: str, since: int) -> Placed:
    return replace(entry, state=state, since=since)


class Placement:
    """A partition's manifest as last read, re-read when the file changes (a stat per use).

    `known` is False until a listing showed the file: a partition that never tiered pays nothing.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.known = False
        self._cached: tuple[tuple[int, int, int], Manifest] | None = None

    def current(self) -> Manifest:
        """The manifest now (EMPTY when there is none)."""
        path = self.dir / MANIFEST_NAME
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return EMPTY
        except OSError as e:
            raise LogIOError(f"cannot read tier manifest {path}: {e.strerror or e}") from e
        self.known = True
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        m = load(self.dir) or EMPTY
        self._cached = (key, m)
        return m

    def merge(self, names: list[str], local: set[int]) -> list[int]:
        """The partition's segments from a directory listing's `names` and the local bases in it:
        remote ones added, deleted ones left out (the manifest is read after the listing, so a
        segment evicted meanwhile is named by it: never missing, never twice)."""
        if MANIFEST_NAME not in names:
            return sorted(local)
        self.known = True
        m = self.current()
        return sorted((local - m.deleted_bases()) | m.remote_bases())

    def remote(self, base: int) -> Placed | None:
        """The remote entry of `base` if the manifest makes the remote copy authoritative."""
        return self.current().remote(base) if self.known else None

    def gone(self, base: int) -> bool:
        """True if retention removed segment `base` (its manifest entry says deleted)."""
        if not self.known:
            return False
        e = self.current().segments.get(base)
        return e is not None and e.state == "deleted"
