"""Smoke run of `python -m benchmarks.tier` with a tiny workload, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_tier_benchmark_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "TIER.md"
    args = ["--n", "30000", "--runs", "1", "--segment-bytes", "300000", "--block-bytes", "65536", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.tier", *args], cwd=ROOT, capture_output=True, text=True, timeout=280
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert text.count("\n| ") == 12  # the header and 11 cases
    assert "last 10%: logstore tiered, cold cache" in text
