"""DuckDB views over topics, with time and offset filters pruning what is read.

`attach(log, con)` gives a DuckDB connection one view per topic, named exactly as the topic
(registered by name, never pasted into SQL; queries quote it as an identifier with ``"`` doubled,
`quote_ident`), holding the topic's user columns and `_partition`, `_offset`, `_append_time` over
all partitions, sealed and active segments alike. A view reads one consistent snapshot of every
partition's committed end, taken when it is attached: a writer appending meanwhile never shows up
as a partial frame (re-attach to see more).

How it reads: each view is a `TopicDataset`, a `pyarrow.dataset` over an in-memory file system
whose files are runs of consecutive frames of one partition (about `chunk_rows` records each).
Every fragment carries a guarantee built from the index alone: its partition, offset range,
append-time range and event-time range. DuckDB pushes a query's projection and filters into the
dataset's `scanner`, and Arrow skips every fragment whose guarantee contradicts the filters: so
``WHERE _append_time >= ...`` over the last 10% of a large topic reads about 10% of its bytes (to
within one fragment). The fragments left are read frame by frame straight from the mapped
segments, on a few threads: each frame's body checksum is verified, then only the columns the
query uses are decompressed (frame bodies carry `_offset` and `_append_time`; `_partition` is the
fragment's), and the filters are applied exactly. Frames cut by `start`/`end` or of an older
schema version are decoded through the reader instead. Read through its file system instead
(``fragment.to_table()``), a fragment is the IPC file image of its frames' verified bytes
(`ipcfile.frames_as_file`), or, when the view has dictionary columns, of their decoded rows.

String columns that the topic's frames store dictionary-encoded (sampled from a few frames when
the view is made) are ``dictionary<int32, string>`` in the view, so DuckDB groups and filters
them by code; a frame storing such a column plain is encoded as it is read, and the other way
round. DuckDB sees VARCHAR either way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from . import parallel
from .errors import CorruptFrameError
from .frame import (
    DICTIONARY_TYPE,
    HEADER_SIZE,
    MAX_TIME,
    MIN_TIME,
    FrameHeader,
    is_stored_dictionary,
    recode,
    run_end_decode,
)
from .ipcfile import Image, frames_as_file
from .reader import APPEND_TIME_TYPE, SYSTEM_COLUMNS, Bound, FrameReader, plan

CHUNK_ROWS = 131_072
JOB_BYTES = 8 << 20  # frames decoded by one call on the frame pool: fewer, larger hand-overs
PROBES = 4  # frames sampled for the storage of string columns


def quote_ident(name: str) -> str:
    """`name` as a DuckDB identifier: double-quoted, embedded quotes doubled."""
    if "\x00" in name:
        raise ValueError("identifiers cannot contain NUL")
    return '"' + name.replace('"', '""') + '"'


class _Chunk:
    """Records [lo, hi) of one partition; `frames` lists (segment base, position, base offset, count,
    frame size) of its frames when they are whole (so their bytes can be served as they are)."""

    __slots__ = ("topic", "partition", "snap", "lo", "hi", "frames", "reader")

    def __init__(self, topic: Any, partition: int, snap: Any, lo: int, hi: int,
                 frames: list[tuple[int, int, int, int, int]] | None, reader: FrameReader) -> None:
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
        self.schema: pa.Schema | None = None  # the view's schema (`view_schema`)
        self.images = True  # whole frames may be served as their own bytes (no dictionary column)

    def _render(self, path: str) -> pa.Buffer | Image:
        with self._lock:
            buf = self._cache.get(path)
            if buf is not None:
                self._cache.move_to_end(path)
                return buf
        c = self.chunks[path]
        fr = c.reader
        part = c.topic.partition(c.partition)
        buf = self._frames_image(c, fr) if c.frames is not None and self.images else None
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
        views: dict[int, Any] = {}
        for base, pos, offset, count, _ in c.frames:
            view = views.get(base)
            if view is None:
                try:
                    view = views[base] = part.snapshot_view(c.snap, base)
                except FileNotFoundError:
                    return None  # deleted by retention since the snapshot: the reader skips its records
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
        schema = self.schema if self.schema is not None else fr.schema
        batches = [as_view(b, schema) for b in fr.partition_batches(part, c.snap, c.lo, c.hi)]
        table = pa.Table.from_batches(batches, schema=schema)
        if any(pa.types.is_dictionary(f.type) for f in schema):
            table = table.unify_dictionaries()  # the IPC file format allows one dictionary per field
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, schema) as w:
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


class TopicDataset(ds.FileSystemDataset):
    """A topic's chunks as a pyarrow Dataset whose scans read the frames straight from the segments.

    It is a real `FileSystemDataset` over `_ChunkFiles` (fragments, guarantees, IPC file images),
    and anything reading its fragments gets those images. Its own `scanner(columns=, filter=)`,
    which DuckDB calls with the query's projection and filters, takes a shorter path: the fragments
    the filter leaves (pruned by their guarantees) are read frame by frame, each frame's checksum
    verified and only the needed columns decompressed from the mapped segment (no copy, no Python
    per read), on a few threads at once, in order; the filter is then applied exactly.
    """

    _files: _ChunkFiles

    def scanner(self, columns: Any = None, filter: Any = None, **options: Any) -> ds.Scanner:
        files = getattr(self, "_files", None)
        plain = columns is None or (isinstance(columns, (list, tuple)) and all(isinstance(c, str) for c in columns))
        if files is None or options or not plain:
            return super().scanner(columns=columns, filter=filter, **options)
        schema = self.schema
        if columns is None:
            produced = schema
        else:
            need = set(columns)
            if filter is not None:  # fields the filter names; over-approximated by their spelling
                text = str(filter)
                need.update(n for n in schema.names if n in text)
            produced = pa.schema([f for f in schema if f.name in need])
        if filter is None:
            chunks = list(files.chunks.values())
            produced = pa.schema([schema.field(c) for c in columns]) if columns is not None else schema
            return TopicScanner(lambda: _scan(files, chunks, produced), produced)
        chunks = [files.chunks[f.path] for f in self.get_fragments(filter=filter)]

        def filtered(read: pa.Schema) -> pa.RecordBatchReader:
            return ds.Scanner.from_batches(_scan(files, chunks, read), schema=read, columns=columns,
                                           filter=filter).to_reader()

        try:
            first = filtered(produced)
        except pa.ArrowInvalid:  # the filter names a field not spelled as such: read every column
            if produced is schema:
                raise
            produced = schema
            first = filtered(schema)
        pending = [first]
        return TopicScanner(lambda: pending.pop() if pending else filtered(produced), first.schema)


class TopicScanner:
    """What `TopicDataset.scanner` returns: the read methods of a `pyarrow.dataset.Scanner`
    (`to_reader`, `to_batches`, `to_table`, `count_rows`, `head`, `projected_schema`) over one
    pass of the frames. Without a filter the batches stream straight from the frame pool (Arrow's
    scan machinery would cost a fifth of a query); a filter runs through a real Scanner."""

    def __init__(self, batches: Any, schema: pa.Schema) -> None:
        self._batches = batches  # () -> an iterable of batches of `schema`
        self.projected_schema = schema

    def to_reader(self) -> pa.RecordBatchReader:
        """The batches as a `pyarrow.RecordBatchReader` (what DuckDB reads)."""
        source = self._batches()
        if isinstance(source, pa.RecordBatchReader):
            return source
        return pa.RecordBatchReader.from_batches(self.projected_schema, source)

    def to_batches(self) -> Iterator[pa.RecordBatch]:
        return iter(self.to_reader())

    def to_table(self) -> pa.Table:
        return self.to_reader().read_all()

    def count_rows(self) -> int:
        return sum(b.num_rows for b in self.to_reader())

    def head(self, num_rows: int) -> pa.Table:
        out, rows = [], 0
        reader = self.to_reader()
        for b in reader:
            if rows >= num_rows:
                break
            out.append(b.slice(0, num_rows - rows))
            rows += out[-1].num_rows
        return pa.Table.from_batches(out, schema=self.projected_schema)


def _scan(files: _ChunkFiles, chunks: list[_Chunk], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Batches of `schema` from `chunks`, in order, decoded on the frame pool in jobs of about
    `JOB_BYTES` of frames (a hand-over per frame cost a tenth of a query): whole frames straight from
    the segment, frames cut by the range or of an older schema through a reader."""
    if not chunks:
        return
    latest = chunks[0].reader.latest
    body_names = latest.arrow.names + list(SYSTEM_COLUMNS[1:])  # a frame body ends with _offset, _append_time
    wanted = set(schema.names)
    # Decode only what is asked for (at least _offset, which gives the row count).
    included = [i for i, n in enumerate(body_names) if n in wanted] or [len(body_names) - 2]
    options = pa.ipc.IpcReadOptions(included_fields=included, use_threads=False)  # the pool: a frame a thread

    def jobs() -> Iterator[tuple[_Chunk, list | None]]:
        for c in chunks:
            if c.frames is None:
                yield c, None
                continue
            part = c.topic.partition(c.partition)
            views: dict[int, Any] = {}
            group: list = []
            nbytes = 0
            for base, pos, offset, count, size in c.frames:
                if base not in views:
                    try:
                        views[base] = part.snapshot_view(c.snap, base)
                    except FileNotFoundError:  # deleted by retention since the snapshot: its records are gone
                        views[base] = None
                view = views[base]
                if view is None:
                    continue
                group.append((view, pos, offset, count))
                nbytes += size
                if nbytes >= JOB_BYTES:
                    yield c, group
                    group, nbytes = [], 0
            if group:
                yield c, group

    def load(job: tuple[_Chunk, list | None]) -> list[pa.RecordBatch]:
        c, frames = job
        out: list[pa.RecordBatch] = []
        nbytes = 0
        for frame in frames or [None]:
            if frame is not None:
                done = _frame_batch(*frame, c.partition, latest.version, options, schema)
                if done is not None:
                    out.append(done[0])
                    nbytes += done[1]
                    continue
                lo, hi = frame[2], frame[2] + frame[3]  # not the frame expected: the reader resolves or explains it
            else:
                lo, hi = c.lo, c.hi
            fr = FrameReader(c.topic, schema.names, "raise")
            out += [as_view(b, schema) for b in fr.partition_batches(c.topic.partition(c.partition), c.snap, lo, hi)]
            nbytes += fr.bytes_read
        with files._lock:
            files.bytes_read += nbytes
        return out

    # a job per thread in flight while DuckDB holds the one handed over
    for batches in parallel.imap_ordered(load, jobs(), ahead=parallel.threads() + 1):
        yield from batches


