"""The lookup topics of a run: one as-of state per topic, fed along the clock, declared or not.

Every topic of the log (but the run's output) can be read through ``ctx.lookup``/``ctx.history``.
A run snapshots every topic's stored range when it starts (`snapshot_topics`, the manifest's
``topics``); a lookup reads exactly that range, so what a model can see does not depend on when
it first asked, nor on records appended after the run started. Declared topics
(``replay.run(lookups=...)``, a model's ``lookups``) have their state created when the replay
starts, with the declared key; any other topic gets its state on its first lookup (`Lookups.state`),
keyed by the ``key=`` of that call, else the topic's key field, else the run's join key.

A state is fed by its own `Feed`: the frames of every partition merged in clock order
``(append time, partition, first offset)`` and applied up to the clock asked for, never further.
Declared or discovered, a state at clock `t` holds exactly the records appended at or before
`t`, so the answers (and the output) are the same either way. A discovered topic is reported
through `on_discover`, so the manifest lists it with its range and the audit checks its fences.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa

from ..errors import LookupTopicError, ReplayError
from .context import AsOfState
from .frames import by_append_time

Ranges = dict[int, tuple[int, int]]


def snapshot_topics(log: Any, exclude: str | None = None) -> dict[str, Ranges]:
    """Every topic's stored range [first stored offset, end) per partition, now (`exclude` left out)."""
    out: dict[str, Ranges] = {}
    for topic in log.topics():
        if topic == exclude:
            continue
        ends = log.end_offsets(topic)
        starts = log.start_offsets(topic)
        out[topic] = {p: (min(starts.get(p, e), e), e) for p, e in sorted(ends.items())}
    return out


def resolve_key(log: Any, topic: str, key: str | None, run_key: str) -> str:
    """The field a lookup of `topic` is indexed by: `key`, else the topic's key field, else `run_key`
    when the topic has that column; ReplayError naming the topic when there is none."""
    schema = log.arrow_schema(topic)
    if key is None:
        key = log.config(topic).key_field or (run_key if run_key in schema.names else None)
    if key is None:
        raise ReplayError(
            f"lookup topic {topic!r} has no key field and no {run_key!r} column: pass "
            f"ctx.lookup({topic!r}, keys, key='field') or declare lookups={{{topic!r}: 'field'}}"
        )
    if key not in schema.names:
        raise ReplayError(f"lookup topic {topic!r} has no field {key!r} (its fields: {schema.names})")
    return key


class Feed:
    """The frames of one topic's ranges in clock order, applied to its state up to a clock."""

    def __init__(self, log: Any, state: AsOfState, ranges: Mapping[int, tuple[int, int]]) -> None:
        self.log = log
        self.state = state
        self.ranges = {p: r for p, r in sorted(ranges.items()) if r[1] > r[0]}
        self._streams: list[Iterator[tuple[int, int, pa.RecordBatch]]] | None = None  # opened on the first advance
        self._heap: list[tuple[tuple[int, int, int], int, pa.RecordBatch]] = []

    def _push(self, i: int, p: int) -> None:
        assert self._streams is not None
        run = next(self._streams[i], None)
        if run is not None:
            t, off, batch = run
            heapq.heappush(self._heap, ((t, p, off), i, batch))

    def advance(self, upto_us: int) -> None:
        """Apply every frame appended at or before `upto_us` not applied yet."""
        if self._streams is None:
            self._streams = []
            for i, (p, (lo, hi)) in enumerate(self.ranges.items()):
                reader = self.log.reader(self.state.topic, start={p: lo}, end={p: hi}, partitions=[p])
                self._streams.append(by_append_time(reader))
                self._push(i, p)
        heap = self._heap
        while heap and heap[0][0][0] <= upto_us:
            (t, p, _), i, batch = heapq.heappop(heap)
            self.state.apply(batch, p, t)
            self._push(i, p)

    def close(self) -> None:
        for s in self._streams or []:
            close = getattr(s, "close", None)
            if close is not None:
                close()
        self._streams, self._heap = [], []


class Lookups:
    """The as-of states of a run by topic (module docstring): `state(topic, ...)` for `ctx`."""

    def __init__(
        self,
        log: Any,
        lookups: Mapping[str, tuple[str, Ranges]],
        topics: Mapping[str, Ranges],
        *,
        run_key: str = "request_id",
        output: str | None = None,
        on_discover: Callable[[str, str, Ranges], None] | None = None,
    ) -> None:
        self.log = log
        self.topics = topics
        self.run_key = run_key
        self.output = output
        self.on_discover = on_discover
        self.states: dict[str, AsOfState] = {}
        self.feeds: dict[str, Feed] = {}
        self.discovered: dict[str, str] = {}  # topic -> key, for topics not declared
        for topic, (key, ranges) in sorted(lookups.items()):
            self._open(topic, key, ranges)

    def _open(self, topic: str, key: str, ranges: Ranges) -> AsOfState:
        st = AsOfState(topic, key, self.log.arrow_schema(topic, system_columns=True))
        self.states[topic] = st
        self.feeds[topic] = Feed(self.log, st, ranges)
        return st

    def state(self, topic: str, key: str | None, upto_us: int, who: str, what: str) -> AsOfState:
        """The state of `topic` holding every record appended at or before `upto_us`; built on the
        first ask for a topic not declared (`who` and `what` name the model and call in errors)."""
        st = self.states.get(topic)
        if st is None:
            st = self._discover(topic, key, who, what)
        self.feeds[topic].advance(upto_us)
        return st

    def _discover(self, topic: str, key: str | None, who: str, what: str) -> AsOfState:
        call = f"model {who!r} called ctx.{what}({topic!r}, ...)"
        if not isinstance(topic, str):
            raise ReplayError(f"{call}: a topic is a name (str), found {type(topic).__name__}")
        if topic == self.output:
            raise ReplayError(f"{call}, but {topic!r} is this run's output topic: a run cannot look up its own scores")
        ranges = self.topics.get(topic)
        if ranges is None:
            known = sorted(self.topics)
            shown = ", ".join(map(repr, known[:12])) + (f" and {len(known) - 12} more" if len(known) > 12 else "")
            raise LookupTopicError(
                f"{call}, but the log has no topic {topic!r} (when the run started it had: {shown or 'none'})"
            )
        k = resolve_key(self.log, topic, key, self.run_key)
        st = self._open(topic, k, ranges)
        self.discovered[topic] = k
        if self.on_discover is not None:
            self.on_discover(topic, k, dict(ranges))
        return st

    def close(self) -> None:
        for feed in self.feeds.values():
            feed.close()
