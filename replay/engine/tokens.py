"""Hot-swap tokens in an inputs topic and the version cut they make (docs/architecture.md, "The
hot-swap token").

A token is an ``inputs`` record whose ``swap`` field is set (``schemas/model_input.avsc``: token
id, ``model_id``, ``version``); ``rendezvous swap`` appends one to every partition. It is a
barrier, not a request: runners do not score it and replay never hands it to a model (`strip`).
In its partition it is a cut: every input before it is handled by the model's old version, every
input after it by ``version``. A runner passing a token of its model appends a *marker* to
``scores``: status ``"swap"``, ``model_version`` the new version, ``swapped_from`` the old one,
``input_partition``/``input_offset`` the token's place, ``request_id`` the token's.

`VersionCut` holds those cuts per (model, input partition) in offset order and answers which
version handled an input. The live service drops a score that contradicts it (a score of the old
version for an input after the token, or the reverse); replay reads it from the markers and so
reproduces the version that served each request.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["MARKER_STATUS", "TOKEN_FIELD", "Cut", "VersionCut", "strip", "tokens_in"]

TOKEN_FIELD = "swap"  # the inputs field that makes a record a token
MARKER_STATUS = "swap"  # the scores status of a runner's marker
MARKER_COLUMNS = ("status", "model_id", "model_version", "swapped_from", "input_partition", "input_offset")


def strip(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` without its token rows and without the ``swap`` column: the inputs a model is given
    (the same columns before and after the field existed)."""
    i = batch.schema.get_field_index(TOKEN_FIELD)
    if i < 0:
        return batch
    col = batch.column(i)
    rest = batch.remove_column(i)
    if col.null_count == len(col):
        return rest
    return rest.filter(pc.is_null(col))


def tokens_in(batch: pa.RecordBatch | pa.Table) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row, token) of each token row of `batch`, in row order (none if it has no ``swap`` column)."""
    i = batch.schema.get_field_index(TOKEN_FIELD)
    if i < 0:
        return
    col = batch.column(i)
    if col.null_count == len(col):
        return
    for row, value in enumerate(col.to_pylist()):
        if value is not None:
            yield row, value


@dataclass(frozen=True, slots=True)
class Cut:
    """One token of a model in one partition: inputs before `offset` were handled by `before`
    (None: not known), those after it by `after`."""

    offset: int
    before: str | None
    after: str


class VersionCut:
    """The cuts of every model's tokens, per input partition (module docstring)."""

    def __init__(self) -> None:
        self._cuts: dict[tuple[str, int], list[Cut]] = {}
        self._offsets: dict[tuple[str, int], list[int]] = {}

    def __bool__(self) -> bool:
        return bool(self._cuts)

    def models(self) -> set[str]:
        return {m for m, _ in self._cuts}

    def cuts(self, model_id: str, partition: int) -> list[Cut]:
        return list(self._cuts.get((model_id, partition), ()))

    def add(self, model_id: str, partition: int, offset: int, before: str | None, after: str) -> bool:
        """Record a token; False if one at that place is already known (a marker written twice)."""
        k = (model_id, int(partition))
        offs = self._offsets.setdefault(k, [])
        i = bisect.bisect_left(offs, offset)
        if i < len(offs) and offs[i] == offset:
            return False
        offs.insert(i, int(offset))
        self._cuts.setdefault(k, []).insert(i, Cut(int(offset), before, after))
        return True

    def version(self, model_id: str, partition: int, offset: int) -> str | None:
        """The version that handles input `offset` of `partition` for `model_id`; None when no
        token says (no token of the model there, or before the first one with an unknown before)."""
        k = (model_id, partition)
        offs = self._offsets.get(k)
        if not offs:
            return None
        i = bisect.bisect_right(offs, offset)  # cuts at or before `offset` (a token is not an input)
        cuts = self._cuts[k]
        return cuts[i].before if i < len(cuts) else cuts[-1].after

    def allows(self, model_id: str, version: str, partition: int | None, offset: int | None) -> bool:
        """Whether a score of `model_id`:`version` for input (`partition`, `offset`) agrees with the cut."""
        if partition is None or offset is None:
            return True
        v = self.version(model_id, partition, offset)
        return v is None or v == version

    def add_markers(self, table: pa.Table | pa.RecordBatch) -> int:
        """Add the cuts of the marker rows (status ``"swap"``) of a scores table; returns how many were new."""
        if "status" not in table.schema.names:
            return 0
        rows = table.filter(pc.equal(table.column("status"), MARKER_STATUS))
        if not rows.num_rows:
            return 0
        cols = {c: rows.column(c).to_pylist() for c in MARKER_COLUMNS}
        new = 0
        for i in range(rows.num_rows):
            p, o = cols["input_partition"][i], cols["input_offset"][i]
            if p is None or o is None:
                continue
            new += self.add(cols["model_id"][i], p, o, cols["swapped_from"][i], cols["model_version"][i])
        return new

    @classmethod
    def read(cls, log: Any, scores: str = "scores") -> VersionCut:
        """The cuts of every marker in `scores` (empty if the topic or its markers' fields are missing)."""
        cut = cls()
        if scores not in log.topics():
            return cut
        have = {f["name"] for f in log.schema(scores)["fields"]}
        if not set(MARKER_COLUMNS) <= have:
            return cut
        for batch in log.reader(scores, columns=list(MARKER_COLUMNS)):
            cut.add_markers(batch)
        return cut
