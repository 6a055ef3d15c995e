"""`python -m benchmarks.tier`: reads of a topic tiered to S3 (a moto server on loopback) against
the same topic on local disk and against Parquet of the same records on the same server.

    python -m benchmarks.tier                          # ~2 minutes, writes benchmarks/TIER.md
    python -m benchmarks.tier --n 100000 --runs 1 --out /tmp/TIER.md

The canonical workload (`workload.py`) is appended to two topics of one log in the same commits
(zstd, `--segment-bytes` segments); one is tiered to a bucket, all of it but its active segment.
Parquet gets the same records as one file per segment's worth (zstd, row groups of 64 Ki rows),
in the same bucket. Cases, each `--runs` times (median and spread), a cold cache every time
(a fresh `Log` with an empty cache directory) unless it says warm:

- full read to one Arrow table: logstore local, remote cold, remote warm; `pyarrow.dataset`
  over the Parquet files;
- the last 10% by event time: the same, with each reader's own pruning (logstore: segment
  summaries and frame index; Parquet: row-group statistics);
- the same filter as an aggregate in DuckDB: `log.duckdb()` over the tiered topic; DuckDB over
  the Parquet files (its own `read_parquet` through httpfs when the extension is installed, else
  over the `pyarrow.dataset`, which then does the reading).

Bytes fetched from the server are counted for logstore (`Log.remote_stats`) and for pyarrow
(a counting file system wrapped around its S3 file system); moto is a Python server, so absolute
times are the server's more than the reader's: compare within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import logstore
from benchmarks.workload import SCHEMA, batches, make_workload
from logstore.sql import fetch_arrow
from tests.tier.s3server import S3Server

HERE = Path(__file__).resolve().parent


class CountingFile:
    """A file object over a pyarrow NativeFile that counts the bytes read through it."""

    def __init__(self, inner: pa.NativeFile, counter: list[int], lock: threading.Lock) -> None:
        self._inner, self._counter, self._lock = inner, counter, lock
        self.closed = False

    def read(self, nbytes: int = -1) -> bytes:
        data = self._inner.read() if nbytes is None or nbytes < 0 else self._inner.read(nbytes)
        with self._lock:
            self._counter[0] += len(data)
        return bytes(data)

    def seek(self, pos: int, whence: int = 0) -> int:
        return int(self._inner.seek(pos, whence))

    def tell(self) -> int:
        return int(self._inner.tell())

    def size(self) -> int:
        return int(self._inner.size())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._inner.close()


class CountingHandler(pafs.FileSystemHandler):  # type: ignore[misc]
    """A read-only file system over `inner` whose input files count the bytes read."""

    def __init__(self, inner: pafs.FileSystem) -> None:
        self.inner = inner
        self.counter = [0]
        self.lock = threading.Lock()

    def get_type_name(self) -> str:
        return "counting"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(selector)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return pa.PythonFile(CountingFile(self.inner.open_input_file(path), self.counter, self.lock), mode="r")

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def _no(self, *args: object) -> None:
        raise OSError("read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _no
    delete_file = move = copy_file = open_output_stream = open_append_stream = _no


def _time(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """(median seconds, spread, last result) of `runs` calls (one untimed warm-up first)."""
    fn()
    took, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        took.append(time.perf_counter() - t)
    med = statistics.median(took)
    return med, (max(took) - min(took)) / med if med else 0.0, out


class Bench:
    def __init__(self, args: argparse.Namespace, s3: S3Server, scratch: Path) -> None:
        self.args, self.s3, self.scratch = args, s3, scratch
        self.rows: list[list[str]] = []
        self.path = scratch / "log"
        self.remote = s3.bucket(prefix="log")
        self.bucket = self.remote.removeprefix("s3://").partition("/")[0]

    def setup(self) -> None:
        table = make_workload(self.args.n)
        self.table = table
        lg = logstore.open(self.path)
        for name, remote in (("local", None), ("tiered", self.remote)):
            lg.create_topic(name, SCHEMA, segment_bytes=self.args.segment_bytes, remote=remote)
            with lg.writer(name, linger_ms=None) as w:
                for b in batches(table):
                    w.append_batch(b)
        t = time.perf_counter()
        report = lg.tier("tiered")
        self.tier_s = time.perf_counter() - t
        self.tiered_bytes = report.bytes_moved
        segs = lg.describe("tiered")["partition_details"][0]["segments"]
        self.stored = sum(s["bytes"] for s in segs)
        self.local_bytes = self.stored - self.tiered_bytes
        lg.close()
        times = table.column("event_time")
        lo, hi = times[0].as_py(), times[-1].as_py()
        self.cut = lo + (hi - lo) * 9 / 10
        # Parquet: one file per segment's worth of records, row groups of 64 Ki rows
        fs = self.s3.filesystem()
        per_file = max(65_536, int(self.args.n * self.args.segment_bytes / max(self.stored, 1)))
        for i, start in enumerate(range(0, table.num_rows, per_file)):
            with fs.open_output_stream(f"{self.bucket}/parquet/part-{i:05d}.parquet") as out:
                pq.write_table(table.slice(start, per_file), out, compression="zstd", row_group_size=65_536)
        infos = fs.get_file_info(pafs.FileSelector(f"{self.bucket}/parquet"))
        self.parquet_bytes = sum(i.size for i in infos)

    def fresh(self) -> logstore.Log:
        cache = self.scratch / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        return logstore.open(self.path, readonly=True, cache_dir=cache, block_bytes=self.args.block_bytes)

    def row(self, case: str, fn: Callable[[], tuple[int, int | None]], stored: int) -> None:
        med, spread, (rows, fetched) = _time(fn, self.args.runs)
        share = "" if fetched is None else f"{fetched / 1e6:.1f} ({100 * fetched / stored:.1f}%)"
        self.rows.append([case, f"{med:.3f}", f"{spread:.0%}", f"{rows:,}", share])
        print(f"{case:<58} {med:8.3f} s  {share}", flush=True)

    def logstore_read(self, topic: str, start: datetime | None, warm: logstore.Log | None = None) -> Any:
        def run() -> tuple[int, int | None]:
            lg = warm or (self.fresh() if topic == "tiered" else logstore.open(self.path, readonly=True))
            before = lg.remote_stats().bytes_fetched
            t = lg.read(topic, start=start, by="event_time")
            return t.num_rows, (lg.remote_stats().bytes_fetched - before) if topic == "tiered" else None

        return run

    def logstore_sql(self, where: str) -> Any:
        def run() -> tuple[int, int | None]:
            lg = self.fresh()
            q = f'SELECT count(*) AS n, avg(score) AS s FROM "tiered" {where}'
            out = fetch_arrow(lg.duckdb().sql(q, params=[self.cut] if where else None))
            return int(out.column("n")[0].as_py()), lg.remote_stats().bytes_fetched

        return run

    def dataset(self) -> tuple[ds.Dataset, CountingHandler]:
        handler = CountingHandler(self.s3.filesystem())
        fs = pafs.PyFileSystem(handler)
        return ds.dataset(f"{self.bucket}/parquet", format="parquet", filesystem=fs), handler

    def parquet_read(self, filtered: bool) -> Any:
        def run() -> tuple[int, int | None]:
            data, handler = self.dataset()
            flt = ds.field("event_time") >= pa.scalar(self.cut, SCHEMA.field("event_time").type) if filtered else None
            return data.to_table(filter=flt).num_rows, handler.counter[0]

        return run

    def duckdb_parquet(self, filtered: bool) -> tuple[str, Any]:
        import duckdb

        con = duckdb.connect()
        try:
            con.sql("LOAD httpfs")
            con.sql(f"SET s3_endpoint='{self.s3.endpoint}'; SET s3_use_ssl=false; SET s3_url_style='path';")
            con.sql("SET s3_access_key_id='testing'; SET s3_secret_access_key='testing'; SET s3_region='us-east-1'")
            source, how = f"read_parquet('s3://{self.bucket}/parquet/*.parquet')", "read_parquet (httpfs)"
        except duckdb.Error:
            source, how = "data", "over pyarrow.dataset"
        where = "WHERE event_time >= $1" if filtered else ""

        def run() -> tuple[int, int | None]:
            data, handler = self.dataset()
            con.register("data", data)
            out = con.sql(f"SELECT count(*), avg(score) FROM {source} {where}", params=[self.cut] if filtered else None)
            n = out.fetchall()[0][0]
            return int(n), handler.counter[0] if source == "data" else None

        return how, run

    def run(self) -> None:
        self.setup()
        print(
            f"{self.args.n:,} records; logstore {self.stored / 1e6:.1f} MB ({self.tiered_bytes / 1e6:.1f} MB tiered, "
            f"{self.local_bytes / 1e6:.1f} MB in the active segment), Parquet {self.parquet_bytes / 1e6:.1f} MB; "
            f"tiering took {self.tier_s:.2f} s",
            flush=True,
        )
        warm = logstore.open(
            self.path, readonly=True, cache_dir=self.scratch / "warm", block_bytes=self.args.block_bytes
        )
        warm.read("tiered")
        s, p = self.stored, self.parquet_bytes
        self.row("full read: logstore local", self.logstore_read("local", None), s)
        self.row("full read: logstore tiered, cold cache", self.logstore_read("tiered", None), s)
        self.row("full read: logstore tiered, warm cache", self.logstore_read("tiered", None, warm), s)
        self.row("full read: pyarrow.dataset, Parquet on S3", self.parquet_read(False), p)
        self.row("last 10%: logstore local", self.logstore_read("local", self.cut), s)
        self.row("last 10%: logstore tiered, cold cache", self.logstore_read("tiered", self.cut), s)
        self.row("last 10%: pyarrow.dataset, Parquet on S3 (row-group stats)", self.parquet_read(True), p)
        self.row("last 10% aggregate: log.duckdb(), tiered, cold cache", self.logstore_sql("WHERE event_time >= $1"), s)
        how, fn = self.duckdb_parquet(True)
        self.row(f"last 10% aggregate: DuckDB {how}, Parquet on S3", fn, p)
        self.row("full aggregate: log.duckdb(), tiered, cold cache", self.logstore_sql(""), s)
        how, fn = self.duckdb_parquet(False)
        self.row(f"full aggregate: DuckDB {how}, Parquet on S3", fn, p)
        warm.close()

    def report(self) -> str:
        a = self.args
        head = [
            "# Remote tier: reads from S3 (moto on loopback)",
            "",
            f"Generated by `python -m benchmarks.tier --n {a.n} --runs {a.runs}` on {datetime.now(UTC):%Y-%m-%d}; "
            f"segments of {a.segment_bytes:,} bytes, range reads of {a.block_bytes:,} bytes. logstore stores "
            f"{self.stored / 1e6:.1f} MB ({self.tiered_bytes / 1e6:.1f} MB tiered), Parquet "
            f"{self.parquet_bytes / 1e6:.1f} MB; tiering took {self.tier_s:.2f} s. "
            f"Load average {os.getloadavg()[0]:.2f}.",
            "",
            "| case | median s | spread | rows | MB fetched (share of stored) |",
            "|---|---:|---:|---:|---:|",
        ]
        notes = [
            "",
            "Shares are of the bytes each stores: logstore's include its active segment, which stays local (a read",
            "of it fetches nothing). A logstore frame is fetched whole, all its columns; Parquet readers fetch only",
            "the columns a query names (the aggregates read two of seven). log.duckdb() prunes by chunks of",
            "about 131,072 records, `log.read` by frame.",
        ]
        return "\n".join(head + [f"| {' | '.join(r)} |" for r in self.rows] + notes) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tier", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=500_000, help="records (default 500,000)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--segment-bytes", type=int, default=8 << 20)
    p.add_argument("--block-bytes", type=int, default=1 << 20)
    p.add_argument("--out", type=Path, default=HERE / "TIER.md")
    p.add_argument("--scratch", type=Path, default=None)
    args = p.parse_args(argv)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="logstore-tier-bench-"))
    s3 = S3Server.start()
    try:
        bench = Bench(args, s3, scratch)
        bench.run()
        args.out.write_text(bench.report())
        print(f"wrote {args.out}")
    finally:
        s3.stop()
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
