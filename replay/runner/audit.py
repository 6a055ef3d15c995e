"""The audit: check a run's output and manifest against the log, and certify it (or not).

`audit(log, run_id)` re-reads the run's inputs from the log and every output row of the run and
checks, for each row:

1. its input exists in the run's range, and its `clock` equals the input's actual append time
   (``max(event_time + lateness, append_time)`` for event-time runs), re-read from the log;
2. ``read_fence <= clock`` (nothing the model read for the row was appended after its clock) and
   ``read_fence >= `` the input's append time;
3. every `fence` entry (lookup topic/partition -> highest visible offset) names a record appended
   at or before the row's clock, re-read from the log, of a lookup range the manifest lists;
4. per (partition, model), rows come once each, in clock order: no duplicate, no reordering;

and the manifest (`replay.runner.audit_manifest`): nothing it certifies is taken from it unchecked. The
topics and ranges it names must be stored in the log; for a complete run, every input of the
range scored once by every model it lists, and its row counts, models and versions, streams,
progress, output bounds and content hash equal to what the audit recomputed from the rows (a
complete run without a content hash is refused). A failed run (status ``failed``, or an error
recorded) is never certified, nor a status the manifest contradicts. Each refusal names the
manifest field. Only a complete run can be CERTIFIED; an incomplete one whose rows check out is
reported as such, not certified. The `Certificate` prints as a short report; `violations`
lists the first problems. Memory: 8 bytes per input row of the range (its append time), plus
each fenced lookup partition's append times; output rows stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..engine.clock import fmt_time
from ..engine.tokens import TOKEN_FIELD
from . import audit_manifest as am
from . import manifest as mf
from .hashing import ContentHash, map_lengths
from .logs import open_log
from .sink import read_run

MAX_VIOLATIONS = 20
_UNREAD = np.iinfo(np.int64).min  # an offset of a range the log does not hold (already refused)
_TOKEN = _UNREAD + 1  # a hot-swap token's offset: not an input, no row may answer it (replay.engine.tokens)


@dataclass
class Certificate:
    """The outcome of `audit`: what was checked, the violations found (first `MAX_VIOLATIONS`) and
    the manifest fields refused (`fields`). `certified`: a complete run with no violation."""

    run_id: str
    status: str
    rows_checked: int = 0
    inputs_expected: int = 0
    models: int = 0
    partitions: int = 0
    min_slack_us: int | None = None
    max_slack_us: int | None = None
    fence_entries_checked: int = 0
    content_hash: str | None = None
    recomputed_hash: str | None = None
    error: str | None = None
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    fields: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No violation in the rows nor the manifest (for an incomplete run: its rows so far)."""
        return self.violation_count == 0

    @property
    def certified(self) -> bool:
        return self.ok and self.status == "complete"

    def _violate(self, msg: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(msg)

    def refuse(self, name: str, message: str, *also: str) -> None:
        """Manifest field `name` (and fields `also`, which contradict it) does not match the log."""
        for n in (name, *also):
            if n not in self.fields:
                self.fields.append(n)
        self._violate(f"manifest {', '.join((name, *also))}: {message}")

    def __str__(self) -> str:
        if not self.ok:
            head = f"FAILED, not certified ({self.violation_count:,} violation(s))"
        elif self.certified:
            head = "CERTIFIED"
        else:
            head = f"NOT CERTIFIED: the run is {self.status}; the {self.rows_checked:,} rows written so far check out"
        slack = "n/a" if self.min_slack_us is None else f"min {self.min_slack_us:,} µs, max {self.max_slack_us:,} µs"
        lines = [
            f"replay audit of run {self.run_id} ({self.status}): {head}",
            f"  rows checked          {self.rows_checked:,} ({self.models} model(s), "
            f"{self.inputs_expected:,} inputs in range, {self.partitions} partition(s))",
            "  clock                 equals each input's append time, re-read from the log",
            f"  read_fence <= clock   clock - read_fence: {slack}",
            f"  lookup fences         {self.fence_entries_checked:,} entries, each appended at or before its "
            "row's clock",
            f"  content hash          {self.recomputed_hash or '-'}"
            + (
                ""
                if self.content_hash is None
                else (
                    " (matches the manifest)"
                    if self.content_hash == self.recomputed_hash
                    else f" (manifest says {self.content_hash})"
                )
            ),
        ]
        if self.error:
            lines.append(f"  error recorded        {self.error}")
        if self.violations:
            lines.append("  violations:")
            lines += [f"    - {v}" for v in self.violations]
            if self.violation_count > len(self.violations):
                lines.append(f"    ... and {self.violation_count - len(self.violations):,} more")
        return "\n".join(lines)


def _append_times(log: Any, topic: str, p: int, lo: int, hi: int, extra: list[str] | None = None):
    """(offsets - lo, append times, extra columns) of `topic` partition `p` over [lo, hi) as stored."""
    cols = ["_offset", "_append_time"] + (extra or [])
    for b in log.reader(topic, start={p: lo}, end={p: hi}, partitions=[p], columns=cols):
        yield b.column(0).to_numpy() - lo, b.column(1).cast(pa.int64()).to_numpy(), b


def _input_times(log: Any, m: dict) -> dict[int, tuple[int, np.ndarray]]:
    """Per input partition: (lo, expected clock per offset - lo; `_UNREAD` where the log holds none,
    `_TOKEN` at a hot-swap token)."""
    topic = m["inputs"]["topic"]
    etf = m["inputs"].get("event_time_field")
    event = m.get("order") == "event_time"
    lateness = int(m.get("lateness_us") or 0)
    tokens = any(f["name"] == TOKEN_FIELD for f in log.schema(topic)["fields"])
    extra = ([etf] if event and etf else []) + ([TOKEN_FIELD] if tokens else [])
    out = {}
    for p, (lo, hi) in mf.ranges_from_json(m["inputs"]["partitions"]).items():
        arr = np.full(max(0, hi - lo), _UNREAD, np.int64)
        for offs, at, b in _append_times(log, topic, p, lo, hi, extra):
            if tokens:
                at = np.where(b.column(b.num_columns - 1).is_null().to_numpy(zero_copy_only=False), at, _TOKEN)
            if event and etf:
                et = b.column(2).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).fill_null(0)
                et = et.to_numpy(zero_copy_only=False) + lateness
                nulls = b.column(2).is_null().to_numpy(zero_copy_only=False)
                at = np.where(nulls | (at == _TOKEN), at, np.maximum(at, et))
            arr[offs] = at
        out[p] = (lo, arr)
    return out


