"""The references: raw Arrow IPC (the limit) and the peers, each used the way its docs recommend.

Durability, stated per case (and counted under strace by the harness when available):

- Arrow IPC stream via `pa.OSFile`: unbuffered `write(2)` per batch, so each batch is in the OS
  page cache when `write_batch` returns (survives a process crash, not a power loss). The
  "+ fsync" rows call `os.fsync` after every 10,000-record batch (survives power loss).
- Parquet (`pq.ParquetWriter`, zstd): nothing is readable until `close()` writes the footer; no fsync.
- fastavro (`fastavro.write.Writer`): Python-buffered blocks, flushed per batch; no fsync.
- SQLite, WAL mode, a transaction per batch. `synchronous=NORMAL`: the WAL is fsynced only at
  checkpoints (a committed transaction survives a process crash, can be lost on power loss);
  `synchronous=FULL`: the WAL is fsynced at every commit.
- DuckDB table: one INSERT (auto-commit) per batch; DuckDB fsyncs its WAL at commit and the
  database file at checkpoint (close).
- Lance (`lance.write_dataset(mode="append")`) and Delta (`deltalake.write_deltalake(mode="append")`):
  a new data file and a new table version per call, written through the Rust `object_store` local
  backend, which never fsyncs (observed: strace counts no fsync-family call): a committed version
  survives a process crash, not a power loss.

Conversions a peer needs but logstore does not (Arrow -> Python tuples/dicts for SQLite and
fastavro in the *batched* scenario) happen before the timed region: generous to the peer, and said
so in the table notes.
"""

from __future__ import annotations

import os
import sqlite3
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from benchmarks.harness import Case, Ctx, Job, tree_size
from benchmarks.workload import AVRO_SCHEMA, BATCH_RECORDS, SCHEMA

QUERY = "SELECT model_id, count(*), avg(score), quantile_cont(latency_ms, 0.99) FROM scores GROUP BY 1"
PER_RECORD_N = 200_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def _zstd():
    return ipc.IpcWriteOptions(compression="zstd")


def tail_start(table: pa.Table) -> datetime:
    """The event time from which the last 10% of the records (by event time) start."""
    et = table.column("event_time").combine_chunks().cast(pa.int64()).to_numpy()
    cut = int(np.quantile(et, 0.9, method="higher"))
    return EPOCH + timedelta(microseconds=cut)


def tail_rows(table: pa.Table, start: datetime) -> int:
    et = table.column("event_time")
    return int(pc.sum(pc.greater_equal(et, pa.scalar(start, type=et.type))).as_py())


def _rows_check(expected: int):
    def after(_d, out):
        got = out.num_rows if hasattr(out, "num_rows") else None
        return {} if got in (None, expected) else {"rows_mismatch": f"expected {expected}, got {got}"}

    return after


# --------------------------------------------------------------------------------------------------
# Scenario 1: batched append (10,000 records per call)


def _ipc_append(compression: str | None, fsync: bool):
    def build(ctx: Ctx) -> Job:
        bs = ctx.batches()
        opts = _zstd() if compression else ipc.IpcWriteOptions()

        def run(d: Path):
            path = str(d / "scores.arrows")
            sink = pa.OSFile(path, "wb")
            w = ipc.new_stream(sink, SCHEMA, options=opts)
            fd = sink.fileno()
            for b in bs:
                w.write_batch(b)
                if fsync:
                    os.fsync(fd)
            w.close()
            if fsync:
                os.fsync(fd)
            sink.close()

        return Job(run=run, records=ctx.n, bytes_in=ctx.table.nbytes)

    return build


def _parquet_append(ctx: Ctx) -> Job:
    bs = ctx.batches()

    def run(d: Path):
        with pq.ParquetWriter(str(d / "scores.parquet"), SCHEMA, compression="zstd") as w:
            for b in bs:
                w.write_batch(b)

    return Job(run=run, records=ctx.n, bytes_in=ctx.table.nbytes)


def _avro_records(table: pa.Table) -> list[dict]:
    """Rows as fastavro wants them (event_time as epoch microseconds), built column-wise."""
    cols = {name: table.column(name).to_pylist() for name in table.column_names if name != "event_time"}
    cols["event_time"] = table.column("event_time").cast(pa.int64()).to_pylist()
    names = [f["name"] for f in AVRO_SCHEMA["fields"]]
    return [dict(zip(names, row)) for row in zip(*(cols[k] for k in names))]


