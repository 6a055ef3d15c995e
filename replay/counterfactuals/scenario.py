"""What a counterfactual changes, and the rendezvous rule applied to one request under it.

A `Scenario` holds the parameters; each one left None is *as recorded, per request*: the SLA
(``sla_ms``), the overhead allowance (``overhead_ms``), the selection policy (``policy``), the
default answer's score (the request's own, if it was served the default, else the log's). The
schedule is not in the decision records: without one (`schedule` or `config`), the answers are
the served ones, only a changed default score applied to the requests that got the default.

Validation is the live config's (`rendezvous.config.Config`: ``after_ms`` in order, no model
listed twice, a number where a number is due); a `ConfigError` (a ValueError) names the key and
why. Unlike a live config, an entry may come after the SLA: under a shorter SLA it is simply never
acceptable (that is the question asked).

`Rule.decide` is `rendezvous.policy.Policy.replay` on the request's arrivals (`arrivals.py`) with
the deadline H = SLA - overhead (the recorded H when neither changes, so the record's own
rounding stands). Sampling selectors (``thompson``, ``epsilon``) draw as the service does, from
the seed of (request id, recorded policy version); the probabilities are the recorded
propensities when the policy is the recorded one and they cover the candidates (renormalised over
them when the set differs: ``draw = "recorded"``), else the selector's prior probabilities
(``draw = "prior"``: the posterior the service had is not in the log).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rendezvous.config import Config, Selection, Step, load_config, parse_config
from rendezvous.policy import Choice, Policy, record_ms

from ..errors import ReplayTypeError, ReplayValueError
from .arrivals import Request

__all__ = ["Answer", "Rule", "Scenario", "as_config", "deadline_ms", "parse_schedule", "resolve"]

SCHEDULE_FORM = 'MODEL[@AFTER_MS],... (e.g. "m3,m2@20,m1:1.0@35")'
DEFAULT = "default"
# the SLA the schedule is validated and the rule's policies built with: per request, H decides
# (an entry past it is never acceptable)
_NO_SLA = sys.float_info.max


def parse_schedule(text: str) -> list[dict[str, Any]]:
    """``"m3,m2@20"`` -> ``[{"model": "m3", "after_ms": 0.0}, {"model": "m2", "after_ms": 20.0}]``."""
    steps: list[dict[str, Any]] = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        model, sep, after = part.partition("@")
        if not model:
            raise ReplayValueError(f"schedule entry {i + 1} of {text!r} names no model; expected {SCHEDULE_FORM}")
        try:
            ms = float(after) if sep else 0.0
        except ValueError:
            raise ReplayValueError(
                f"schedule entry {i + 1} of {text!r}: after_ms {after!r} is not a number; expected {SCHEDULE_FORM}"
            ) from None
        steps.append({"model": model.strip(), "after_ms": ms})
    return steps


def _steps(schedule: Any) -> list[dict[str, Any]]:
    if isinstance(schedule, str):
        return parse_schedule(schedule)
    if not isinstance(schedule, Sequence):
        raise ReplayTypeError(f"schedule must be a string ({SCHEDULE_FORM}) or a list, not {type(schedule).__name__}")
    out: list[dict[str, Any]] = []
    for i, s in enumerate(schedule):
        if isinstance(s, Step):
            out.append({"model": s.model, "after_ms": s.after_ms})
        elif isinstance(s, str):
            out.extend(parse_schedule(s))
        elif isinstance(s, Mapping):
            out.append(dict(s))
        else:
            raise ReplayTypeError(f"schedule[{i}] must be a Step, a mapping or a string, not {type(s).__name__}")
    return out


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ReplayValueError(f"{name} must be a finite number, found {value!r}")
    return float(value)


def as_config(config: Any) -> Config | None:
    """`config` as a `Config`: one, a mapping as TOML gives it, or a TOML file's path."""
    if config is None or isinstance(config, Config):
        return config
    if isinstance(config, (str, os.PathLike)):
        return load_config(config, decoy_only=True)
    if isinstance(config, Mapping):
        return parse_config(config, decoy_only=True)
    raise ReplayTypeError(f"config must be a Config, a mapping or a TOML path, not {type(config).__name__}")


def _selection(selection: Any) -> Selection | None:
    if selection is None or isinstance(selection, Selection):
        return selection
    if isinstance(selection, str):
        return Selection(policy=selection)
    if isinstance(selection, Mapping):
        return parse_config({"sla_ms": 1.0, "selection": dict(selection)}, decoy_only=True).selection
    raise ReplayTypeError(f"selection must be a policy name, a mapping or a Selection, not {type(selection).__name__}")


