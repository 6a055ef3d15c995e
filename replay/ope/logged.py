"""Off-policy evaluation from a log: the arrays of `replay.ope.estimate`, built from the decisions
and outcomes topics, for a target policy given as a function or as a rendezvous config.

A round is a decision (schemas/decision.avsc) whose request has an outcome known by the cut-off:

- outcomes count only if appended at or before ``cutoff`` (an aware datetime or microseconds since
  the epoch, compared with ``_append_time``; None: every outcome); a request's reward is the
  `reward` field (``"label"`` or ``"reward"``) of its first such outcome (append order) where that
  field is not null. Decisions without one are dropped and counted (``n_without_outcome``); a
  request decided twice keeps its first decision (``n_duplicates``). Rounds are in the append
  order of the decisions (append time, partition, offset), the order the bootstrap resamples.
- actions are the sorted union of every key of the logged ``propensities`` maps, of the models
  whose score had arrived (``arrivals``: a target may serve them), the chosen models and
  ``"default"``; a target naming any other key is refused. The logged action is
  ``chosen_model``, its pscore the decision's ``propensity``; there is one position.
- the target is a callable ``target(record) -> {action: probability}`` (the decision record as a
  dict, maps as dicts; probabilities summing to 1 over keys of the action set), or a config (a
  `rendezvous.config.Config`, or a mapping parsed with `parse_config`) replayed with
  ``Policy(config).replay_record(record)``: a deterministic choice puts probability 1 on the chosen
  key, a sampled one takes the choice's propensities (for a sampled record, the logged ones: the
  selector's posteriors are not in the log).

Estimates need logged exploration. With deterministic logging (the schedule policy: propensity 1.0
on the one model served) a target that would serve another model has weight 0 on every round, so
IPW/SNIPW cannot see it and DR falls back on its reward model where nothing was observed: log
with a sampling policy (thompson or epsilon, which floor every eligible model's probability at
``min_propensity``) to evaluate targets that differ. A note says so, as it says when the effective
sample size is under 10% of the rounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from rendezvous.config import Config, parse_config
from rendezvous.policy import Policy

from .errors import OPEValueError
from .estimators import ESTIMATORS, OPEResult, estimate

__all__ = ["LoggedArrays", "PolicyEvaluation", "Target", "build_arrays", "evaluate_policy", "target_function"]

Target = Callable[[dict[str, Any]], Mapping[str, float]] | Config | Mapping[str, Any]
DEFAULT = "default"
_SUM_TOL = 1e-6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LoggedArrays:
    """The rounds of a log as `estimate` takes them (``position`` is None: one position)."""

    request_ids: tuple[str, ...]
    actions: tuple[str, ...]  # index -> action key
    action: np.ndarray  # (n,) int
    reward: np.ndarray  # (n,) float
    pscore: np.ndarray  # (n,) float
    action_dist: np.ndarray  # (n, k, 1)
    n_decisions: int  # distinct requests decided
    n_without_outcome: int
    n_duplicates: int

    def estimate_kwargs(self) -> dict[str, Any]:
        return {"action": self.action, "reward": self.reward, "pscore": self.pscore, "action_dist": self.action_dist}


@dataclass(frozen=True, eq=False, repr=False)
class PolicyEvaluation(OPEResult):
    """An `OPEResult` of a log, with what it rests on: the action keys, the requests decided and
    those dropped for lack of an outcome by the cut-off (``n_used`` = ``n`` rounds estimated on)."""

    actions: tuple[str, ...] = ()
    n_decisions: int = 0
    n_without_outcome: int = 0
    n_duplicates: int = 0

    @property
    def n_used(self) -> int:
        return self.n


def _cutoff(cutoff: datetime | int | None) -> datetime | None:
    if cutoff is None:
        return None
    if isinstance(cutoff, datetime):
        if cutoff.tzinfo is None:
            raise OPEValueError("cutoff", f"expected an aware datetime (UTC), found naive {cutoff!r}")
        return cutoff
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, np.integer)):
        raise OPEValueError("cutoff", f"expected a datetime, microseconds since the epoch or None, found {cutoff!r}")
    return _EPOCH + timedelta(microseconds=int(cutoff))


def _read(log: Any, topic: str, argument: str) -> list[dict[str, Any]]:
    if not isinstance(topic, str) or not topic:
        raise OPEValueError(argument, f"expected a topic name, found {topic!r}")
    if topic not in log.topics():
        raise OPEValueError(argument, f"no topic {topic!r} in the log")
    rows: list[dict[str, Any]] = log.read(topic).to_pylist(maps_as_pydicts="strict")
    return rows


def _append_order(row: Mapping[str, Any]) -> tuple[Any, int, int]:
    return (row["_append_time"], row["_partition"], row["_offset"])


def _known_rewards(rows: list[dict[str, Any]], field: str, cutoff: datetime | None) -> dict[str, float]:
    """request id -> the reward of its first outcome (append order) known by the cut-off."""
    ordered = sorted(rows, key=_append_order)
    out: dict[str, float] = {}
    for o in ordered:
        if cutoff is not None and o["_append_time"] > cutoff:
            break
        value = o.get(field)
        if value is None or o["request_id"] in out:
            continue
        value = float(value)
        if not math.isfinite(value):
            raise OPEValueError("outcomes", f"request {o['request_id']!r}: {field} is {value}, not a finite reward")
        out[o["request_id"]] = value
    return out


def target_function(target: Target) -> Callable[[dict[str, Any]], Mapping[str, float]]:
    """`target` as a function of the decision record (module docstring); configs are replayed."""
    if isinstance(target, Config) or isinstance(target, Mapping):
        try:
            config = target if isinstance(target, Config) else parse_config(target)
        except ValueError as exc:
            raise OPEValueError("target", f"not a usable rendezvous config ({exc})") from None
        policy = Policy(config)

        def replayed(record: dict[str, Any]) -> Mapping[str, float]:
            choice = policy.replay_record(record)
            if choice.propensity >= 1.0 or len(choice.propensities) <= 1:
                return {choice.chosen_model: 1.0}
            return dict(choice.propensities)

        return replayed
    if callable(target):
        return target
    raise OPEValueError(
        "target", f"expected a function of the decision record or a config, found {type(target).__name__}"
    )


def _target_row(answer: Any, index: Mapping[str, int], request_id: str) -> np.ndarray:
    if not isinstance(answer, Mapping) or not answer:
        raise OPEValueError(
            "target", f"request {request_id!r}: expected a non-empty {{action: probability}} mapping, found {answer!r}"
        )
    row = np.zeros(len(index))
    for key, prob in answer.items():
        if key not in index:
            raise OPEValueError(
                "target",
                f"request {request_id!r}: unknown action {key!r} (the logged actions are {sorted(index)}; "
                "no logged decision had it eligible or arrived, so it cannot be evaluated)",
            )
        p = float(prob)
        if not math.isfinite(p) or p < 0:
            raise OPEValueError("target", f"request {request_id!r}: probability {prob!r} of {key!r} is not in [0, 1]")
        row[index[key]] += p
    total = row.sum()
    if abs(total - 1) > _SUM_TOL:
        raise OPEValueError("target", f"request {request_id!r}: probabilities sum to {total}, not 1")
    return row


def build_arrays(
    log: Any,
    target: Target,
    *,
    decisions: str = "decisions",
    outcomes: str = "outcomes",
    cutoff: datetime | int | None = None,
    reward: str = "label",
) -> LoggedArrays:
    """The arrays `estimate` takes, from the log's decisions and outcomes (module docstring)."""
    if reward not in ("label", "reward"):
        raise OPEValueError("reward", f"expected 'label' or 'reward' (an outcome field), found {reward!r}")
    known = _known_rewards(_read(log, outcomes, "outcomes"), reward, _cutoff(cutoff))
    fn = target_function(target)
    first: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for d in sorted(_read(log, decisions, "decisions"), key=_append_order):
        if d["request_id"] in first:
            duplicates += 1
        else:
            first[d["request_id"]] = d
    keys = {DEFAULT}
    for d in first.values():
        keys.update(d.get("propensities") or {})
        keys.update(d.get("arrivals") or {})
        keys.add(d["chosen_model"])
    actions = tuple(sorted(keys))
    index = {a: i for i, a in enumerate(actions)}
    used = [d for d in first.values() if d["request_id"] in known]
    if not used:
        raise OPEValueError(
            "outcomes",
            f"none of the {len(first)} decisions of {decisions!r} has a {reward} in {outcomes!r} known by the cut-off",
        )
    dist = np.zeros((len(used), len(actions), 1))
    pscore = np.empty(len(used))
    for i, d in enumerate(used):
        rid = d["request_id"]
        p = float(d["propensity"])
        if not 0 < p <= 1:
            raise OPEValueError("decisions", f"request {rid!r}: propensity {p} is not in (0, 1]")
        pscore[i] = p
        dist[i, :, 0] = _target_row(fn(d), index, rid)
    return LoggedArrays(
        request_ids=tuple(d["request_id"] for d in used),
        actions=actions,
        action=np.array([index[d["chosen_model"]] for d in used], dtype=np.int64),
        reward=np.array([known[d["request_id"]] for d in used]),
        pscore=pscore,
        action_dist=dist,
        n_decisions=len(first),
        n_without_outcome=len(first) - len(used),
        n_duplicates=duplicates,
    )


