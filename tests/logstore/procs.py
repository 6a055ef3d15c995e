"""Child-process programs for the crash and concurrency tests (run as scripts, killed at will)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta

import pyarrow as pa

SCHEMA = pa.schema(
    [
        pa.field("writer", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
    ]
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def payload(writer: str, seq: int) -> str:
    """The payload a record must still have when read back (checks 'unchanged')."""
    return f"{writer}:{seq}:" + "x" * (seq % 37)


def rows(writer: str, start: int, n: int) -> list[dict]:
    return [
        {"writer": writer, "seq": s, "event_time": T0 + timedelta(milliseconds=s), "payload": payload(writer, s)}
        for s in range(start, start + n)
    ]


def crash_writer(path: str, mode: str, seed: int) -> None:
    """Append forever under fsync; print 'ack <next seq>' after each acknowledged batch."""
    import random

    import logstore

    rng = random.Random(seed)
    log = logstore.open(path)
    log.create_topic("t", schema=SCHEMA, segment_bytes=64 * 1024, exist_ok=True)
    done = log.read("t", columns=["seq"])["seq"].to_pylist()
    seq = (max(done) + 1) if done else 0
    w = log.writer("t", durability="fsync", linger_ms=None)
    while True:
        n = rng.randint(1, 300)
        if mode == "batch":
            w.append_batch(rows("w", seq, n))
        else:
            for r in rows("w", seq, n):
                w.append(r)
            w.flush()
        seq += n
        sys.stdout.write(f"ack {seq}\n")
        sys.stdout.flush()


def concurrent_writer(path: str, name: str, count: int) -> None:
    """Append `count` records in random-size batches to the one-partition topic 't'."""
    import random

    import logstore

    rng = random.Random(name)
    log = logstore.open(path)
    w = log.writer("t", durability="flush", linger_ms=None)
    seq = 0
    while seq < count:
        n = min(count - seq, rng.randint(1, 50))
        w.append_batch(rows(name, seq, n))
        seq += n
    w.close()


def group_writer(path: str, threads: int) -> None:
    """`threads` threads, each its own fsync writer of one Log, committing one record at a time to
    topic 't' (so commits meet in the partition's group); print "ack <writer> <seq>" after each."""
    import threading

    import logstore

    log = logstore.open(path)
    if "t" not in log.topics():
        log.create_topic("t", schema=SCHEMA, compression=None, exist_ok=True)
    out = threading.Lock()
    tag = f"g{os.getpid()}"

    def work(k: int) -> None:
        w = log.writer("t", durability="fsync", linger_ms=None)
        for seq in range(100_000):
            w.append_batch(rows(f"{tag}-{k}", seq, 1))
            with out:
                print(f"ack {tag}-{k} {seq}", flush=True)

    ts = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def tail_reader(path: str, total: int, out: str) -> None:
    """Follow topic 't' until `total` records were seen; write what was seen, in order, as JSON."""
    import logstore

    log = logstore.open(path)
    seen = []
    for batch in log.reader("t", follow=True, poll_interval=0.005, columns=["writer", "seq", "_offset"]):
        seen.extend(zip(batch["_offset"].to_pylist(), batch["writer"].to_pylist(), batch["seq"].to_pylist()))
        if len(seen) >= total:
            break
    with open(out, "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    kind, *args = sys.argv[1:]
    if kind == "crash":
        crash_writer(args[0], args[1], int(args[2]))
    elif kind == "writer":
        concurrent_writer(args[0], args[1], int(args[2]))
    elif kind == "group":
        group_writer(args[0], int(args[1]))
    elif kind == "tail":
        tail_reader(args[0], int(args[1]), args[2])