def _lookup_times(log: Any, m: dict) -> dict[str, tuple[int, np.ndarray]]:
    """Per lookup "topic/partition": (first offset, append time per offset) over its recorded range."""
    out = {}
    for lk in m.get("lookups") or []:
        try:
            ranges = mf.ranges_from_json(lk["partitions"])
        except (KeyError, AttributeError, TypeError, ValueError, IndexError):
            continue  # refused by check_sources
        if lk.get("topic") not in log.topics():
            continue
        for p, (lo, hi) in ranges.items():
            arr = np.full(max(0, hi - lo), np.iinfo(np.int64).max, np.int64)  # not stored: after any clock
            for offs, at, _ in _append_times(log, lk["topic"], p, lo, hi):
                arr[offs] = at
            out[f"{lk['topic']}/{p}"] = (lo, arr)
    return out


def audit(log: Any, run_id: str) -> Certificate:
    """Check every output row of `run_id` and its manifest against the log (module docstring)."""
    log = open_log(log)
    m = mf.read(log, run_id)
    cert = Certificate(
        run_id=run_id, status=str(m.get("status")), content_hash=m.get("content_hash"), error=m.get("error")
    )
    if m.get("run_id") != run_id:
        cert.refuse("run_id", f"expected {run_id!r} (the run's directory), found {m.get('run_id')!r}")
    am.check_status(cert, m)
    if not am.check_sources(cert, log, m):
        return cert  # the rows cannot be read against ranges the log does not hold
    times = _input_times(log, m)
    lookups = _lookup_times(log, m)
    models = [r.get("name") for r in m.get("models") or []]
    cert.models = len(models)
    cert.partitions = len(times)
    counts = {p: int(np.count_nonzero(arr != _TOKEN)) for p, (_, arr) in times.items()}
    cert.inputs_expected = sum(counts.values())
    found = am.Found()
    hasher = ContentHash()
    out = m["output"]
    start = {int(p): int(o) for p, o in out["start"].items()}
    found.before_start = _rows_before(log, out["topic"], run_id, start)
    where = _Where(m)
    for t in _chunked(read_run(log, out["topic"], run_id, start, None, None)):
        hasher.update_mixed(t)
        _note_found(found, t)
        _check_table(cert, t, where, times, lookups, found.counts, found.last)
    found.streams = hasher.summary()
    found.content_hash = cert.recomputed_hash = hasher.hexdigest()
    found.rows = cert.rows_checked
    if m.get("status") == "complete":
        for p, (lo, arr) in times.items():
            for name in models:
                got = found.counts.get((p, name), 0)
                if got != counts[p]:
                    cert._violate(
                        f"partition {p}, model {name!r}: {got:,} rows for {counts[p]:,} inputs in the range "
                        f"[{lo}, {lo + len(arr)}) of manifest inputs.partitions"
                    )
        am.check_complete(cert, m, found, counts, sum(len(arr) for _, arr in times.values()))
    return cert


