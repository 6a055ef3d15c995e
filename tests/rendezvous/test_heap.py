"""`rendezvous.heap.settle`: startup's objects leave the collector's walks."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import gc, json
import pyarrow, duckdb, logstore, rendezvous.service
from rendezvous import heap
before = len(gc.get_objects())
frozen = heap.settle()
print(json.dumps({"before": before, "frozen": frozen, "walked": len(gc.get_objects()), "count": gc.get_freeze_count()}))
"""


def test_settle_freezes_what_startup_made_so_a_full_collection_walks_little():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=True)
    r = json.loads(out.stdout)
    assert r["frozen"] == r["count"] > 0.9 * r["before"] > 10_000
    assert r["walked"] < 0.05 * r["frozen"]  # what a full collection still walks
