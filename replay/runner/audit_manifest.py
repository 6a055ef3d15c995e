"""The audit's manifest checks: every field it certifies, recomputed from the log and compared.

`check_status` refuses what can never be certified: a failed run (status ``failed``, or an error
recorded with any status but an interrupted run's ``incomplete``/``"interrupted"``), and a
status that does not fit the rest of the manifest (e.g. ``complete`` without a content hash,
``finished`` time or output end: a failed run flipped by hand). `check_sources` checks the
topics and ranges the manifest names exist in the log as stored (inputs, outcomes, lookups,
output, the run-start snapshot). `check_complete` compares a complete run's counts, models and
versions, streams, progress, output bounds and content hash with what the audit recomputed
from the output rows (`Found`). Each refusal names the manifest field, what the log says
(expected) and what the manifest says (found).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from . import manifest as mf
from .sink import output_avro

INTERRUPTED = "interrupted"  # the error an interrupted (incomplete) run records


class Refuses(Protocol):
    def refuse(self, name: str, message: str, *also: str) -> None: ...


@dataclass
class Found:
    """What the audit recomputed from the run's output rows."""

    streams: dict[str, dict] = field(default_factory=dict)  # ContentHash.summary()
    content_hash: str = ""
    rows: int = 0
    counts: dict[tuple[int, str], int] = field(default_factory=dict)  # (input partition, model) -> rows
    last: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)  # -> last (clock, offset)
    versions: dict[str, set] = field(default_factory=dict)  # model id -> versions in its rows
    max_offset: dict[int, int] = field(default_factory=dict)  # output partition -> highest row offset
    before_start: dict[int, int] = field(default_factory=dict)  # output partition -> rows before start


def _say(v: Any) -> str:
    return repr(v)


def check_status(cert: Refuses, m: dict) -> None:
    """Refuse a failed run, and a status the rest of the manifest contradicts."""
    status, error, digest = m.get("status"), m.get("error"), m.get("content_hash")
    if status not in mf.STATUSES:
        cert.refuse("status", f"expected one of {list(mf.STATUSES)}, found {_say(status)}")
    if status == "failed":
        cert.refuse("status", f"the run failed ({error or 'no error recorded'}): a failed run is never certified")
        return
    if status == "complete":
        if error is not None:
            cert.refuse(
                "status",
                f"'complete', but the run records the error {_say(error)}: a run that failed is "
                f"never certified (status or error edited)",
                "error",
            )
        for name, value in (
            ("content_hash", digest),
            ("finished", m.get("finished")),
            ("output.end", (m.get("output") or {}).get("end")),
        ):
            if value is None:
                cert.refuse(
                    name,
                    f"a complete run records its {name}, found none (deleted, or the status of a run "
                    f"that did not complete edited)",
                    "status",
                )
        return
    if status == "incomplete" and error != INTERRUPTED:
        cert.refuse(
            "status",
            f"an incomplete run records the error {INTERRUPTED!r}, found {_say(error)}: "
            f"a run that failed is never certified (status or error edited)",
            "error",
        )
    if status == "running" and error is not None:
        cert.refuse(
            "status",
            f"a running run records no error, found {_say(error)}: a run that failed is never "
            f"certified (status or error edited)",
            "error",
        )
    if digest is not None:
        cert.refuse(
            "status", f"only a complete run has a content hash; this {status} run records {digest!r}", "content_hash"
        )


def _stored(log: Any, topic: str) -> dict[int, tuple[int, int]] | None:
    if topic not in log.topics():
        return None
    ends = log.end_offsets(topic)
    starts = log.start_offsets(topic)
    return {p: (starts[p], e) for p, e in ends.items()}


def _check_ranges(
    cert: Refuses,
    log: Any,
    name: str,
    topic: Any,
    ranges: Any,
    *,
    retained: bool = True,
    topic_field: str | None = None,
) -> bool:
    """Ranges [lo, hi) of `topic` (manifest field `topic_field`) named by field `name` lie within
    what the log stores; `retained=False`: only their ends (retention may have deleted the start)."""
    tf = f" (manifest {topic_field} {topic!r})" if topic_field else ""
    also = (topic_field,) if topic_field else ()
    try:
        parsed = mf.ranges_from_json(ranges)
    except (AttributeError, TypeError, ValueError, IndexError):
        cert.refuse(name, f"expected {{partition: [start, end]}}, found {_say(ranges)}")
        return False
    stored = _stored(log, topic) if isinstance(topic, str) else None
    if stored is None:
        if topic_field:
            cert.refuse(topic_field, f"expected a topic of the log, found {_say(topic)}")
        else:
            cert.refuse(name, f"names topic {_say(topic)}, which the log does not hold")
        return False
    ok = True
    for p, (lo, hi) in sorted(parsed.items()):
        if p not in stored:
            cert.refuse(
                f"{name}[{p}]", f"topic {topic!r}{tf} has partitions {sorted(stored)}, found partition {p}", *also
            )
            ok = False
        elif not (0 <= lo <= hi <= stored[p][1]) or (retained and lo < stored[p][0]):
            cert.refuse(
                f"{name}[{p}]",
                f"expected a range within what topic {topic!r}{tf} partition {p} stores "
                f"[{stored[p][0]}, {stored[p][1]}), found [{lo}, {hi})",
                *also,
            )
            ok = False
    return ok


