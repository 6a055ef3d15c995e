"""The as-of lookups behind a live runner's ``ctx`` (`rendezvous.runner`): what each topic held
when the batch is scored, as replay's `AsOfState` holds it at a replayed clock."""

from __future__ import annotations

import pyarrow as pa

import logstore
from replay.engine.context import AsOfState
from replay.engine.lookups import resolve_key

__all__ = ["LiveLookups"]


class LiveLookups:
    """The as-of states behind a live ``ctx``: per topic an `AsOfState` fed, on each lookup, with
    what was appended up to the batch's clock (frames later than it wait for a later batch)."""

    def __init__(
        self, log: logstore.Log, declared: dict[str, str | None] | None = None, key: str = "request_id"
    ) -> None:
        self.log = log
        self.declared = dict(declared or {})  # topic -> key field, as the model declared (`replay.models.lookups_of`)
        self.key = key
        self.states: dict[str, AsOfState] = {}
        self._positions: dict[str, dict[int, int]] = {}
        self._waiting: dict[str, list[tuple[int, int, int, pa.RecordBatch]]] = {}

    def state(self, topic: str, key: str | None, upto_us: int, who: str, what: str) -> AsOfState:
        st = self.states.get(topic)
        if st is None:
            k = resolve_key(self.log, topic, key if key is not None else self.declared.get(topic), self.key)
            st = self.states[topic] = AsOfState(topic, k, self.log.arrow_schema(topic, system_columns=True))
            self._positions[topic] = self.log.start_offsets(topic)
            self._waiting[topic] = []
        self._feed(topic, st, upto_us)
        return st

    def _feed(self, topic: str, st: AsOfState, upto_us: int) -> None:
        pos = self._positions[topic]
        frames = self._waiting[topic]
        for batch in self.log.reader(topic, start=dict(pos)):
            if not batch.num_rows:
                continue
            p = int(batch.column("_partition")[0].as_py())
            first = int(batch.column("_offset")[0].as_py())
            t = int(batch.column("_append_time").cast(pa.int64())[0].as_py())
            frames.append((t, p, first, batch))
            pos[p] = first + batch.num_rows
        frames.sort(key=lambda f: f[:3])
        due = [f for f in frames if f[0] <= upto_us]
        self._waiting[topic] = frames[len(due) :]
        for t, p, _, batch in due:
            # partitions commit independently: a frame may become visible after a later one of
            # another partition was applied; as of now, it counts from when it was seen
            st.apply(batch, p, max(t, st.latest))
