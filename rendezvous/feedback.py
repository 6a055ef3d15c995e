"""Delayed feedback for a sampling selector: outcomes joined to decisions, fed in batches.

The service tells `Feedback` which model served each request (`served`); a tail of ``outcomes``
joins each outcome to it by request id and hands its reward (the outcome field the config's
``selection.reward`` names) to the selector with ``observe(model, reward)``; every
``selection.snapshot_interval_s``, if anything was observed, one ``snapshot()`` publishes the new
posterior (a new policy version). Posteriors change only there, so the selection probabilities of
a version are computed once, and a decision names the version it used.

Invariants: each served request's reward is observed at most once (its entry is taken when joined);
outcomes of default answers, without the reward field, or with a reward the selector refuses (a
label outside [0, 1] for a Beta posterior) are skipped; at most `capacity` served requests wait for
their outcome (the oldest are forgotten first).

After a restart, `load_recent` reads the last decisions from the log and the tail starts at the
append time of the oldest of them, so the posterior is rebuilt from the same joined outcomes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import datetime
from typing import Any

RECENT_DECISIONS = 100_000  # per partition, read back at start


class Feedback:
    """Joins outcomes to served requests and feeds the selector (see the module docstring)."""

    def __init__(self, selector: Any, reward_field: str, capacity: int = 1_000_000) -> None:
        self.selector = selector
        self.reward_field = reward_field
        self.capacity = capacity
        self._served: OrderedDict[str, str] = OrderedDict()
        self.observed = 0
        self.skipped = 0
        self.pending = 0  # observed since the last snapshot
        self.snapshots = 0

    def __len__(self) -> int:
        return len(self._served)

    def served(self, request_id: str, model: str | None) -> None:
        """Remember that `model` (None: the default) answered `request_id`."""
        if model is None:
            return
        self._served[request_id] = model
        if len(self._served) > self.capacity:
            self._served.popitem(last=False)

    def load_recent(self, log: Any, decisions: str, per_partition: int = RECENT_DECISIONS) -> datetime | None:
        """Remember the served model of the last decisions in the log; returns the append time of
        the oldest one read (where the outcomes tail should start), None if there are none."""
        if decisions not in log.topics():
            return None
        ends = log.end_offsets(decisions)
        starts = log.start_offsets(decisions)
        start = {p: max(starts[p], end - per_partition) for p, end in ends.items()}
        table = log.read(decisions, start=start, end=ends, columns=["request_id", "chosen_model", "_append_time"])
        if table.num_rows == 0:
            return None
        order = sorted(range(table.num_rows), key=table.column("_append_time").to_pylist().__getitem__)
        rids = table.column("request_id").to_pylist()
        chosen = table.column("chosen_model").to_pylist()
        for i in order:
            if chosen[i] != "default":
                self.served(rids[i], chosen[i])
        oldest: datetime = table.column("_append_time")[order[0]].as_py()
        return oldest

    def apply(self, batch: Any) -> int:
        """Observe the rewards of one tailed `outcomes` batch; returns how many were observed."""
        if self.reward_field not in batch.schema.names:
            return 0
        rids = batch.column("request_id").to_pylist()
        rewards = batch.column(self.reward_field).to_pylist()
        n = 0
        for rid, reward in zip(rids, rewards):
            if reward is None or (isinstance(reward, float) and math.isnan(reward)):
                continue
            model = self._served.pop(rid, None)
            if model is None:
                continue
            try:
                self.selector.observe(model, float(reward))
            except ValueError:
                self.skipped += 1
                continue
            n += 1
        self.observed += n
        self.pending += n
        return n

    def snapshot(self) -> int | None:
        """Publish a new posterior if anything was observed since the last; its version, or None."""
        if not self.pending:
            return None
        self.pending = 0
        self.snapshots += 1
        version: int = self.selector.snapshot()
        return version
