"""The output of a run: its topic and schema, the writer thread, and reading a run's rows back.

Output schema (Avro record ``logstore.replay.ReplayScore``): the fields of ``model_score`` a
replay fills (`request_id`, `event_time`, `model_id`, `model_version`, `score` (never null),
`scores`, `label`, `latency_ms`, `host`, `run_id`, `code_version`; not the live runner's own),
then the audit fields

    input_topic      string           the topic the row was decided from
    input_partition  int              its partition ...
    input_offset     long             ... and offset
    clock            timestamp-micros the row's replay clock (its input's append time, or
                                      max(event_time + lateness, append time) in event-time order)
    read_fence       timestamp-micros the latest append time of anything read for the row
                                      (the input itself, lookups through ctx); <= clock
    fence            map<long>|null   per "topic/partition" of each topic the model read for the
                                      row (ctx.lookup/history), the highest offset visible at its
                                      clock; null when it read none

`request_id` is the input's join key (or ``topic/partition/offset`` when the input has none),
`event_time` the input's event time (or the clock), `latency_ms` the model's time per row of its
batch. `host` and `code_version` are per run, so they live in the run's manifest and are null in
the rows. Columns constant over an input frame (ids, clock, read fence, latency, unset fields)
are written as runs (`replay.engine.rows`): about 76 bytes a row, most of them the request id.
Output frames are appended with a writer clock equal to the latest row clock in the frame (never
going back), so output append times are as deterministic as the replay. The content hash of
these rows is specified in `replay.runner.hashing`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from logstore.timeutil import to_datetime

from ..engine.rows import Constants, Rows, assemble
from ..errors import ReplayError, ReplayValueError
from .hashing import ContentHash

# uncompressed by default: a replay is CPU-bound, and a codec costs more CPU (lz4 ~680 MB/s here)
# than handing the page cache ~76 B/row (constant columns are already runs, the rest is mostly
# request ids); REPLAY_OUTPUT_COMPRESSION=lz4|zstd, or an output topic created beforehand with a
# codec, trades that CPU for disk
OUTPUT_COMPRESSION = os.environ.get("REPLAY_OUTPUT_COMPRESSION", "") or None

AUDIT_FIELDS: list[dict[str, Any]] = [
    {"name": "input_topic", "type": "string", "doc": "Topic of the input this row was decided from."},
    {"name": "input_partition", "type": "int", "doc": "Partition of that input."},
    {"name": "input_offset", "type": "long", "doc": "Offset of that input."},
    {
        "name": "clock",
        "type": {"type": "long", "logicalType": "timestamp-micros"},
        "doc": "The row's replay clock: nothing appended after it was visible.",
    },
    {
        "name": "read_fence",
        "type": {"type": "long", "logicalType": "timestamp-micros"},
        "doc": "Latest append time of anything read for this row (input, lookups); <= clock.",
    },
    {
        "name": "fence",
        "type": ["null", {"type": "map", "values": "long"}],
        "default": None,
        "doc": "Per topic/partition the model read for this row, the highest offset visible at the clock.",
    },
]

# per-row content; the stream key (input topic, partition, model id) and the model version are


# the fields of model_score a replay fills (a live runner's own fields, role .. error, are left out:
# the audit fields say where a replayed row came from, and a replayed score is never null)
SCORE_FIELDS = (
    "request_id",
    "event_time",
    "model_id",
    "model_version",
    "score",
    "scores",
    "label",
    "latency_ms",
    "host",
    "run_id",
    "code_version",
)
# a replayed score is a number: `replay.engine.answers.coerce` refuses null scores
REPLAY_SCORE = {
    "name": "score",
    "type": "double",
    "doc": "The primary score (e.g. probability of the positive class).",
}


def output_avro() -> dict:
    """The Avro schema of a run's output topic: model_score's `SCORE_FIELDS` plus the audit fields."""
    import schemas

    base = {f["name"]: f for f in schemas.load("model_score")["fields"]}
    fields = [dict(REPLAY_SCORE) if n == "score" else dict(base[n]) for n in SCORE_FIELDS]
    fields += [dict(f) for f in AUDIT_FIELDS]
    return {
        "type": "record",
        "name": "ReplayScore",
        "namespace": "logstore.replay",
        "doc": "A score produced by a replay run, with what the model could see.",
        "fields": fields,
    }


def ensure_output(log: Any, topic: str, partitions: int = 1) -> None:
    """Create the output topic (`partitions` partitions: one per worker, so workers write in
    parallel) or check an existing one has the output schema and no key field.

    Rows decided from input partition ``p`` go to output partition ``p % partitions`` (`Sink`), so
    the rows of a stream (input partition, model) are in one output partition, in order, and
    workers are given input partitions that write to different output partitions.
    """
    import schemas

    want = schemas.to_arrow(output_avro())
    if topic not in log.topics():
        log.create_topic(
            topic,
            schema=output_avro(),
            partitions=max(1, partitions),
            event_time_field="event_time",
            compression=OUTPUT_COMPRESSION,
            exist_ok=True,
        )
        return
    have = log.arrow_schema(topic)
    problems = []
    for f in want:
        if f.name not in have.names:
            problems.append(f"no field {f.name!r}")
        elif have.field(f.name).type != f.type:
            problems.append(f"field {f.name!r} is {have.field(f.name).type}, expected {f.type}")
    if problems:
        raise ReplayError(
            f"output topic {topic!r} exists with another schema ({'; '.join(problems)}); choose another output topic"
        )
    cfg = log.config(topic)
    if cfg.partitions > 1 and cfg.key_field is not None:
        raise ReplayError(
            f"output topic {topic!r} spreads rows over {cfg.partitions} partitions by key "
            f"{cfg.key_field!r}; a run's rows must stay in write order: choose another output topic"
        )


def output_partitions(input_ranges: Mapping[int, tuple[int, int]], workers: int) -> int:
    """Partitions of a new output topic: one per worker process that will write to it."""
    return max(1, min(workers, sum(1 for lo, hi in input_ranges.values() if hi > lo)))


class Sink:
    """Writes output tables to the run's topic from a background thread, in the order given.

    Rows decided from input partition ``p`` go to output partition ``p % partitions``: each stream
    (input topic, partition, model) stays in one output partition, in order (also across an
    interrupt and resume), and worker processes given disjoint sets of ``p % partitions`` write
    to partitions of their own, in parallel.

    `put(parts, marks)` queues `Rows` (all models' rows for some inputs) with progress marks
    ``{partition: (clock, offset, inputs)}`` that become `written` once they are committed, so
    `written` never runs ahead of the log. Rows are coalesced (waiting up to `linger` seconds
    for more) into frames of about `frame_rows` rows (~5 MB): the cost per frame (assembling,
    validation, system columns, encoding, index entry, tail hint) is paid on the sink thread, which
    competes for the GIL with the models; 64k-row frames replayed the benchmark's 1M rows 10-15%
    faster than 32k-row ones, 16k-row ones 10% slower. `hash=False` skips the content hash
    (resumed runs hash from the log).
    """

    def __init__(
        self,
        log: Any,
        topic: str,
        *,
        durability: str = "flush",
        frame_rows: int = 65_536,
        max_queue: int = 32,
        hash: bool = True,
        on_commit: Callable[[dict], None] | None = None,
        linger: float = 0.05,
    ) -> None:
        self.topic = topic
        self.partitions = log.config(topic).partitions
        if self.partitions > 1 and log.config(topic).key_field is not None:
            raise ReplayValueError(f"output topic {topic!r} partitions by key; a run's rows must stay in write order")
        self.frame_rows = frame_rows
        self.linger = linger
        self._clock = 0
        # rows are built to the output schema (replay.engine.replayer.Replayer._rows): the writer's checks of Arrow
        # input of the exact schema are per column (nulls, enum symbols, a size bound), not per value
        self.writer = log.writer(topic, durability=durability, linger_ms=None, clock=self._now)
        self.hasher = ContentHash() if hash else None
        self.written: dict[int, tuple[int, int, int]] = {}  # partition -> (clock, offset, inputs so far)
        self.rows = 0
        self.frames = 0
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._on_commit = on_commit
        self._constants = Constants()  # the sink thread's own: the cache is not shared across threads
        self._thread = threading.Thread(target=self._loop, name=f"replay-sink-{topic}", daemon=True)
        self._thread.start()

    def _now(self) -> datetime:
        return to_datetime(self._clock)

    def put(self, parts: list[Rows], marks: dict[int, tuple[int, int, int]], clock_us: int) -> None:
        """Queue output rows (all models' rows for some inputs) to be written in order.

        The rows are hashed here, in the caller's thread (it balances the work of the two threads);
        the hash only counts for a run that completes, and a resumed run re-hashes from the log.
        """
        if self._error is not None:
            raise self._error
        if self.hasher is not None:
            for rows in parts:
                if rows.n:
                    self.hasher.update_rows(rows)
        self._q.put((parts, marks, clock_us))

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            items = [item]
            rows = sum(r.n for r in item[0])
            deadline = time.monotonic() + self.linger
            while rows < self.frame_rows:
                try:  # small tables: wait a little for more, so frames are not tiny
                    nxt = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)  # let the outer loop see the end after this write
                    break
                items.append(nxt)
                rows += sum(r.n for r in nxt[0])
            if self._error is not None:
                continue  # drain without writing after a failure
            try:
                self._write(items)
            except BaseException as e:  # surfaced by put() / close()
                self._error = e

    def _write(self, items: list) -> None:
        by_target: dict[int, list[Rows]] = {}
        for parts, _, _ in items:
            for rows in parts:
                if rows.n:
                    by_target.setdefault(rows.key[1] % self.partitions, []).append(rows)
        if by_target:
            self._clock = max(self._clock, max(c for _, _, c in items))
        for target, rows_list in sorted(by_target.items()):
            batch = assemble(rows_list, self._constants)
            self.writer.append_batch(batch, partition=target)
            self.rows += batch.num_rows
            self.frames += 1
        with self._lock:
            for _, marks, _ in items:
                for p, m in marks.items():
                    self.written[p] = m
            snapshot = dict(self.written)
        if self._on_commit is not None:
            self._on_commit(snapshot)

    def progress(self) -> dict[int, tuple[int, int, int]]:
        with self._lock:
            return dict(self.written)

    def close(self) -> None:
        """Write everything queued, then close the writer; raises the first write error."""
        self._q.put(None)
        self._thread.join()
        try:
            self.writer.close()
        finally:
            if self._error is not None:
                raise self._error


def read_run(
    log: Any,
    topic: str,
    run_id: str,
    start: dict[int, int] | None,
    end: dict[int, int] | None = None,
    columns: list[str] | None = None,
    partitions: list[int] | None = None,
) -> Iterable[pa.Table]:
    """The output rows of `run_id` in `topic` from offsets `start` on (of `partitions`, None: all),
    a table per batch read, in order."""
    cols = None if columns is None else list(dict.fromkeys(list(columns) + ["run_id"]))
    for batch in log.reader(topic, start=start, end=end, columns=cols, partitions=partitions):
        mask = pc.equal(batch.column(batch.schema.get_field_index("run_id")), run_id)
        t = pa.Table.from_batches([batch]).filter(mask)
        if t.num_rows:
            yield t if columns is None else t.select(list(columns))
