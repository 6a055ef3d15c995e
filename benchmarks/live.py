"""`python -m benchmarks.live`: the live path, one record per commit, against SQLite and JSON lines.

    python -m benchmarks.live                   # 2,000 commits a case, 3 interleaved rounds
    python -m benchmarks.live --n 500 --out /tmp/LIVE.md

Measured on `model_score` records, in one run, each case's rounds interleaved with the others':
- commit latency: logstore `append` + `flush` (durability "flush" and "fsync"), SQLite WAL with one
  INSERT per transaction (synchronous NORMAL and FULL), a JSON-lines file written per record (and
  fdatasync-ed per record: the disk's floor for a durable commit);
- bytes on disk per record for each;
- 8 threads of one process, each committing single records durably to one partition, against one;
  4 processes doing the same, against one; and the floor under both (the same appends as bare
  pwrite + fdatasync calls: how far the kernel batches concurrent fdatasyncs on this machine);
- tail latency: another process's `reader(follow=True)` sees each commit (stamp to visible) at
  about 500 commits/s, and the CPU an idle tailer uses.

Writes a Markdown report (`benchmarks/LIVE.md`) and a plot of the latency distributions next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def record(i: int) -> dict[str, Any]:
    return {
        "request_id": f"req-{i:08d}",
        "event_time": datetime.now(UTC),
        "model_id": "champion",
        "model_version": "2026.11.1",
        "score": (i % 997) / 997.0,
        "scores": None,
        "label": None,
        "latency_ms": 3.25,
        "host": "runner-1",
        "run_id": None,
        "code_version": "logstore 0.1.0",
    }


def _json(r: dict[str, Any]) -> bytes:
    return (json.dumps({**r, "event_time": r["event_time"].isoformat()}) + "\n").encode()


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- cases: each returns (per-commit latencies in seconds, bytes on disk) ------------------------
def case_logstore(durability: str) -> Callable[[Path, int], tuple[list[float], int]]:
    def run(d: Path, n: int) -> tuple[list[float], int]:
        import logstore

        lg = logstore.open(d / "log")
        lg.create_topic("scores", schema="model_score", compression=None)
        lat = []
        with lg.writer("scores", durability=durability, linger_ms=None) as w:
            for i in range(n):
                r = record(i)
                t = time.perf_counter()
                w.append(r)
                w.flush()
                lat.append(time.perf_counter() - t)
        lg.close()
        return lat, _dir_bytes(d / "log" / "topics" / "scores" / "00000")

    return run


def case_sqlite(sync: str) -> Callable[[Path, int], tuple[list[float], int]]:
    def run(d: Path, n: int) -> tuple[list[float], int]:
        con = sqlite3.connect(d / "db.sqlite", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={sync}")
        con.execute(
            "CREATE TABLE scores (request_id TEXT, event_time INTEGER, model_id TEXT, model_version TEXT, "
            "score REAL, scores TEXT, label TEXT, latency_ms REAL, host TEXT, run_id TEXT, code_version TEXT)"
        )
        lat = []
        for i in range(n):
            r = record(i)
            row = (r["request_id"], int(r["event_time"].timestamp() * 1e6), r["model_id"], r["model_version"],
                   r["score"], None, None, r["latency_ms"], r["host"], None, r["code_version"])  # fmt: skip
            t = time.perf_counter()
            con.execute("BEGIN")
            con.execute("INSERT INTO scores VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)
            con.execute("COMMIT")
            lat.append(time.perf_counter() - t)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        return lat, _dir_bytes(d)

    return run


def case_jsonl(sync: bool) -> Callable[[Path, int], tuple[list[float], int]]:
    def run(d: Path, n: int) -> tuple[list[float], int]:
        fd = os.open(d / "scores.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        lat = []
        try:
            for i in range(n):
                r = record(i)
                t = time.perf_counter()
                os.write(fd, _json(r))
                if sync:
                    os.fdatasync(fd)
                lat.append(time.perf_counter() - t)
        finally:
            os.close(fd)
        return lat, _dir_bytes(d)

    return run


CASES: dict[str, Callable[[Path, int], tuple[list[float], int]]] = {
    "logstore durability=flush": case_logstore("flush"),
    "logstore durability=fsync": case_logstore("fsync"),
    "SQLite WAL synchronous=NORMAL": case_sqlite("NORMAL"),
    "SQLite WAL synchronous=FULL": case_sqlite("FULL"),
    "JSON lines, write per record": case_jsonl(False),
    "JSON lines + fdatasync per record": case_jsonl(True),
}


def threads_case(work: Path, threads: int, per_thread: int) -> float:
    """Commits per second of `threads` threads, each its own writer of one Log, durability fsync."""
    import logstore

    lg = logstore.open(work / f"threads-{threads}")
    lg.create_topic("scores", schema="model_score", compression=None)
    barrier = threading.Barrier(threads + 1)

    def one(k: int) -> None:
        with lg.writer("scores", durability="fsync", linger_ms=None) as w:
            barrier.wait()
            for i in range(per_thread):
                w.append(record(k * per_thread + i))
                w.flush()

    try:
        return _timed_threads(threads, per_thread, one, barrier)
    finally:
        lg.close()


def _timed_threads(threads: int, per_thread: int, one: Callable[[int], None], barrier: threading.Barrier) -> float:
    """Commits per second of `threads` threads running `one(k)`, timed from when every thread has
    passed `barrier` (each waits on it once set up) until the last is done."""
    ts = [threading.Thread(target=one, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return threads * per_thread / (time.perf_counter() - t0)


def _timed_procs(code: list[str], per_proc: int, start: float) -> float:
    """Commits per second of one process per program in `code`, each starting at `start` (epoch
    seconds) and printing the time it finished."""
    ps = [subprocess.Popen([sys.executable, "-c", c], stdout=subprocess.PIPE, text=True) for c in code]
    ends = [float(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in ps]
    return len(code) * per_proc / (max(ends) - start)


COMMITTER = """
import sys, time
sys.path.insert(0, {root!r})
from benchmarks.live import record
import logstore
lg = logstore.open({path!r})
with lg.writer("scores", durability="fsync", linger_ms=None) as w:
    while time.time() < {start}:
        time.sleep(0.0005)
    for i in range({n}):
        w.append(record({k} * {n} + i))
        w.flush()