def check_sources(cert: Refuses, log: Any, m: dict) -> bool:
    """The topics and ranges the manifest names exist in the log; False when the rows cannot be read."""
    inputs = m.get("inputs") or {}
    ok = _check_ranges(
        cert, log, "inputs.partitions", inputs.get("topic"), inputs.get("partitions"), topic_field="inputs.topic"
    )
    if ok:
        etf = log.config(inputs["topic"]).event_time_field
        if inputs.get("event_time_field") != etf:
            cert.refuse(
                "inputs.event_time_field",
                f"topic {inputs['topic']!r} has event time field {_say(etf)}, "
                f"found {_say(inputs.get('event_time_field'))}",
            )
    if m.get("order") not in ("append_time", "event_time"):
        cert.refuse("order", f"expected 'append_time' or 'event_time', found {_say(m.get('order'))}")
    if m.get("order") == "append_time" and m.get("lateness_us") is not None:
        cert.refuse("lateness_us", f"a run in append-time order has no lateness, found {_say(m.get('lateness_us'))}")
    outcomes = m.get("outcomes")
    if outcomes:
        _check_ranges(
            cert,
            log,
            "outcomes.partitions",
            outcomes.get("topic"),
            outcomes.get("partitions"),
            retained=False,
            topic_field="outcomes.topic",
        )
    snapshot = m.get("topics") or {}
    for i, lk in enumerate(m.get("lookups") or []):
        _check_ranges(
            cert,
            log,
            f"lookups[{i}].partitions",
            lk.get("topic"),
            lk.get("partitions"),
            topic_field=f"lookups[{i}].topic",
        )
        if lk.get("topic") in snapshot and snapshot[lk["topic"]] != lk.get("partitions"):
            cert.refuse(
                f"lookups[{i}].partitions",
                f"expected the run-start range of topic {lk['topic']!r} "
                f"{snapshot[lk['topic']]}, found {lk.get('partitions')}",
            )
    for t, ranges in snapshot.items():
        _check_ranges(cert, log, f"topics.{t}", t, ranges, retained=False)
    return ok and _check_output(cert, log, m)


def _check_output(cert: Refuses, log: Any, m: dict) -> bool:
    out = m.get("output") or {}
    topic = out.get("topic")
    if not isinstance(topic, str) or topic not in log.topics():
        cert.refuse("output.topic", f"names topic {_say(topic)}, which the log does not hold")
        return False
    have = log.arrow_schema(topic).names
    missing = [f["name"] for f in output_avro()["fields"] if f["name"] not in have]
    if missing:
        cert.refuse("output.topic", f"topic {topic!r} is not a replay output topic (it lacks {missing})")
        return False
    ends = log.end_offsets(topic)
    ok = True
    for name in ("start", "end"):
        bounds: Any = out.get(name)
        if bounds is None and name == "end":
            continue
        try:
            parsed = {int(p): int(o) for p, o in bounds.items()}
        except (AttributeError, TypeError, ValueError):
            cert.refuse(f"output.{name}", f"expected {{partition: offset}}, found {_say(bounds)}")
            ok = ok and name == "end"  # without a start the rows cannot be read
            continue
        for p, o in sorted(parsed.items()):
            if p not in ends or not 0 <= o <= ends[p]:
                cert.refuse(
                    f"output.{name}[{p}]",
                    f"expected an offset of topic {topic!r} (partitions {sorted(ends)}, ends {ends}), found {o}",
                )
                ok = ok and name == "end"
    return ok


