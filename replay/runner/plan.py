"""What a run replays, resolved before anything is written: its models, lookups and `Plan`.

`load_models` imports and checks the models of a new run (`replay.models`); `models_for` those
of a recorded one (rebuilt from their specs, or given and compared with the record);
`plan_from_manifest` is the exact `replay.engine.replayer.Plan` a manifest recorded.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from logstore.errors import ArgumentError
from logstore.timeutil import duration_us

from ..engine.lookups import Ranges, resolve_key, snapshot_topics
from ..engine.replayer import Plan
from ..errors import ModelError, ReplayError
from ..models import check, learns, load, lookups_of, params_hash
from . import manifest as mf


def load_models(models: Any) -> list[tuple[Any, str | None]]:
    """(model, spec or None) for each of `models` (objects, or 'module:factory' specs), checked;
    ModelError when there are none or two share a name."""
    if models is None or isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
        models = [models] if models is not None else []
    if not models:
        raise ModelError("no models to replay: pass models=[model, 'package.module:factory', ...]")
    out: list[tuple[Any, str | None]] = []
    for m in models:
        if isinstance(m, str):
            out.append((load(m), m))
        else:
            check(m)
            out.append((m, None))
    names = [m.name for m, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelError(f"model names must be unique within a run (they become model_id); repeated: {dup}")
    return out


def timedelta_us(value: Any, what: str) -> int | None:
    """A non-negative timedelta (or seconds) in microseconds; None stays None."""
    if value is None:
        return None
    try:
        us = duration_us(value, what)
    except ArgumentError as e:
        raise ReplayError(str(e)) from None
    if us < 0:
        raise ReplayError(f"{what} must not be negative, found {value!r}")
    return us


def check_options(order: str, lateness: Any, workers: Any) -> None:
    """ReplayError unless `order`, `lateness` and `workers` are values `replay.run` accepts."""
    if order not in ("append_time", "event_time"):
        raise ReplayError(f"order must be 'append_time' or 'event_time', found {order!r}")
    if lateness is not None and order != "event_time":
        raise ReplayError("lateness applies to order='event_time' only")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ReplayError(f"workers must be a positive int, found {workers!r}")


def declared_lookups(lookups: Any, loaded: list) -> dict[str, str | None]:
    """The lookup topics of a run, topic -> key field (None: resolved later): those `lookups` names
    (a topic, a list of them, or {topic: key}), then those the models declare."""
    declared: dict[str, str | None] = {}
    if lookups:
        declared.update(
            {lookups: None}
            if isinstance(lookups, str)
            else (dict(lookups) if isinstance(lookups, Mapping) else {t: None for t in lookups})
        )
    for m, _ in loaded:
        for t, k in lookups_of(m).items():
            if declared.get(t) is None:
                declared[t] = k
    return declared


def lookup_keys(log: Any, declared: Mapping[str, str | None], key: str) -> dict[str, str]:
    """The key field each declared lookup topic is indexed by (`replay.engine.lookups.resolve_key`)."""
    return {topic: resolve_key(log, topic, k, key) for topic, k in sorted(declared.items())}


def model_records(loaded: list) -> list[dict]:
    """The manifest's ``models`` entries (computed before anything is written: params_hash may fail)."""
    return [
        {
            "name": m.name,
            "version": m.version,
            "spec": spec,
            "class": f"{type(m).__module__}.{type(m).__qualname__}",
            "params_hash": params_hash(m),
            "learns": learns(m),
            "lookups": sorted(lookups_of(m)),
        }
        for m, spec in loaded
    ]


def all_topics(log: Any, snaps: Mapping[str, Mapping[int, Any]], output: str) -> dict[str, Ranges]:
    """Every topic's range at run start: the snapshots taken for the run's topics, the others now."""
    topics = snapshot_topics(log, exclude=output)
    for t, snap in snaps.items():
        topics[t] = {p: (s.start_offset, s.end_offset) for p, s in sorted(snap.items())}
    return dict(sorted(topics.items()))


def plan_from_manifest(m: dict, run_id: str | None = None, output: str | None = None) -> Plan:
    """The exact plan a manifest recorded (for resume and rerun)."""
    o = m.get("outcomes")
    return Plan(
        run_id=run_id or m["run_id"],
        inputs=m["inputs"]["topic"],
        input_ranges=mf.ranges_from_json(m["inputs"]["partitions"]),
        output=output or m["output"]["topic"],
        outcomes=o["topic"] if o else None,
        outcome_ranges=mf.ranges_from_json(o["partitions"]) if o else {},
        key=m.get("key", "request_id"),
        label=m.get("label", "label"),
        lookups={lk["topic"]: (lk["key"], mf.ranges_from_json(lk["partitions"])) for lk in m.get("lookups", [])},
        topics={t: mf.ranges_from_json(r) for t, r in (m.get("topics") or {}).items()},
        order=m.get("order", "append_time"),
        lateness_us=m.get("lateness_us"),
        event_time_field=m["inputs"].get("event_time_field"),
        seed=int(m.get("seed", 0)),
        code_version=mf.code_version(),
        host=socket.gethostname(),
        horizon_us=m.get("horizon_us"),
    )


def with_topics(log: Any, plan: Plan) -> Plan:
    """`plan` with every topic's range for on-demand lookups: the manifest's (runs recorded before
    manifests had ``topics``: the log's now), never the output topic."""
    topics = dict(plan.topics) if plan.topics else snapshot_topics(log, exclude=plan.output)
    topics.pop(plan.output, None)
    topics.update({t: r for t, (_, r) in plan.lookups.items()})
    return replace(plan, topics=dict(sorted(topics.items())))


def models_for(m: dict, models: Any) -> list[tuple[Any, str | None]]:
    """The models of a manifest: rebuilt from their specs, or the given ones checked against it."""
    recorded = m["models"]
    if models is None:
        missing = [r["name"] for r in recorded if not r.get("spec")]
        if missing:
            raise ModelError(
                f"run {m['run_id']}: model(s) {missing} were given as objects, not 'module:factory' "
                f"specs; pass models=[...] to resume or rerun it"
            )
        loaded = [(load(r["spec"]), r["spec"]) for r in recorded]
    else:
        loaded = load_models(models)
    if [x.name for x, _ in loaded] != [r["name"] for r in recorded]:
        raise ModelError(
            f"run {m['run_id']} recorded models {[r['name'] for r in recorded]}, given {[x.name for x, _ in loaded]}"
        )
    for (x, _), r in zip(loaded, recorded):
        if x.version != r["version"] or params_hash(x) != r["params_hash"]:
            raise ModelError(
                f"model {x.name!r} is not the one run {m['run_id']} recorded: version {x.version} "
                f"(recorded {r['version']}), params {params_hash(x)} (recorded {r['params_hash']})"
            )
    return loaded
