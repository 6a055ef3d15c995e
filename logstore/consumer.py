"""Consumer groups: durable read cursors, ``<log>/groups/<group>/<topic>.json``.

The file is a JSON object ``{"format": 1, "topic": ..., "offsets": {"<partition>": next_offset}}``,
replaced atomically on `commit()` (temp file, fsync, rename, fsync of the directory), so a cursor
is either the old or the new one after a crash. `poll()` moves the in-memory position; only
`commit()` makes it durable: after a crash, consumption resumes at the last commit (at-least-once).
A group's cursor is shared by whoever uses the group; run one consumer per group and partition set.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa

from .errors import ConsumerError
from .files import write_atomic
from .names import GROUPS_DIR, validate_name
from .reader import FrameReader


class Consumer:
    """Reads a topic from a group's committed position: `poll()` then `commit()`."""

    def __init__(self, log: Any, topic: Any, group: str, *, partitions: Sequence[int] | None = None,
                 reset: str = "earliest", columns: Sequence[str] | None = None) -> None:
        validate_name(group, "group")
        if reset not in ("earliest", "latest"):
            raise ValueError(f"reset must be 'earliest' or 'latest', found {reset!r}")
        self.topic = topic
        self.group = group
        self.path: Path = Path(log.path) / GROUPS_DIR / group / f"{topic.name}.json"
        n = topic.config.partitions
        self.partitions = list(range(n)) if partitions is None else [int(p) for p in partitions]
        self._frames = FrameReader(topic, columns, "raise")
        committed = self.committed()
        self.positions: dict[int, int] = {}
        for p in self.partitions:
            if p in committed:
                self.positions[p] = committed[p]
            else:
                snap = topic.partition(p).snapshot()
                self.positions[p] = snap.start_offset if reset == "earliest" else snap.end_offset

    def committed(self) -> dict[int, int]:
        """The durable cursor: partition -> next offset to read (empty if never committed)."""
        try:
            data = json.loads(self.path.read_text())
            return {int(k): int(v) for k, v in data["offsets"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as e:
            raise ConsumerError(f"consumer cursor {self.path} is damaged: {e}") from e

    def poll(self, max_records: int = 10_000, timeout: float = 0.0) -> pa.Table:
        """The next records after the current position (at most `max_records`; maybe none).

        Waits up to `timeout` seconds for records to arrive when there are none.
        """
        deadline = time.monotonic() + timeout
        while True:
            batches: list[pa.RecordBatch] = []
            budget = max_records
            for p in self.partitions:
                if budget <= 0:
                    break
                part = self.topic.partition(p)
                snap = part.snapshot()
                lo = max(self.positions[p], snap.start_offset)
                hi = min(snap.end_offset, lo + budget)
                for batch in self._frames.partition_batches(part, snap, lo, hi):
                    batches.append(batch)
                    budget -= batch.num_rows
                self.positions[p] = max(lo, hi)
            if batches or time.monotonic() >= deadline:
                return pa.Table.from_batches(batches, schema=self._frames.schema)
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def seek(self, partition: int, offset: int) -> None:
        """Move the in-memory position of `partition` (commit() makes it durable)."""
        if partition not in self.positions:
            raise ValueError(f"this consumer reads partitions {self.partitions}, not {partition}")
        self.positions[partition] = int(offset)

    def commit(self, offsets: Mapping[int, int] | None = None) -> None:
        """Durably record `offsets` (default: the current positions) as the group's cursor."""
        current = self.committed()
        current.update(self.positions if offsets is None else {int(k): int(v) for k, v in offsets.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": 1, "topic": self.topic.name, "group": self.group,
               "offsets": {str(k): v for k, v in sorted(current.items())}}
        write_atomic(self.path, json.dumps(doc, indent=2).encode())

    def lag(self) -> dict[int, int]:
        """Records between the current position and the end, per partition."""
        return {p: max(0, self.topic.partition(p).snapshot().end_offset - pos) for p, pos in self.positions.items()}
