"""`counterfactual`: read the decisions, scores, inputs and outcomes; apply the rule; summarize."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ReplayTypeError, ReplayValueError
from .arrivals import CLOCKS, decision_records, load_requests
from .quality import known_labels, quality
from .result import Counterfactual, requests_table, summarize
from .scenario import DEFAULT, Answer, Rule, as_config, resolve

__all__ = ["counterfactual"]


def _utc(cutoff: dt.datetime | None) -> dt.datetime:
    if cutoff is None:
        return dt.datetime.now(dt.UTC)
    if not isinstance(cutoff, dt.datetime):
        raise ReplayTypeError(f"cutoff must be a datetime, not {type(cutoff).__name__}")
    return cutoff.replace(tzinfo=dt.UTC) if cutoff.tzinfo is None else cutoff.astimezone(dt.UTC)


def _in_order(table: pa.Table) -> pa.Table:
    """Decisions in the order the log appended them (append time, then partition and offset)."""
    if table.num_rows == 0:
        return table
    keys = [("_append_time", "ascending"), ("_partition", "ascending"), ("_offset", "ascending")]
    return table.take(pc.sort_indices(table, sort_keys=keys))


def counterfactual(
    log: Any,
    *,
    schedule: Any = None,
    sla_ms: float | None = None,
    default: Any = None,
    config: Any = None,
    overhead_ms: float | None = None,
    selection: Any = None,
    start: Any = None,
    end: Any = None,
    cutoff: dt.datetime | None = None,
    clock: str = "append_time",
    task: str = "auto",
    threshold: float = 0.5,
    decisions: str | None = None,
    scores: str | None = None,
    outcomes: str | None = None,
    inputs: str | None = None,
) -> Counterfactual:
    """What each decided request would have been answered with under another schedule, SLA,
    overhead, default or selection, beside what was served (package docstring).

    `log` is a logstore Log or a log directory's path. `schedule` is a string
    (``"m3,m2@20,m1@35"``: MODEL[@AFTER_MS], model an id or "id:version") or a list of
    ``{"model", "after_ms"}`` mappings or `rendezvous.config.Step`s; `default` is the default
    answer's score, or ``{"score": ...}``; `selection` a policy name ("schedule", "thompson",
    "epsilon"), a ``[selection]`` mapping or a `rendezvous.config.Selection`; `config` a
    rendezvous `Config`, a mapping or a TOML path, which supplies whatever the other arguments
    leave out (its topic names too). Unspecified: as recorded, per request, so with nothing
    changed every request keeps its served answer.

    `start`/`end` bound the decisions read (offsets or append times, as `Log.read`); `cutoff`
    (default now) fences the outcomes by append time; `clock` ("append_time" or "event_time") is
    the clock arrivals after the decision are reconstructed on (`arrivals.py`); `task` and
    `threshold` are the quality metrics' (`replay.evaluate`'s). Errors: `ConfigError` (a
    ValueError naming the key), `ReplayValueError`, `ReplayTypeError`, `TopicNotFoundError`.
    """
    if clock not in CLOCKS:
        raise ReplayValueError(f"clock must be one of {', '.join(map(repr, CLOCKS))}, found {clock!r}")
    cfg = as_config(config)
    scenario = resolve(
        schedule=schedule,
        sla_ms=sla_ms,
        default=default,
        config=cfg,
        overhead_ms=overhead_ms,
        selection=selection,
    )
    topics = cfg.topics if cfg is not None else None
    decisions = decisions or (topics.decisions if topics else "decisions")
    scores = scores or (topics.scores if topics else "scores")
    outcomes = outcomes or (topics.outcomes if topics else "outcomes")
    inputs = inputs or (topics.inputs if topics else "inputs")
    fence = _utc(cutoff)

    if isinstance(log, (str, os.PathLike)):
        import logstore

        with logstore.open(log, readonly=True) as opened:
            return counterfactual(
                opened,
                schedule=schedule,
                sla_ms=sla_ms,
                default=default,
                config=cfg,
                overhead_ms=overhead_ms,
                selection=selection,
                start=start,
                end=end,
                cutoff=fence,
                clock=clock,
                task=task,
                threshold=threshold,
                decisions=decisions,
                scores=scores,
                outcomes=outcomes,
                inputs=inputs,
            )

    table = _in_order(log.read(decisions, start, end))
    records = decision_records(table, clock)
    requests, recon = load_requests(log, records, scores=scores, inputs=inputs, clock=clock)
    shown = [r for r in records if r["chosen_model"] == DEFAULT and r.get("score") is not None]
    rule = Rule(scenario, log_default=float(shown[-1]["score"]) if shown else None)
    served = [Answer.served(r.record) for r in requests]
    cf = [rule.decide(r) for r in requests]
    have_outcomes = outcomes in log.topics()
    known = known_labels(log, outcomes, fence) if have_outcomes else {}
    labels = [known.get(r.request_id) for r in requests]
    out = requests_table([r.request_id for r in requests], table.column("event_time").to_pylist(), served, cf, labels)
    q = None
    if have_outcomes:
        q = quality([a.score for a in served], [a.score for a in cf], labels, task=task, threshold=threshold)
    params = {
        "scenario": scenario.describe(),
        **scenario.to_dict(),
        "clock": clock,
        "cutoff": fence.isoformat(),
        "start": None if start is None else str(start),
        "end": None if end is None else str(end),
        "topics": {"decisions": decisions, "scores": scores, "inputs": inputs, "outcomes": outcomes},
    }
    return Counterfactual(out, summarize(out, q, recon.to_dict()), params)