def evaluate_policy(
    log: Any,
    target: Target,
    *,
    decisions: str = "decisions",
    outcomes: str = "outcomes",
    cutoff: datetime | int | None = None,
    reward: str = "label",
    estimators: Sequence[str] | str = ESTIMATORS,
    intervals: bool = False,
    alpha: float = 0.05,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> PolicyEvaluation:
    """The value of `target` on the log's decided requests with outcomes known by `cutoff`, by
    each estimator (`replay.ope.estimate` on `build_arrays`; DR fits its reward model)."""
    arrays = build_arrays(log, target, decisions=decisions, outcomes=outcomes, cutoff=cutoff, reward=reward)
    res = estimate(
        **arrays.estimate_kwargs(),
        estimators=estimators,
        intervals=intervals,
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    notes = list(res.notes)
    if (arrays.pscore >= 1.0).all() and res.ess < res.n:
        notes.append(
            "every logged decision was deterministic (propensity 1.0): rounds where the target would "
            "serve another model carry no information; log with thompson or epsilon selection"
        )
    if arrays.n_without_outcome:
        notes.append(f"{arrays.n_without_outcome} of {arrays.n_decisions} decisions have no outcome by the cut-off")
    return PolicyEvaluation(
        res.estimates,
        res.n,
        res.ess,
        res.alpha,
        res.n_bootstrap,
        tuple(notes),
        actions=arrays.actions,
        n_decisions=arrays.n_decisions,
        n_without_outcome=arrays.n_without_outcome,
        n_duplicates=arrays.n_duplicates,
    )
