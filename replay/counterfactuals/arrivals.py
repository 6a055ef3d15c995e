"""Every score a request got, with its arrival in ms after the request: recorded, or read off the log.

A decision record holds the arrivals the service saw *by its decision* (``arrivals``: ms after the
request arrived, on the service's monotonic clock, taken when the score reached its event loop;
``failed``: the keys that answered with an error by then, without times). A counterfactual that
waits longer needs the scores that came later, and those of shadows (never delivered, but data).
They are read from the scores topic:

- Per (request, model key) the first score appended counts, as in the service's mailbox ("the first
  score wins"); its value is the first *ok* score (a re-scored input gives identical records).
- Recorded arrivals are used exactly as recorded. Every other arrival is reconstructed on the log's
  clock (`clock`: ``"append_time"``, when the log had the score, the default: no service can act on
  a score before that; or ``"event_time"``, when the model says it answered, exact for simulated
  traffic): ``(score time - request time) + offset``, where the request time is its input's time on
  that clock (else the decision's minus its ``decided_ms``) and the offset calibrates the rest (the
  tailer's delivery lag, the time from the front door to the input's record): the median, over the
  request's own recorded arrivals, of recorded minus reconstructed; for a request with none, the
  median over all requests. `Reconstruction` says how well the offset fits the recorded arrivals
  (its spread): that is the error to expect of a reconstructed arrival.
- What the record proves bounds the reconstruction: a non-shadow score missing from ``arrivals``
  and ``failed`` reached the service after its decision moment T (or never), so it is placed after
  T; an error in ``failed`` arrived by T, so it is placed at or before T; nothing before 0. So the
  recorded rule, applied to these arrivals, decides exactly as the record says.
- Times are kept at the record's precision (float32 ms, `rendezvous.policy.record_ms`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rendezvous.policy import record_ms

from ..engine.tokens import MARKER_COLUMNS, VersionCut
from ..errors import ReplayValueError

__all__ = ["CLOCKS", "Reconstruction", "Request", "Scored", "load_requests", "next_after"]

CLOCKS = ("append_time", "event_time")
_COLUMN = {"append_time": "_append_time", "event_time": "event_time"}
_SCORE_COLUMNS = ("request_id", "model_id", "model_version", "score", "status", "role", "event_time")
_CUT_COLUMNS = ("input_partition", "input_offset", "swapped_from")  # hot-swap markers (`VersionCut`)
_SYSTEM = ("_append_time", "_partition", "_offset")


@dataclass(frozen=True, slots=True)
class Scored:
    """One model's answer to one request, as the counterfactual rule sees it."""

    key: str  # model_id:model_version
    arrival_ms: float  # ms after the request arrived
    ok: bool
    score: float | None  # the first ok score (None: an error, or no score record)
    recorded: bool  # arrival_ms is the decision record's own (else reconstructed from the log)
    shadow: bool = False


@dataclass(slots=True)
class Request:
    """A decided request: its decision record (maps as dicts) and every score it got."""

    record: dict[str, Any]
    scores: dict[str, Scored] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return str(self.record["request_id"])

    @property
    def decided_ms(self) -> float:
        """The recorded decision moment T (the deadline for a record that lacks it)."""
        d = self.record.get("decided_ms")
        return float(self.record["deadline_ms"] if d is None else d)


@dataclass(frozen=True)
class Reconstruction:
    """How arrivals were obtained: how many recorded, how many reconstructed, and how well the
    calibrated clock matches the recorded ones (offset: median of recorded - reconstructed before
    calibration; spread: the 90th percentile of the residual |difference - median|)."""

    clock: str
    recorded: int
    reconstructed: int
    offset_ms: float
    spread_ms: float
    calibrated_requests: int  # requests whose offset came from their own recorded arrivals

    def to_dict(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "recorded": self.recorded,
            "reconstructed": self.reconstructed,
            "offset_ms": _finite(self.offset_ms),
            "spread_ms": _finite(self.spread_ms),
            "calibrated_requests": self.calibrated_requests,
        }


def next_after(ms: float) -> float:
    """The smallest record-precision (float32) time after `ms`."""
    return float(np.nextafter(np.float32(ms), np.float32(np.inf)))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _us(column: pa.ChunkedArray | pa.Array) -> list[int | None]:
    out: list[int | None] = pc.cast(column, pa.int64()).to_pylist()
    return out


def _as_dict(value: Any) -> dict[str, float]:
    if not value:
        return {}
    items = value.items() if isinstance(value, Mapping) else value
    return {str(k): float(v) for k, v in items}


