"""Per-request mailboxes: the service's one `scores` tailer hands each score to the request waiting for it.

Invariants:

- A request's mailbox is opened *before* its input is appended to ``inputs``, so no score for it
  can arrive unseen; it is closed once the request is decided, and later scores for it are ignored.
- Per model key (``model_id:model_version``) the first score wins: an input scored twice (a runner
  restarted before committing its position) gives an identical record, counted once.
- An arrival time is milliseconds after the request arrived, on the service's monotonic clock,
  taken when the tailer's batch reaches the event loop: the moment the service could act on it.
  `arrivals` holds the ok scores, `failed` the error scores (``status = "error"``), each by the
  time it arrived: what `Policy.decide` takes.
- Shadow scores are data, never served: a score its runner marks ``role = "shadow"`` is not
  delivered unless the deployment serves its model now (`served`: a shadow ramped or promoted by
  a control record serves without restarting its runner). Which model may answer a request is
  the deployment's to say (its schedule), not the runner's.
- Hot-swap markers (status ``"swap"``, `replay.engine.tokens`) are not scores: each adds its cut to
  `cut`, and from then on a score of that model whose version contradicts the cut for its input
  (``input_partition``, ``input_offset``) is dropped (`misaligned`). A runner appends its marker
  before any score of the new version for that partition, into the same scores partition (both
  keyed by request id of that input partition), so no score of it is delivered unaligned.

Not thread-safe: used from the event loop only (the tailer's reads run on a worker thread, its
deliveries on the loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from replay.engine.tokens import MARKER_STATUS, VersionCut

# the columns of `scores` the tailer reads (those the topic has; an old schema lacks status/role)
SCORE_COLUMNS = (
    "request_id",
    "model_id",
    "model_version",
    "score",
    "status",
    "role",
    "input_partition",
    "input_offset",
    "swapped_from",
    "_partition",
    "_offset",
)


class DuplicateRequestError(ValueError):
    """A request id that is already waiting for its scores."""


@dataclass(frozen=True, slots=True)
class Score:
    """One model's answer as the service saw it arrive."""

    key: str  # model_id:model_version
    arrival_ms: float
    score: float | None
    ok: bool
    partition: int
    offset: int


@dataclass(eq=False, slots=True)
class Mailbox:
    """The scores that arrived for one request while it waited (see the module docstring)."""

    request_id: str
    t0: float  # time.monotonic() when the request arrived
    arrivals: dict[str, float] = field(default_factory=dict)
    failed: dict[str, float] = field(default_factory=dict)
    scores: dict[str, Score] = field(default_factory=dict)
    _waiter: asyncio.Future[None] | None = None

    def elapsed_ms(self, now: float | None = None) -> float:
        """Milliseconds since the request arrived."""
        return ((time.monotonic() if now is None else now) - self.t0) * 1000.0

    def deliver(self, key: str, score: float | None, ok: bool, partition: int, offset: int, now: float) -> bool:
        """Record a score; False if this model already answered (the first score wins)."""
        if key in self.scores:
            return False
        ms = self.elapsed_ms(now)
        self.scores[key] = Score(key, ms, score, ok, partition, offset)
        if ok:
            self.arrivals[key] = ms
        else:
            self.failed[key] = ms
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        return True

    async def wait(self, timeout_s: float) -> None:
        """Sleep until the next delivery or `timeout_s` seconds, whichever comes first."""
        if timeout_s <= 0:
            return
        loop = asyncio.get_running_loop()
        w = self._waiter = loop.create_future()
        # a timer handle rather than asyncio.wait_for: no task per wait, on the hot path
        timer = loop.call_later(timeout_s, _wake, w)
        try:
            await w
        finally:
            timer.cancel()
            self._waiter = None


def _wake(w: asyncio.Future[None]) -> None:
    if not w.done():
        w.set_result(None)


class Mailboxes:
    """The open mailboxes, by request id, and delivery of a tailed `scores` batch into them."""

    def __init__(self, served: Callable[[str], bool] | None = None) -> None:
        self._open: dict[str, Mailbox] = {}
        self.served = served  # model id -> whether the deployment serves it now (None: never shadows)
        self.delivered = 0  # scores handed to a waiting request
        self.unclaimed = 0  # scores for no waiting request (late, shadow, or another service's)
        self.cut = VersionCut()  # the hot-swap cuts seen in markers
        self.misaligned = 0  # scores dropped for contradicting the cut

    def __len__(self) -> int:
        return len(self._open)

    def open(self, request_id: str, t0: float) -> Mailbox:
        if request_id in self._open:
            raise DuplicateRequestError(f"request_id {request_id!r} is already waiting for its answer")
        mb = self._open[request_id] = Mailbox(request_id, t0)
        return mb

    def close(self, mailbox: Mailbox) -> None:
        if self._open.get(mailbox.request_id) is mailbox:
            del self._open[mailbox.request_id]

    def deliver_batch(self, batch: pa.RecordBatch, now: float | None = None) -> int:
        """Hand every score of `batch` (columns as `SCORE_COLUMNS`, those present) to its waiting
        request; returns how many were delivered."""
        if now is None:
            now = time.monotonic()
        cols: dict[str, list[Any]] = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        n = batch.num_rows
        rids = cols["request_id"]
        status = cols.get("status") or ["ok"] * n
        roles = cols.get("role") or [None] * n
        cut = self.cut
        if cut or MARKER_STATUS in status:
            if MARKER_STATUS in status:
                cut.add_markers(batch)
            in_p = cols.get("input_partition") or [None] * n
            in_o = cols.get("input_offset") or [None] * n
            models = cut.models()
        delivered = 0
        served = self.served
        for i in range(n):
            mb = self._open.get(rids[i])
            mid = cols["model_id"][i]
            if (
                mb is None
                or status[i] == MARKER_STATUS
                or (roles[i] == "shadow" and (served is None or not served(mid)))
            ):
                self.unclaimed += 1
                continue
            version = cols["model_version"][i]
            if cut and mid in models and not cut.allows(mid, version, in_p[i], in_o[i]):
                self.misaligned += 1
                continue
            key = f"{mid}:{version}"
            ok = status[i] in (None, "ok") and cols["score"][i] is not None
            if mb.deliver(key, cols["score"][i], ok, cols["_partition"][i], cols["_offset"][i], now):
                delivered += 1
        self.delivered += delivered
        return delivered
