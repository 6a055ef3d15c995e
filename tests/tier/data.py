"""Records of the remote-tier tests (and the programs their crash test runs as child processes)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
    ]
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rows(start: int, n: int) -> pa.Table:
    """Records seq = start .. start+n-1; payloads that do not compress away (~100 bytes each)."""
    seq = np.arange(start, start + n, dtype=np.int64)
    noise = np.random.default_rng(start).integers(0, 2**62, size=(n, 5))
    payload = [f"{s}:" + "".join(f"{x:016x}" for x in row) for s, row in zip(seq.tolist(), noise.tolist())]
    times = pa.array([T0 + timedelta(milliseconds=s) for s in seq.tolist()], pa.timestamp("us", tz="UTC"))
    return pa.table([pa.array(seq), times, pa.array(payload)], schema=SCHEMA)


class Clock:
    """A writer clock one second further at each commit (distinct append times)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def fill(log, topic: str, batches: int, rows_per_batch: int, start: int = 0) -> int:
    """Append `batches` commits of `rows_per_batch` records; the next seq."""
    with log.writer(topic, clock=Clock(), linger_ms=None, max_clock_skew=None) as w:
        for i in range(batches):
            w.append_batch(rows(start + i * rows_per_batch, rows_per_batch))
    return start + batches * rows_per_batch


def tier_loop(path: str, uri: str, per_round: int) -> None:
    """(A child process.) Append and tier, forever; print 'ack <next seq>' after each acknowledged
    (fsynced) append, and 'tier' / 'tiered' around each tiering."""
    import logstore

    log = logstore.open(path, remote=uri)
    done = log.read("t", columns=["seq"])["seq"].to_pylist()
    seq = max(done) + 1 if done else 0
    w = log.writer("t", durability="fsync", linger_ms=None)  # finishes what a kill left half done
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        w.append_batch(rows(seq, per_round))
        seq += per_round
        sys.stdout.write(f"ack {seq}\ntier\n")
        sys.stdout.flush()
        log.tier("t")
        sys.stdout.write("tiered\n")
        sys.stdout.flush()


if __name__ == "__main__":
    tier_loop(sys.argv[1], sys.argv[2], int(sys.argv[3]))