@dataclass(frozen=True)
class Scenario:
    """The counterfactual's parameters; None: as recorded, per request (module docstring)."""

    schedule: tuple[Step, ...] | None = None
    sla_ms: float | None = None
    overhead_ms: float | None = None
    default_score: float | None = None
    selection: Selection | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": None if self.schedule is None else [f"{s.model}@{s.after_ms:g}" for s in self.schedule],
            "sla_ms": self.sla_ms,
            "overhead_ms": self.overhead_ms,
            "default_score": self.default_score,
            "selection": None if self.selection is None else self.selection.policy,
        }

    def describe(self) -> str:
        """One line: what changes (``recorded`` for what does not)."""
        d = self.to_dict()
        sched = "recorded" if d["schedule"] is None else ", ".join(d["schedule"]) or "none (the default)"
        parts = [f"schedule {sched}"]
        for key, label, unit in (("sla_ms", "SLA", " ms"), ("overhead_ms", "overhead", " ms")):
            parts.append(f"{label} " + ("recorded" if d[key] is None else f"{d[key]:g}{unit}"))
        parts.append("default score " + ("recorded" if d["default_score"] is None else f"{d['default_score']:g}"))
        parts.append("selection " + (d["selection"] or "recorded"))
        return ", ".join(parts)


def resolve(
    *,
    schedule: Any = None,
    sla_ms: float | None = None,
    default: Any = None,
    config: Any = None,
    overhead_ms: float | None = None,
    selection: Any = None,
) -> Scenario:
    """The scenario the arguments ask for: each given argument over `config` (a `Config`, a
    mapping as TOML gives it, or a TOML path) over the record. Raises `ConfigError` (a
    ValueError naming the key) or `ReplayValueError`/`ReplayTypeError`."""
    cfg = as_config(config)
    steps = _steps(schedule) if schedule is not None else None
    if steps is None and cfg is not None:
        steps = [{"model": s.model, "after_ms": s.after_ms} for s in cfg.schedule]
    sla = _number("sla_ms", sla_ms) if sla_ms is not None else (cfg.sla_ms if cfg is not None else None)
    overhead = _number("overhead_ms", overhead_ms) if overhead_ms is not None else None
    if overhead is None and cfg is not None:
        overhead = cfg.overhead_ms
    if isinstance(default, Mapping):
        if "score" not in default:
            raise ReplayValueError(f"default must have a 'score' (the default answer's score), found {dict(default)!r}")
        default = default["score"]
    score = _number("default.score", default) if default is not None else None
    if score is None and cfg is not None:
        d = cfg.default.get("score")
        score = float(d) if isinstance(d, (int, float)) else None
    sel = _selection(selection)
    if sel is None and cfg is not None:
        sel = cfg.selection
    if steps is None and (sla is not None or overhead is not None or sel is not None):
        raise ReplayValueError(
            "a changed SLA, overhead or selection needs the schedule (give a schedule or a config): decision "
            "records name what was served, not the schedule that served it"
        )
    if overhead is not None and overhead < 0:
        raise ReplayValueError(f"overhead_ms must be >= 0, found {overhead!r}")
    if steps is None:
        return Scenario(default_score=score)
    if sla is not None and overhead is not None and overhead >= sla:
        raise ReplayValueError(f"overhead_ms {overhead:g} leaves no time within sla_ms {sla:g}")
    # the live config's validation of the schedule (ConfigError names the key)
    checked = parse_config({"sla_ms": _NO_SLA, "schedule": steps}, decoy_only=True)
    if sel is not None:
        checked = replace(checked, selection=sel)  # Config validates the selection table too
    return Scenario(checked.schedule, sla, overhead, score, sel)


def deadline_ms(sla_ms: float, overhead_ms: float) -> float:
    """H = sla - overhead, never below 0, rounded down to the record's precision
    (as `rendezvous.policy.Policy.deadline_ms`)."""
    h = max(0.0, sla_ms - overhead_ms)
    q = record_ms(h)
    return q if q <= h else float(np.nextafter(np.float32(q), np.float32(-np.inf)))