def _frame_batch(view: Any, pos: int, offset: int, count: int, partition: int, version: int,
                 options: pa.ipc.IpcReadOptions, schema: pa.Schema) -> tuple[pa.RecordBatch, int] | None:
    """The frame at `pos` as a batch of `schema`, its body checksum verified first; None if it is not
    the expected frame of the latest schema version (the reader then resolves or explains it)."""
    header = view.header_at(pos)
    if not isinstance(header, FrameHeader) or header.base_offset != offset or header.count != count:
        return None
    if header.schema_version != version:
        return None
    body = view.body(pos, header)  # raises CorruptFrameError unless the checksum matches
    try:
        batch = pa.ipc.open_stream(body, options=options).read_next_batch()
    except (pa.ArrowException, ValueError) as e:
        raise CorruptFrameError(str(view.path), pos, f"body passed its checksum but does not decode: {e}") from e
    arrays = dict(zip(batch.schema.names, batch.columns))
    if "_partition" in schema.names:
        arrays["_partition"] = pa.array(np.full(batch.num_rows, partition, np.int32))
    return pa.RecordBatch.from_arrays([_as_type(arrays[f.name], f.type) for f in schema], schema=schema), header.size


def _as_type(col: pa.Array, t: pa.DataType) -> pa.Array:
    """A column as the view's type: a string column stored one way and viewed the other converted."""
    if col.type == t:
        return col
    if pa.types.is_run_end_encoded(col.type):  # stored as runs: viewed as its values' type
        col = run_end_decode(col)
        if col.type == t:
            return col
    if pa.types.is_dictionary(col.type):
        if pa.types.is_dictionary(t):  # stored with narrower codes
            return pa.DictionaryArray.from_arrays(recode(col.indices, t.index_type), col.dictionary, safe=False)
        return col.dictionary_decode()
    if pa.types.is_dictionary(t):
        return pc.dictionary_encode(col)
    return col.cast(t)