print(time.time(), flush=True)
"""


def procs_case(work: Path, procs: int, per_proc: int) -> float:
    """Commits per second of `procs` processes, each committing single records durably to one partition."""
    import logstore

    path = work / f"procs-{procs}"
    lg = logstore.open(path)
    lg.create_topic("scores", schema="model_score", compression=None)
    lg.close()
    start = time.time() + 2.0  # every process is up and has its writer open by then
    code = [COMMITTER.format(root=str(ROOT), path=str(path), n=per_proc, k=k, start=start) for k in range(procs)]
    return _timed_procs(code, per_proc, start)


def raw_threads_case(work: Path, threads: int, per_thread: int) -> float:
    """The floor under `threads_case`: threads appending a JSON-lines-sized record to one file
    under a mutex and fdatasyncing it on their own descriptor (no encoding, no hint, no index):
    how far the kernel's own batching of concurrent fdatasyncs goes on this machine."""
    path = work / f"raw-threads-{threads}.bin"
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    line = _json(record(0))
    mutex, end = threading.Lock(), [0]
    barrier = threading.Barrier(threads + 1)

    def one(k: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            with mutex:
                os.pwrite(fd, line, end[0])
                end[0] += len(line)
            sync = os.dup(fd)
            os.fdatasync(sync)
            os.close(sync)

    try:
        return _timed_threads(threads, per_thread, one, barrier)
    finally:
        os.close(fd)


RAW_COMMITTER = """
import fcntl, os, sys, time
sys.path.insert(0, {root!r})
from benchmarks.live import _json, record
line = _json(record(0))
fd, lock = os.open({data!r}, os.O_RDWR), os.open({lock!r}, os.O_RDWR)
while time.time() < {start}:
    time.sleep(0.0005)
for _ in range({n}):
    fcntl.flock(lock, fcntl.LOCK_EX)
    end = int.from_bytes(os.pread(lock, 8, 0), "little")
    os.pwrite(fd, line, end)
    os.pwrite(lock, (end + len(line)).to_bytes(8, "little"), 0)
    fcntl.flock(lock, fcntl.LOCK_UN)
    os.fdatasync(fd)
print(time.time(), flush=True)
"""


def raw_procs_case(work: Path, procs: int, per_proc: int) -> float:
    """The floor under `procs_case`: processes appending under an flock (the end kept in the lock
    file) and each fdatasyncing after its write, with no encoding, hint or index."""
    data, lock = work / f"raw-procs-{procs}.bin", work / f"raw-procs-{procs}.lock"
    data.write_bytes(b"")
    lock.write_bytes(bytes(8))
    start = time.time() + 1.0
    code = [RAW_COMMITTER.format(root=str(ROOT), data=str(data), lock=str(lock), n=per_proc, start=start)] * procs
    return _timed_procs(code, per_proc, start)


TAILER = """
import json, os, sys, time
sys.path.insert(0, {root!r})
import logstore
lg = logstore.open({path!r}, readonly=True)
n, lat = {n}, []
for b in lg.reader("scores", follow=True, columns=["event_time"]):
    now = time.time_ns() // 1000
    lat.extend(now - v for v in b.column("event_time").cast("int64").to_pylist())
    if len(lat) >= n:
        break
t = os.times()
c0, w0 = t.user + t.system, time.monotonic()
it = iter(lg.reader("scores", follow=True, start={{0: n}}))
import threading
threading.Thread(target=lambda: next(it, None), daemon=True).start()
time.sleep(3.0)
t = os.times()
idle = (t.user + t.system - c0) / (time.monotonic() - w0)
print(json.dumps({{"lat_us": lat, "idle_cpu": idle}}), flush=True)
os._exit(0)
"""


def tail_case(work: Path, n: int, rate: float) -> dict[str, Any]:
    import logstore

    path = work / "tail"
    lg = logstore.open(path)
    lg.create_topic("scores", schema="model_score", compression=None)
    code = TAILER.format(root=str(ROOT), path=str(path), n=n)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)  # the tailer is up and waiting
    with lg.writer("scores", durability="flush", linger_ms=None) as w:
        nxt = time.perf_counter()
        for i in range(n):
            w.append(record(i))  # event_time stamped in record(): stamp-to-visible includes the commit
            w.flush()
            nxt += 1 / rate
            time.sleep(max(0.0, nxt - time.perf_counter()))
    out, _ = p.communicate(timeout=120)
    return json.loads(out)


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.live", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="commits per case and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "LIVE.md", help="the report's file (a directory: LIVE.md in it)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="logstore-live-"))
    lat: dict[str, list[float]] = {k: [] for k in CASES}
    size: dict[str, int] = {}
    t_start = time.time()
    try:
        for r in range(args.rounds):
            for name, fn in CASES.items():
                d = work / f"{r}-{len(size)}-{abs(hash(name))}"
                d.mkdir()
                xs, nbytes = fn(d, args.n)
                lat[name] += xs[10:]  # the first commits open files and warm caches
                size[name] = nbytes
                shutil.rmtree(d)
                print(f"round {r + 1}: {name}: p50 {_pct(xs, 0.5) * 1e6:.0f} us", file=sys.stderr)
        one = threads_case(work, 1, max(200, args.n // 4))
        eight = threads_case(work, 8, max(50, args.n // 16))
        p1 = procs_case(work, 1, max(200, args.n // 4))
        p4 = procs_case(work, 4, max(50, args.n // 8))
        raw1, raw8 = raw_threads_case(work, 1, max(200, args.n // 4)), raw_threads_case(work, 8, max(50, args.n // 16))
        rawp1, rawp4 = raw_procs_case(work, 1, max(200, args.n // 4)), raw_procs_case(work, 4, max(50, args.n // 8))
        tail = tail_case(work, min(args.n, 1000), 500.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tail_lat = [x / 1e6 for x in tail["lat_us"][5:]]
    p50 = {k: _pct(v, 0.5) for k, v in lat.items()}
    rows = []
    for k, v in lat.items():
        per = size[k] / args.n
        rows.append(
            f"| {k} | {p50[k] * 1e6:.0f} | {_pct(v, 0.99) * 1e6:.0f} | {1 / (sum(v) / len(v)):,.0f} | {per:,.0f} |"
        )
    ratio = {
        "flush commit vs SQLite NORMAL (target <= 3x)": p50["logstore durability=flush"]
        / p50["SQLite WAL synchronous=NORMAL"],
        "fsync commit vs JSON lines + fdatasync (target <= 1.5x)": p50["logstore durability=fsync"]
        / p50["JSON lines + fdatasync per record"],
        "bytes per record vs JSON lines (target <= 2x)": size["logstore durability=flush"]
        / size["JSON lines, write per record"],
        "8 threads vs 1, durable commits/s (target >= 3x)": eight / one,
        "4 processes vs 1 on one partition, durable commits/s (target >= 3x)": p4 / p1,
    }
    if args.out.is_dir() or str(args.out).endswith("/"):
        args.out.mkdir(parents=True, exist_ok=True)
        args.out = args.out / "LIVE.md"
    png = args.out.with_name("live_latency.png")
    _plot(lat, tail_lat, png)
    text = [
        "# The live path: one record per commit",
        "",
        f"Generated by `python -m benchmarks.live --n {args.n} --rounds {args.rounds}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({time.time() - t_start:.0f} s); `model_score` records, "
        "one partition, uncompressed; every case's rounds interleaved with the others'. Latency is "
        "`append` + `flush` (or one transaction, or one write) per record.",
        "",
        "| case | p50 us | p99 us | commits/s | bytes on disk per record |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "| ratio | measured |",
        "|---|---|",
        *[f"| {k} | {v:.2f}x |" for k, v in ratio.items()],
        f"| durable commits/s: 1 thread, 8 threads | {one:,.0f}, {eight:,.0f} |",
        f"| durable commits/s: 1 process, 4 processes | {p1:,.0f}, {p4:,.0f} |",
        f"| the floor, pwrite + fdatasync with no encoding, hint or index: 8 threads vs 1 | {raw8 / raw1:.2f}x "
        f"({raw1:,.0f}, {raw8:,.0f}/s) |",
        f"| the floor, the same in processes under an flock: 4 processes vs 1 | {rawp4 / rawp1:.2f}x "
        f"({rawp1:,.0f}, {rawp4:,.0f}/s) |",
        f"| tail: another process sees a commit (stamp to visible, 500 commits/s) | p50 "
        f"{_pct(tail_lat, 0.5) * 1e3:.2f} ms, p99 {_pct(tail_lat, 0.99) * 1e3:.2f} ms, "
        f"max {max(tail_lat) * 1e3:.1f} ms |",
        f"| an idle tailer's CPU | {tail['idle_cpu'] * 100:.2f}% of a core |",
        "",
        f"![latency distributions]({png.name})",
        "",
    ]
    args.out.write_text("\n".join(text))
    if args.out.parent == HERE:
        splice_results(HERE / "RESULTS.md", "\n".join(text))
    print("\n".join(text))
    return 0


LIVE_BEGIN, LIVE_END = "<!-- live path: python -m benchmarks.live -->", "<!-- /live path -->"


def live_section(results: Path) -> str:
    """The live-path section of `results` (markers included), or "" (kept across regenerations)."""
    text = results.read_text() if results.exists() else ""
    i, j = text.find(LIVE_BEGIN), text.find(LIVE_END)
    return text[i : j + len(LIVE_END)] if 0 <= i < j else ""


def splice_results(results: Path, live_md: str) -> None:
    """Put this run's tables and plot into RESULTS.md, replacing the previous live section."""
    body = live_md.replace("# The live path", "## The live path", 1)
    section = f"{LIVE_BEGIN}\n{body.strip()}\n{LIVE_END}"
    text = results.read_text() if results.exists() else ""
    old = live_section(results)
    text = text.replace(old, section) if old else text.rstrip() + "\n\n" + section + "\n"
    results.write_text(text)


def _plot(lat: dict[str, list[float]], tail: list[float], png: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, xs in [*lat.items(), ("tail: stamp to visible in another process", tail)]:
        s = sorted(xs)
        ax.plot([x * 1e6 for x in s], [i / len(s) for i in range(len(s))], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("microseconds (log scale)")
    ax.set_ylabel("fraction of commits at or below")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