def _fastavro_append(codec: str):
    def build(ctx: Ctx) -> Job:
        from fastavro import parse_schema
        from fastavro.write import Writer

        schema = parse_schema(AVRO_SCHEMA)
        rows = _avro_records(ctx.table)
        chunks = [rows[i : i + BATCH_RECORDS] for i in range(0, len(rows), BATCH_RECORDS)]

        def run(d: Path):
            with open(d / "scores.avro", "wb") as fo:
                w = Writer(fo, schema, codec=codec)
                for chunk in chunks:
                    for r in chunk:
                        w.write(r)
                    w.flush()
                w.flush()

        return Job(run=run, records=ctx.n, bytes_in=ctx.table.nbytes)

    return build


SQLITE_DDL = (
    "CREATE TABLE scores (request_id TEXT NOT NULL, event_time INTEGER NOT NULL, "
    "model_id TEXT NOT NULL, model_version TEXT NOT NULL, score REAL NOT NULL, "
    "latency_ms REAL NOT NULL, features BLOB NOT NULL)"
)
SQLITE_INSERT = "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)"


def _sqlite_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    con.execute(SQLITE_DDL)
    return con


def _sqlite_rows(table: pa.Table) -> list[tuple]:
    feats = table.column("features").combine_chunks().values.to_numpy().reshape(-1, 16)
    return list(
        zip(
            table.column("request_id").to_pylist(),
            table.column("event_time").cast(pa.int64()).to_pylist(),
            table.column("model_id").to_pylist(),
            table.column("model_version").to_pylist(),
            table.column("score").to_pylist(),
            table.column("latency_ms").to_pylist(),
            [r.tobytes() for r in feats],
        )
    )


def _sqlite_append(synchronous: str):
    def build(ctx: Ctx) -> Job:
        rows = _sqlite_rows(ctx.table)
        chunks = [rows[i : i + BATCH_RECORDS] for i in range(0, len(rows), BATCH_RECORDS)]

        def run(d: Path):
            con = _sqlite_connect(d / "scores.db", synchronous)
            for chunk in chunks:
                con.execute("BEGIN")
                con.executemany(SQLITE_INSERT, chunk)
                con.execute("COMMIT")
            con.close()

        return Job(run=run, records=ctx.n, bytes_in=ctx.table.nbytes)

    return build


def _duckdb_append(ctx: Ctx) -> Job:
    import duckdb

    bs = ctx.batches()

    def run(d: Path):
        con = duckdb.connect(str(d / "scores.duckdb"))
        con.register("batch_in", bs[0])
        con.execute("CREATE TABLE scores AS SELECT * FROM batch_in")
        for b in bs[1:]:
            con.register("batch_in", b)
            con.execute("INSERT INTO scores SELECT * FROM batch_in")
        con.unregister("batch_in")
        con.close()

    return Job(run=run, records=ctx.n, bytes_in=ctx.table.nbytes)


def _lance_append(per_batch: bool):
    def build(ctx: Ctx) -> Job:
        import lance

        bs = ctx.batches()

        def run(d: Path):
            uri = str(d / "scores.lance")
            if per_batch:
                lance.write_dataset(pa.Table.from_batches([bs[0]]), uri, mode="create")
                for b in bs[1:]:
                    lance.write_dataset(pa.Table.from_batches([b]), uri, mode="append")
            else:
                lance.write_dataset(pa.RecordBatchReader.from_batches(SCHEMA, bs), uri)

        return Job(run=run, records=ctx.n, bytes_in=ctx.table.nbytes)

    return build


def _delta_append(per_batch: bool):
    def build(ctx: Ctx) -> Job:
        from deltalake import write_deltalake

        bs = ctx.batches()

        def run(d: Path):
            uri = str(d / "scores.delta")
            if per_batch:
                for b in bs:
                    write_deltalake(uri, b, mode="append")
            else:
                write_deltalake(uri, pa.RecordBatchReader.from_batches(SCHEMA, bs), mode="append")

        return Job(run=run, records=ctx.n, bytes_in=ctx.table.nbytes)

    return build


