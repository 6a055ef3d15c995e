"""A simulated card-payment fraud-scoring service, recorded through the real log writer.

    import logstore
    from replay.datasets import fraud
    log = logstore.open("demo-log")
    traffic = fraud.simulate(log, days=7, rate=8, seed=0)   # -> Traffic (counts, times, ...)

What is recorded (the rendezvous architecture; docs/architecture.md, "The problem"):

=============  ============  ============================================================
topic          schema        what, and when it is appended
=============  ============  ============================================================
``inputs``     model_input   each request as the decoy archives it (features, raw JSON,
                             enrichment), appended when it arrives
``scores``     model_score   the champion's and the frozen canary's answer with latency,
                             appended when each model answered
``decisions``  decision      which answer was served and why (first / fallback / deadline /
                             default), decided by `rendezvous.policy` (`RENDEZVOUS`: the
                             champion; after 40 ms the canary; at H the default) stepping
                             its online loop over the recorded arrivals, so each record
                             replays exactly from its arrivals, failures and deadline
``outcomes``   outcome       fraud (chargeback, customer report) or legitimate (nightly
                             settlement batch), appended when it became known: minutes to
                             days after the request; outcomes not yet known at the end of the
                             simulated period are never written
``metrics``    metric        per hour and model: request count, latency p99, mean score
=============  ============  ============================================================

The writers get a simulated clock (`SimClock`) and commit once per `tick` of simulated time, in
time order, so each record's append time is the end of the tick in which it became known and
append time never runs ahead of what the service could have known. Everything is drawn from one
seeded generator up front (vectorized), so the same arguments give the same log content.

The traffic has a daily cycle, and mild input drift in the last part of the period (larger
amounts, more foreign cards, from `drift_at` of the way through): the frozen canary's score
distribution moves with it, which is what a canary is for. The true fraud model uses
``new_device``, which the champion ignores: a candidate that uses it is genuinely better
(`TRUE_WEIGHTS`, `CHAMPION_WEIGHTS`, `CANARY_WEIGHTS`, `logit`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import schemas
from rendezvous.config import Config, Step
from rendezvous.policy import Policy

from ..errors import ReplayValueError

__all__ = [
    "SimClock",
    "Traffic",
    "simulate",
    "logit",
    "features_of",
    "FEATURES",
    "TRUE_WEIGHTS",
    "CHAMPION_WEIGHTS",
    "CANARY_WEIGHTS",
    "TOPICS",
    "DEFAULT_START",
    "CHAMPION",
    "CANARY",
    "DEADLINE_MS",
    "RENDEZVOUS",
    "REASONS",
]

# a Monday, safely in the past: evaluation's default cut-off ("now") sees every outcome
DEFAULT_START = datetime(2025, 3, 3, tzinfo=UTC)
CHAMPION = ("champion", "3.2")
CANARY = ("canary", "1.0")
DEADLINE_MS = 50.0  # the service level: every request is answered within it
CHAMPION_FAILURE = 0.003
# the service's rendezvous: the champion; after 40 ms the canary if it has answered; at
# H = 50 - 0.2 ms the default. Decided by `rendezvous.policy`, the code the live service runs.
RENDEZVOUS = Config(
    sla_ms=DEADLINE_MS,
    default={"score": 0.0},
    schedule=(Step(CHAMPION[0], 0.0), Step(CANARY[0], 40.0)),
    overhead_ms=0.2,
)
_DECISION = schemas.load("decision")
_DECISION_FIELDS = {f["name"] for f in _DECISION["fields"]}
# the decision schema's reason enum, in order
REASONS: tuple[str, ...] = tuple(next(f for f in _DECISION["fields"] if f["name"] == "reason")["type"]["symbols"])

# topic -> (schema, partitions)
TOPICS: dict[str, tuple[str, int]] = {
    "inputs": ("model_input", 4),
    "scores": ("model_score", 2),
    "decisions": ("decision", 2),
    "outcomes": ("outcome", 2),
    "metrics": ("metric", 1),
}

FEATURES = (
    "amount",
    "log_amount",
    "merchant_risk",
    "card_age_days",
    "txn_24h",
    "distance_km",
    "foreign",
    "new_device",
    "night",
)

# log-odds of fraud = w0 + sum(w_f * feature transform); transforms in `_design`
TRUE_WEIGHTS: dict[str, float] = {
    "bias": -6.5,
    "log_amount": 0.45,
    "merchant_risk": 3.2,
    "log_card_age": -0.35,
    "txn_24h": 0.18,
    "log_distance": 0.22,
    "foreign": 0.9,
    "new_device": 1.9,
    "night": 0.6,
}
# the champion was trained without new_device (the device signal was added to the inputs later)
CHAMPION_WEIGHTS: dict[str, float] = {**TRUE_WEIGHTS, "bias": -6.3, "new_device": 0.0}
# the canary: an older, simpler model, frozen as a reference
CANARY_WEIGHTS: dict[str, float] = {
    "bias": -5.9,
    "log_amount": 0.5,
    "merchant_risk": 3.0,
    "foreign": 1.0,
    "night": 0.5,
}

_CATEGORIES = np.array(["grocery", "fuel", "travel", "electronics", "restaurants", "online"])
_TIERS = np.array(["standard", "gold", "platinum"])
_COUNTRIES = np.array(["DE", "FR", "NL", "ES", "IT"])
_FOREIGN = np.array(["US", "BR", "NG", "TH", "GB"])


class SimClock:
    """The writers' clock: returns `now`, which the simulation advances tick by tick."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Traffic:
    """What `simulate` wrote: parameters, record counts per topic and a few facts worth printing."""

    start: datetime
    end: datetime
    days: float
    rate: float
    seed: int
    tick: timedelta
    drift_start: datetime
    records: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    fraud_rate: float = 0.0
    outcomes_pending: int = 0  # outcomes not yet known at `end` (never written)
    decision_reasons: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    seconds: float = 0.0