def decision_records(table: pa.Table, clock: str) -> list[dict[str, Any]]:
    """The decision rows as dicts (maps as dicts), each with ``_clock_us``: its time on `clock`."""
    times = _us(table.column(_COLUMN[clock]))
    rows = table.to_pylist(maps_as_pydicts="lossy")
    for row, t in zip(rows, times, strict=True):
        row["arrivals"] = _as_dict(row.get("arrivals"))
        row["propensities"] = _as_dict(row.get("propensities"))
        row["failed"] = list(row.get("failed") or ())
        row["_clock_us"] = t
    return rows


def _present(log: Any, topic: str | None) -> bool:
    return topic is not None and topic in log.topics()


def _read(log: Any, topic: str, wanted: Sequence[str], ids: pa.Array, cut: VersionCut | None = None) -> pa.Table:
    """`wanted` columns of `topic` (those it has) with the system columns, rows of `ids` only;
    the hot-swap markers of the whole topic are added to `cut` (given)."""
    have = set(log.arrow_schema(topic, system_columns=True).names)
    cols = [c for c in (*wanted, *_SYSTEM) if c in have]
    if "request_id" not in have:
        raise ReplayValueError(f"topic {topic!r} has no request_id field: it is not a score or input topic")
    table = log.read(topic, columns=cols)
    if cut is not None and set(MARKER_COLUMNS) <= set(cols):
        cut.add_markers(table)
    return table.filter(pc.is_in(table.column("request_id"), value_set=ids))


def _input_times(log: Any, topic: str | None, clock: str, ids: pa.Array) -> dict[str, list[int]]:
    """request id -> the times (on `clock`) its inputs were recorded, ascending."""
    if not _present(log, topic):
        return {}
    assert topic is not None
    table = _read(log, topic, ("request_id", "event_time"), ids)
    out: dict[str, list[int]] = {}
    for rid, t in zip(table.column("request_id").to_pylist(), _us(table.column(_COLUMN[clock])), strict=True):
        if t is not None:
            out.setdefault(rid, []).append(t)
    for times in out.values():
        times.sort()
    return out


@dataclass(slots=True)
class _Row:
    t_us: int
    ok: bool
    score: float | None
    shadow: bool


def _score_rows(
    log: Any, topic: str | None, clock: str, ids: pa.Array
) -> dict[str, dict[str, tuple[_Row, _Row | None]]]:
    """request id -> model key -> (its first score, its first ok score), in order of `clock`
    (ties: partition, offset)."""
    if not _present(log, topic):
        return {}
    assert topic is not None
    cut = VersionCut()  # a score contradicting a hot-swap cut was never served: left out, as live
    table = _read(log, topic, (*_SCORE_COLUMNS, *_CUT_COLUMNS), ids, cut)
    if table.num_rows == 0:
        return {}
    times = pc.cast(table.column(_COLUMN[clock]), pa.int64())
    order = pc.sort_indices(
        pa.table({"t": times, "p": table.column("_partition"), "o": table.column("_offset")}),
        sort_keys=[("t", "ascending"), ("p", "ascending"), ("o", "ascending")],
    )
    table = table.take(order)
    n = table.num_rows
    col = {name: table.column(name).to_pylist() for name in table.column_names if name in _SCORE_COLUMNS}
    t_us = _us(table.column(_COLUMN[clock]))
    status = col.get("status") or [None] * n
    role = col.get("role") or [None] * n
    in_p = table.column("input_partition").to_pylist() if cut else [None] * n
    in_o = table.column("input_offset").to_pylist() if cut else [None] * n
    out: dict[str, dict[str, tuple[_Row, _Row | None]]] = {}
    for i in range(n):
        t = t_us[i]
        if t is None or (cut and not cut.allows(col["model_id"][i], col["model_version"][i], in_p[i], in_o[i])):
            continue
        score = col["score"][i]
        ok = status[i] in (None, "ok") and score is not None and not math.isnan(score)
        row = _Row(t, ok, float(score) if ok else None, role[i] == "shadow")
        key = f"{col['model_id'][i]}:{col['model_version'][i]}"
        per = out.setdefault(col["request_id"][i], {})
        first = per.get(key)
        if first is None:
            per[key] = (row, row if ok else None)
        elif first[1] is None and ok:
            per[key] = (first[0], row)
    return out