def append_cases() -> list[Case]:
    s = "append"
    pre = "input pre-converted from Arrow outside the timed region"
    return [
        Case(s, "IPC stream", "limit", _ipc_append(None, False), "write(2) per batch, no fsync", audit_fsync=True),
        Case(
            s, "IPC stream zstd", "limit", _ipc_append("zstd", False), "write(2) per batch, no fsync", audit_fsync=True
        ),
        Case(s, "IPC stream + fsync/batch", "limit", _ipc_append(None, True), "fsync per batch", audit_fsync=True),
        Case(
            s, "IPC stream zstd + fsync/batch", "limit", _ipc_append("zstd", True), "fsync per batch", audit_fsync=True
        ),
        Case(
            s,
            "Parquet zstd (ParquetWriter)",
            "peer",
            _parquet_append,
            "none until close; no fsync",
            limit="IPC stream zstd",
            audit_fsync=True,
            note="a row group per 10k batch",
        ),
        Case(
            s,
            "fastavro null",
            "peer",
            _fastavro_append("null"),
            "flush per batch, no fsync",
            limit="IPC stream",
            audit_fsync=True,
            note=pre,
        ),
        Case(
            s,
            "fastavro zstandard",
            "peer",
            _fastavro_append("zstandard"),
            "flush per batch, no fsync",
            limit="IPC stream zstd",
            audit_fsync=True,
            note=pre,
        ),
        Case(
            s,
            "SQLite WAL sync=NORMAL",
            "peer",
            _sqlite_append("NORMAL"),
            "commit per batch; fsync at checkpoints only",
            limit="IPC stream",
            audit_fsync=True,
            note=pre + "; executemany per batch",
        ),
        Case(
            s,
            "SQLite WAL sync=FULL",
            "peer",
            _sqlite_append("FULL"),
            "commit per batch; WAL fsync per commit",
            limit="IPC stream + fsync/batch",
            audit_fsync=True,
            note=pre + "; executemany per batch",
        ),
        Case(
            s,
            "DuckDB table",
            "peer",
            _duckdb_append,
            "auto-commit INSERT per batch; WAL fsync per commit",
            limit="IPC stream + fsync/batch",
            audit_fsync=True,
            note="INSERT ... SELECT from the registered Arrow batch",
        ),
        Case(
            s,
            "Lance, write_dataset append per batch",
            "peer",
            _lance_append(True),
            "a version per batch; no fsync",
            limit="IPC stream",
            audit_fsync=True,
        ),
        Case(
            s,
            "Lance, one write_dataset of a batch stream",
            "peer",
            _lance_append(False),
            "one version at the end; no fsync",
            limit="IPC stream",
            audit_fsync=True,
            note="bulk load: nothing visible until done",
        ),
        Case(
            s,
            "Delta, write_deltalake append per batch",
            "peer",
            _delta_append(True),
            "a commit per batch; no fsync",
            limit="IPC stream zstd",
            audit_fsync=True,
            note="a Parquet file per batch (deltalake default writer properties)",
        ),
        Case(
            s,
            "Delta, one write_deltalake of a batch stream",
            "peer",
            _delta_append(False),
            "one commit at the end; no fsync",
            limit="IPC stream zstd",
            audit_fsync=True,
            note="bulk load: nothing visible until done",
        ),
    ]


# --------------------------------------------------------------------------------------------------
# Scenario 2: per-record append from Python dicts


def per_record_n(ctx: Ctx) -> int:
    return min(ctx.n, PER_RECORD_N)


def per_record_dicts(ctx: Ctx) -> tuple[list[dict], int]:
    """The first 200,000 records as dicts (`to_pylist`, excluded from timing) and their Arrow bytes."""
    t = ctx.table.slice(0, per_record_n(ctx))
    return t.to_pylist(), t.nbytes


def _bare_per_record(ctx: Ctx) -> Job:
    dicts, nbytes = per_record_dicts(ctx)

    def run(d: Path):
        sink = pa.OSFile(str(d / "scores.arrows"), "wb")
        w = ipc.new_stream(sink, SCHEMA, options=_zstd())
        buf: list[dict] = []
        for rec in dicts:
            buf.append(rec)
            if len(buf) == BATCH_RECORDS:
                w.write_batch(pa.RecordBatch.from_pylist(buf, schema=SCHEMA))
                buf = []
        if buf:
            w.write_batch(pa.RecordBatch.from_pylist(buf, schema=SCHEMA))
        w.close()
        sink.close()

    return Job(run=run, records=len(dicts), bytes_in=nbytes)


