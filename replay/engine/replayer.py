"""The replayer: drives models along the event clock and turns their answers into output rows.

One `Replayer` replays a set of input partitions in one process. It walks the merged stream of
`replay.engine.clock` and, for each event:

- an outcome frame is joined (on the run's `key`) with the pending inputs already decided; every
  learning model gets the joined rows in one `learn(batch, ctx)` call, at the outcome's clock;
- input rows are decided: each model's `predict(batch, ctx)` on the whole frame (one clock for
  all rows); the answers (`replay.engine.answers`) become output rows handed to the `Sink`.

Lookup topics are not on this clock: each has its own feed (`replay.engine.lookups`), applied up
to the clock of the rows that ask, so a topic declared and a topic first looked up mid-run give
the same answers, and each row's `fence` lists the topics its model read for it.

A frame's rows share one append time and outcomes at that time come first, so a learning model
sees exactly what it would see if events came one at a time. Outcomes visible before their input
was decided cannot be learned from without a leak into the input's own prediction: an input that
arrived but is still held (event-time order) learns them right after its prediction; otherwise
they count as ``outcomes_unmatched``. Pending inputs wait for their outcome for `horizon` (by
clock; None: the whole run). Design: docs/architecture.md ("Two clocks", invariants 8 and 9).
"""

from __future__ import annotations

import collections
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ModelError
from ..models import learns
from .answers import coerce
from .clock import INPUT, OUTCOME, TIME_TYPE, Event, EventTimeOrder, Source, merge
from .context import Context
from .lookups import Lookups, Ranges
from .rows import Column, Const, Constants, Rows, Span, expand


@dataclass
class Plan:
    """Everything a process needs to replay (picklable: sent to worker processes)."""

    run_id: str
    inputs: str
    input_ranges: dict[int, tuple[int, int]]
    output: str
    outcomes: str | None = None
    outcome_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    key: str = "request_id"
    label: str = "label"
    lookups: dict[str, tuple[str, dict[int, tuple[int, int]]]] = field(default_factory=dict)  # topic -> (key, ranges)
    topics: dict[str, Ranges] = field(default_factory=dict)  # every topic's range at run start (on-demand lookups)
    order: str = "append_time"
    lateness_us: int | None = None
    event_time_field: str | None = None
    seed: int = 0
    code_version: str = ""
    host: str = ""
    horizon_us: int | None = None
    durability: str = "flush"


class Stop(Exception):
    """Raised inside a worker when the parent asked it to stop (Ctrl-C)."""


class Sink(Protocol):
    """Where a `Replayer` hands its output rows (`replay.runner.sink.Sink` writes them to the log)."""

    def put(self, parts: list[Rows], marks: dict[int, tuple[int, int, int]], clock_us: int) -> None:
        """Rows of every model for some inputs, with per-partition progress marks (clock, offset, inputs)."""


_NULL = Const(None)


def _ends(arr: pa.Array) -> tuple[int, int]:
    """The first and last values of a non-empty, null-free 64-bit integer or timestamp array."""
    buf = arr.buffers()[1]
    return _I64.unpack_from(buf, arr.offset * 8)[0], _I64.unpack_from(buf, (arr.offset + len(arr) - 1) * 8)[0]


_I64 = struct.Struct("<q")


