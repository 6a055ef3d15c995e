"""Timing and memory harness: every benchmark case runs in its own child process.

Why a child per case: peak memory is only meaningful when nothing else has lived in the process
(allocator caches, pyarrow's memory pool, DuckDB's buffer manager), and a peer that crashes or hangs
must not take the run down with it. The parent (`benchmarks.__main__`) spawns

    python -m benchmarks.harness SPEC.json

per case; the child rebuilds the case list from the same configuration, picks its case by id,
loads the workload from the scratch IPC file (a real copy, not a memory map), and writes one JSON
result next to the spec.

Per case, in the child:

1. `job.setup(data_dir)` once, untimed (e.g. write the Parquet file a read case reads). Data
   directories are shared between cases by key and prepared once (a `.done` marker).
2. `runs` times (at least `SHORT_RUNS` for a case whose warm-up or first timed run is under `SHORT_S`):
   `job.before(run_dir)` untimed; then `os.sync()` (the dirty pages earlier runs left are written
   back before, not during, this run), `gc.collect()`, reset the peak-RSS mark
   (`echo 5 > /proc/self/clear_refs`), read VmRSS, and time `job.run(run_dir)` with
   `time.perf_counter()`. Everything a user pays (open, close, flush, fsync) is inside `run`.
   Peak memory = VmHWM after the run minus VmRSS before it (what the operation itself added,
   including the result it returns), and, for cases that start processes, the largest child RSS
   (`getrusage(RUSAGE_CHILDREN).ru_maxrss`). Cases with `tree_memory` have the PSS of their
   process tree sampled from another process in the warm-up and in one extra untimed run, never
   in a timed one (the sampling takes CPU).
3. On-disk bytes: the apparent size of every file `run` left in its run directory (or
   `job.disk_bytes`).
4. Optional `touched` pass (read cases): fsync and evict every file of the data directory from the
   page cache (`posix_fadvise(DONTNEED)`), run once more untimed, then count the file pages now
   resident (`mincore`). That is what the read actually pulled from storage, kernel read-ahead
   included, and it works the same for `pread` and `mmap` readers.

The parent can also run a case once under `strace -f -c` to count `fsync`-family calls, so the
durability each case claims is observed, not assumed (`fsync_audit`).
"""

from __future__ import annotations

import ctypes
import gc
import json
import mmap
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.sampler import tree_pss

# --------------------------------------------------------------------------------------------------
# What a case is


@dataclass
class Job:
    """The work of one case, built inside the child process by `Case.build(ctx)`."""

    run: Callable[[Path], Any]  # timed; receives the run directory
    records: int  # records moved per run (for records/s)
    bytes_in: int  # logical Arrow bytes moved per run (for MB/s)
    setup: Callable[[Path], None] | None = None  # untimed, once, in the shared data directory
    before: Callable[[Path], None] | None = None  # untimed, before each run
    after: Callable[[Path, Any], dict] | None = None  # untimed, after each run -> extra metrics
    fresh_dir: bool = True  # True: each run gets an empty directory (writes); False: the data dir
    disk_bytes: Callable[[Path], int] | None = None  # default: size of the run directory
    touched: bool = False  # measure bytes pulled from storage by one cold run
    warmup: bool = True  # one untimed run first
    stats: Callable[[Path], dict] | None = None  # untimed extra pass: what the reader says it read
    tree_memory: bool = False  # sample the PSS of this process and its descendants during runs


@dataclass
class Case:
    """One row of a scenario table: logstore, a raw-format limit, or a peer."""

    scenario: str  # key of the scenario (see scenarios.SCENARIOS)
    name: str  # row label, unique within the scenario
    kind: str  # "logstore" | "limit" | "peer"
    build: Callable[[Ctx], Job]
    durability: str = ""  # what the case does to make data durable, in words
    limit: str | None = None  # name of the raw-limit case it is compared with (same scenario)
    data_key: str | None = None  # shared prepared data directory (read cases)
    note: str = ""
    audit_fsync: bool = False  # count fsync calls under strace (write cases)
    timeout: float = 900.0

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.name}"