def _sqlite_per_record(ctx: Ctx) -> Job:
    dicts, nbytes = per_record_dicts(ctx)

    def run(d: Path):
        con = _sqlite_connect(d / "scores.db", "NORMAL")
        cur = con.cursor()
        cur.execute("BEGIN")
        for i, r in enumerate(dicts, 1):
            cur.execute(
                SQLITE_INSERT,
                (
                    r["request_id"],
                    (r["event_time"] - EPOCH) // US,
                    r["model_id"],
                    r["model_version"],
                    r["score"],
                    r["latency_ms"],
                    array("f", r["features"]).tobytes(),
                ),
            )
            if i % BATCH_RECORDS == 0:
                cur.execute("COMMIT")
                cur.execute("BEGIN")
        cur.execute("COMMIT")
        con.close()

    return Job(run=run, records=len(dicts), bytes_in=nbytes)


def _fastavro_per_record(codec: str):
    def build(ctx: Ctx) -> Job:
        from fastavro import parse_schema
        from fastavro.write import Writer

        schema = parse_schema(AVRO_SCHEMA)
        dicts, nbytes = per_record_dicts(ctx)

        def run(d: Path):
            with open(d / "scores.avro", "wb") as fo:
                w = Writer(fo, schema, codec=codec)
                for r in dicts:
                    w.write(r)
                w.flush()

        return Job(run=run, records=len(dicts), bytes_in=nbytes)

    return build


def per_record_cases() -> list[Case]:
    s = "per_record"
    return [
        Case(
            s,
            "dicts -> from_pylist/10k -> IPC zstd",
            "limit",
            _bare_per_record,
            "write(2) per 10k, no fsync",
            audit_fsync=True,
        ),
        Case(
            s,
            "SQLite WAL sync=NORMAL, execute per record",
            "peer",
            _sqlite_per_record,
            "commit per 10k; fsync at checkpoints only",
            limit="dicts -> from_pylist/10k -> IPC zstd",
            audit_fsync=True,
            note="datetime -> int and features -> BLOB per record, in the loop",
        ),
        Case(
            s,
            "fastavro null, writer.write",
            "peer",
            _fastavro_per_record("null"),
            "no fsync",
            limit="dicts -> from_pylist/10k -> IPC zstd",
            audit_fsync=True,
        ),
        Case(
            s,
            "fastavro zstandard, writer.write",
            "peer",
            _fastavro_per_record("zstandard"),
            "no fsync",
            limit="dicts -> from_pylist/10k -> IPC zstd",
            audit_fsync=True,
        ),
    ]


# --------------------------------------------------------------------------------------------------
# Scenario 3: read back (full, and the last 10% by event time)


def _setup_ipc_stream(compression: str | None):
    def setup_for(ctx: Ctx):
        def setup(d: Path):
            opts = _zstd() if compression else ipc.IpcWriteOptions()
            with pa.OSFile(str(d / "scores.arrows"), "wb") as sink, ipc.new_stream(sink, SCHEMA, options=opts) as w:
                for b in ctx.batches():
                    w.write_batch(b)

        return setup

    return setup_for


def _setup_ipc_file(ctx: Ctx):
    def setup(d: Path):
        with pa.OSFile(str(d / "scores.arrow"), "wb") as sink, ipc.new_file(sink, SCHEMA) as w:
            for b in ctx.batches():
                w.write_batch(b)

    return setup


