"""The rendezvous configuration: a TOML file, validated where it enters.

    sla_ms = 50                       # an answer is always given within this
    default = { score = 0.0 }         # the answer when no model answered in time
    durability = "flush"              # or "fsync": how decisions are committed before the answer
    overhead_ms = 2.0                 # optional fixed overhead allowance; absent: measured
    metrics_interval_s = 60
    [[schedule]]                      # m3 first; after 20 ms m2 if it has answered; after 35 ms m1
    model = "m3"                      # a model id (any version) or "id:version" (that version only)
    after_ms = 0
    [[schedule]]
    model = "m2"
    after_ms = 20
    [[schedule]]
    model = "m1"
    after_ms = 35
    [selection]                       # optional: how to choose among models acceptable at one moment
    policy = "thompson"               # "schedule" (default) | "thompson" | "epsilon"
    reward = "label"                  # the outcome field rewarded: "label" (Beta) | "reward" (Gaussian)
    epsilon = 0.1                     # "epsilon" only: the share spread evenly over the eligible models
    min_propensity = 0.001            # no eligible model is ever chosen with a lower probability
    prior = { alpha = 1, beta = 1 }   # Beta prior; Gaussian: { mean = 0, sd = 1, noise_sd = 1 }
    [topics]                          # optional: topic names (these are the defaults)
    inputs = "inputs"
    scores = "scores"
    decisions = "decisions"
    outcomes = "outcomes"
    metrics = "metrics"

Invariants `parse_config` guarantees (each refusal is a `ConfigError` naming the key and why):
unknown keys are refused at every level; ``0 <= after_ms < sla_ms`` and the schedule is in order of
``after_ms`` (so "earliest acceptable, ties in schedule order" never skips an earlier entry that has
answered); no model is listed twice, neither as "m" and "m:v"; ``overhead_ms < sla_ms``. A config
without a schedule always serves the default, which only a decoy wants: it is refused unless
``decoy_only=True``.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from logstore.errors import InvalidNameError
from logstore.names import validate_name

__all__ = [
    "Config",
    "ConfigError",
    "Prior",
    "Selection",
    "Step",
    "Topics",
    "load_config",
    "parse_config",
    "split_model",
]

POLICIES = ("schedule", "thompson", "epsilon")
REWARDS = ("label", "reward")
FAMILIES = ("auto", "beta", "gaussian")
DURABILITIES = ("flush", "fsync")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


def split_model(model: str) -> tuple[str, str | None]:
    """``"m3"`` -> ``("m3", None)`` (any version); ``"m3:1.0"`` -> ``("m3", "1.0")``."""
    mid, sep, version = model.partition(":")
    return mid, (version if sep else None)


@dataclass(frozen=True)
class Step:
    """One schedule entry: `model` becomes acceptable `after_ms` after the request arrived."""

    model: str
    after_ms: float = 0.0

    @property
    def model_id(self) -> str:
        return split_model(self.model)[0]

    @property
    def version(self) -> str | None:
        """The one version this entry accepts, or None for any version of `model_id`."""
        return split_model(self.model)[1]

    def matches(self, key: str) -> bool:
        """Whether a score from `key` (``"model_id:model_version"``) answers for this entry."""
        mid, version = split_model(key)
        return mid == self.model_id and (self.version is None or version == self.version)


@dataclass(frozen=True)
class Prior:
    """Priors of the selection posteriors: Beta(alpha, beta) for rewards in [0, 1]; for other rewards
    Normal(mean, sd**2) on each model's mean reward, with noise `noise_sd` (None: estimated)."""

    alpha: float = 1.0
    beta: float = 1.0
    mean: float = 0.0
    sd: float = 1.0
    noise_sd: float | None = None


@dataclass(frozen=True)
class Selection:
    """How to choose when more than one model is acceptable at the decision moment."""

    policy: str = "schedule"  # "schedule" | "thompson" | "epsilon"
    reward: str = "label"  # the outcome field used as reward: "label" | "reward"
    epsilon: float = 0.1
    prior: Prior = field(default_factory=Prior)
    family: str = "auto"  # "beta" | "gaussian"; auto: beta for "label", gaussian for "reward"
    min_propensity: float = 1e-3  # the floor: no eligible model is chosen with lower probability
    snapshot_interval_s: float = 10.0  # how often observed rewards are folded into a new posterior

    @property
    def resolved_family(self) -> str:
        if self.family != "auto":
            return self.family
        return "beta" if self.reward == "label" else "gaussian"