def _anchor(record: Mapping[str, Any], inputs: Sequence[int] | None) -> tuple[float | None, str]:
    """The request's arrival on the log's clock (us) and where it came from: its latest input
    recorded by the decision, else the decision's time minus its decided_ms."""
    t_dec = record.get("_clock_us")
    if inputs:
        before = [t for t in inputs if t_dec is None or t <= t_dec]
        return float(before[-1] if before else inputs[0]), "input"
    if t_dec is None:
        return None, "none"
    decided = record.get("decided_ms")
    return float(t_dec) - 1000.0 * float(decided or 0.0), "decision"


def _median(xs: Sequence[float]) -> float:
    return float(np.median(np.asarray(xs, float))) if xs else math.nan


def load_requests(
    log: Any, records: Iterable[dict[str, Any]], *, scores: str | None, inputs: str | None, clock: str
) -> tuple[list[Request], Reconstruction]:
    """The decided requests of `records` (see `decision_records`) with every score each got
    (the module docstring says how arrivals are obtained and bounded)."""
    if clock not in CLOCKS:
        raise ReplayValueError(f"clock must be one of {', '.join(map(repr, CLOCKS))}, found {clock!r}")
    recs = list(records)
    ids = pa.array(sorted({str(r["request_id"]) for r in recs}), pa.string())
    rows = _score_rows(log, scores, clock, ids)
    input_times = _input_times(log, inputs, clock, ids)

    # calibration: recorded arrival - (score time - request time), per request and per anchor kind
    anchors: list[tuple[float | None, str]] = []
    own: list[float] = []  # per request, NaN when it has no recorded arrival with a score record
    pooled: dict[str, list[float]] = {}
    residuals: list[float] = []
    for rec in recs:
        anchor, kind = _anchor(rec, input_times.get(str(rec["request_id"])))
        anchors.append((anchor, kind))
        per = rows.get(str(rec["request_id"]), {})
        diffs = []
        if anchor is not None:
            for key, ms in rec["arrivals"].items():
                got = per.get(key)
                if got is not None and got[1] is not None:
                    diffs.append(ms - (got[1].t_us - anchor) / 1000.0)
        pooled.setdefault(kind, []).extend(diffs)
        own.append(_median(diffs))
        if len(diffs) > 1:  # the error of a request's own calibration: each left out in turn
            residuals.extend(abs(d - _median(diffs[:i] + diffs[i + 1 :])) for i, d in enumerate(diffs))
    offsets = {kind: _median(ds) for kind, ds in pooled.items()}
    all_diffs = [d for ds in pooled.values() for d in ds]
    if not residuals:  # no request has two recorded arrivals: the error of the pooled offset
        overall = _median(all_diffs)
        residuals = [abs(d - overall) for d in all_diffs]

    out: list[Request] = []
    n_recorded = n_rebuilt = calibrated = 0
    for rec, (anchor, kind), m in zip(recs, anchors, own, strict=True):
        offset = m if math.isfinite(m) else offsets.get(kind, math.nan)
        calibrated += math.isfinite(m)
        if not math.isfinite(offset):
            offset = 0.0
        req = Request(rec)
        t_rec = req.decided_ms
        failed = set(rec["failed"])
        per = rows.get(req.request_id, {})
        for key, ms in rec["arrivals"].items():
            got = per.get(key)
            ok_row = got[1] if got is not None else None
            score = ok_row.score if ok_row is not None else None
            req.scores[key] = Scored(key, float(ms), True, score, True, ok_row.shadow if ok_row else False)
            n_recorded += 1
        for key, (first, _) in per.items():
            if key in req.scores:
                continue
            # the first score wins, as in the service's mailbox (an error first: the key failed)
            est = 0.0 if anchor is None else max(0.0, (first.t_us - anchor) / 1000.0 + offset)
            if key in failed:  # the service knew of this error by T
                req.scores[key] = Scored(key, record_ms(min(est, t_rec)), False, None, False, first.shadow)
            else:
                if not first.shadow:  # delivered after T, or the record would hold it
                    est = max(record_ms(est), next_after(t_rec))
                req.scores[key] = Scored(key, record_ms(est), first.ok, first.score, False, first.shadow)
            n_rebuilt += 1
        for key in failed:  # an error the scores topic no longer holds: known by T
            if key not in req.scores:
                req.scores[key] = Scored(key, t_rec, False, None, False)
                n_rebuilt += 1
        out.append(req)
    spread = float(np.quantile(residuals, 0.9)) if residuals else math.nan
    recon = Reconstruction(clock, n_recorded, n_rebuilt, _median(all_diffs), spread, calibrated)
    return out, recon