def check_complete(cert: Refuses, m: dict, found: Found, inputs: dict[int, int], planned: int | None = None) -> None:
    """A complete run's recorded counts, models, streams, progress, output end and hash against
    `found` (recomputed from its rows), `inputs` (inputs in range per partition, from the log) and
    `planned` (offsets in range: the inputs and any hot-swap tokens; default the inputs)."""
    total = sum(inputs.values())
    rows = m.get("rows") or {}
    models = m.get("models") or []
    names = [r.get("name") for r in models]
    for name, want in (
        ("rows.inputs", total),
        ("rows.inputs_planned", total if planned is None else planned),
        ("rows.outputs", found.rows),
    ):
        got = rows.get(name.split(".", 1)[1])
        if got != want:
            cert.refuse(name, f"expected {want:,} (recomputed from the log), found {_say(got)}")
    if len(set(names)) != len(names):
        cert.refuse("models", f"model names must be unique, found {names}")
    for i, r in enumerate(models):
        seen = found.versions.get(r.get("name"))
        if not seen:
            cert.refuse(
                f"models[{i}].name",
                f"the output has no rows of model {_say(r.get('name'))} (it has rows of {sorted(found.versions)})",
            )
        elif seen != {r.get("version")}:
            cert.refuse(
                f"models[{i}].version",
                f"expected {' or '.join(map(repr, sorted(seen)))} (the version in "
                f"model {r.get('name')!r}'s rows), found {_say(r.get('version'))}",
            )
    extra = sorted(set(found.versions) - set(names))
    if extra:
        cert.refuse("models", f"the output has rows of model(s) {extra} the manifest does not list (it lists {names})")
    _check_streams(cert, m.get("streams"), found.streams)
    _check_progress(cert, m.get("progress"), found, inputs)
    out = m.get("output") or {}
    end = out.get("end") or {}
    for p, off in sorted(found.max_offset.items()):
        if str(p) in end and not off < int(end[str(p)]):
            cert.refuse(
                f"output.end[{p}]", f"expected more than {off} (the run has a row at offset {off}), found {end[str(p)]}"
            )
    for p, n in sorted(found.before_start.items()):
        cert.refuse(
            f"output.start[{p}]",
            f"the run has {n:,} row(s) before offset {out['start'][str(p)]}: "
            f"its rows start later than the manifest says",
        )
    if m.get("content_hash") is not None and m.get("content_hash") != found.content_hash:
        cert.refuse(
            "content_hash",
            f"expected {found.content_hash} (the content hash recomputed from the rows), found {m.get('content_hash')}",
        )


def _check_streams(cert: Refuses, recorded: Any, found: dict[str, dict]) -> None:
    if not isinstance(recorded, dict):
        cert.refuse("streams", f"expected {{stream: {{rows, model_version, sha256}}}}, found {_say(recorded)}")
        return
    for key in sorted(set(found) - set(recorded)):
        cert.refuse("streams", f"the output holds stream {key!r} ({found[key]['rows']:,} rows), the manifest does not")
    for key in sorted(set(recorded) - set(found)):
        cert.refuse(f"streams[{key}]", f"the output holds no rows of this stream, the manifest records {recorded[key]}")
    for key in sorted(set(recorded) & set(found)):
        rec = recorded[key] if isinstance(recorded[key], dict) else {}
        for f in ("rows", "model_version", "sha256"):
            if rec.get(f) != found[key][f]:
                cert.refuse(f"streams[{key}].{f}", f"expected {_say(found[key][f])}, found {_say(rec.get(f))}")


def _check_progress(cert: Refuses, recorded: Any, found: Found, inputs: dict[int, int]) -> None:
    if not isinstance(recorded, dict):
        cert.refuse("progress", f"expected {{partition: {{clock, offset, inputs}}}}, found {_say(recorded)}")
        return
    want: dict[str, dict[str, Any]] = {}
    for (p, _), (c, o) in found.last.items():
        prev = want.get(str(p))
        if prev is None or (c, o) > (prev["clock"], prev["offset"]):
            want[str(p)] = {"clock": c, "offset": o, "inputs": inputs.get(p, 0)}
    for key in sorted(set(recorded) | set(want), key=lambda x: (len(x), x)):
        rec, exp = recorded.get(key), want.get(key)
        if exp is None:
            cert.refuse(f"progress[{key}]", f"the output holds no rows of input partition {key}, found {_say(rec)}")
            continue
        rec = rec if isinstance(rec, dict) else {}
        for f in ("clock", "offset", "inputs"):
            if rec.get(f) != exp[f]:
                cert.refuse(
                    f"progress[{key}].{f}",
                    f"expected {exp[f]!r} (the run's last row of partition {key}), found {_say(rec.get(f))}",
                )
