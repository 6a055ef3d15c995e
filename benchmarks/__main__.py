"""`python -m benchmarks`: run every scenario for logstore and the references, write RESULTS.md.

    python -m benchmarks                      # 1,000,000 records, 3 runs (make bench)
    python -m benchmarks --quick              # 100,000 records, 3 runs (make bench-quick)
    python -m benchmarks --n 10000000         # the scaling point
    python -m benchmarks --only append,read --runs 5 --out /tmp/r.md

Each case runs in its own child process (see harness.py); the report has one table per scenario,
ratios to the raw limit and to each reference, the issue's targets checked against this run, and a
cProfile summary of the logstore append and read paths.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import harness, scenarios, workload
from benchmarks.harness import Ctx, Result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PROFILED = [
    ("Batched append (zstd, durability=none)", "append/logstore zstd durability=none"),
    ("Per-record append", "per_record/logstore zstd, w.append(dict)"),
    ("Full read (zstd)", "read_full/logstore zstd"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark logstore against the raw Arrow IPC limit and its peers, in one run.",
        epilog="example: python -m benchmarks --quick --only append,read_full --out /tmp/RESULTS.md",
    )
    p.add_argument("--quick", action="store_true", help="100,000 records, 3 runs, no scale point")
    p.add_argument("--n", type=int, default=None, help="records in the workload (default 1,000,000)")
    p.add_argument(
        "--runs",
        type=int,
        default=None,
        help="timed runs per case (default 3; at least 9 for a case under 0.5 s; median reported)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds per scenario (default 3): each case's runs are split over rounds "
        "run case after case, so a slow spell of a shared machine falls on every case alike",
    )
    p.add_argument("--only", default="", help=f"comma-separated scenarios: {','.join(scenarios.SCENARIO_KEYS)},read")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="where to write the report")
    p.add_argument("--scale", action="store_true", help="also replay 10,000,000 records (peak memory point)")
    p.add_argument("--scratch", type=Path, default=None, help="scratch directory (default benchmarks/.work/)")
    p.add_argument("--keep", action="store_true", help="keep the scratch data afterwards")
    p.add_argument("--no-strace", action="store_true", help="skip counting fsync calls under strace")
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile section")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cases run at once (default 1; more only for smoke runs: cases then share the CPU)",
    )
    p.add_argument("--segments", type=int, default=10_000, help="segments in the open/seek log (default 10,000)")
    a = p.parse_args(argv)
    if a.n is None:
        a.n = 100_000 if a.quick else 1_000_000
    if a.runs is None:
        a.runs = 3
    if a.quick:
        a.scale = False
    if a.n >= 10_000_000:
        a.scale = True
    if a.n < 1000 or a.runs < 1 or a.rounds < 1:
        p.error("--n must be >= 1000, --runs and --rounds >= 1")
    return a


# --------------------------------------------------------------------------------------------------
# Formatting


def _rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def _secs(x: float) -> str:
    return f"{x:.3f} s" if x >= 1 else f"{x * 1000:.1f} ms" if x >= 0.001 else f"{x * 1e6:.0f} us"


def _mb(b: int | None) -> str:
    return "" if b is None else f"{b / 1e6:.1f}"


def _ratio(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.2f}x" if x >= 0.095 else f"{x:.3f}x" if x >= 0.0095 else f"{x:.1e}x"


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def speed_ratio(a: Result, b: Result, per_record: bool = True) -> float | None:
    """How many times faster `a` is than `b`: b's time over a's time (per record, by default)."""
    if not (a.ok and b.ok) or a.median <= 0:
        return None
    if not per_record:
        return b.median / a.median
    return (b.median / max(b.records, 1)) / (a.median / max(a.records, 1))


def scenario_section(sc: scenarios.Scenario, results: list[Result], by_id: dict[str, Result]) -> list[str]:
    lines = [f"## {sc.title}", "", sc.what, ""]
    writes = sc.key in ("append", "per_record")
    reads = sc.key in ("read_full", "read_tail")
    header = ["case", "kind"]
    header += ["median", "spread"] if sc.time_only else ["records/s", "MB/s", "median", "spread"]
    header += ["on-disk MB", "peak MB", "vs limit"]
    if reads:
        header += ["touched MB, cold (of data)", "frames read MB (of data)"]
    if writes:
        header += ["durability", "fsync calls/run"]
    header += ["notes"]
    rows = []
    for r in results:
        if not r.ok:
            reason = r.error or "no runs"
            rows.append([r.name, r.kind] + [""] * (len(header) - 3) + [reason])
            continue
        lim = by_id.get(f"{r.scenario}/{r.limit}") if r.limit else None
        row = [r.name, r.kind]
        if sc.time_only:
            row += [_secs(r.median), f"{r.spread:.0%}"]
        else:
            row += [_rate(r.rate), f"{r.mb_per_s:.0f}" if r.bytes_in else "", _secs(r.median), f"{r.spread:.0%}"]
        disk = r.disk_bytes if r.disk_bytes is not None else None
        vs = ""
        if lim is not None:
            vs = _ratio(speed_ratio(r, lim, not sc.time_only))
            if r.kind != "logstore" or sc.key in ("read_full", "read_tail"):
                vs += f" ({lim.name})"
        row += [_mb(disk), f"{r.peak / 2**20:.0f}", vs]
        if reads:
            if r.touched_bytes is not None and r.data_bytes:
                row.append(f"{_mb(r.touched_bytes)} ({r.touched_bytes / r.data_bytes:.0%})")
            else:
                row.append("")
            rb = r.extra.get("reader_bytes")
            row.append(f"{_mb(rb)} ({rb / r.data_bytes:.0%})" if rb is not None and r.data_bytes else "")
        if writes:
            row += [r.durability, "" if r.fsync_calls is None else str(r.fsync_calls)]
        notes = [r.note] if r.note else []
        notes += [
            f"{k}: {v}"
            for k, v in r.extra.items()
            if k not in ("traceback", "setup_s", "reader_bytes", "tree_file_peak")
        ]
        if r.child_peak or "tree_file_peak" in r.extra:
            notes.append(
                f"process tree peak: {r.child_peak / 2**20:.0f} MB anonymous + "
                f"{r.extra.get('tree_file_peak', 0) / 2**20:.0f} MB mapped file pages (PSS, sampled)"
            )
        if "setup_s" in r.extra and sc.key == "open":
            notes.append(f"building the data set took {r.extra['setup_s']:.1f} s")
        row.append("; ".join(notes))
        rows.append(row)
    lines += _table(header, rows)
    # logstore relative to every reference
    ls = [r for r in results if r.kind == "logstore" and r.ok]
    refs = [r for r in results if r.kind != "logstore" and r.ok]
    if ls and refs:
        per = "time ratio" if sc.time_only else "speed ratio per record"
        lines += ["", f"logstore relative to each reference ({per}; > 1 means logstore is faster):", ""]
        rows = [[ref.name] + [_ratio(speed_ratio(a, ref, not sc.time_only)) for a in ls] for ref in refs]
        lines += _table(["reference"] + [a.name for a in ls], rows)
    lines.append("")
    return lines


def machine() -> list[str]:
    cpu = "unknown"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    return [f"- CPU: {cpu}, {os.cpu_count()} cores; memory {mem}; {platform.system()} {platform.release()}"]


def versions() -> str:
    import importlib.metadata as md

    parts = [f"python {platform.python_version()}"]
    for dist in ("pyarrow", "duckdb", "fastavro", "numpy", "pylance", "deltalake"):
        try:
            parts.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    parts.append(f"logstore {git_sha()}")
    return ", ".join(parts)


def git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(no git commit)"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "logstore", "replay", "schemas"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return sha + ("+uncommitted changes" if dirty else "")


def _runs(args, at_least: int = 0) -> int:
    """Timed runs per case: each round's share (rounded up) times the rounds."""
    return -(-max(args.runs, at_least) // args.rounds) * args.rounds


def render(args, results: list[Result], profiles: list[tuple[str, str]], elapsed: float, command: str) -> str:
    by_id = {r.id: r for r in results}
    lines = [
        "# logstore benchmarks",
        "",
        "Generated by `python -m benchmarks` (see README.md for what is measured and how). Numbers are",
        "only comparable within this file: every row was measured in the same run on the same machine.",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; whole run {elapsed / 60:.1f} min",
        *machine(),
        f"- Versions: {versions()}",
        f"- Command: `{command}`",
        f"- Workload: {args.n:,} records, {workload.SCHEMA.__len__()} columns, about "
        f"{_workload_bytes(args):.0f} bytes/record in Arrow (seed {workload.SEED}); {_runs(args)} timed runs per "
        f"case ({_runs(args, harness.SHORT_RUNS)} for a case under {harness.SHORT_S} s) in {args.rounds} interleaved "
        "round(s) per scenario, median reported; spread = (max - min) / median",
        "- peak MB: the largest RSS growth of the measuring process during one run (result included);",
        "  on-disk MB: apparent size of the files written (or read); speeds and `vs` ratios: per record",
        "- Reads: page cache warm for the timed runs; `touched MB, cold` counts the file pages one read pulls",
        f"  in after eviction, kernel read-ahead included (this disk: {_ra(args)}; a memory-mapped",
        "  reader faults in a whole read-around window per miss). `frames read MB` is logstore's own count.",
        "",
        "## Targets (from the issues), checked against this run",
        "",
    ]
    rows = []
    for t in scenarios.TARGETS:
        measured, ok = t.check(by_id)
        rows.append([t.text, measured, "n/a" if ok is None else ("met" if ok else "**missed**")])
    lines += _table(["target", "measured", ""], rows)
    lines.append("")
    for sc in scenarios.SCENARIOS:
        rs = [r for r in results if r.scenario == sc.key]
        if rs:
            lines += scenario_section(sc, rs, by_id)
    lines += ["## Where the time goes (cProfile, top functions by cumulative time)", ""]
    if profiles:
        lines += [
            "Each path runs once under cProfile after a warm-up run (same workload); the profiler",
            "slows Python-level code more than native code, so shares are indicative.",
            "",
        ]
        for title, text, summary in profiles:
            own = ", ".join(f"`{x['function']}` {x['share']:.0%}" for x in summary)
            lines += [
                f"### {title}",
                "",
                f"Most own time: {own}.",
                "",
                "<details><summary>cProfile top functions</summary>",
                "",
                "```",
                text,
                "```",
                "",
                "</details>",
                "",
            ]
    else:
        lines += ["Not profiled in this run (logstore cases unavailable, filtered out, or `--no-profile`).", ""]
    missing = [r for r in results if not r.ok]
    if missing:
        lines += ["## Not measured in this run", ""]
        lines += [f"- {r.scenario} / {r.name}: {r.error}" for r in missing]
        lines.append("")
    return "\n".join(lines)


def _ra(args) -> str:
    kb = harness.read_ahead_kb(args.scratch or HERE)
    return "read-ahead unknown" if kb is None else f"read_ahead_kb = {kb}"


_WB: dict[int, float] = {}


def _workload_bytes(args) -> float:
    return _WB.get(args.n, float("nan"))


# --------------------------------------------------------------------------------------------------


def run_cases(cases: list, ctx: Ctx, jobs: int, rounds: int = 1) -> list[Result]:
    """Run every case in its own child, `rounds` times: within a scenario, round r runs each case
    once (in reverse order on odd rounds) with its share of the timed runs, and a case's result
    merges its rounds. With jobs > 1, cases sharing a data set stay in order."""
    done = {"n": 0}
    total = len(cases) * rounds
    per_round = harness.round_ctx(ctx, rounds)

    def one(case) -> Result:
        t0 = time.perf_counter()
        r = harness.spawn(case, per_round)
        done["n"] += 1
        msg = f"{_rate(r.rate)} rec/s, median {_secs(r.median)}, spread {r.spread:.0%}" if r.ok else r.error
        print(f"[{done['n']}/{total}] {case.id}: {msg}  ({time.perf_counter() - t0:.1f} s)", flush=True)
        return r

    def interleaved(group: list) -> list[Result]:
        got: dict[str, list[Result]] = {c.id: [] for c in group}
        for r in range(rounds):
            for c in group if r % 2 == 0 else group[::-1]:
                got[c.id].append(one(c))
        return [harness.merge(got[c.id]) for c in group]

    by_scenario: dict[str, list] = {}
    for c in cases:
        by_scenario.setdefault(c.scenario, []).append(c)
    if jobs <= 1:
        merged = [r for group in by_scenario.values() for r in interleaved(group)]
        by_id = {r.id: r for r in merged}
        return [by_id[c.id] for c in cases]
    from concurrent.futures import ThreadPoolExecutor

    groups: dict[str, list] = {}
    for c in cases:
        groups.setdefault(c.data_key or c.id, []).append(c)
    with ThreadPoolExecutor(jobs) as pool:
        got = {}
        for rs in pool.map(interleaved, groups.values()):
            got.update({r.id: r for r in rs})
    return [got[c.id] for c in cases]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    t_start = time.perf_counter()
    scratch_root = args.scratch or HERE / ".work"
    scratch = scratch_root / f"run-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        print(f"generating the workload ({args.n:,} records) in {scratch} ...", flush=True)
        wpath = workload.ensure(scratch, args.n)
        t = workload.load(wpath)
        _WB[args.n] = t.nbytes / t.num_rows
        del t
        ctx = Ctx(
            n=args.n,
            runs=args.runs,
            scratch=scratch,
            workload_path=wpath,
            scale=args.scale,
            options={"segments": args.segments},
        )
        if args.scale and args.n < 10_000_000:
            print("generating the 10,000,000-record workload for the scale point ...", flush=True)
            workload.ensure(scratch, 10_000_000)
        cases = scenarios.select(scenarios.all_cases(ctx), [o for o in args.only.split(",") if o])
        results = run_cases(cases, ctx, args.jobs, args.rounds)
        if not args.no_strace and harness.have_strace():
            one = replace(ctx, runs=1, options={**ctx.options, "warmup": False, "short_runs": False})
            audited = [c for c in cases if c.audit_fsync]
            print(f"counting fsync calls of {len(audited)} write cases under strace ...", flush=True)
            by_id = {r.id: r for r in results}
            for c in audited:
                if by_id[c.id].ok:
                    a = harness.spawn(c, one, strace=True)
                    by_id[c.id].fsync_calls = a.fsync_calls if a.ok else None
        profiles = []
        if not args.no_profile:
            by_id = {r.id: r for r in results}
            all_by_id = {c.id: c for c in cases}
            for title, cid in PROFILED:
                if cid in all_by_id and by_id.get(cid) is not None and by_id[cid].ok:
                    out = scratch / f"profile-{len(profiles)}.txt"
                    print(f"profiling {cid} ...", flush=True)
                    pr = harness.profile(all_by_id[cid], replace(ctx, runs=1), out)
                    if pr.ok and out.exists():
                        summary = json.loads(out.with_suffix(".json").read_text())
                        profiles.append((f"{title}: {pr.median:.3f} s under the profiler", out.read_text(), summary))
        report = render(args, results, profiles, time.perf_counter() - t_start, command)
        from .live import live_section

        kept = live_section(args.out)  # the live path's section (`python -m benchmarks.live`) stays
        if kept:
            report = report.rstrip() + "\n\n" + kept + "\n"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print(report)
        print(f"\nwrote {args.out}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
            try:
                scratch_root.rmdir()  # only if empty
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