@dataclass(frozen=True)
class Topics:
    """Topic names the service reads and writes."""

    inputs: str = "inputs"
    scores: str = "scores"
    decisions: str = "decisions"
    outcomes: str = "outcomes"
    metrics: str = "metrics"


@dataclass(frozen=True)
class Config:
    """A validated rendezvous config (see the module docstring for the file and the invariants)."""

    sla_ms: float
    default: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"score": 0.0}))
    schedule: tuple[Step, ...] = ()
    selection: Selection = field(default_factory=Selection)
    topics: Topics = field(default_factory=Topics)
    durability: str = "flush"  # or "fsync"
    overhead_ms: float | None = None  # a fixed overhead allowance; None: the service measures it
    metrics_interval_s: float = 60.0

    def __post_init__(self) -> None:
        _check_config(self)
        # numbers as floats from here on (TOML gives ints for 50)
        object.__setattr__(self, "sla_ms", float(self.sla_ms))
        object.__setattr__(self, "schedule", tuple(Step(s.model, float(s.after_ms)) for s in self.schedule))
        if self.overhead_ms is not None:
            object.__setattr__(self, "overhead_ms", float(self.overhead_ms))
        object.__setattr__(self, "metrics_interval_s", float(self.metrics_interval_s))


# ---- validation ---------------------------------------------------------------------------------