class _Where:
    """How violations name a row's source: the run's inputs topic and the manifest's clock rule."""

    def __init__(self, m: dict) -> None:
        self.topic = m["inputs"]["topic"]
        self.rule = f"order {m.get('order')!r}, lateness_us {m.get('lateness_us')!r}"


def _rows_before(log: Any, topic: str, run_id: str, start: dict[int, int]) -> dict[int, int]:
    """Per output partition, the rows of `run_id` stored before the manifest's start offset."""
    firsts = log.start_offsets(topic)
    out = {}
    for p, s0 in sorted(start.items()):
        if s0 > firsts.get(p, s0):
            n = 0
            for b in log.reader(topic, start={p: firsts[p]}, end={p: s0}, partitions=[p], columns=["run_id"]):
                n += pc.sum(pc.equal(b.column(0), run_id)).as_py() or 0
            if n:
                out[p] = n
    return out


def _note_found(found: am.Found, t: pa.Table) -> None:
    """Model versions per model id and the highest output offset per output partition of `t`."""
    pairs = (
        pa.table({"m": t.column("model_id"), "v": t.column("model_version")})
        .group_by(["m", "v"], use_threads=False)
        .aggregate([])
    )
    for m_, v in zip(pairs.column("m").to_pylist(), pairs.column("v").to_pylist()):
        found.versions.setdefault(m_, set()).add(v)
    tops = (
        pa.table({"p": t.column("_partition"), "o": t.column("_offset")})
        .group_by("p", use_threads=False)
        .aggregate([("o", "max")])
    )
    for p, o in zip(tops.column("p").to_pylist(), tops.column("o_max").to_pylist()):
        found.max_offset[p] = max(found.max_offset.get(p, -1), o)


def _chunked(tables, rows: int = 65_536):
    """Tables concatenated into chunks of about `rows` rows (in order), so checks stay vectorized."""
    buf, n = [], 0
    for t in tables:
        buf.append(t)
        n += t.num_rows
        if n >= rows:
            yield pa.concat_tables(buf).combine_chunks()
            buf, n = [], 0
    if buf:
        yield pa.concat_tables(buf).combine_chunks()