class _Pending:
    """Inputs decided and waiting for their outcome, by join key (learning runs only)."""

    def __init__(self, key: str, horizon_us: int | None) -> None:
        self.key = key
        self.horizon_us = horizon_us
        self.rows: dict[Any, list] = {}  # key -> [chunk id, row, decided, early outcomes]
        self.chunks: dict[int, list] = {}  # chunk id -> [batch, refs]
        self.order: collections.deque = collections.deque()  # (clock, key, chunk id) by arrival
        self._next = 0
        self.unmatched = 0
        self.expired = 0

    def add(self, batch: pa.RecordBatch, clock_us: int, decided: bool) -> None:
        """Register input rows (decided now, or arrived and decided later in event-time order)."""
        cid = self._next
        self._next += 1
        keys = batch.column(batch.schema.get_field_index(self.key)).to_pylist()
        refs = 0
        for i, k in enumerate(keys):
            if k is None:
                continue
            old = self.rows.get(k)
            if old is not None:  # a repeated key: the newer input waits for the outcome
                self.release(k, old)
                self.expired += 1
            self.rows[k] = [cid, i, decided, None]
            self.order.append((clock_us, k, cid))
            refs += 1
        if refs:
            self.chunks[cid] = [batch, refs]

    def decided(self, batch: pa.RecordBatch) -> list[tuple[Any, list]]:
        """Mark rows decided; returns (key, entry) for those with outcomes waiting."""
        due = []
        for k in batch.column(batch.schema.get_field_index(self.key)).to_pylist():
            e = self.rows.get(k)
            if e is not None and not e[2]:
                e[2] = True
                if e[3]:
                    due.append((k, e))
        return due

    def release(self, k: Any, e: list) -> None:
        if self.rows.get(k) is e:
            del self.rows[k]
        c = self.chunks.get(e[0])
        if c is not None:
            c[1] -= 1
            if c[1] <= 0:
                del self.chunks[e[0]]

    def expire(self, now_us: int) -> None:
        if self.horizon_us is None:
            return
        limit = now_us - self.horizon_us
        while self.order and self.order[0][0] < limit:
            _, k, cid = self.order.popleft()
            e = self.rows.get(k)
            if e is not None and e[0] == cid and e[2]:
                self.release(k, e)
                self.expired += 1


@dataclass
class Result:
    """What a Replayer did: rows decided per partition, learn calls, unmatched outcomes."""

    inputs: dict[int, int] = field(default_factory=dict)
    learned: int = 0
    unmatched: int = 0
    expired: int = 0