def _number(key: str, value: Any, *, low: float | None = None, strict_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"expected a number, found {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(key, f"expected a finite number, found {value!r}")
    if low is not None and (v < low or (strict_low and v == low)):
        raise ConfigError(key, f"must be {'>' if strict_low else '>='} {low:g}, found {value!r}")
    return v


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(key, f"expected one of {', '.join(map(repr, allowed))}, found {value!r}")
    return str(value)


def _check_config(c: Config) -> None:
    sla = _number("sla_ms", c.sla_ms, low=0.0, strict_low=True)
    if "score" in c.default:
        _number("default.score", c.default["score"])
    for i, step in enumerate(c.schedule):
        key = f"schedule[{i}]"
        mid, version = split_model(step.model) if isinstance(step.model, str) else ("", None)
        if not mid or version == "" or (version is not None and ":" in version):
            raise ConfigError(f"{key}.model", f'expected "model_id" or "model_id:version", found {step.model!r}')
        after = _number(f"{key}.after_ms", step.after_ms, low=0.0)
        if after >= sla:
            raise ConfigError(
                f"{key}.after_ms", f"{after:g} is not before sla_ms {sla:g}: {step.model} could never be served"
            )
        for j, earlier in enumerate(c.schedule[:i]):
            if after < earlier.after_ms:
                raise ConfigError(
                    f"{key}.after_ms",
                    f"{after:g} is before schedule[{j}]'s {earlier.after_ms:g}: list the schedule in order of after_ms",
                )
            if earlier.model_id == mid and (earlier.version is None or version is None or earlier.version == version):
                raise ConfigError(
                    f"{key}.model", f"{step.model!r} is already scheduled as schedule[{j}] {earlier.model!r}"
                )
    s = c.selection
    _choice("selection.policy", s.policy, POLICIES)
    _choice("selection.reward", s.reward, REWARDS)
    _choice("selection.family", s.family, FAMILIES)
    eps = _number("selection.epsilon", s.epsilon, low=0.0, strict_low=True)
    if eps > 1:
        raise ConfigError("selection.epsilon", f"must be in (0, 1], found {s.epsilon!r}")
    floor = _number("selection.min_propensity", s.min_propensity, low=0.0, strict_low=True)
    if floor * max(1, len(c.schedule)) >= 1:
        raise ConfigError(
            "selection.min_propensity", f"{floor:g} times {len(c.schedule)} scheduled models leaves nothing to choose"
        )
    _number("selection.snapshot_interval_s", s.snapshot_interval_s, low=0.0, strict_low=True)
    _number("selection.prior.alpha", s.prior.alpha, low=0.0, strict_low=True)
    _number("selection.prior.beta", s.prior.beta, low=0.0, strict_low=True)
    _number("selection.prior.mean", s.prior.mean)
    _number("selection.prior.sd", s.prior.sd, low=0.0, strict_low=True)
    if s.prior.noise_sd is not None:
        _number("selection.prior.noise_sd", s.prior.noise_sd, low=0.0, strict_low=True)
    for name in ("inputs", "scores", "decisions", "outcomes", "metrics"):
        try:
            validate_name(getattr(c.topics, name), "topic")
        except InvalidNameError as err:
            raise ConfigError(f"topics.{name}", str(err)) from None
    _choice("durability", c.durability, DURABILITIES)
    if c.overhead_ms is not None:
        overhead = _number("overhead_ms", c.overhead_ms, low=0.0)
        if overhead >= sla:
            raise ConfigError("overhead_ms", f"{overhead:g} leaves no time within sla_ms {sla:g}")
    _number("metrics_interval_s", c.metrics_interval_s, low=0.0, strict_low=True)


def _table(key: str, value: Any, known: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a table, found {value!r}")
    for k in value:
        if k not in known:
            where = f"{key}.{k}" if key else str(k)
            hint = f"; {k} is a top-level key: put it before the first [table]" if key and k in _TOP else ""
            raise ConfigError(where, f"unknown key (known: {', '.join(known)}){hint}")
    return value


_TOP = ("sla_ms", "default", "schedule", "selection", "topics", "durability", "overhead_ms", "metrics_interval_s")
_SELECTION = ("policy", "reward", "epsilon", "prior", "family", "min_propensity", "snapshot_interval_s")
_PRIOR = ("alpha", "beta", "mean", "sd", "noise_sd")
_STEP = ("model", "after_ms")
_TOPICS = ("inputs", "scores", "decisions", "outcomes", "metrics")


def parse_config(mapping: Mapping[str, Any], *, decoy_only: bool = False) -> Config:
    """A `Config` from a parsed TOML document; `ConfigError` names the first bad key and why."""
    top = _table("", mapping, _TOP)
    if "sla_ms" not in top:
        raise ConfigError("sla_ms", "required (the time within which every request is answered)")
    default = top.get("default", {"score": 0.0})
    if not isinstance(default, Mapping):
        raise ConfigError("default", f"expected a table (the default answer), found {default!r}")
    if "score" not in default:
        raise ConfigError("default.score", "required (the score answered when no model answered in time)")
    raw_schedule = top.get("schedule", [])
    if not isinstance(raw_schedule, list):
        raise ConfigError("schedule", f"expected an array of tables ([[schedule]]), found {raw_schedule!r}")
    if not raw_schedule and not decoy_only:
        raise ConfigError("schedule", "at least one [[schedule]] entry is required (only a decoy serves the default)")
    steps = []
    for i, entry in enumerate(raw_schedule):
        e = _table(f"schedule[{i}]", entry, _STEP)
        if "model" not in e:
            raise ConfigError(f"schedule[{i}].model", "required")
        if not isinstance(e["model"], str):
            raise ConfigError(f"schedule[{i}].model", f"expected a string, found {e['model']!r}")
        steps.append(Step(model=e["model"], after_ms=e.get("after_ms", 0.0)))
    sel = _table("selection", top.get("selection", {}), _SELECTION)
    prior = _table("selection.prior", sel.get("prior", {}), _PRIOR)
    topics = _table("topics", top.get("topics", {}), _TOPICS)
    return Config(
        sla_ms=top["sla_ms"],
        default=MappingProxyType(dict(default)),
        schedule=tuple(steps),
        selection=Selection(
            **{k: v for k, v in sel.items() if k != "prior"},
            prior=Prior(**prior),
        ),
        topics=Topics(**topics),
        durability=top.get("durability", "flush"),
        overhead_ms=top.get("overhead_ms"),
        metrics_interval_s=top.get("metrics_interval_s", 60.0),
    )


def load_config(path: str | os.PathLike[str], *, decoy_only: bool = False) -> Config:
    """Read and validate a TOML config file; errors name the file, the key and the reason."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("", f"no config file at {os.fspath(path)}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("", f"{os.fspath(path)}: not valid TOML: {err}") from None
    try:
        return parse_config(doc, decoy_only=decoy_only)
    except ConfigError as err:
        raise ConfigError(err.key, f"{err.reason} (in {os.fspath(path)})") from None
