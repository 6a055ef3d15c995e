"""Smoke run of the benchmark suite with a tiny workload, so `python -m benchmarks` cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_smoke_run_writes_every_scenario_table(tmp_path):
    """A tiny run (2,000 records, 1 run in each of 2 interleaved rounds, 200 segments) writes a
    report with every scenario's table."""
    from benchmarks.scenarios import SCENARIOS

    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--n",
            "2000",
            "--runs",
            "1",
            "--rounds",
            "2",
            "--segments",
            "200",
            "--no-strace",
            "--jobs",
            "2",
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text()
    for sc in SCENARIOS:
        assert f"## {sc.title}" in report, f"missing section {sc.title!r}"
        section = report.split(f"## {sc.title}", 1)[1].split("\n## ", 1)[0]
        assert "| case | kind |" in section, f"no table in section {sc.title!r}"
    assert "## Targets" in report and "## Where the time goes" in report
    assert "- Command: `python -m benchmarks --n 2000" in report
    assert "2 timed runs per case" in report and "in 2 interleaved round(s) per scenario" in report
    # every reference row measured something (logstore rows may say "not available")
    for line in report.splitlines():
        if line.startswith("| ") and ("| limit |" in line or "| peer |" in line):
            assert "Error" not in line and "timed out" not in line and "child died" not in line, line
    assert not (tmp_path / "scratch").exists() or not any((tmp_path / "scratch").iterdir())


def test_workload_is_deterministic_and_about_142_bytes_per_record():
    """The canonical workload has the documented schema, size and determinism (seed 42)."""
    import pyarrow as pa

    from benchmarks import workload

    a, b = workload.make_workload(5000), workload.make_workload(5000)
    assert a.equals(b)
    assert a.schema == workload.SCHEMA
    assert a.schema.field("features").type == pa.list_(pa.float32(), 16)
    assert 135 <= a.nbytes / a.num_rows <= 150
    ids = a.column("request_id").to_pylist()
    assert all(len(r) == 32 and int(r, 16) >= 0 for r in ids[:100])
    assert len(set(a.column("model_id").to_pylist())) == 6


def test_rounds_merge_every_timed_run_and_keep_the_first_error():
    from benchmarks.harness import SHORT_RUNS, Ctx, Result, merge, round_ctx

    ctx = Ctx(n=10, runs=3, scratch=ROOT, workload_path=ROOT, options={"segments": 5})
    one = round_ctx(ctx, 3)
    assert one.runs == 1 and one.options == {"segments": 5, "short_runs_n": -(-SHORT_RUNS // 3)}
    assert round_ctx(ctx, 1) is ctx
    a = Result(
        "c",
        "s",
        "n",
        "logstore",
        times=[1.0, 3.0],
        peaks=[5],
        child_peak=7,
        disk_bytes=100,
        extra={"tree_file_peak": 10, "groups": 6},
    )
    b = Result(
        "c",
        "s",
        "n",
        "logstore",
        times=[2.0],
        peaks=[9],
        child_peak=4,
        disk_bytes=120,
        extra={"tree_file_peak": 4, "groups": 6},
        error="child died (run): boom",
    )
    m = merge([a, b])
    assert m.times == [1.0, 3.0, 2.0] and m.median == 2.0 and m.peak == 9 and m.child_peak == 7
    assert m.disk_bytes == 120 and m.extra == {"tree_file_peak": 10, "groups": 6}
    assert m.error == "child died (run): boom" and a.times == [1.0, 3.0]  # the inputs stay as they were


@pytest.mark.parametrize("slow_runs, want", [(1, "short"), (2, "long")])
def test_a_case_is_short_if_its_warm_up_or_first_timed_run_is(tmp_path, slow_runs, want):
    """A case whose warm-up pays one-time costs still gets the short cases' runs when its first timed
    run is quick; one whose warm-up and first timed run are both slow keeps its runs."""
    import time

    from benchmarks.harness import SHORT_RUNS, SHORT_S, Case, Ctx, Job, run_job

    calls = {"n": 0}

    def run(_d):
        calls["n"] += 1
        if calls["n"] <= slow_runs:
            time.sleep(SHORT_S + 0.05)

    case = Case("s", "c", "logstore", lambda ctx: Job(run=run, records=1, bytes_in=0))
    res = run_job(case, Ctx(n=10, runs=3, scratch=tmp_path, workload_path=tmp_path))
    assert len(res.times) == (SHORT_RUNS if want == "short" else 3)