def _design(f: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The transformed features the weight dicts refer to."""
    return {
        "log_amount": np.log1p(f["amount"]),
        "merchant_risk": f["merchant_risk"],
        "log_card_age": np.log1p(f["card_age_days"] / 30.0),
        "txn_24h": f["txn_24h"],
        "log_distance": np.log1p(f["distance_km"]),
        "foreign": f["foreign"],
        "new_device": f["new_device"],
        "night": f["night"],
    }


def logit(features: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Log-odds of fraud under `weights`, from raw feature columns (a dict of arrays)."""
    x = _design(features)
    z = np.full(len(next(iter(features.values()))), float(weights.get("bias", 0.0)))
    for name, w in weights.items():
        if name != "bias" and w:
            z += w * x[name]
    return z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _arrivals(rng: np.random.Generator, minutes: int, rate: float) -> np.ndarray:
    """Request times in microseconds from the start: Poisson per minute with a daily cycle."""
    m = np.arange(minutes)
    hour = (m / 60.0) % 24
    profile = 1.0 + 0.65 * np.sin(2 * np.pi * (hour - 9.0) / 24.0)  # peak mid-afternoon
    counts = rng.poisson(rate * profile)
    base = np.repeat(m * 60_000_000, counts)
    us = base + rng.integers(0, 60_000_000, len(base))
    return np.sort(us)


def _features(rng: np.random.Generator, t_us: np.ndarray, drift_us: int, total_us: int) -> dict:
    n = len(t_us)
    # drift ramps in linearly from drift_us to the end: amounts +60%, twice the foreign cards
    ramp = np.clip((t_us - drift_us) / max(1, total_us - drift_us), 0.0, 1.0)
    hour = (t_us / 3_600_000_000) % 24
    return {
        "amount": np.round(rng.lognormal(3.3, 1.0, n) * (1.0 + 0.6 * ramp), 2),
        "merchant_risk": np.round(rng.beta(2.0, 9.0, n), 4),
        "card_age_days": np.floor(rng.exponential(420.0, n)),
        "txn_24h": rng.poisson(2.0, n).astype(np.float64),
        "distance_km": np.round(rng.lognormal(2.0, 1.2, n), 1),
        "foreign": (rng.random(n) < 0.07 * (1.0 + ramp)).astype(np.float64),
        "new_device": (rng.random(n) < 0.09).astype(np.float64),
        "night": ((hour < 5) | (hour >= 23)).astype(np.float64),
    }


def _map_array(keys: list[str], columns: list[np.ndarray], value_type: pa.DataType) -> pa.MapArray:
    """A map array with the same keys in every row (row-major interleave of `columns`)."""
    n, k = len(columns[0]), len(keys)
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    key_arr = pa.array(np.tile(np.array(keys, dtype=object), n), pa.string())
    values = np.empty(n * k, dtype=object if value_type == pa.string() else np.float64)
    for j, col in enumerate(columns):
        values[j::k] = col
    return pa.MapArray.from_arrays(offsets, key_arr, pa.array(values, value_type))


def _timestamps(base: datetime, us: np.ndarray) -> pa.Array:
    t0 = int(base.timestamp() * 1_000_000)
    return pa.array(t0 + np.asarray(us, np.int64), pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _decide(
    ids: np.ndarray,
    t: np.ndarray,
    start: datetime,
    champ_ms: np.ndarray,
    champ_fail: np.ndarray,
    failed_ms: np.ndarray,
    canary_ms: np.ndarray,
    champ_score: np.ndarray,
    canary_score: np.ndarray,
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Each request decided by `rendezvous.policy` stepping its online loop over the recorded
    arrivals (`Policy.run`): the decision records (every field the decision schema has), their
    reasons and their append times (us from the start)."""
    policy = Policy(RENDEZVOUS)
    deadline = policy.deadline_ms()  # at the record's precision, as the arrivals
    champ, canary = ":".join(CHAMPION), ":".join(CANARY)
    served = {champ: champ_score, canary: canary_score}
    choices = []
    for i, rid in enumerate(ids.tolist()):
        arrivals = {canary: float(canary_ms[i])}
        failed: dict[str, float] = {}
        if champ_fail[i]:
            failed[champ] = float(failed_ms[i])
        else:
            arrivals[champ] = float(champ_ms[i])
        choices.append(policy.run(rid, arrivals, failed, deadline))
    n = len(choices)
    reason = np.array([c.reason for c in choices], dtype=object)
    decided = np.array([c.decided_ms for c in choices])
    d_time = t + np.round(decided * 1000).astype(np.int64) + 200  # the rendezvous itself takes 0.2 ms
    score = [None if c.chosen is None else float(served[c.chosen][i]) for i, c in enumerate(choices)]
    columns = {
        "request_id": pa.array(ids, pa.string()),
        "event_time": _timestamps(start, d_time),
        "candidates": pa.array([list(c.candidates) for c in choices], pa.list_(pa.string())),
        "chosen_model": pa.array([c.chosen_model for c in choices], pa.string()),
        # the full symbol list as every frame's dictionary: frames then agree on it, which readers
        # that concatenate frames into one IPC file (the DuckDB views) require
        "reason": pa.DictionaryArray.from_arrays(
            pa.array([REASONS.index(r) for r in reason.tolist()], pa.int32()), pa.array(REASONS, pa.string())
        ),
        "propensity": pa.array([c.propensity for c in choices], pa.float64()),
        "deadline_ms": pa.array([c.deadline_ms for c in choices], pa.float32()),
        "arrivals": pa.array([list(c.arrivals.items()) for c in choices], pa.map_(pa.string(), pa.float32())),
        "failed": pa.array([list(c.failed) for c in choices], pa.list_(pa.string())),
        "propensities": pa.array([list(c.propensities.items()) for c in choices], pa.map_(pa.string(), pa.float64())),
        "policy": pa.array([c.policy for c in choices], pa.string()),
        "policy_version": pa.array([c.policy_version for c in choices], pa.int64()),
        "seed": pa.array([c.seed for c in choices], pa.int64()),
        "sla_ms": pa.array(np.full(n, RENDEZVOUS.sla_ms), pa.float32()),
        "overhead_ms": pa.array(np.full(n, RENDEZVOUS.overhead_ms), pa.float32()),
        "decided_ms": pa.array(decided, pa.float32()),
        "score": pa.array(score, pa.float64()),
        "answer": pa.array([json.dumps(dict(RENDEZVOUS.default)) if c.chosen is None else None for c in choices]),
    }
    table = pa.table({k: v for k, v in columns.items() if k in _DECISION_FIELDS})
    return table, reason, d_time


def _build(
    rng: np.random.Generator, start: datetime, days: float, rate: float, drift_at: float
) -> tuple[dict[str, tuple[pa.Table, np.ndarray]], dict[str, Any]]:
    """Every topic's rows and, per row, the time (us from start) it became known."""
    total_us = int(days * 86_400_000_000)
    minutes = int(np.ceil(days * 1440))
    t = _arrivals(rng, minutes, rate)
    t = t[t < total_us]
    n = len(t)
    drift_us = int(drift_at * total_us)
    f = _features(rng, t, drift_us, total_us)
    f["log_amount"] = np.round(np.log1p(f["amount"]), 6)
    p_true = _sigmoid(logit(f, TRUE_WEIGHTS))
    fraud = rng.random(n) < p_true
    ids = np.char.add("req-", np.char.zfill(np.arange(n).astype(str), 7)).astype(object)

    # ---- inputs, as the decoy archives them ----
    cards = rng.integers(0, 200_000, n)
    merchants = rng.integers(0, 5_000, n)
    country = np.where(f["foreign"] > 0, _FOREIGN[rng.integers(0, 5, n)], _COUNTRIES[rng.integers(0, 5, n)])
    device = np.where(f["new_device"] > 0, "new", "known")
    raw = [
        f'{{"card":"c{c:06d}","amount":{a:.2f},"merchant":"m{m:04d}","country":"{k}","device":"{d}"}}'
        for c, a, m, k, d in zip(
            cards.tolist(), f["amount"].tolist(), merchants.tolist(), country.tolist(), device.tolist()
        )
    ]
    enrich = _map_array(
        ["merchant_category", "card_tier"],
        [_CATEGORIES[merchants % len(_CATEGORIES)], _TIERS[np.minimum(cards % 7, 2)]],
        pa.string(),
    )
    missing = rng.random(n) < 0.03  # the feature-store lookup timed out: no enrichment
    enrich = pa.MapArray.from_arrays(enrich.offsets, enrich.keys, enrich.items, mask=pa.array(missing))
    inputs = pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "event_time": _timestamps(start, t),
            "features": _map_array(list(FEATURES), [f[k] for k in FEATURES], pa.float64()),
            "raw": pa.array(raw, pa.string()),
            "enrichment": enrich,
            "source": pa.array(np.where(rng.random(n) < 0.7, "api/authorize", "api/authorize-3ds"), pa.string()),
        }
    )

    # ---- scores: champion and frozen canary, with latencies ----
    champ_lat = rng.lognormal(np.log(14.0), 0.45, n) + np.where(rng.random(n) < 0.012, rng.uniform(30, 90, n), 0.0)
    canary_lat = rng.lognormal(np.log(6.0), 0.35, n)
    champ_fail = rng.random(n) < CHAMPION_FAILURE
    champ_score = _sigmoid(logit(f, CHAMPION_WEIGHTS))
    canary_score = _sigmoid(logit(f, CANARY_WEIGHTS))
    ok = ~champ_fail
    hosts = np.array(["scorer-a", "scorer-b", "scorer-c"])
    s_ids = np.concatenate([ids[ok], ids])
    s_time = np.concatenate([t[ok] + (champ_lat[ok] * 1000).astype(np.int64), t + (canary_lat * 1000).astype(np.int64)])
    n_ok = int(ok.sum())
    scores = pa.table(
        {
            "request_id": pa.array(s_ids, pa.string()),
            "event_time": _timestamps(start, s_time),
            "model_id": pa.array([CHAMPION[0]] * n_ok + [CANARY[0]] * n, pa.string()),
            "model_version": pa.array([CHAMPION[1]] * n_ok + [CANARY[1]] * n, pa.string()),
            "score": pa.array(np.round(np.concatenate([champ_score[ok], canary_score]), 6)),
            "latency_ms": pa.array(np.round(np.concatenate([champ_lat[ok], canary_lat]), 2), pa.float32()),
            "host": pa.array(np.concatenate([hosts[rng.integers(0, 3, n_ok)], np.full(n, "canary-a")]), pa.string()),
            "code_version": pa.array(["svc-2.4.1"] * (n_ok + n), pa.string()),
        }
    )

    # ---- decisions: the rendezvous policy itself, on the simulated clock ----
    # arrivals as the scores record them (whole microseconds) and the decision schema keeps them
    # (float32 ms), so a decision replayed from its record is the one made
    champ_ms = ((s_time[:n_ok] - t[ok]) / 1000.0).astype(np.float32)
    arrive = np.full(n, np.inf, np.float32)
    arrive[ok] = champ_ms
    failed_ms = (0.2 * champ_lat).astype(np.float32)  # a model that raises does so early
    canary_ms = ((s_time[n_ok:] - t) / 1000.0).astype(np.float32)
    decisions, reason, d_time = _decide(
        ids, t, start, arrive, champ_fail, failed_ms, canary_ms, np.round(champ_score, 6), np.round(canary_score, 6)
    )

    # ---- outcomes, when they become known ----
    day_us = 86_400_000_000
    # legitimate: confirmed by the nightly settlement batch at 02:00, at least 12 h later
    earliest = t + 12 * 3_600_000_000
    batch_at = ((earliest - 2 * 3_600_000_000) // day_us + 1) * day_us + 2 * 3_600_000_000
    settle = batch_at + rng.integers(0, 20 * 60_000_000, n)  # the batch runs ~20 minutes
    report = rng.random(n) < 0.2  # a fraud the card holder reports quickly; others charge back
    fraud_delay = (
        np.where(report, rng.exponential(3 * 3_600_000_000, n), rng.lognormal(np.log(2 * day_us), 0.6, n)).astype(
            np.int64
        )
        + 60_000_000
    )
    known = np.where(fraud, t + fraud_delay, settle)
    o_keep = known < total_us
    o_src = np.where(fraud, np.where(report, "customer-report", "chargeback"), "settlement")
    outcomes = pa.table(
        {
            "request_id": pa.array(ids[o_keep], pa.string()),
            "event_time": _timestamps(start, known[o_keep]),
            "label": pa.array(fraud[o_keep].astype(np.float64)),
            "reward": pa.array(np.round(np.where(fraud, -f["amount"], 0.015 * f["amount"])[o_keep], 2)),
            "source": pa.array(o_src[o_keep], pa.string()),
        }
    )

    # ---- metrics: per hour and model ----
    hour_idx = t // 3_600_000_000
    n_hours = int(np.ceil(total_us / 3_600_000_000))
    m_rows: dict[str, list] = {"name": [], "value": [], "tags": [], "event_time": []}
    m_known: list[int] = []
    for h in range(n_hours):
        lo, hi = np.searchsorted(hour_idx, [h, h + 1])
        end_us = min((h + 1) * 3_600_000_000, total_us)
        sel = slice(lo, hi)
        okh = ok[sel]
        for (mid, ver), lat, sc, mask in (
            (CHAMPION, champ_lat[sel], champ_score[sel], okh),
            (CANARY, canary_lat[sel], canary_score[sel], np.ones(hi - lo, bool)),
        ):
            tags = [("model_id", mid), ("model_version", ver)]
            vals = [
                ("requests.count", float(mask.sum())),
                ("model.latency_p99_ms", float(np.percentile(lat[mask], 99)) if mask.any() else 0.0),
                ("model.mean_score", float(sc[mask].mean()) if mask.any() else 0.0),
            ]
            for name, v in vals:
                m_rows["name"].append(name)
                m_rows["value"].append(round(v, 4))
                m_rows["tags"].append(tags)
                m_rows["event_time"].append(end_us)
                m_known.append(end_us)
    metrics = pa.table(
        {
            "name": pa.array(m_rows["name"], pa.string()),
            "value": pa.array(m_rows["value"], pa.float64()),
            "tags": pa.array(m_rows["tags"], pa.map_(pa.string(), pa.string())),
            "event_time": _timestamps(start, np.array(m_rows["event_time"], np.int64)),
        }
    )

    tables = {
        "inputs": (inputs, t),
        "scores": (scores, s_time),
        "decisions": (decisions, d_time),
        "outcomes": (outcomes, known[o_keep]),
        "metrics": (metrics, np.array(m_known, np.int64)),
    }
    facts = {
        "requests": n,
        "fraud_rate": float(fraud.mean()) if n else 0.0,
        "outcomes_pending": int((~o_keep).sum()),
        "drift_us": drift_us,
        "total_us": total_us,
        "reasons": {r: int((reason == r).sum()) for r in REASONS},
    }
    return tables, facts


def simulate(
    log: Any,
    *,
    days: float = 7.0,
    rate: float = 8.0,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    tick: timedelta = timedelta(minutes=5),
    drift_at: float = 0.7,
    topics: Mapping[str, str] | None = None,
    compression: str | None = "zstd",
) -> Traffic:
    """Record `days` of simulated traffic (`rate` requests per minute on average) into `log`.

    Creates the five topics (`TOPICS`; `topics` renames them, e.g. ``{"inputs": "prod.inputs"}``)
    and writes them with one writer each on a `SimClock`, committing every `tick` of simulated
    time: a record is appended at the end of the tick in which it became known. Returns the
    `Traffic` facts. The topics must not exist yet (the simulation is one recorded history).
    """
    if days <= 0 or rate <= 0:
        raise ReplayValueError(f"days and rate must be positive, found days={days!r}, rate={rate!r}")
    if not 0.0 <= drift_at <= 1.0:
        raise ReplayValueError(f"drift_at is a fraction of the period in [0, 1], found {drift_at!r}")
    tick_us = int(tick / timedelta(microseconds=1))
    if tick_us <= 0:
        raise ReplayValueError(f"tick must be positive, found {tick!r}")
    if start.tzinfo is None:
        raise ReplayValueError(f"start must be an aware datetime, found {start!r}")
    names = {k: (topics or {}).get(k, k) for k in TOPICS}
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    tables, facts = _build(rng, start, days, rate, drift_at)

    for key, (schema, parts) in TOPICS.items():
        log.create_topic(
            names[key],
            schema=schema,
            partitions=parts,
            compression=compression,
            key_field="request_id" if key != "metrics" else None,
        )

    clock = SimClock(start)
    # one spare tick: answers to the last requests land just after the period's end
    n_ticks = int(-(-facts["total_us"] // tick_us)) + 1
    # per topic: rows in order of when they became known, and each tick's slice boundaries
    plans = []
    for key, (table, known) in tables.items():
        order = np.argsort(known, kind="stable")
        table = table.take(pa.array(order))
        tick_of = known[order] // tick_us + 1  # appended at the end of the tick it fell in
        bounds = np.searchsorted(tick_of, np.arange(n_ticks + 2))
        plans.append((key, table, bounds))
    writers = {key: log.writer(names[key], clock=clock, linger_ms=None) for key in TOPICS}
    commits = 0
    try:
        busy = np.zeros(n_ticks + 1, bool)
        for _, _, bounds in plans:
            busy |= np.diff(bounds)[: n_ticks + 1] > 0
        for k in np.nonzero(busy)[0].tolist():
            clock.now = start + timedelta(microseconds=k * tick_us)
            for key, table, bounds in plans:
                lo, hi = int(bounds[k]), int(bounds[k + 1])
                if hi > lo:
                    writers[key].append_batch(table.slice(lo, hi - lo))
                    commits += 1
    finally:
        for w in writers.values():
            w.close()

    return Traffic(
        start=start,
        end=start + timedelta(microseconds=facts["total_us"]),
        days=days,
        rate=rate,
        seed=seed,
        tick=tick,
        drift_start=start + timedelta(microseconds=facts["drift_us"]),
        records={names[k]: tables[k][0].num_rows for k in TOPICS},
        requests=facts["requests"],
        fraud_rate=facts["fraud_rate"],
        outcomes_pending=facts["outcomes_pending"],
        decision_reasons=facts["reasons"],
        commits=commits,
        seconds=time.perf_counter() - began,
    )


def features_of(batch: pa.RecordBatch | pa.Table, names: tuple[str, ...] = FEATURES) -> dict[str, np.ndarray]:
    """The `features` map column of `model_input` rows as float arrays by name (NaN if missing)."""
    col = batch.column(batch.schema.get_field_index("features"))
    out = {}
    for name in names:
        v = pc.map_lookup(col, pa.scalar(name, pa.string()), "first")
        out[name] = v.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return out
