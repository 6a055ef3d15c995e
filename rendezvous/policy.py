"""The rendezvous rule: which answer a request gets, as a pure function of recorded arrival times.

Time is passed in, in milliseconds after the request arrived; nothing here reads a clock or does I/O.

The rule (one function, `Policy._rule`, behind both `decide` online and `replay` offline):

- A score from model key ``k`` (``"model_id:model_version"``) that arrived at ``a_k`` answers for
  the first schedule entry matching it (``"m3"`` matches every version of m3, ``"m3:1.0"`` that
  version only) and becomes *acceptable* at ``t_k = max(a_k, after_ms)``. An error score (a key in
  `failed`) is never acceptable; models the schedule does not name (shadows) never serve.
- The decision moment is ``T = min(t_k)``, if ``T <= H`` (the hard deadline, inclusive). The models
  acceptable at T (``t_k == T``), in schedule order, are the *candidates*; the selector picks one (the
  schedule selector: the first). If nothing is acceptable by H, the default is served at H.
- Reasons: ``first`` (the first entry served), ``fallback`` (a later entry, because an earlier one
  answered with an error by T), ``deadline`` (a later entry, because earlier ones had not answered
  by T), ``sampled`` (a sampling selector chose among more than one candidate), ``default``.

So ``decided_ms <= H`` always, and online and offline agree: the online loop asks `decide` at each
arrival and at `next_check_ms`; arrivals after T cannot change the answer (their t_k > T), so
`replay` of the recorded arrivals (those by T suffice) gives the same `Choice`. With a sampling
selector the draw is seeded by (request id, policy version) and recomputable from the record
(`replay(..., propensities=recorded)`).

The decision record keeps times as Avro floats (float32): `deadline_ms` rounds H down to that
precision and `record_ms` rounds an arrival, so a service that takes its times through them decides
on exactly the values it records (the simulated week in `replay.datasets.fraud` does).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .config import Config
from .selection import Selector, draw, make_selector, seed_of

__all__ = ["Choice", "Failed", "Policy", "REASONS", "record_ms"]

REASONS = ("first", "fallback", "deadline", "sampled", "default")

# error scores: keys, or keys with the time (ms after the request) the error arrived
Failed = AbstractSet[str] | Mapping[str, float]


_F32 = struct.Struct("<f")


def record_ms(ms: float) -> float:
    """`ms` as a decision record keeps it (Avro float: the nearest float32, ~4 ns at 50 ms).

    Times the policy decides on should be taken at this precision where they enter (a score's
    arrival, H), so that replaying the record's values decides exactly as the service did."""
    if not math.isfinite(ms):
        return ms
    out: float = _F32.unpack(_F32.pack(ms))[0]
    return out


@dataclass(frozen=True, slots=True)
class Choice:
    """One request's decision: what was served, why, with which probability, when."""

    chosen: str | None  # "model_id:model_version"; None: the default answer
    reason: str  # one of REASONS
    propensity: float  # the probability the chosen option had (1.0 for deterministic choices)
    propensities: dict[str, float]  # every candidate's probability (sums to 1); {"default": 1.0} for default
    candidates: tuple[str, ...]  # the models acceptable at the decision moment, schedule order
    decided_ms: float  # the decision moment T (<= deadline_ms)
    deadline_ms: float  # H
    seed: int
    policy_version: int
    policy: str
    arrivals: dict[str, float] = field(default_factory=dict)  # every score arrived by decided_ms
    failed: tuple[str, ...] = ()  # error scores known by decided_ms, sorted

    @property
    def chosen_model(self) -> str:
        """The decision record's `chosen_model`: the key, or ``"default"``."""
        return self.chosen if self.chosen is not None else "default"

    @property
    def model_id(self) -> str | None:
        return None if self.chosen is None else self.chosen.partition(":")[0]

    @property
    def model_version(self) -> str | None:
        return None if self.chosen is None else self.chosen.partition(":")[2]

    def record_fields(self) -> dict[str, Any]:
        """The fields of a `decision` record this choice determines (request id, times, score aside)."""
        return {
            "candidates": list(self.candidates),
            "chosen_model": self.chosen_model,
            "reason": self.reason,
            "propensity": self.propensity,
            "deadline_ms": self.deadline_ms,
            "arrivals": dict(self.arrivals),
            "failed": list(self.failed),
            "propensities": dict(self.propensities),
            "policy": self.policy,
            "policy_version": self.policy_version,
            "seed": self.seed,
            "decided_ms": self.decided_ms,
        }