def as_view(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch with `schema`'s column names as `schema` (string columns (de)dictionary-encoded to match)."""
    return pa.RecordBatch.from_arrays([_as_type(c, f.type) for c, f in zip(batch.columns, schema)], schema=schema)


def view_schema(schema: pa.Schema, probes: Sequence[tuple[Any, int]]) -> pa.Schema:
    """`schema` with the string columns that a sampled frame stores dictionary-encoded typed
    ``dictionary<int32, string>``: DuckDB groups and filters those by their codes. `probes` are
    (segment view, frame position) pairs. Only a probed body's schema message is parsed, its
    checksum unchecked: it decides a column's type in the view, never a value (every frame read
    is verified and converted to the view's types); a frame that cannot be parsed is no evidence."""
    strings = {f.name for f in schema if pa.types.is_string(f.type)}
    stored: set[str] = set()
    for view, pos in probes if strings else ():
        header = view.header_at(pos)
        if not isinstance(header, FrameHeader) or pos + header.size > view.size:
            continue
        try:
            body = view.buffer.slice(pos + HEADER_SIZE, header.body_len)
            stored.update(f.name for f in pa.ipc.read_schema(body) if is_stored_dictionary(f))
        except (pa.ArrowException, OSError, ValueError):  # Arrow raises OSError for a bad message
            continue
    stored &= strings
    if not stored:
        return schema
    return pa.schema([pa.field(f.name, DICTIONARY_TYPE, f.nullable, f.metadata) if f.name in stored else f
                      for f in schema], schema.metadata)


def _ts(us: int, type: pa.DataType = APPEND_TIME_TYPE) -> pa.Scalar:
    """A scalar of a timestamp (or integer) `type` from its integer value."""
    try:
        return pa.scalar(us, type)
    except (pa.ArrowException, TypeError):
        return pa.scalar(us, pa.int64()).cast(type)


def topic_dataset(log: Any, name: str, *, start: Bound = None, end: Bound = None, by: str = "append_time",
                  chunk_rows: int = CHUNK_ROWS) -> tuple[TopicDataset, _ChunkFiles]:
    """A pyarrow Dataset over one snapshot of a topic, fragments guaranteed by their index ranges."""
    topic = log.topic(name)
    topic.config  # raises TopicNotFoundError
    pl = plan(topic, start, end, None, by)
    reader = FrameReader(topic, None, "raise")  # one per view: it caches the topic's schemas
    logical = reader.schema
    event_field = topic.config.event_time_field
    event_type = logical.field(event_field).type if event_field else None
    files = _ChunkFiles()
    paths: list[str] = []
    guarantees: list[ds.Expression] = []
    runs: list = []  # (partition, snapshot, segment base, index entries, whole, lo, hi)
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
            for run, whole in _fragments(sel, lo, hi, chunk_rows):
                runs.append((p, snap, base, run, whole, lo, hi))
    # the view's types: string columns that sampled frames store dictionary-encoded stay dictionaries
    frames = [(p, snap, base, int(pos)) for p, snap, base, run, _, _, _ in runs for pos in run["position"]]
    probes = []
    for p, snap, base, pos in frames[:: max(1, len(frames) // PROBES)][: PROBES - 1] + frames[-1:]:
        try:
            probes.append((topic.partition(p).snapshot_view(snap, base), pos))
        except FileNotFoundError:  # deleted by retention since the snapshot
            continue
    schema = view_schema(logical, probes)
    files.schema = schema
    files.images = not any(pa.types.is_dictionary(f.type) for f in schema)  # one dictionary per IPC file
    for p, snap, base, run, whole, lo, hi in runs:
        c_lo = max(lo, int(run["base_offset"][0]))
        c_hi = min(hi, int(run["base_offset"][-1] + run["count"][-1]))
        path = f"{p}/{c_lo}-{c_hi}"
        frames = [(base, int(e["position"]), int(e["base_offset"]), int(e["count"]), HEADER_SIZE + int(e["body_len"]))
                  for e in run] if whole else None
        files.chunks[path] = _Chunk(topic, p, snap, c_lo, c_hi, frames, reader)
        paths.append(path)
        t_lo, t_hi = int(run["append_time"].min()), int(run["append_time"].max())
        g = ((ds.field("_partition") == pa.scalar(p, pa.int32()))  # fills the column in images
             & (ds.field("_offset") >= c_lo) & (ds.field("_offset") < c_hi)
             & (ds.field("_append_time") >= _ts(t_lo)) & (ds.field("_append_time") <= _ts(t_hi)))
        lo_e, hi_e = int(run["min_event_time"].min()), int(run["max_event_time"].max())
        if event_type is not None and lo_e != MIN_TIME and hi_e != MAX_TIME:
            g = g & (ds.field(event_field) >= _ts(lo_e, event_type)) \
                  & (ds.field(event_field) <= _ts(hi_e, event_type))
        guarantees.append(g)
    fs = pafs.PyFileSystem(files)
    plain = ds.FileSystemDataset.from_paths(paths, schema=schema, format=ds.IpcFileFormat(), filesystem=fs,
                                            partitions=guarantees)
    dataset = TopicDataset(list(plain.get_fragments()), schema=schema, format=plain.format, filesystem=fs)
    dataset._files = files
    return dataset, files


def _fragments(sel: np.ndarray, lo: int, hi: int, chunk_rows: int):
    """Split a segment's selected index entries into runs of about `chunk_rows` records.

    Yields (entries, whole): `whole` runs hold only frames entirely inside [lo, hi), so their bytes
    can be served as they are; a frame cut by the range is a run of its own, decoded.
    """
    run_start, rows = 0, 0
    for k in range(len(sel)):
        base, count = int(sel["base_offset"][k]), int(sel["count"][k])
        if base < lo or base + count > hi:  # cut by the range: alone, decoded and sliced
            if k > run_start:
                yield sel[run_start:k], True
            yield sel[k : k + 1], False
            run_start, rows = k + 1, 0
            continue
        rows += count
        if rows >= chunk_rows:
            yield sel[run_start : k + 1], True
            run_start, rows = k + 1, 0
    if run_start < len(sel):
        yield sel[run_start:], True


def attach(log: Any, con: Any = None, *, topics: Sequence[str] | None = None, start: Bound = None,
           end: Bound = None, by: str = "append_time"):
    """Create (or replace) one view per topic on `con` (a new in-memory connection by default).

    `start`/`end` (offsets or datetimes) restrict every view up front, like `Log.read`.
    """
    import duckdb

    if con is None:
        con = duckdb.connect()
    names = list(topics) if topics is not None else log.topics()
    for name in names:
        dataset, _ = topic_dataset(log, name, start=start, end=end, by=by)
        con.register(name, dataset)  # a temporary view named exactly `name` (a string: nothing parsed)
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

