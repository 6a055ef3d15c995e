"""DuckDB views over topics, with time and offset filters pruning what is read.

`attach(log, con)` gives a DuckDB connection one view per topic, named exactly as the topic
(registered by name, never pasted into SQL; queries quote it as an identifier with ``"`` doubled,
`quote_ident`), holding the topic's user columns and `_partition`, `_offset`, `_append_time` over
all partitions, sealed and active segments alike. A view reads one consistent snapshot of every
partition's committed end, taken when it is attached: a writer appending meanwhile never shows up
as a partial frame (re-attach to see more).

How it reads: each view is a `TopicDataset`, a `pyarrow.dataset` over an in-memory file system
whose files are chunks: runs of consecutive frames of one segment (about `chunk_rows` records
each). Every fragment carries a guarantee built from the index alone: its partition, offset range,
append-time range and event-time range. DuckDB pushes a query's projection and filters into the
dataset's `scanner`, and Arrow skips every fragment whose guarantee contradicts the filters: so
``WHERE _append_time >= ...`` over the last 10% of a large topic reads about 10% of its bytes (to
within one fragment). The fragments left are read frame by frame straight from the mapped
segments by the reader's decoder (`FrameReader.load`: header against the index, body checksum,
only the columns the query uses decompressed, older schema versions resolved), a job of frames
per thread of the frame pool at once, in order; the filters are then applied exactly. There is no
other read path: the dataset's `to_table`, `head`, `count_rows`, ... go through the same `scanner`,
and a read of a fragment's file (a base-class scan, an Acero plan) gets the IPC file image of the
chunk's rows as that scan decodes them.

String columns that the topic's frames store dictionary-encoded (sampled from a few frames when
the view is made) are ``dictionary<int32, string>`` in the view, so DuckDB groups and filters
them by code; a frame storing such a column plain is encoded as it is read, and the other way
round. DuckDB sees VARCHAR either way.

Avro unions (Arrow dense unions in the log) are sparse unions in the view (`sparse_union_schema`,
converted as frames are read): DuckDB imports those as its UNION type and refuses dense ones, so
``union_tag(x)``, ``union_extract(x, 'long')`` and ``x.long`` work on them; a null value (the null
branch) is NULL. Query results with such a column come back as sparse unions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from schemas import unions

from . import parallel
from .encodings import is_stored_dictionary
from .errors import ArgumentError
from .frame import DICTIONARY_TYPE, HEADER_SIZE, FrameHeader
from .plan import Bound, plan
from .reader import APPEND_TIME_TYPE, FrameJob, FrameReader, Gap, Loaded, output_schema
from .timeutil import MAX_TIME, MIN_TIME

if TYPE_CHECKING:
    import duckdb

    from .log import Log
    from .partition import Snapshot
    from .segment import SegmentView
    from .topic import Topic, Version

CHUNK_ROWS = 131_072
JOB_BYTES = 8 << 20  # frames decoded by one call on the frame pool: fewer, larger hand-overs
PROBES = 4  # frames sampled for the storage of string columns
IMAGES = 4  # fragment file images kept for re-opening (base-class scans only)
# the options of `pyarrow.dataset.Dataset.scanner` besides columns and filter: accepted and
# ignored (batches are frames, decoded on the frame pool), but `use_threads=False` decodes in turn
SCAN_OPTIONS = frozenset(
    {
        "batch_size",
        "batch_readahead",
        "fragment_readahead",
        "fragment_scan_options",
        "use_threads",
        "cache_metadata",
        "memory_pool",
    }
)


def fetch_arrow(result: duckdb.DuckDBPyRelation | duckdb.DuckDBPyConnection) -> pa.Table:
    """A DuckDB relation or executed statement's result as a pyarrow Table (any DuckDB's spelling:
    ``to_arrow_table`` from 1.4, ``fetch_arrow_table`` and ``arrow`` before)."""
    for spelling in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        fetch = getattr(result, spelling, None)
        if fetch is not None:
            return fetch()
    raise TypeError(f"cannot fetch {type(result).__name__} as Arrow")


def fetch_reader(result: duckdb.DuckDBPyRelation, batch_rows: int = 65_536) -> pa.RecordBatchReader:
    """A DuckDB relation's result as a stream of batches of at most `batch_rows` rows, computed as
    they are read (``to_arrow_reader`` from 1.4, ``fetch_arrow_reader``/``fetch_record_batch`` before)."""
    for spelling in ("to_arrow_reader", "fetch_arrow_reader", "fetch_record_batch"):
        fetch = getattr(result, spelling, None)
        if fetch is not None:
            reader: pa.RecordBatchReader = fetch(batch_rows)
            return reader
    raise TypeError(f"cannot fetch {type(result).__name__} as an Arrow stream")


@dataclass(frozen=True, slots=True)
class _Chunk:
    """Records [lo, hi) of one partition, in frames of one segment: `entries` are their index entries."""

    partition: int
    base: int
    entries: np.ndarray
    lo: int
    hi: int


class _ChunkFiles(pafs.FileSystemHandler):  # type: ignore[misc]  # pyarrow has no stubs
    """A view's chunks and what reading them costs; to Arrow a read-only file system whose files
    are the chunks, each the IPC file image of its rows as `_scan` decodes them."""

    def __init__(self, topic: Topic, latest: Version, snapshots: dict[int, Snapshot], schema: pa.Schema) -> None:
        self.topic = topic
        self.latest = latest  # the schema version the view resolves every frame to
        self.snapshots = snapshots
        self.schema = schema  # the view's schema (`view_schema`)
        self.chunks: dict[str, _Chunk] = {}
        self.bytes_read = 0  # frame bytes verified (what the filters did not prune)
        self._lock = threading.Lock()
        self._images: OrderedDict[str, pa.Buffer] = OrderedDict()

    def count(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_read += nbytes

    def _image(self, path: str) -> pa.Buffer:
        """Chunk `path` as an IPC file of the view's schema (the format allows one dictionary per field)."""
        with self._lock:
            image = self._images.get(path)
            if image is not None:
                self._images.move_to_end(path)
                return image
        try:
            chunk = self.chunks[path]
        except KeyError:
            raise FileNotFoundError(path) from None
        table = pa.Table.from_batches(list(_scan(self, [chunk], self.schema)), schema=self.schema)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, self.schema) as w:
            w.write_table(table.unify_dictionaries())
        image = sink.getvalue()
        with self._lock:
            self._images[path] = image
            while len(self._images) > IMAGES:
                self._images.popitem(last=False)
        return image

    def get_type_name(self) -> str:
        return "logstore-chunks"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return [pafs.FileInfo(p, pafs.FileType.File if p in self.chunks else pafs.FileType.NotFound) for p in paths]

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return [pafs.FileInfo(p, pafs.FileType.File) for p in self.chunks]

    def open_input_file(self, path: str) -> pa.NativeFile:
        return pa.BufferReader(self._image(path))

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def _read_only(self, *args: object) -> None:
        raise OSError("logstore views are read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


class TopicDataset(ds.FileSystemDataset):  # type: ignore[misc]  # pyarrow has no stubs
    """A topic's chunks as a pyarrow Dataset whose scans read the frames straight from the segments.

    A real `FileSystemDataset` over `_ChunkFiles` (fragments with guarantees, for Arrow to prune
    by), with one way to read it: `scanner(columns=, filter=)`, which DuckDB calls with the query's
    projection and filters, and which `to_table`, `to_batches`, `head`, `take`, `count_rows` and
    `filter` datasets go through. The fragments the filter leaves are read by `_scan`.
    """

    _files: _ChunkFiles

    def filter(self, expression: ds.Expression) -> TopicDataset:
        out: TopicDataset = super().filter(expression)
        out._files = self._files
        return out

    def scanner(self, columns: Any = None, filter: ds.Expression | None = None, **options: Any) -> TopicScanner:
        """A scanner of `columns` (names, or a dict of names to expressions; default all) of the rows
        matching `filter`, reading only the fragments the filter leaves and only the fields used."""
        unknown = sorted(set(options) - SCAN_OPTIONS)
        if unknown:
            raise TypeError(f"scanner() got unexpected keyword argument(s) {', '.join(unknown)}")
        files = self._files
        own = self._scan_options.get("filter")  # set by `filter()`
        if own is not None:
            filter = own if filter is None else own & filter
        if filter is None:
            chunks = list(files.chunks.values())
        else:  # pruned by the fragments' guarantees (`get_fragments` refuses a `filter()`ed dataset)
            chunks = [files.chunks[f.path] for f in self._get_fragments(filter)]
        ahead = None if options.get("use_threads", True) else 1
        return TopicScanner(files, chunks, columns, filter, ahead)


class TopicScanner:
    """What `TopicDataset.scanner` returns: the read methods of a `pyarrow.dataset.Scanner`
    (`to_reader`, `to_batches`, `to_table`, `head`, `take`, `count_rows`, `projected_schema`,
    `dataset_schema`), each a pass of `_scan` over the chunks left. Plain columns without a filter
    stream straight from the frame pool (Arrow's scan machinery would cost a fifth of a query);
    a filter or projected expressions run through a real Scanner over those batches."""

    def __init__(
        self,
        files: _ChunkFiles,
        chunks: list[_Chunk],
        columns: list[str] | dict[str, ds.Expression] | None,
        filter: ds.Expression | None,
        ahead: int | None = None,
    ) -> None:
        self._files, self._chunks, self._filter, self._ahead = files, chunks, filter, ahead
        self._columns = list(columns) if isinstance(columns, (list, tuple)) else columns
        self.dataset_schema: pa.Schema = files.schema
        self._read, self.projected_schema = self._fields(self._columns)

    def _fields(self, columns: list[str] | dict[str, ds.Expression] | None) -> tuple[pa.Schema, pa.Schema]:
        """(the fields to decode, the schema produced) for `columns` and the filter: what they name,
        found by its spelling (an over-approximation), or every field if that falls short."""
        schema = self.dataset_schema
        if columns is None:
            return schema, schema
        plain = isinstance(columns, list) and all(isinstance(c, str) for c in columns)
        if plain and self._filter is None and set(columns) <= set(schema.names):
            read = pa.schema([schema.field(c) for c in columns])  # decoded in the order asked for
            return read, read
        text = " ".join(map(str, [self._filter, *(columns.values() if isinstance(columns, dict) else columns)]))
        read = pa.schema([f for f in schema if f.name in text])
        try:
            return read, self._scanner(iter(()), read, columns).projected_schema
        except pa.ArrowInvalid:  # a name not spelled as such (or not there: then this raises too)
            return schema, self._scanner(iter(()), schema, columns).projected_schema

    def _scanner(
        self, batches: Iterable[pa.RecordBatch], read: pa.Schema, columns: list[str] | dict[str, ds.Expression] | None
    ) -> ds.Scanner:
        return ds.Scanner.from_batches(batches, schema=read, columns=columns, filter=self._filter)

    def _reader(self, read: pa.Schema, columns: list[str] | dict[str, ds.Expression] | None) -> pa.RecordBatchReader:
        batches = _scan(self._files, self._chunks, read, self._ahead)
        if self._filter is None and isinstance(columns, list) and columns == read.names:
            return pa.RecordBatchReader.from_batches(read, batches)
        return self._scanner(batches, read, columns).to_reader()

    def to_reader(self) -> pa.RecordBatchReader:
        """The batches as a `pyarrow.RecordBatchReader` (what DuckDB reads)."""
        columns = self._columns if self._columns is not None else self._read.names
        return self._reader(self._read, columns)

    def to_batches(self) -> Iterator[pa.RecordBatch]:
        return iter(self.to_reader())

    def to_table(self) -> pa.Table:
        return self.to_reader().read_all()

    def take(self, indices: Any) -> pa.Table:
        return self.to_table().take(indices)

    def count_rows(self) -> int:
        """The rows matching the filter, decoding only the fields the filter uses."""
        read, _ = self._fields([])
        return sum(b.num_rows for b in self._reader(read, []))

    def head(self, num_rows: int) -> pa.Table:
        out: list[pa.RecordBatch] = []
        rows = 0
        for b in self.to_reader():
            if rows >= num_rows:
                break
            out.append(b.slice(0, num_rows - rows))
            rows += out[-1].num_rows
        return pa.Table.from_batches(out, schema=self.projected_schema)


def _scan(
    files: _ChunkFiles, chunks: Sequence[_Chunk], schema: pa.Schema, ahead: int | None = None
) -> Iterator[pa.RecordBatch]:
    """Batches of `schema` (a selection of the view's fields, in any order) from `chunks`, in order:
    their frames verified and decoded by the reader (only `schema`'s fields), in jobs of about
    `JOB_BYTES` of frames on the frame pool (a hand-over per frame cost a tenth of a query), a job
    per thread in flight while the consumer holds the one handed over (`ahead`: how many)."""
    if not chunks:
        return
    stored = _stored_unions(files, schema)
    fr = FrameReader(files.topic, schema.names, "raise", use_threads=False, types=stored, latest=files.latest)

    def jobs() -> Iterator[list[FrameJob | Gap]]:
        group: list[FrameJob | Gap] = []
        nbytes = 0
        for c in chunks:
            part = files.topic.partition(c.partition)
            for job in fr.segment_jobs(part, files.snapshots[c.partition], c.base, c.entries, c.lo, c.hi):
                group.append(job)
                nbytes += job.size if isinstance(job, FrameJob) else 0
                if nbytes >= JOB_BYTES:
                    yield group
                    group, nbytes = [], 0
        if group:
            yield group

    def load(group: list[FrameJob | Gap]) -> list[Loaded]:
        return fr.load_group(group)

    for loaded in parallel.imap_ordered(load, jobs(), ahead=parallel.threads() + 1 if ahead is None else ahead):
        before = fr.bytes_read
        batches = [b for b in map(fr.deliver, loaded) if b is not None]  # a gap raises here
        files.count(fr.bytes_read - before)
        if stored is not schema:
            batches = [_sparse_unions(b, schema) for b in batches]
        yield from batches


def _stored_unions(files: _ChunkFiles, schema: pa.Schema) -> pa.Schema:
    """`schema` (view fields) with its union columns typed as stored (dense unions), for the frame
    reader; `schema` itself when it has none."""
    if not any(unions.contains_union(t) for t in schema.types):
        return schema
    logical = output_schema(files.latest.arrow, None)
    return pa.schema([logical.field(f.name) if unions.contains_union(f.type) else f for f in schema], schema.metadata)


def _sparse_unions(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A decoded batch with its dense union columns made the view's sparse ones (`view_schema`)."""
    cols = [unions.sparse(c) if unions.contains_union(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def sparse_union_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with every column holding an Avro union (an Arrow dense union, as the log stores it)
    typed with sparse unions instead: DuckDB imports sparse unions as its UNION type
    (``union_tag``, ``union_extract``) and refuses dense ones. Same branches, names, type codes."""
    if not any(unions.contains_union(t) for t in schema.types):
        return schema
    return pa.schema(
        [
            pa.field(f.name, unions.sparse_type(f.type), f.nullable, f.metadata) if unions.contains_union(f.type) else f
            for f in schema
        ],
        schema.metadata,
    )


def view_schema(schema: pa.Schema, probes: Sequence[tuple[SegmentView, int]]) -> pa.Schema:
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
    return pa.schema(
        [pa.field(f.name, DICTIONARY_TYPE, f.nullable, f.metadata) if f.name in stored else f for f in schema],
        schema.metadata,
    )


def _ts(us: int, type: pa.DataType = APPEND_TIME_TYPE) -> pa.Scalar:
    """A scalar of a timestamp (or integer) `type` from its integer value."""
    try:
        return pa.scalar(us, type)
    except (pa.ArrowException, TypeError):
        return pa.scalar(us, pa.int64()).cast(type)


def topic_dataset(
    log: Log,
    name: str,
    *,
    start: Bound = None,
    end: Bound = None,
    by: str = "append_time",
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[TopicDataset, _ChunkFiles]:
    """A pyarrow Dataset over one snapshot of a topic, fragments guaranteed by their index ranges."""
    topic = log.topic(name)
    _ = topic.config  # raises TopicNotFoundError
    pl = plan(topic, start, end, None, by)
    latest = topic.version()  # one per view: every frame is resolved to it
    logical = output_schema(latest.arrow, None)
    event_field = topic.config.event_time_field
    event_type = logical.field(event_field).type if event_field else None
    chunks: list[_Chunk] = []
    for p, (lo, hi) in pl.ranges.items():
        snap = pl.snapshots[p]
        part = topic.partition(p)
        if lo >= hi:
            continue
        for base in snap.bases[part.segment_for_offset(snap, lo) :]:
            if base >= hi:
                break
            try:
                entries = part.entries(snap, base)
            except FileNotFoundError:  # deleted by retention since the snapshot
                continue
            ends = entries["base_offset"] + entries["count"]
            sel = entries[(ends > lo) & (entries["base_offset"] < hi)]
            for run in _runs(sel, chunk_rows):
                c_lo = max(lo, int(run["base_offset"][0]))
                c_hi = min(hi, int(run["base_offset"][-1] + run["count"][-1]))
                chunks.append(_Chunk(p, base, run, c_lo, c_hi))
    # the view's types: string columns that sampled frames store dictionary-encoded stay dictionaries
    frames = [(c, int(pos)) for c in chunks for pos in c.entries["position"]]
    remote = {(c.partition, c.base) for c in chunks if topic.partition(c.partition).placement.remote(c.base)}
    frames = [f for f in frames if (f[0].partition, f[0].base) not in remote] or frames  # a remote one costs a fetch
    probes = []
    for c, pos in frames[:: max(1, len(frames) // PROBES)][: PROBES - 1] + frames[-1:]:
        try:
            probes.append((topic.partition(c.partition).snapshot_view(pl.snapshots[c.partition], c.base), pos))
        except FileNotFoundError:  # deleted by retention since the snapshot
            continue
    schema = sparse_union_schema(view_schema(logical, probes))
    files = _ChunkFiles(topic, latest, pl.snapshots, schema)
    guarantees: list[ds.Expression] = []
    for c in chunks:
        path = f"{c.partition}/{c.lo}-{c.hi}"
        files.chunks[path] = c
        times = c.entries["append_time"]
        g = (
            (ds.field("_partition") == pa.scalar(c.partition, pa.int32()))
            & (ds.field("_offset") >= c.lo)
            & (ds.field("_offset") < c.hi)
            & (ds.field("_append_time") >= _ts(int(times.min())))
            & (ds.field("_append_time") <= _ts(int(times.max())))
        )
        lo_e, hi_e = int(c.entries["min_event_time"].min()), int(c.entries["max_event_time"].max())
        if event_field is not None and lo_e != MIN_TIME and hi_e != MAX_TIME:
            g = g & (ds.field(event_field) >= _ts(lo_e, event_type)) & (ds.field(event_field) <= _ts(hi_e, event_type))
        guarantees.append(g)
    fs = pafs.PyFileSystem(files)
    plain = ds.FileSystemDataset.from_paths(
        list(files.chunks), schema=schema, format=ds.IpcFileFormat(), filesystem=fs, partitions=guarantees
    )
    dataset = TopicDataset(list(plain.get_fragments()), schema=schema, format=plain.format, filesystem=fs)
    dataset._files = files
    return dataset, files


def _runs(sel: np.ndarray, chunk_rows: int) -> Iterator[np.ndarray]:
    """A segment's selected index entries split into runs of about `chunk_rows` records."""
    start, rows = 0, 0
    for k, count in enumerate(sel["count"].tolist()):
        rows += count
        if rows >= chunk_rows:
            yield sel[start : k + 1]
            start, rows = k + 1, 0
    if start < len(sel):
        yield sel[start:]


def attach(
    log: Log,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    topics: Sequence[str] | None = None,
    start: Bound = None,
    end: Bound = None,
    by: str = "append_time",
) -> duckdb.DuckDBPyConnection:
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


def query(
    log: Log,
    sql: str,
    *,
    params: object = None,
    topics: Sequence[str] | None = None,
    start: Bound = None,
    end: Bound = None,
    by: str = "append_time",
    limit: int | None = None,
) -> pa.Table | None:
    """Run `sql` over the topics' views; returns a pyarrow Table (None for a statement).

    `limit` caps the rows, inside DuckDB (``LIMIT`` over the query's relation): a scan stops once
    that many rows are produced and an ``ORDER BY`` becomes a top-N, so only what is needed is read.
    """
    if limit is not None and limit < 0:
        raise ArgumentError(f"limit {limit}: must be 0 or more")
    con = attach(log, None, topics=topics, start=start, end=end, by=by)
    try:
        rel = con.sql(sql, params=params) if params is not None else con.sql(sql)
        if rel is None:  # a statement, not a query
            return None
        return fetch_arrow(rel if limit is None else rel.limit(limit))
    finally:
        con.close()