class _Ruled(NamedTuple):
    """What the rule found: the decision moment and the candidates (empty: the default at H)."""

    at: float
    candidates: tuple[str, ...]
    entries: tuple[int, ...]  # each candidate's schedule entry


class Policy:
    """A config's schedule and a selector, deciding requests (see the module docstring)."""

    def __init__(self, config: Config, selector: Selector | None = None) -> None:
        self.config = config
        self.selector: Selector = selector if selector is not None else make_selector(config.selection)
        self._after = tuple(s.after_ms for s in config.schedule)
        self._entry_of: dict[str, int] = {}  # model key -> first matching schedule entry, -1 for none

    def deadline_ms(self, overhead_ms: float | None = None) -> float:
        """H = sla_ms - overhead (default: the config's fixed allowance, else 0), never below 0, and
        rounded down to the record's precision (`record_ms`), so the recorded H is the one used."""
        if overhead_ms is None:
            overhead_ms = self.config.overhead_ms or 0.0
        h = max(0.0, self.config.sla_ms - overhead_ms)
        q = record_ms(h)
        return q if q <= h else float(np.nextafter(np.float32(q), np.float32(-np.inf)))

    def entry(self, key: str) -> int:
        """The schedule entry a model key answers for, -1 if none."""
        e = self._entry_of.get(key)
        if e is None:
            e = next((i for i, s in enumerate(self.config.schedule) if s.matches(key)), -1)
            if len(self._entry_of) < 65536:
                self._entry_of[key] = e
        return e

    # ---- the rule -----------------------------------------------------------------------------

    def _acceptable(
        self, arrivals: Mapping[str, float], failed: Failed, horizon: float
    ) -> Iterator[tuple[float, int, str]]:
        """(acceptable at, schedule entry, key) of every ok score of a scheduled model arrived by
        `horizon` (NaN and inf arrivals: never)."""
        after = self._after
        for key, a in arrivals.items():
            if not a <= horizon:
                continue
            e = self.entry(key)
            if e < 0 or key in failed:
                continue
            yield (a if a > after[e] else after[e]), e, key

    def _rule(self, arrivals: Mapping[str, float], failed: Failed, horizon: float, deadline: float) -> _Ruled | None:
        """The decision visible by `horizon`; None if none is due yet (horizon < H, nothing acceptable)."""
        limit = min(horizon, deadline)
        best = math.inf
        hits: list[tuple[int, str]] = []
        for t, e, key in self._acceptable(arrivals, failed, horizon):
            if t > limit:
                continue
            if t < best:
                best, hits = t, [(e, key)]
            elif t == best:
                hits.append((e, key))
        if hits:
            if len(hits) == 1:
                return _Ruled(float(best), (hits[0][1],), (hits[0][0],))
            hits.sort()
            return _Ruled(float(best), tuple(k for _, k in hits), tuple(e for e, _ in hits))
        if horizon >= deadline:
            return _Ruled(float(deadline), (), ())
        return None

    def _choice(
        self,
        request_id: str,
        ruled: _Ruled,
        arrivals: Mapping[str, float],
        failed: Failed,
        deadline: float,
        version: int,
        propensities: Mapping[str, float] | None,
    ) -> Choice:
        at = ruled.at
        seen = {k: float(a) for k, a in arrivals.items() if a <= at}
        if isinstance(failed, Mapping):
            known = tuple(sorted(k for k, f in failed.items() if f <= at))
        else:
            known = tuple(sorted(failed))
        seed = seed_of(request_id, version)
        policy = self.selector.policy
        cands = ruled.candidates
        if not cands:
            return Choice(None, "default", 1.0, {"default": 1.0}, (), at, deadline, seed, version, policy, seen, known)
        if len(cands) > 1 and self.selector.sampling:
            if propensities is None:
                probs = self.selector.probabilities(cands, version)
            else:
                missing = [c for c in cands if c not in propensities]
                if missing:
                    raise ValueError(f"request {request_id!r}: recorded propensities lack candidates {missing}")
                probs = {c: float(propensities[c]) for c in cands}
            i = draw(seed, [probs[c] for c in cands])
            c = cands[i]
            return Choice(c, "sampled", probs[c], dict(probs), cands, at, deadline, seed, version, policy, seen, known)
        e = ruled.entries[0]
        if e == 0:
            reason = "first"
        elif any(0 <= self.entry(k) < e for k in known):
            reason = "fallback"
        else:
            reason = "deadline"
        probs = {c: 0.0 for c in cands}
        probs[cands[0]] = 1.0
        return Choice(cands[0], reason, 1.0, probs, cands, at, deadline, seed, version, policy, seen, known)

    # ---- online -------------------------------------------------------------------------------

    def decide(
        self, request_id: str, arrivals: Mapping[str, float], failed: Failed, now_ms: float, deadline_ms: float
    ) -> Choice | None:
        """The decision at `now_ms`, or None to keep waiting (never None once ``now_ms >= deadline_ms``).

        `arrivals`: model key -> arrival (ms after the request) of each ok score (those after
        `now_ms` are ignored); `failed`: the keys that answered with an error (or key -> when)."""
        ruled = self._rule(arrivals, failed, now_ms, deadline_ms)
        if ruled is None:
            return None
        return self._choice(request_id, ruled, arrivals, failed, float(deadline_ms), self.selector.version, None)

    def next_check_ms(self, arrivals: Mapping[str, float], failed: Failed, now_ms: float, deadline_ms: float) -> float:
        """The next moment the answer can change without a new arrival: `now_ms` if it is due now,
        else the earliest ``after_ms`` of an arrived scheduled model still waiting for it, else H."""
        if now_ms >= deadline_ms:
            return now_ms
        nxt = deadline_ms
        for t, _, _ in self._acceptable(arrivals, failed, now_ms):
            if t <= now_ms:
                return now_ms
            nxt = min(nxt, t)
        return nxt

    def run(self, request_id: str, arrivals: Mapping[str, float], failed: Failed, deadline_ms: float) -> Choice:
        """The service's loop on a virtual clock: wake at each arrival (ok or error) and at
        `next_check_ms`, and ask `decide` (which sees only what has arrived by then)."""
        errors: Mapping[str, float] = failed if isinstance(failed, Mapping) else dict.fromkeys(failed, 0.0)
        events = sorted(t for t in [*arrivals.values(), *errors.values()] if t >= 0 and math.isfinite(t))
        now, i = 0.0, 0
        while True:
            choice = self.decide(request_id, arrivals, errors, now, deadline_ms)
            if choice is not None:
                return choice
            while i < len(events) and events[i] <= now:
                i += 1
            nxt = self.next_check_ms(arrivals, errors, now, deadline_ms)
            now = min(nxt, events[i]) if i < len(events) else nxt

    # ---- offline ------------------------------------------------------------------------------

    def replay(
        self,
        request_id: str,
        arrivals: Mapping[str, float],
        failed: Failed,
        deadline_ms: float,
        policy_version: int | None = None,
        propensities: Mapping[str, float] | None = None,
    ) -> Choice:
        """The `Choice` the online loop made (or would make) from these arrivals: exactly, given the
        policy version it ran under (default: the current one). With `propensities` (as recorded),
        a sampled choice is redrawn from them and the seed, without the selector's posteriors."""
        ruled = self._rule(arrivals, failed, math.inf, deadline_ms)
        assert ruled is not None  # an infinite horizon always decides
        version = self.selector.version if policy_version is None else policy_version
        return self._choice(request_id, ruled, arrivals, failed, float(deadline_ms), version, propensities)

    def replay_record(self, record: Mapping[str, Any], *, redraw: bool = False) -> Choice:
        """Replay one `decision` record (a dict as read from the log; maps as dicts or as lists of
        pairs): from its arrivals, failures, deadline and policy version, sampled choices redrawn
        from its logged propensities and seed (`redraw=True`: from this policy's own selector)."""
        arrivals = _as_dict(record.get("arrivals"))
        props = _as_dict(record.get("propensities"))
        return self.replay(
            record["request_id"],
            arrivals,
            set(record.get("failed") or ()),
            float(record["deadline_ms"]),
            int(record.get("policy_version") or 0),
            None if redraw or not props or record.get("reason") != "sampled" else props,
        )

    def replay_many(
        self,
        request_ids: Sequence[str],
        arrivals: Sequence[Mapping[str, float]],
        failed: Sequence[Failed],
        deadline_ms: float | Sequence[float],
    ) -> list[Choice]:
        """`replay` for each request (one deadline for all, or one each)."""
        hs = [float(deadline_ms)] * len(request_ids) if isinstance(deadline_ms, (int, float)) else list(deadline_ms)
        return [self.replay(r, a, f, h) for r, a, f, h in zip(request_ids, arrivals, failed, hs, strict=True)]


def _as_dict(value: Any) -> dict[str, float]:
    if not value:
        return {}
    items = value.items() if isinstance(value, Mapping) else value
    return {str(k): float(v) for k, v in items}