class Replayer:
    """Replays `partitions` of the plan's inputs through `models` into `sink` (module docstring).

    `skip`: per partition the (clock, offset) of the last row already written (resume): rows at
    or before it are decided again (learning models need their state) but not written.
    `on_lookup(topic, key, ranges)`: called when a model first looks up a topic not declared.
    """

    def __init__(
        self,
        log: Any,
        plan: Plan,
        models: Sequence[Any],
        sink: Sink,
        *,
        partitions: Sequence[int] | None = None,
        skip: dict[int, tuple[int, int]] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_event: Callable[[], None] | None = None,
        on_lookup: Callable[[str, str, Ranges], None] | None = None,
    ) -> None:
        self.log = log
        self.plan = plan
        self.models = list(models)
        self.sink = sink
        self.partitions = sorted(plan.input_ranges) if partitions is None else sorted(partitions)
        self.skip = dict(skip or {})
        self.should_stop = should_stop
        self.on_event = on_event
        self.learners = [m for m in self.models if learns(m)]
        self.lookups = Lookups(
            log, plan.lookups, plan.topics, run_key=plan.key, output=plan.output, on_discover=on_lookup
        )
        self.ctx = Context(self.lookups, plan.seed)
        self.learn_ctx = Context(self.lookups, plan.seed)
        self.learn_ctx.label = plan.label
        self.pending = _Pending(plan.key, plan.horizon_us) if (self.learners and plan.outcomes) else None
        self.result = Result()
        self._constants = Constants()
        self._schema = log.arrow_schema(plan.output)
        self._done: dict[int, int] = {p: 0 for p in self.partitions}
        in_schema = log.arrow_schema(plan.inputs)
        self._has_key = plan.key in in_schema.names
        self._etf = plan.event_time_field if plan.event_time_field in in_schema.names else None
        self._outcome_join: tuple | None = None

    # --- the loop -------------------------------------------------------------------------------
    def sources(self) -> list[Source]:
        plan = self.plan
        srcs = [Source(plan.inputs, INPUT, {p: plan.input_ranges[p] for p in self.partitions})]
        if plan.outcomes and self.pending is not None:
            srcs.append(Source(plan.outcomes, OUTCOME, plan.outcome_ranges))
        return srcs

    def run(self) -> Result:
        merged = events = merge(self.log, self.sources())
        if self.plan.order == "event_time":
            events = EventTimeOrder(self.plan.lateness_us or 0, self._etf)(merged)
        left = sum(self.plan.input_ranges[p][1] - self.plan.input_ranges[p][0] for p in self.partitions)
        try:
            self._loop(events, left)
        finally:  # stop the streams' read-ahead threads now, not when the generators are collected
            events.close()
            merged.close()
            self.lookups.close()
        if self.pending is not None:
            self.result.unmatched = self.pending.unmatched
            self.result.expired = self.pending.expired
        return self.result

    def _loop(self, events: Any, left: int) -> None:
        for ev in events:
            if self.should_stop is not None and self.should_stop():
                raise Stop()
            role = ev.role
            if role == INPUT:
                if not ev.decide and self.pending is not None:  # arrived, decided at its clock later
                    self.pending.add(ev.batch, ev.time, False)
                if ev.decide:
                    self.decide(ev)
                    left -= ev.batch.num_rows
                    if left <= 0:  # what comes later on the clock cannot change any decision
                        break
            elif role == OUTCOME and self.pending is not None:
                self.outcomes(ev)
            if self.on_event is not None:
                self.on_event()

    # --- deciding -------------------------------------------------------------------------------
    def decide(self, ev: Event) -> None:
        batch = ev.batch
        n = batch.num_rows
        if not n:
            return
        p = ev.partition
        clocks = ev.clock  # None: every row's clock is ev.time
        schema = batch.schema
        at_col = batch.column(schema.get_field_index("_append_time"))
        off_col = batch.column(schema.get_field_index("_offset"))
        frame = self._frame_columns(batch, ev, at_col, off_col)
        parts: list[Rows] = []
        ctx = self.ctx
        for m in self.models:
            ctx._enter(m, batch, ev.topic, p, ev.time, clocks, at_col)  # read fence copied on a first read
            t0 = time.perf_counter()
            answer = m.predict(batch, ctx)
            elapsed = time.perf_counter() - t0
            score, scores, label = coerce(answer, n, m)
            parts.append(
                self._rows(m, frame, ev, n, score, scores, label, elapsed, ctx._fence, self._fence_column(ctx, n))
            )
        last_clock = ev.time if clocks is None else int(clocks[-1])
        last_off = off_col[-1].as_py()
        skip = self.skip.get(p)
        if skip is not None:
            if (last_clock, last_off) <= skip:
                parts = []
            else:
                c = np.full(n, ev.time, np.int64) if clocks is None else clocks
                o = off_col.to_numpy()
                keep = (c > skip[0]) | ((c == skip[0]) & (o > skip[1]))
                parts = [r.filter(keep) for r in parts]
        self._done[p] += n
        self.result.inputs[p] = self._done[p]
        self.sink.put(parts, {p: (last_clock, last_off, self._done[p])}, last_clock)
        if self.pending is not None:
            if ev.clock is None:  # append-time order: arrival is decision
                self.pending.add(batch, ev.time, True)
            else:
                due = self.pending.decided(batch)
                if due:
                    self._learn_due(due, last_clock)

    def _frame_columns(
        self, batch: pa.RecordBatch, ev: Event, at_col: pa.Array, off_col: pa.Array
    ) -> dict[str, Column]:
        """The output columns every model's rows for input `batch` share, constants as `Const`s
        (`read_fence` and `fence` as when no lookup was made)."""
        n = batch.num_rows
        schema = batch.schema
        if self._has_key:
            rid = batch.column(schema.get_field_index(self.plan.key))
            if not pa.types.is_string(rid.type):
                rid = rid.cast(pa.string())
        else:
            part_col = batch.column(schema.get_field_index("_partition"))
            rid = pc.binary_join_element_wise(
                self._constants(ev.topic, n, pa.string()), part_col.cast(pa.string()), off_col.cast(pa.string()), "/"
            )
        # a frame's rows share one append time, and append times never go back in a partition:
        # equal ends make the column constant
        at_first, at_last = _ends(at_col)
        at: Column = Const(at_first) if at_first == at_last else at_col
        clock = at if ev.clock is None else pa.array(ev.clock, pa.int64()).view(TIME_TYPE)
        if self._etf is not None:
            et = batch.column(schema.get_field_index(self._etf))
            if et.type != TIME_TYPE:
                et = et.cast(TIME_TYPE)
            if et.null_count:
                et = pc.coalesce(et, expand(clock, n, TIME_TYPE, self._constants))
        else:
            et = clock
        off_first, off_last = _ends(off_col)
        return {
            "request_id": rid,
            "event_time": et,
            "host": _NULL,  # per run: in the manifest
            "run_id": Const(self.plan.run_id),
            "code_version": _NULL,
            "input_topic": Const(ev.topic),
            "input_partition": Const(ev.partition),
            # offsets only grow in a partition: n of them from first to last are dense
            "input_offset": Span(off_first) if off_last - off_first == n - 1 else off_col,
            "clock": clock,
            "read_fence": at,
            "fence": _NULL,
        }

    def _rows(
        self,
        m: Any,
        frame: dict[str, Column],
        ev: Event,
        n: int,
        score: np.ndarray,
        scores: Any,
        label: Any,
        elapsed: float,
        fence: np.ndarray | None,
        fences: Column,
    ) -> Rows:
        """The output rows of model `m` for an input frame: its `frame` columns and the model's own."""
        cols = dict(frame)
        cols["model_id"] = Const(m.name)
        cols["model_version"] = Const(m.version)
        cols["score"] = pa.array(score, pa.float64())
        cols["scores"] = scores if scores is not None else _NULL
        cols["label"] = label if label is not None else _NULL
        cols["latency_ms"] = Const(float(np.float32(elapsed * 1000.0 / n)))
        if fence is not None:
            cols["read_fence"] = pa.array(fence, pa.int64()).view(TIME_TYPE)
        cols["fence"] = fences
        return Rows((ev.topic, ev.partition, m.name), n, self._schema, cols)

    def _fence_column(self, ctx: Context, n: int) -> Column:
        """Per row, for each topic the model read for it: ``"topic/partition" -> highest offset
        visible at the row's clock``; null for rows it read nothing for."""
        if not ctx.read_topics:
            return _NULL
        mtype = self._schema.field("fence").type
        states = [(t, self.lookups.states[t], mask) for t, mask in sorted(ctx.read_topics.items())]
        clocks = ctx._row_clocks()
        first, last = int(clocks.min()), int(clocks.max())
        if all(mask is None for _, _, mask in states) and (
            first == last or all(st.latest <= first for _, st, _ in states)
        ):
            keys, vals = _fence_entries(states, first)
            k = len(keys)
            offsets = pa.array(np.arange(0, n + 1, dtype=np.int32) * k)
            return pa.MapArray.from_arrays(
                offsets, pa.array(keys * n, pa.string()), pa.array(vals * n, pa.int64()), type=mtype
            )
        keys, vals, offsets, valid = [], [], [0], np.zeros(n, bool)
        cache: dict[tuple, tuple[list, list]] = {}
        for i in range(n):
            read = tuple(j for j, (_, _, mask) in enumerate(states) if mask is None or mask[i])
            if read:
                valid[i] = True
                c = int(clocks[i])
                entry = cache.get((c, read))
                if entry is None:
                    entry = cache[(c, read)] = _fence_entries([states[j] for j in read], c)
                keys += entry[0]
                vals += entry[1]
            offsets.append(len(keys))
        return pa.MapArray.from_arrays(
            pa.array(offsets, pa.int32()),
            pa.array(keys, pa.string()),
            pa.array(vals, pa.int64()),
            type=mtype,
            mask=pa.array(~valid),
        )

    # --- learning -------------------------------------------------------------------------------
    def outcomes(self, ev: Event) -> None:
        pend = self.pending
        assert pend is not None
        pend.expire(ev.time)
        ob = ev.batch
        okeys = ob.column(ob.schema.get_field_index(self.plan.key)).to_pylist()
        now_rows: list[tuple[Any, list, int]] = []
        for j, k in enumerate(okeys):
            e = pend.rows.get(k)
            if e is None:
                pend.unmatched += 1
            elif e[2]:
                now_rows.append((k, e, j))
            else:  # arrived, not decided yet (event-time order): learn right after its decision
                if e[3] is None:
                    e[3] = []
                e[3].append((ob, j, ev.time))
        if now_rows:
            joined = self._join([(e, ob, j) for _, e, j in now_rows])
            for k, e, _ in now_rows:
                pend.release(k, e)
            self._learn(joined, ev.time)

    def _learn_due(self, due: list[tuple[Any, list]], clock_us: int) -> None:
        parts = []
        for _k, e in due:
            for ob, j, _t in e[3]:
                parts.append((e, ob, j))
        joined = self._join(parts)
        for k, e in due:
            self.pending.release(k, e)  # type: ignore[union-attr]
        self._learn(joined, clock_us)

    def _join(self, parts: list[tuple[list, pa.RecordBatch, int]]) -> pa.Table:
        """Input rows (from pending chunks) side by side with their outcome rows, in outcome order."""
        pend = self.pending
        assert pend is not None
        cids = sorted({e[0] for e, _, _ in parts})
        base, batches, acc = {}, [], 0
        for cid in cids:
            b = pend.chunks[cid][0]
            base[cid] = acc
            acc += b.num_rows
            batches.append(b)
        idx = pa.array([base[e[0]] + e[1] for e, _, _ in parts], pa.int64())
        inputs = pa.Table.from_batches(batches).take(idx)
        obs = list({id(ob): ob for _, ob, _ in parts}.values())
        obase, oacc = {}, 0
        for ob in obs:
            obase[id(ob)] = oacc
            oacc += ob.num_rows
        oidx = pa.array([obase[id(ob)] + j for _, ob, j in parts], pa.int64())
        outs = pa.Table.from_batches(obs).take(oidx)
        names = list(inputs.column_names)
        arrays = list(inputs.columns)
        for f, col in zip(outs.schema, outs.columns):
            if f.name == self.plan.key:
                continue
            if f.name.startswith("_"):
                name = "_outcome" + f.name
            elif f.name in names:
                name = "outcome_" + f.name
            else:
                name = f.name
            names.append(name)
            arrays.append(col)
        return pa.Table.from_arrays(arrays, names=names)

    def _learn(self, joined: pa.Table, clock_us: int) -> None:
        if not joined.num_rows:
            return
        label = self.plan.label
        if label in joined.column_names and not label.startswith("_"):
            col_label = label
        elif "outcome_" + label in joined.column_names:
            col_label = "outcome_" + label
        else:
            raise ModelError(f"the outcomes have no label column {label!r} (pass label=...)")
        batch = joined.combine_chunks().to_batches()[0] if joined.num_rows else None
        ctx = self.learn_ctx
        ctx.label = col_label
        for m in self.learners:
            ctx._enter(m, batch, self.plan.outcomes or "", -1, clock_us, None, None)
            m.learn(batch, ctx)
        self.result.learned += joined.num_rows


def _fence_entries(states: Sequence[tuple[str, Any, Any]], clock_us: int) -> tuple[list[str], list[int]]:
    """The fence entries of `states` (topic, AsOfState, _) at `clock_us`: keys and offsets, sorted."""
    keys, vals = [], []
    for topic, st, _ in states:
        for part, off in sorted(st.fence_at(clock_us).items()):
            keys.append(f"{topic}/{part}")
            vals.append(off)
    return keys, vals