def _check_table(
    cert: Certificate, t: pa.Table, where: _Where, times: dict, lookups: dict, counts: dict, last: dict
) -> None:
    n = t.num_rows
    cert.rows_checked += n
    inputs_topic = where.topic
    topic_ok = pc.all(pc.equal(t.column("input_topic"), inputs_topic)).as_py()
    if not topic_ok:
        others = sorted(set(pc.unique(t.column("input_topic")).to_pylist()) - {inputs_topic})
        cert.refuse(
            "inputs.topic", f"expected the topic the run's rows were decided from {others}, found {inputs_topic!r}"
        )
    parts = t.column("input_partition").to_numpy()
    offs = t.column("input_offset").to_numpy()
    clock = t.column("clock").cast(pa.int64()).to_numpy()
    fence = t.column("read_fence").cast(pa.int64()).to_numpy()
    mids = t.column("model_id")
    expected = np.full(n, np.iinfo(np.int64).min, np.int64)
    for p in np.unique(parts):
        sel = parts == p
        if int(p) not in times:
            cert._violate(
                f"{int(sel.sum())} rows from partition {int(p)}, outside the run's range (manifest inputs.partitions)"
            )
            continue
        lo, arr = times[int(p)]
        rel = offs[sel] - lo
        bad = (rel < 0) | (rel >= len(arr))
        if bad.any():
            i = int(np.nonzero(sel)[0][np.nonzero(bad)[0][0]])
            cert._violate(
                f"row for {inputs_topic}/{int(p)}@{int(offs[i])}: offset outside the run's range "
                f"[{lo}, {lo + len(arr)}) (manifest inputs.partitions)"
            )
        rel = np.where(bad, 0, rel)
        expected[sel] = np.where(bad, np.iinfo(np.int64).min, arr[rel])
    wrong = np.nonzero((clock != expected) & (expected != np.iinfo(np.int64).min))[0]
    for i in wrong[:MAX_VIOLATIONS]:
        cert._violate(
            f"row for {inputs_topic}/{int(parts[i])}@{int(offs[i])} model {mids[int(i)].as_py()!r}: clock "
            f"{fmt_time(int(clock[i]))} is not its input's clock {fmt_time(int(expected[i]))} "
            f"(manifest {where.rule})"
        )
    cert.violation_count += max(0, len(wrong) - MAX_VIOLATIONS)
    leak = np.nonzero(fence > clock)[0]
    for i in leak[:MAX_VIOLATIONS]:
        cert._violate(
            f"row for {inputs_topic}/{int(parts[i])}@{int(offs[i])} model {mids[int(i)].as_py()!r}: read_fence "
            f"{fmt_time(int(fence[i]))} is after its clock {fmt_time(int(clock[i]))}"
        )
    cert.violation_count += max(0, len(leak) - MAX_VIOLATIONS)
    # the input itself was read, so the fence is at least its append time (<= clock)
    slack = clock - fence
    if n:
        lo_s, hi_s = int(slack.min()), int(slack.max())
        cert.min_slack_us = lo_s if cert.min_slack_us is None else min(cert.min_slack_us, lo_s)
        cert.max_slack_us = hi_s if cert.max_slack_us is None else max(cert.max_slack_us, hi_s)
    _check_fences(cert, t, clock, parts, offs, inputs_topic, lookups)
    # order and uniqueness per (partition, model): within each stream, (clock, offset) increases
    codes = pc.dictionary_encode(t.column("model_id")).combine_chunks()
    names = codes.dictionary.to_pylist()
    mcode = codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    stream = parts.astype(np.int64) * (len(names) + 1) + mcode
    order = np.argsort(stream, kind="stable")
    s, c, o = stream[order], clock[order], offs[order]
    same = s[1:] == s[:-1]
    up = (c[1:] > c[:-1]) | ((c[1:] == c[:-1]) & (o[1:] > o[:-1]))
    bad_streams = set(s[1:][same & ~up].tolist())
    firsts = np.flatnonzero(np.concatenate([[True], ~same]))
    lasts = np.concatenate([firsts[1:] - 1, [len(s) - 1]])
    for f, l_ in zip(firsts.tolist(), lasts.tolist()):
        key = (int(parts[order[f]]), names[int(mcode[order[f]])])
        prev = last.get(key)
        if int(s[f]) in bad_streams or (prev is not None and not ((int(c[f]), int(o[f])) > prev)):
            cert._violate(f"partition {key[0]}, model {key[1]!r}: rows repeated or out of clock order")
        last[key] = (int(c[l_]), int(o[l_]))
        counts[key] = counts.get(key, 0) + (l_ - f + 1)


def _check_fences(
    cert: Certificate,
    t: pa.Table,
    clock: np.ndarray,
    parts: np.ndarray,
    offs: np.ndarray,
    inputs_topic: str,
    lookups: dict,
) -> None:
    col = t.column("fence").combine_chunks()
    if col.null_count == len(col):
        return
    lens = map_lengths(col)
    if not lens.sum():
        return
    offsets = col.offsets.to_numpy()
    lo, hi = int(offsets[0]), int(offsets[-1])
    keys = np.array(col.keys.slice(lo, hi - lo).to_pylist(), dtype=object)
    items = col.items.slice(lo, hi - lo).to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(len(col)), lens)
    cert.fence_entries_checked += len(items)
    for k in np.unique(keys):
        sel = keys == k
        info = lookups.get(k)
        if info is None:
            cert._violate(
                f"fence entry {k!r} names no topic/partition of the manifest's lookups ({sorted(lookups) or 'none'})"
            )
            continue
        first, arr = info
        rel = items[sel] - first
        r = rows[sel]
        bad = (rel < 0) | (rel >= len(arr))
        if bad.any():
            i = int(r[np.nonzero(bad)[0][0]])
            cert._violate(
                f"row for {inputs_topic}/{int(parts[i])}@{int(offs[i])}: fence {k}@{int(items[sel][bad][0])} "
                f"is outside the lookup range the run read (manifest lookups)"
            )
        at = arr[np.where(bad, 0, rel)]
        leak = np.nonzero(~bad & (at > clock[r]))[0]
        for j in leak[:MAX_VIOLATIONS]:
            i = int(r[j])
            cert._violate(
                f"row for {inputs_topic}/{int(parts[i])}@{int(offs[i])}: its fence {k}@{int(items[sel][j])} "
                f"was appended at {fmt_time(int(at[j]))}, after the clock {fmt_time(int(clock[i]))}"
            )