def _same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and record_ms(a) == record_ms(b)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request is answered with, on one side (served or counterfactual)."""

    model: str  # "model_id:model_version" or "default"
    reason: str
    ms: float  # the decision moment, ms after the request arrived
    score: float | None
    propensity: float
    deadline_ms: float
    candidates: tuple[str, ...] = ()
    draw: str = ""  # sampled: "recorded" or "prior" propensities; "" otherwise
    reconstructed: bool = False  # the answer's arrival was reconstructed from the log's clock

    @classmethod
    def served(cls, record: Mapping[str, Any]) -> Answer:
        """The answer a decision record says was served."""
        decided = record.get("decided_ms")
        score = record.get("score")
        return cls(
            str(record["chosen_model"]),
            str(record["reason"]),
            math.nan if decided is None else float(decided),
            None if score is None else float(score),
            float(record.get("propensity", 1.0)),
            float(record["deadline_ms"]),
            tuple(record.get("candidates") or ()),
        )


@dataclass
class Rule:
    """The rendezvous rule under a `Scenario`, one request at a time (module docstring)."""

    scenario: Scenario
    log_default: float | None = None  # the default score the log's records show, if any
    _policies: dict[str, Policy] = field(default_factory=dict)

    def policy(self, name: str) -> Policy:
        p = self._policies.get(name)
        if p is None:
            sched = self.scenario.schedule or ()
            sel = self.scenario.selection
            if sel is None or sel.policy != name:
                sel = Selection(policy=name)
            p = self._policies[name] = Policy(Config(sla_ms=_NO_SLA, schedule=sched, selection=sel))
        return p

    def deadline(self, record: Mapping[str, Any]) -> float:
        """The request's H under the scenario (the recorded one when SLA and overhead stay)."""
        h_rec = float(record["deadline_ms"])
        sla_rec = record.get("sla_ms")
        over_rec = record.get("overhead_ms")
        if over_rec is None and sla_rec is not None:
            over_rec = float(sla_rec) - h_rec
        sla = self.scenario.sla_ms if self.scenario.sla_ms is not None else sla_rec
        over = self.scenario.overhead_ms if self.scenario.overhead_ms is not None else over_rec
        if sla is None or (_same(sla, sla_rec) and _same(over if over is not None else 0.0, over_rec)):
            return h_rec
        return deadline_ms(float(sla), float(over or 0.0))

    def default_score(self, record: Mapping[str, Any]) -> float | None:
        if self.scenario.default_score is not None:
            return self.scenario.default_score
        if record.get("chosen_model") == DEFAULT and record.get("score") is not None:
            return float(record["score"])
        return self.log_default

    def decide(self, request: Request) -> Answer:
        """The request's counterfactual answer."""
        rec = request.record
        if self.scenario.schedule is None:  # nothing to recompute (module docstring)
            ans = Answer.served(rec)
            return replace(ans, score=self.default_score(rec)) if ans.model == DEFAULT else ans
        rid = request.request_id
        h = self.deadline(rec)
        arrivals = {k: s.arrival_ms for k, s in request.scores.items() if s.ok}
        failed = {k: s.arrival_ms for k, s in request.scores.items() if not s.ok}
        version = int(rec.get("policy_version") or 0)
        name = self.scenario.selection.policy if self.scenario.selection is not None else str(rec.get("policy"))
        choice = self.policy("schedule").replay(rid, arrivals, failed, h, version)
        draw = ""
        policy = self.policy(name if name in ("thompson", "epsilon") else "schedule")
        if policy.selector.sampling and len(choice.candidates) > 1:
            probs, draw = self._propensities(policy, rec, choice.candidates)
            choice = policy.replay(rid, arrivals, failed, h, version, probs)
        return self._answer(request, choice, draw)

    def _propensities(
        self, policy: Policy, record: Mapping[str, Any], candidates: tuple[str, ...]
    ) -> tuple[dict[str, float], str]:
        recorded: dict[str, float] = record.get("propensities") or {}
        if policy.selector.policy == record.get("policy") and all(c in recorded for c in candidates):
            if tuple(record.get("candidates") or ()) == candidates:
                return dict(recorded), "recorded"
            total = sum(recorded[c] for c in candidates)
            if total > 0:
                return {c: recorded[c] / total for c in candidates}, "recorded"
        return dict(policy.selector.probabilities(candidates, 0)), "prior"

    def _answer(self, request: Request, choice: Choice, draw: str) -> Answer:
        rec = request.record
        chosen = choice.chosen
        if chosen is None:
            score, rebuilt = self.default_score(rec), False
        else:
            s = request.scores[chosen]
            score = s.score
            if chosen == rec.get("chosen_model") and rec.get("score") is not None:
                score = float(rec["score"])
            rebuilt = not s.recorded
        return Answer(
            choice.chosen_model,
            choice.reason,
            float(choice.decided_ms),
            score,
            float(choice.propensity),
            float(choice.deadline_ms),
            choice.candidates,
            draw,
            rebuilt,
        )