@dataclass
class Ctx:
    """What a case may use: the configuration and, lazily, the workload."""

    n: int
    runs: int
    scratch: Path
    workload_path: Path
    scale: bool = False
    options: dict = field(default_factory=dict)
    _table: Any = None

    @property
    def table(self):
        if self._table is None:
            from benchmarks import workload

            self._table = workload.load(self.workload_path)
        return self._table

    def batches(self, size: int = 10_000):
        from benchmarks import workload

        return workload.batches(self.table, size)

    def data_dir(self, key: str) -> Path:
        return self.scratch / "data" / key

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "runs": self.runs,
            "scratch": str(self.scratch),
            "workload_path": str(self.workload_path),
            "scale": self.scale,
            "options": self.options,
        }

    @classmethod
    def from_json(cls, d: dict) -> Ctx:
        return cls(
            n=d["n"],
            runs=d["runs"],
            scratch=Path(d["scratch"]),
            workload_path=Path(d["workload_path"]),
            scale=d.get("scale", False),
            options=d.get("options", {}),
        )


@dataclass
class Result:
    id: str
    scenario: str
    name: str
    kind: str
    durability: str = ""
    limit: str | None = None
    note: str = ""
    records: int = 0
    bytes_in: int = 0
    times: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)  # bytes over the pre-run RSS
    child_peak: int = 0  # tree_memory cases: peak anonymous PSS growth of the process and its children
    disk_bytes: int | None = None
    touched_bytes: int | None = None
    data_bytes: int | None = None  # size of the data a read case reads from
    extra: dict = field(default_factory=dict)
    fsync_calls: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.times)

    @property
    def median(self) -> float:
        return median(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median of the runs: 0.05 means the runs lie within 5% of each other."""
        m = self.median
        return (max(self.times) - min(self.times)) / m if m > 0 else 0.0

    @property
    def rate(self) -> float:
        return self.records / self.median if self.median > 0 else float("inf")

    @property
    def mb_per_s(self) -> float:
        return self.bytes_in / self.median / 1e6 if self.median > 0 else float("inf")

    @property
    def peak(self) -> int:
        return max(self.peaks, default=0)


def median(xs: list[float]) -> float:
    s = sorted(xs)
    k = len(s)
    if not k:
        return float("nan")
    return s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2


# --------------------------------------------------------------------------------------------------
# Files, page cache and process memory


def tree_size(path: Path) -> int:
    """Apparent size of every regular file under `path` (or of the file itself)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total


def _files(path: Path) -> list[str]:
    if path.is_file():
        return [str(path)]
    return [os.path.join(r, f) for r, _d, fs in os.walk(path) for f in fs]


def evict(path: Path) -> None:
    """Write back and drop every page of the files under `path` from the page cache."""
    for f in _files(path):
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# not ctypes.util.find_library: it forks a subprocess, which would pollute RUSAGE_CHILDREN
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def resident_bytes(path: Path) -> int:
    """Bytes of the files under `path` currently in the page cache (mincore over a fresh map)."""
    page = mmap.PAGESIZE
    total = 0
    for f in _files(path):
        try:
            size = os.path.getsize(f)
            if size == 0:
                continue
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                continue
            try:
                pages = (size + page - 1) // page
                vec = ctypes.create_string_buffer(pages)
                if _libc.mincore(addr, size, vec) == 0:
                    total += sum(b & 1 for b in vec.raw) * page
            finally:
                _libc.munmap(addr, size)
        finally:
            os.close(fd)
    return total


def read_ahead_kb(path: Path) -> int | None:
    """The kernel read-ahead window of the block device holding `path` (mmap read-around size)."""
    try:
        dev = os.stat(path).st_dev
        base = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
        for q in (base / "queue", base.resolve().parent / "queue"):
            f = q / "read_ahead_kb"
            if f.exists():
                return int(f.read_text())
    except (OSError, ValueError):
        pass
    return None


class TreeSampler:
    """Samples `tree_pss()` of this process's tree every `interval` seconds, from a process of its
    own (`benchmarks.sampler`), so the sampling takes neither the GIL nor a thread of the measured
    process; keeps the largest of each part."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.anon = self.file = 0
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> TreeSampler:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sampler", str(os.getpid()), str(self.interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the memory sampler did not start")
        return self

    def __exit__(self, *exc) -> None:
        assert self._proc is not None
        out, _ = self._proc.communicate("")  # closing its stdin ends the sampling
        self.anon, self.file = (int(x) for x in out.split())


SHORT_S = 0.5  # a case whose first run takes less than this ...
SHORT_RUNS = 9  # ... gets at least this many timed runs


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss() -> int:
    return _status_kb("VmRSS") * 1024


def hwm() -> int:
    return _status_kb("VmHWM") * 1024


# --------------------------------------------------------------------------------------------------
# The child


def run_job(case: Case, ctx: Ctx) -> Result:
    res = Result(
        id=case.id,
        scenario=case.scenario,
        name=case.name,
        kind=case.kind,
        durability=case.durability,
        limit=case.limit,
        note=case.note,
    )
    job = case.build(ctx)
    res.records, res.bytes_in = job.records, job.bytes_in
    base = ctx.scratch / "runs" / _slug(case.id)
    data = ctx.data_dir(case.data_key) if case.data_key else base / "data"
    if job.setup is not None:
        prepare(job, data)
    if case.data_key:
        res.data_bytes = tree_size(data) - tree_size(data / ".done")
        res.extra["setup_s"] = float((data / ".done").read_text() or 0)
    can_reset = reset_peak()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # run -1 is an untimed warm-up (lazy imports, runtime start-up, first-call caches); its peak
    # memory counts, since it is the run that grows the allocator's pools
    warmup = job.warmup and ctx.options.get("warmup", True)
    # a tree_memory job's timed runs go unsampled (the sampler walks every mapping of the tree
    # every 20 ms: on 2 cores, CPU taken from the run); its tree is sampled in the warm-up and in
    # one extra untimed run after them
    extra = 1 if job.tree_memory else 0
    # a short case gets more timed runs: its median would otherwise move with the machine's
    # noise (another tenant's burst lasts longer than three of its runs)
    runs = ctx.runs
    i = -1 if warmup else 0
    while i < runs + extra:
        if job.fresh_dir:
            run_dir = base / f"run{i}"
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
        else:
            run_dir = data
        if job.before is not None:
            job.before(run_dir)
        # untimed: write back what earlier runs and cases left dirty, so the kernel's flusher
        # threads do not take this run's CPU (a write case's own writeback is not its cost either way)
        os.sync()
        gc.collect()
        can_reset = reset_peak()
        before = rss()
        if job.tree_memory and not 0 <= i < runs:
            base_anon, base_file = tree_pss()
            with TreeSampler() as sampler:
                t0 = time.perf_counter()
                out = job.run(run_dir)
                elapsed = time.perf_counter() - t0
            res.child_peak = max(res.child_peak, sampler.anon - base_anon)
            res.extra["tree_file_peak"] = max(res.extra.get("tree_file_peak", 0), sampler.file - base_file)
        else:
            t0 = time.perf_counter()
            out = job.run(run_dir)
            elapsed = time.perf_counter() - t0
        peak = hwm() - before if can_reset else 0
        if 0 <= i < runs:
            res.times.append(elapsed)
        # short if the warm-up or the first timed run is: a warm-up also pays one-time costs (judged
        # on it alone, replay kept 1 run a round), and one slow run is the noise more runs smooth
        if i <= 0 and elapsed < SHORT_S and ctx.options.get("short_runs", True):
            runs = max(runs, ctx.options.get("short_runs_n", SHORT_RUNS))
        res.peaks.append(max(peak, 0))
        if job.after is not None:
            res.extra.update(job.after(run_dir, out) or {})
        del out
        if job.fresh_dir:
            if i >= 0:
                res.disk_bytes = job.disk_bytes(run_dir) if job.disk_bytes else tree_size(run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)
        elif job.disk_bytes is not None:
            res.disk_bytes = job.disk_bytes(run_dir)
        i += 1
    if not can_reset:
        res.extra["peak_note"] = "peak RSS reset unavailable; peaks are process lifetime peaks"
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if children_after > children_before and not job.tree_memory:
        # a forked process's RSS includes the pages it shares with its parent: an upper bound
        res.extra["largest child RSS MB"] = round(children_after / 1024)
    if job.touched:
        evict(data)
        left = resident_bytes(data)
        if left > 0.02 * max(tree_size(data), 1):
            res.extra["touched_note"] = f"eviction left {left} bytes cached; touched is a lower bound"
        out = job.run(data)
        del out
        res.touched_bytes = resident_bytes(data)
    if job.stats is not None:
        res.extra.update(job.stats(data))
    return res


def round_ctx(ctx: Ctx, rounds: int) -> Ctx:
    """The context of one of `rounds` interleaved rounds: its share of the timed runs."""
    if rounds <= 1:
        return ctx
    share = -(-SHORT_RUNS // rounds)
    return replace(ctx, runs=-(-ctx.runs // rounds), options={**ctx.options, "short_runs_n": share})


def merge(results: list[Result]) -> Result:
    """One result from the rounds of a case: every timed run and peak kept, the first error wins."""
    out = replace(results[0], times=[], peaks=[], extra={})
    for r in results:
        if r.error and not out.error:
            out.error = r.error
        out.times += r.times
        out.peaks += r.peaks
        out.child_peak = max(out.child_peak, r.child_peak)
        for k, v in r.extra.items():
            keep = out.extra.get(k)
            out.extra[k] = (
                max(keep, v)
                if isinstance(v, (int, float)) and isinstance(keep, (int, float)) and ("peak" in k or "RSS" in k)
                else v
            )
        for k in ("disk_bytes", "touched_bytes", "data_bytes", "fsync_calls"):
            if getattr(r, k) is not None:
                setattr(out, k, getattr(r, k))
    return out


def prepare(job: Job, data: Path) -> None:
    """Run `job.setup` into `data` unless a previous run finished it (`.done` holds its seconds)."""
    marker = data / ".done"
    if marker.exists():
        return
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    t0 = time.perf_counter()
    job.setup(data)
    marker.write_text(f"{time.perf_counter() - t0:.3f}")


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


def child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    ctx = Ctx.from_json(spec["ctx"])
    out_path = Path(spec["out"])
    try:
        from benchmarks.scenarios import all_cases

        cases = {c.id: c for c in all_cases(ctx)}
        case = cases[spec["case"]]
        mode = spec.get("mode", "run")
        if mode == "setup":
            job = case.build(ctx)
            if job.setup is not None:
                prepare(job, ctx.data_dir(case.data_key))
            res = Result(id=case.id, scenario=case.scenario, name=case.name, kind=case.kind)
        elif mode == "profile":
            res = profile_job(case, ctx, Path(spec["profile_out"]))
        else:
            res = run_job(case, ctx)
    except ModuleNotFoundError as e:  # an optional peer (the `bench` extra) is not installed
        res = Result(
            id=spec["case"],
            scenario="",
            name="",
            kind="",
            error=f"not installed: {e.name} (`make bench` installs the bench extra)",
        )
    except BaseException as e:  # report, never crash the run
        msg = f"{type(e).__name__}: {e}".strip()
        res = Result(id=spec["case"], scenario="", name="", kind="", error=msg.splitlines()[0][:300])
        res.extra["traceback"] = traceback.format_exc()[-4000:]
    out_path.write_text(json.dumps(asdict(res)))
    return 0


# --------------------------------------------------------------------------------------------------
# The parent side


def _error(case: Case, msg: str) -> Result:
    return Result(
        id=case.id,
        scenario=case.scenario,
        name=case.name,
        kind=case.kind,
        durability=case.durability,
        limit=case.limit,
        note=case.note,
        error=msg,
    )


def _child(case: Case, ctx: Ctx, mode: str, *, strace: bool = False, **extra) -> Result:
    jobs = ctx.scratch / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    slug = _slug(case.id) + ("" if mode == "run" else f".{mode}") + (".strace" if strace else "")
    spec = jobs / f"{slug}.json"
    out = jobs / f"{slug}.result.json"
    out.unlink(missing_ok=True)
    spec.write_text(json.dumps({"ctx": ctx.to_json(), "case": case.id, "out": str(out), "mode": mode, **extra}))
    cmd = [sys.executable, "-m", "benchmarks.harness", str(spec)]
    trace = jobs / f"{slug}.trace"
    if strace:
        cmd = [
            "strace",
            "-f",
            "-c",
            "-o",
            str(trace),
            "-e",
            "trace=fsync,fdatasync,msync,sync_file_range,syncfs,sync",
        ] + cmd
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=case.timeout)
    except subprocess.TimeoutExpired:
        return _error(case, f"timed out after {case.timeout:.0f} s ({mode})")
    if not out.exists():
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return _error(case, f"child died ({mode}): {tail[0][:300]}")
    res = Result(**json.loads(out.read_text()))
    if not res.scenario:  # the child failed before it knew the case
        res.scenario, res.name, res.kind = case.scenario, case.name, case.kind
    res.durability, res.limit, res.note = case.durability, case.limit, case.note
    if strace:
        res.fsync_calls = _count_syncs(trace) if trace.exists() else None
    return res


def spawn(case: Case, ctx: Ctx, *, strace: bool = False) -> Result:
    """Run `case` in a fresh interpreter; return its result (errors and timeouts as results).

    A case that reads prepared data gets it from a separate child first, so the measuring process
    never held the workload or the writer's buffers.
    """
    if case.data_key and not (ctx.data_dir(case.data_key) / ".done").exists():
        res = _child(case, ctx, "setup")
        if res.error:
            return res
    return _child(case, ctx, "run", strace=strace)


def profile(case: Case, ctx: Ctx, out: Path) -> Result:
    """Run `case` once under cProfile in a child; the top functions go to `out` as text."""
    if case.data_key and not (ctx.data_dir(case.data_key) / ".done").exists():
        res = _child(case, ctx, "setup")
        if res.error:
            return res
    return _child(case, ctx, "profile", profile_out=str(out))


def profile_job(case: Case, ctx: Ctx, out: Path, top: int = 18) -> Result:
    import cProfile
    import io
    import pstats

    job = case.build(ctx)
    base = ctx.scratch / "runs" / (_slug(case.id) + ".profile")
    data = ctx.data_dir(case.data_key) if case.data_key else base / "data"
    if job.setup is not None:
        prepare(job, data)

    def fresh() -> Path:
        if not job.fresh_dir:
            return data
        d = base / "run"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    if job.warmup:  # imports and first-call set-up are not where the steady-state time goes
        job.run(fresh())
    run_dir = fresh()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(job.run, run_dir)
    elapsed = time.perf_counter() - t0
    parts = []
    for order, k in (("cumulative", top), ("tottime", top // 2)):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(order).print_stats(k)
        parts.append(f"by {order} time:\n" + _trim_pstats(buf.getvalue()))
    out.write_text("\n\n".join(parts))
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values()) or 1.0  # v = (cc, nc, tottime, cumtime, callers)
    top_own = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:5]
    summary = [{"function": _where(fn), "share": v[2] / total, "seconds": v[2]} for fn, v in top_own]
    out.with_suffix(".json").write_text(json.dumps(summary))
    res = Result(id=case.id, scenario=case.scenario, name=case.name, kind=case.kind, times=[elapsed])
    if job.fresh_dir:
        shutil.rmtree(base, ignore_errors=True)
    return res


_ROOT = str(Path(__file__).resolve().parent.parent)


def _where(fn: tuple) -> str:
    """`(file, line, name)` of a pstats key as `name (package/file.py:line)`."""
    path, line, name = fn
    if path == "~":
        return name
    for marker in ("site-packages/", _ROOT + "/"):
        k = path.find(marker)
        if k >= 0:
            path = path[k + len(marker) :]
            break
    else:
        path = "<stdlib>/" + os.path.basename(path) if "/lib/python3" in path else path
    return f"{name} ({path}:{line})"


def _trim_pstats(text: str) -> str:
    """Keep the table of a pstats printout, with paths shortened to the package-relative part."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls")), 0)
    keep = []
    for ln in lines[start:]:
        if not ln.strip():
            continue
        for marker in ("site-packages/", _ROOT + "/", "lib/python3"):
            k = ln.find(marker)
            if k >= 0:
                head = ln[: ln.rfind(" ", 0, k) + 1]
                ln = (
                    head + ln[k + len(marker) :]
                    if marker != "lib/python3"
                    else head + "<stdlib>" + ln[ln.find("/", k + 11) :]
                )
        keep.append(ln.rstrip())
    return "\n".join(keep)


def _count_syncs(trace: Path) -> int:
    """Sum the `calls` column of an `strace -c` summary for the sync-family syscalls."""
    total = 0
    for line in trace.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in {"fsync", "fdatasync", "msync", "sync_file_range", "syncfs", "sync"}:
            # columns: % time, seconds, usecs/call, calls, [errors], syscall
            nums = [p for p in parts[:-1] if p.replace(".", "", 1).isdigit()]
            if len(nums) >= 4:
                total += int(nums[3])
    return total


def have_strace() -> bool:
    return shutil.which("strace") is not None


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
