"""The guardrail: paired loss deltas with block-bootstrap intervals and latency p99, from the log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

import logstore
from rendezvous import guardrail
from rendezvous.topics import ensure_topics

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def traffic(
    log: Any,
    models: dict[str, tuple[float, float, str | None]],
    *,
    n: int = 300,
    minutes: int = 10,
    labels: bool = True,
    seed: int = 0,
) -> None:
    """`n` requests over `minutes` minutes, scored by each model (model -> (noise, latency_ms, role)):
    score = clip(label + noise * N(0, 1)) (a lower noise is a better model); outcomes for all."""
    ensure_topics(log, roles=["scores", "outcomes"])
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    rows, outs = [], []
    for i in range(n):
        t = T0 + timedelta(seconds=60 * minutes * i / n)
        for m, (noise, latency, role) in models.items():
            s = float(np.clip(0.5 + (y[i] - 0.5) * 0.6 + noise * rng.normal(), 0.01, 0.99))
            rows.append(
                {"request_id": f"r{i}", "event_time": t, "model_id": m, "model_version": "1", "score": s}
                | {"latency_ms": float(latency * (1 + 0.1 * rng.random())), "role": role}
            )
        outs.append({"request_id": f"r{i}", "event_time": t, "label": float(y[i])})
    with log.writer("scores") as w:
        w.append_batch(rows)
    if labels:
        with log.writer("outcomes") as w:
            w.append_batch(outs)


@pytest.fixture
def log(tmp_path: Any) -> Any:
    with logstore.open(tmp_path / "log") as lg:
        yield lg


def test_a_better_candidate_passes_with_its_numbers(log: Any) -> None:
    """Candidate less noisy than champion and canary, fast: every check passes, numbers in the JSON."""
    traffic(log, {"m1": (0.3, 5, "champion"), "c": (0.3, 5, "canary"), "m2": (0.05, 8, "shadow")})
    r = guardrail.check(log, "m2", champion="m1", canary=None, sla_ms=50)
    assert r.passed, r.lines()
    quality = [c for c in r.checks if c.name == "quality"]
    assert {(c.role, c.reference) for c in quality} == {("champion", "m1"), ("canary", "c")}
    for c in quality:
        assert c.metric == "log_loss_delta" and c.high is not None and c.low is not None
        assert c.low <= c.value <= c.high <= 0.01 and c.n == 300 and c.windows == 10
    doc = json.loads(r.to_json())
    assert doc["passed"] and doc["candidate"] == "m2" and doc["references"] == {"champion": "m1", "canary": "c"}
    assert {c["name"] for c in doc["checks"]} == {"quality", "latency"}


def test_the_numbers_are_replay_evaluates(log: Any) -> None:
    """The guardrail's delta and interval are exactly `replay.evaluate`'s for the same window and cutoff."""
    import replay

    traffic(log, {"m1": (0.2, 5, "champion"), "m2": (0.25, 5, None)})
    cutoff = datetime.now(UTC)
    r = guardrail.check(log, "m2", champion="m1", canary=None, sla_ms=50, cutoff=cutoff)
    ev = replay.evaluate(log, "scores", "outcomes", champion="m1", window="1 minute", cutoff=cutoff)
    [row] = [x for x in ev.paired.to_pylist() if x["model"] == "m2"]
    [q] = [c for c in r.checks if c.name == "quality"]
    assert (q.value, q.low, q.high) == (row["log_loss_delta"], row["log_loss_delta_low"], row["log_loss_delta_high"])


def test_a_worse_candidate_fails_on_quality(log: Any) -> None:
    """A noisier candidate: the loss delta's upper bound is above the tolerance."""
    traffic(log, {"m1": (0.05, 5, "champion"), "m2": (0.4, 5, "shadow")})
    r = guardrail.check(log, "m2", champion=None, canary=None, sla_ms=50)  # champion from the scores' roles
    assert not r.passed
    [q] = [c for c in r.checks if c.name == "quality"]
    assert not q.passed and q.reference == "m1" and q.high is not None and q.high > 0.01 and "> tolerance" in q.reason
    assert [c.passed for c in r.checks if c.name == "latency"] == [True]


def test_a_slow_candidate_fails_on_latency(log: Any) -> None:
    """Latency p99 above the SLA fails even when the quality is good."""
    traffic(log, {"m1": (0.3, 5, "champion"), "m2": (0.05, 80, None)})
    r = guardrail.check(log, "m2", champion="m1", canary=None, sla_ms=50)
    [lat] = [c for c in r.checks if c.name == "latency"]
    assert not r.passed and not lat.passed and lat.value is not None and lat.value > 50 and lat.limit == 50
    assert "> SLA 50 ms" in lat.reason


def test_missing_evidence_fails(log: Any) -> None:
    """Too few windows (no interval), no outcomes, no reference, no scores, no SLA: each a failure."""
    traffic(log, {"m1": (0.3, 5, "champion"), "m2": (0.05, 5, None)}, minutes=2)
    r = guardrail.check(log, "m2", champion="m1", canary=None, sla_ms=50)
    [q] = [c for c in r.checks if c.name == "quality"]
    assert not q.passed and q.high is None and "no interval" in q.reason
    r = guardrail.check(log, "m2", champion="m1", canary=None, sla_ms=50, min_labeled=1000)
    assert not r.passed and "fewer than 1000 labelled pairs" in r.checks[0].reason
    r = guardrail.check(log, "m1", champion="m1", canary=None, sla_ms=50)  # itself is no reference
    assert not r.passed and r.checks[0].name == "references"
    r = guardrail.check(log, "m9", champion="m1", canary=None, sla_ms=50)
    assert not r.passed and "m9 has no scores" in r.checks[0].reason
    r = guardrail.check(log, "m2", champion="m1", canary=None, sla_ms=None)
    assert not r.passed and "no SLA known" in [c for c in r.checks if c.name == "latency"][0].reason


def test_outcomes_appended_after_the_cutoff_do_not_count(tmp_path: Any) -> None:
    """Only outcomes known by the cut-off count: none known, no labelled pair, the step fails."""
    with logstore.open(tmp_path / "log") as log:
        before = datetime.now(UTC)
        traffic(log, {"m1": (0.3, 5, "champion"), "m2": (0.05, 5, None)})
        r = guardrail.check(log, "m2", champion="m1", canary=None, sla_ms=50, cutoff=before)
        [q] = [c for c in r.checks if c.name == "quality"]
        assert not r.passed and q.n == 0
        assert guardrail.summary(r.to_json()).startswith("failed: vs champion m1")
