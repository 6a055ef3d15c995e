"""DuckDB views over topics, with time and offset filters pruning what is read.

`attach(log, con)` gives a DuckDB connection one view per topic, named exactly as the topic
(quoted, never pasted: a name is an identifier with ``"`` doubled), holding the topic's user
columns and `_partition`, `_offset`, `_append_time` over all partitions, sealed and active segments
alike. A view reads one consistent snapshot of every partition's committed end, taken when it is
attached: a writer appending meanwhile never shows up as a partial frame (re-attach to see more).

How it reads: each view is a `pyarrow.dataset` over an in-memory file system whose files are runs
of consecutive frames of one partition (about `chunk_rows` records each). A run is served as the
IPC file image of its frames' verified bytes (`ipcfile.frames_as_file`): no decoding, so a query
decompresses only the columns it uses (frame bodies carry `_offset` and `_append_time`; the
partition comes from the fragment's guarantee). Frames cut by `start`/`end`, of an older schema
version or with enum (dictionary) fields are decoded through the reader instead. Every fragment
carries a guarantee built from the index alone: its partition, offset range, append-time range
and event-time range. DuckDB pushes a query's filters into the dataset scan and Arrow skips every
fragment whose guarantee contradicts them: so ``WHERE _append_time >= ...`` over the last 10% of
a large topic reads about 10% of its bytes (to within one fragment).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from .frame import MAX_TIME, MIN_TIME, FrameHeader
from .ipcfile import Image, frames_as_file
from .reader import APPEND_TIME_TYPE, Bound, FrameReader, plan

CHUNK_ROWS = 131_072


def quote_ident(name: str) -> str:
    """`name` as a DuckDB identifier: double-quoted, embedded quotes doubled."""
    if "\x00" in name:
        raise ValueError("identifiers cannot contain NUL")
    return '"' + name.replace('"', '""') + '"'


class _Chunk:
    """Records [lo, hi) of one partition; `frames` lists (segment base, position, base offset, count)
    of its frames when they are whole (so their bytes can be served as they are)."""

    __slots__ = ("topic", "partition", "snap", "lo", "hi", "frames", "reader")

    def __init__(self, topic: Any, partition: int, snap: Any, lo: int, hi: int,
                 frames: list[tuple[int, int, int, int]] | None, reader: FrameReader) -> None:
        self.topic, self.partition, self.snap, self.lo, self.hi = topic, partition, snap, lo, hi
        self.frames = frames
        self.reader = reader


class _ChunkFiles(pafs.FileSystemHandler):
    """A read-only file system whose files are chunks of topics, served as Arrow IPC files."""

    def __init__(self) -> None:
        self.chunks: dict[str, _Chunk] = {}
        self._cache: OrderedDict[str, pa.Buffer | Image] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes_read = 0  # frame bytes verified (what the filters did not prune); approximate under threads

    def _render(self, path: str) -> pa.Buffer | Image:
        with self._lock:
            buf = self._cache.get(path)
            if buf is not None:
                self._cache.move_to_end(path)
                return buf
        c = self.chunks[path]
        fr = c.reader
        part = c.topic.partition(c.partition)
        buf = self._frames_image(c, fr) if c.frames is not None else None
        if buf is None:
            buf = self._decoded(c, fr, part)
        with self._lock:
            self._cache[path] = buf
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        return buf

    def _frames_image(self, c: _Chunk, fr: FrameReader) -> Image | None:
        """The frames' own bytes as one IPC file, checksums verified; None to decode instead."""
        part = c.topic.partition(c.partition)
        bodies, nbytes = [], 0
        for base, pos, offset, count in c.frames:
            size = c.snap.active_size if base == c.snap.bases[-1] else os.path.getsize(part.seg_path(base))
            view = part.view(base, size)
            header = view.header_at(pos)
            if not isinstance(header, FrameHeader) or header.base_offset != offset or header.count != count:
                return None  # let the reader explain (it raises with the details)
            if header.schema_version != fr.latest.version:
                return None  # an older schema: resolve through the reader
            bodies.append(view.body(pos, header))
            nbytes += header.size
        image = frames_as_file(bodies)
        if image is not None:
            with self._lock:
                self.bytes_read += nbytes
        return image

    def _decoded(self, c: _Chunk, fr: FrameReader, part: Any) -> pa.Buffer:
        before = fr.bytes_read
        table = pa.Table.from_batches(list(fr.partition_batches(part, c.snap, c.lo, c.hi)), schema=fr.schema)
        if any(pa.types.is_dictionary(f.type) for f in fr.schema):
            table = table.unify_dictionaries()  # the IPC file format allows one dictionary per field
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, fr.schema) as w:
            w.write_table(table)
        with self._lock:
            self.bytes_read += fr.bytes_read - before
        return sink.getvalue()

    def get_type_name(self) -> str:
        return "logstore-chunks"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return [pafs.FileInfo(p, pafs.FileType.File if p in self.chunks else pafs.FileType.NotFound) for p in paths]

    def get_file_info_selector(self, selector: Any) -> list[pafs.FileInfo]:
        return [pafs.FileInfo(p, pafs.FileType.File) for p in self.chunks]

    def open_input_file(self, path: str) -> pa.NativeFile:
        image = self._render(path)
        if isinstance(image, Image):
            return pa.PythonFile(Image(image._pieces), mode="r")  # its own position per opener
        return pa.BufferReader(image)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def _read_only(self, *args: Any) -> None:
        raise OSError("logstore views are read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


def _ts(us: int) -> pa.Scalar:
    return pa.scalar(us, pa.int64()).cast(APPEND_TIME_TYPE)


def topic_dataset(log: Any, name: str, *, start: Bound = None, end: Bound = None, by: str = "append_time",
                  chunk_rows: int = CHUNK_ROWS) -> tuple[ds.Dataset, _ChunkFiles]:
    """A pyarrow Dataset over one snapshot of a topic, fragments guaranteed by their index ranges."""
    topic = log.topic(name)
    topic.config  # raises TopicNotFoundError
    pl = plan(topic, start, end, None, by)
    reader = FrameReader(topic, None, "raise")  # one per view: it caches the topic's schemas
    schema = reader.schema
    fast = not any(pa.types.is_dictionary(f.type) for f in schema)  # one dictionary per IPC file
    event_field = topic.config.event_time_field
    event_type = schema.field(event_field).type if event_field else None
    files = _ChunkFiles()
    paths: list[str] = []
    guarantees: list[ds.Expression] = []
    for p, (lo, hi) in pl.ranges.items():
        snap = pl.snapshots[p]
        part = topic.partition(p)
        if lo >= hi:
            continue
        for base in snap.bases[part.segment_for_offset(snap, lo):]:
            if base >= hi:
                break
            try:
                entries = part.entries(snap, base)
            except FileNotFoundError:
                continue
            ends = entries["base_offset"] + entries["count"]
            keep = (ends > lo) & (entries["base_offset"] < hi)
            sel = entries[keep]
            if not len(sel):
                continue
            for run, whole in _fragments(sel, lo, hi, chunk_rows, fast):
                c_lo = max(lo, int(run["base_offset"][0]))
                c_hi = min(hi, int(run["base_offset"][-1] + run["count"][-1]))
                path = f"{p}/{c_lo}-{c_hi}"
                frames = [(base, int(e["position"]), int(e["base_offset"]), int(e["count"])) for e in run] if whole else None
                files.chunks[path] = _Chunk(topic, p, snap, c_lo, c_hi, frames, reader)
                paths.append(path)
                t_lo, t_hi = int(run["append_time"].min()), int(run["append_time"].max())
                g = ((ds.field("_partition") == pa.scalar(p, pa.int32()))  # fills the column in images
                     & (ds.field("_offset") >= c_lo) & (ds.field("_offset") < c_hi)
                     & (ds.field("_append_time") >= _ts(t_lo)) & (ds.field("_append_time") <= _ts(t_hi)))
                lo_e, hi_e = int(run["min_event_time"].min()), int(run["max_event_time"].max())
                if event_type is not None and lo_e != MIN_TIME and hi_e != MAX_TIME:
                    g = g & (ds.field(event_field) >= pa.scalar(lo_e, pa.int64()).cast(event_type)) \
                          & (ds.field(event_field) <= pa.scalar(hi_e, pa.int64()).cast(event_type))
                guarantees.append(g)
    dataset = ds.FileSystemDataset.from_paths(paths, schema=schema, format=ds.IpcFileFormat(),
                                              filesystem=pafs.PyFileSystem(files), partitions=guarantees)
    return dataset, files


def _fragments(sel: np.ndarray, lo: int, hi: int, chunk_rows: int, fast: bool):
    """Split a segment's selected index entries into runs of about `chunk_rows` records.

    Yields (entries, whole): `whole` runs hold only frames entirely inside [lo, hi), so their bytes
    can be served as they are; a frame cut by the range is a run of its own, decoded.
    """
    run_start, rows = 0, 0
    for k in range(len(sel)):
        base, count = int(sel["base_offset"][k]), int(sel["count"][k])
        if base < lo or base + count > hi:  # cut by the range: alone, decoded and sliced
            if k > run_start:
                yield sel[run_start:k], fast
            yield sel[k : k + 1], False
            run_start, rows = k + 1, 0
            continue
        rows += count
        if rows >= chunk_rows:
            yield sel[run_start : k + 1], fast
            run_start, rows = k + 1, 0
    if run_start < len(sel):
        yield sel[run_start:], fast


def attach(log: Any, con: Any = None, *, topics: Sequence[str] | None = None, start: Bound = None,
           end: Bound = None, by: str = "append_time"):
    """Create (or replace) one view per topic on `con` (a new in-memory connection by default).

    `start`/`end` (offsets or datetimes) restrict every view up front, like `Log.read`.
    """
    import duckdb

    if con is None:
        con = duckdb.connect()
    names = list(topics) if topics is not None else log.topics()
    for i, name in enumerate(names):
        dataset, _ = topic_dataset(log, name, start=start, end=end, by=by)
        internal = f"__logstore_{abs(hash((str(log.path), name))) % 10**12}_{i}"
        con.register(internal, dataset)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT * FROM {quote_ident(internal)}")
    return con


def query(log: Any, sql: str, *, params: Any = None, topics: Sequence[str] | None = None, start: Bound = None,
          end: Bound = None, by: str = "append_time"):
    """Run `sql` over the topics' views; returns a pyarrow Table."""
    con = attach(log, None, topics=topics, start=start, end=end, by=by)
    try:
        rel = con.sql(sql, params=params) if params is not None else con.sql(sql)
        if rel is None:  # a statement, not a query
            return None
        return fetch_arrow(rel)
    finally:
        con.close()


def fetch_arrow(result: Any):
    """A DuckDB relation as a pyarrow Table (DuckDB 1.x and 2.x spellings)."""
    fetch = getattr(result, "to_arrow_table", None) or getattr(result, "fetch_arrow_table", None) or result.arrow
    return fetch()