def parquet_row_group(n: int) -> int:
    return max(BATCH_RECORDS, n // 20)


def _setup_parquet(ctx: Ctx):
    def setup(d: Path):
        pq.write_table(
            ctx.table, str(d / "scores.parquet"), compression="zstd", row_group_size=parquet_row_group(ctx.n)
        )

    return setup


def _setup_duckdb(ctx: Ctx):
    def setup(d: Path):
        import duckdb

        t = ctx.table
        con = duckdb.connect(str(d / "scores.duckdb"))
        con.register("t_in", t)
        con.execute("CREATE TABLE scores AS SELECT * FROM t_in")
        con.close()

    return setup


def _setup_lance(ctx: Ctx):
    def setup(d: Path):
        import lance

        lance.write_dataset(ctx.table, str(d / "scores.lance"))

    return setup


def _setup_delta(ctx: Ctx):
    def setup(d: Path):
        from deltalake import write_deltalake

        write_deltalake(str(d / "scores.delta"), ctx.table)

    return setup


SETUPS = {
    "ipc-stream-none": _setup_ipc_stream(None),
    "ipc-stream-zstd": _setup_ipc_stream("zstd"),
    "ipc-file-none": _setup_ipc_file,
    "parquet-zstd": _setup_parquet,
    "duckdb": _setup_duckdb,
    "lance": _setup_lance,
    "delta": _setup_delta,
}


def _reader(key: str, read, *, tail: bool):
    """A read case over the prepared dataset `key`; `read(data_dir, start_or_None) -> Table`."""

    def build(ctx: Ctx) -> Job:
        setup = SETUPS[key](ctx)
        start = tail_start(ctx.table) if tail else None
        rows = tail_rows(ctx.table, start) if tail else ctx.n
        nbytes = ctx.table.nbytes * rows // ctx.n
        return Job(
            run=lambda d: read(d, start),
            records=rows,
            bytes_in=nbytes,
            setup=setup,
            fresh_dir=False,
            after=_rows_check(rows),
            touched=True,
            disk_bytes=lambda d: tree_size(d) - tree_size(d / ".done"),
        )

    return build


def _ts(start: datetime):
    return pa.scalar(start, type=pa.timestamp("us", tz="UTC"))


def read_ipc_mmap(d: Path, start):
    path = next(d.glob("*.arrows"))
    t = ipc.open_stream(pa.memory_map(str(path))).read_all()
    return t if start is None else t.filter(pc.field("event_time") >= _ts(start))


def read_ipc_copy(d: Path, start):
    with pa.OSFile(str(d / "scores.arrows"), "rb") as f:
        t = ipc.open_stream(f).read_all()
    return t if start is None else t.filter(pc.field("event_time") >= _ts(start))


def read_parquet(d: Path, start):
    filters = None if start is None else [("event_time", ">=", _ts(start))]
    return pq.read_table(str(d / "scores.parquet"), filters=filters)


def read_duckdb(d: Path, start):
    import duckdb

    con = duckdb.connect(str(d / "scores.duckdb"), read_only=True)
    try:
        if start is None:
            return con.execute("SELECT * FROM scores").to_arrow_table()
        return con.execute("SELECT * FROM scores WHERE event_time >= ?", [start]).to_arrow_table()
    finally:
        con.close()


def read_lance(d: Path, start):
    import lance

    ds = lance.dataset(str(d / "scores.lance"))
    if start is None:
        return ds.to_table()
    return ds.to_table(filter=pc.field("event_time") >= _ts(start))


def read_delta(d: Path, start):
    from deltalake import DeltaTable

    dt = DeltaTable(str(d / "scores.delta"))
    ds = dt.to_pyarrow_dataset()
    return ds.to_table() if start is None else ds.to_table(filter=pc.field("event_time") >= _ts(start))


def read_cases() -> list[Case]:
    out = []
    for s, tail in (("read_full", False), ("read_tail", True)):
        mm = "read all, then filter" if tail else ""
        out += [
            Case(
                s,
                "IPC stream mmap",
                "limit",
                _reader("ipc-stream-none", read_ipc_mmap, tail=tail),
                data_key="ipc-stream-none",
                note="zero-copy: data pages are not touched" + (f"; {mm}" if tail else ""),
            ),
            Case(
                s,
                "IPC stream, one copy (file read)",
                "limit",
                _reader("ipc-stream-none", read_ipc_copy, tail=tail),
                data_key="ipc-stream-none",
                note=mm,
            ),
            Case(
                s,
                "IPC stream zstd mmap",
                "limit",
                _reader("ipc-stream-zstd", read_ipc_mmap, tail=tail),
                data_key="ipc-stream-zstd",
                note=mm,
            ),
            Case(
                s,
                "Parquet zstd",
                "peer",
                _reader("parquet-zstd", read_parquet, tail=tail),
                data_key="parquet-zstd",
                limit="IPC stream zstd mmap",
                note="row groups of n/20 records" + ("; filter prunes by row-group min/max" if tail else ""),
            ),
            Case(
                s,
                "DuckDB table",
                "peer",
                _reader("duckdb", read_duckdb, tail=tail),
                data_key="duckdb",
                limit="IPC stream zstd mmap",
                note="fresh read-only connection per run" + ("; WHERE prunes by zone maps" if tail else ""),
            ),
            Case(
                s,
                "Lance",
                "peer",
                _reader("lance", read_lance, tail=tail),
                data_key="lance",
                limit="IPC stream zstd mmap",
                note="one write_dataset" + ("; filter pushed down" if tail else ""),
            ),
            Case(
                s,
                "Delta",
                "peer",
                _reader("delta", read_delta, tail=tail),
                data_key="delta",
                limit="IPC stream zstd mmap",
                note="one write_deltalake; to_pyarrow_dataset" + ("; filter by Parquet stats" if tail else ""),
            ),
        ]
    return out


# --------------------------------------------------------------------------------------------------
# Scenario 4: the analysis query


def _query(key: str, make_con):
    def build(ctx: Ctx) -> Job:
        setup = SETUPS[key](ctx)
        cols = ctx.table.select(["model_id", "score", "latency_ms"])

        def run(d: Path):
            con, keep = make_con(d)
            try:
                return con.execute(QUERY).fetchall()
            finally:
                con.close()
                del keep

        return Job(
            run=run,
            records=ctx.n,
            bytes_in=cols.nbytes,
            setup=setup,
            fresh_dir=False,
            after=lambda _d, out: {"groups": len(out)},
        )

    return build


def _con_duckdb_table(d: Path):
    import duckdb

    return duckdb.connect(str(d / "scores.duckdb"), read_only=True), None


def _con_read_parquet(d: Path):
    import duckdb

    con = duckdb.connect()
    path = str(d / "scores.parquet").replace("'", "''")
    con.execute(f"CREATE VIEW scores AS SELECT * FROM read_parquet('{path}')")
    return con, None


def _con_ipc_dataset(d: Path):
    import duckdb
    import pyarrow.dataset as pads

    ds = pads.dataset(str(d / "scores.arrow"), format="ipc")
    con = duckdb.connect()
    con.register("scores", ds)
    return con, ds


def _con_ipc_stream_read(d: Path):
    import duckdb

    t = ipc.open_stream(pa.memory_map(str(d / "scores.arrows"))).read_all()
    con = duckdb.connect()
    con.register("scores", t)
    return con, t


def query_cases() -> list[Case]:
    s = "query"
    return [
        Case(
            s,
            "DuckDB table",
            "peer",
            _query("duckdb", _con_duckdb_table),
            data_key="duckdb",
            limit="DuckDB over read_parquet",
            note="connect + query per run",
        ),
        Case(
            s,
            "DuckDB over read_parquet",
            "limit",
            _query("parquet-zstd", _con_read_parquet),
            data_key="parquet-zstd",
            note="the issue's bar: logstore within 1.5x of this",
        ),
        Case(
            s,
            "DuckDB over pyarrow.dataset (IPC file)",
            "peer",
            _query("ipc-file-none", _con_ipc_dataset),
            data_key="ipc-file-none",
            limit="DuckDB over read_parquet",
            note="pyarrow.dataset cannot open the IPC stream format, so an IPC file",
        ),
        Case(
            s,
            "DuckDB over a whole IPC zstd stream read first",
            "peer",
            _query("ipc-stream-zstd", _con_ipc_stream_read),
            data_key="ipc-stream-zstd",
            limit="DuckDB over read_parquet",
        ),
    ]


# --------------------------------------------------------------------------------------------------
# Scenario 5 reference: the same model over a raw IPC stream


def feature_dot(batch: pa.RecordBatch) -> np.ndarray:
    """The trivial vectorized model: dot product of the 16 features with fixed weights."""
    col = batch.column(batch.schema.get_field_index("features"))
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(-1, 16) @ WEIGHTS


WEIGHTS = np.linspace(-1.0, 1.0, 16, dtype=np.float32)


def _replay_ipc(ctx: Ctx) -> Job:
    setup = SETUPS["ipc-stream-zstd"](ctx)

    def run(d: Path):
        total = 0.0
        for b in ipc.open_stream(pa.memory_map(str(d / "scores.arrows"))):
            total += float(feature_dot(b).sum())
        return total

    return Job(run=run, records=ctx.n, bytes_in=ctx.table.nbytes, setup=setup, fresh_dir=False, tree_memory=True)


def replay_cases() -> list[Case]:
    return [
        Case(
            "replay",
            "IPC zstd stream loop + model",
            "limit",
            _replay_ipc,
            data_key="ipc-stream-zstd",
            note="iterate record batches of a memory-mapped IPC stream, call the model",
        ),
    ]


# --------------------------------------------------------------------------------------------------
# Scenario 6 references: a directory of 10,000 small files (10 records each), as a pyarrow dataset


SEGMENTS = 10_000


def segments(ctx: Ctx) -> int:
    """How many files/segments scenario 6 uses (10,000; `--segments` lowers it for smoke runs)."""
    return int(ctx.options.get("segments", SEGMENTS))


def many_files_rows(ctx: Ctx) -> int:
    return min(ctx.n, 10 * segments(ctx))


def _setup_many(fmt: str):
    def setup_for(ctx: Ctx):
        def setup(d: Path):
            t = ctx.table.slice(0, many_files_rows(ctx))
            k = segments(ctx)
            per = max(1, len(t) // k)
            for i in range(k):
                part = t.slice(i * per, per if i < k - 1 else len(t) - i * per)
                name = d / f"{i * per:020d}.{'arrow' if fmt == 'ipc' else 'parquet'}"
                if fmt == "ipc":
                    with pa.OSFile(str(name), "wb") as sink, ipc.new_file(sink, SCHEMA) as w:
                        w.write_table(part)
                else:
                    pq.write_table(part, str(name), compression="zstd")

        return setup

    return setup_for


def seek_window(ctx: Ctx) -> tuple[datetime, datetime]:
    """A 10 ms window starting at the first event time of the file/segment at 73% of the set.

    Starting on a file boundary makes the window hold records whichever clock a seek uses (the
    logstore data set stamps each segment's append time with its first event time).
    """
    rows = many_files_rows(ctx)
    per = max(1, rows // segments(ctx))
    k = int(segments(ctx) * 0.73) * per
    first = ctx.table.column("event_time")[k].value  # microseconds since the epoch
    t0 = EPOCH + timedelta(microseconds=first)
    return t0, t0 + timedelta(milliseconds=10)


def _many_open(fmt: str):
    def build(ctx: Ctx) -> Job:
        import pyarrow.dataset as pads

        def run(d: Path):
            return pads.dataset(str(d), format="ipc" if fmt == "ipc" else "parquet")

        return Job(run=run, records=1, bytes_in=0, setup=_setup_many(fmt)(ctx), fresh_dir=False)

    return build


def _many_seek(fmt: str):
    def build(ctx: Ctx) -> Job:
        import pyarrow.dataset as pads

        lo, hi = seek_window(ctx)
        f = (pc.field("event_time") >= _ts(lo)) & (pc.field("event_time") < _ts(hi))

        def run(d: Path):
            ds = pads.dataset(str(d), format="ipc" if fmt == "ipc" else "parquet")
            return ds.to_table(filter=f)

        return Job(
            run=run,
            records=1,
            bytes_in=0,
            setup=_setup_many(fmt)(ctx),
            fresh_dir=False,
            after=lambda _d, out: {"rows": out.num_rows},
        )

    return build


def open_cases() -> list[Case]:
    s = "open"
    return [
        Case(
            s,
            "pyarrow.dataset over IPC files: open",
            "peer",
            _many_open("ipc"),
            data_key="many-ipc",
            note="directory listing; no file is opened",
        ),
        Case(
            s,
            "pyarrow.dataset over IPC files: open + seek 10 ms",
            "peer",
            _many_seek("ipc"),
            data_key="many-ipc",
            note="no statistics: every file is read",
        ),
        Case(
            s,
            "pyarrow.dataset over Parquet files: open + seek 10 ms",
            "peer",
            _many_seek("parquet"),
            data_key="many-parquet",
            note="footer statistics prune row groups, but every footer is read",
        ),
    ]


def all_reference_cases() -> list[Case]:
    return append_cases() + per_record_cases() + read_cases() + query_cases() + replay_cases() + open_cases()
