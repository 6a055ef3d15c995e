"""What the service measures: Prometheus series for `/metrics`, and `metric` records for the log.

`Prometheus` holds the service's own registry (one per service, so several can live in one
process): requests, answers by model and reason, answer latency, the service's own overhead and
each model's score arrival time, as histograms.

`Window` gathers the same per model over one interval (``metrics_interval_s``, a minute by
default) and turns it into `metric` records (schemas/metric.avsc): name, value, tags
``{"model": "m3:1", "service": "<host>:<port>"}``, event time the end of the interval. Per model:

=================================  ======================================================
``rendezvous.requests``            requests the model scored in time (before the decision)
``rendezvous.answers``             requests answered with its score
``rendezvous.share_selected``      answers / every request decided in the interval
``rendezvous.latency_p50_ms``      its score's arrival, ms after the request arrived
``rendezvous.latency_p99_ms``
``rendezvous.score_mean``          its scores' summary (min, p50, max too)
``rendezvous.errors``              its error scores
=================================  ======================================================

plus, under model ``*``, the service's totals: requests, answer latency p50/p99 and overhead p99.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# milliseconds-scale buckets, in seconds (Prometheus convention)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)


class Prometheus:
    """The series `/metrics` exposes, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("rendezvous_requests", "Score requests received", registry=r)
        self.answers = Counter(
            "rendezvous_answers", "Answers sent, by model and reason", ["model", "reason"], registry=r
        )
        self.rejected = Counter("rendezvous_rejected", "Requests refused, by HTTP status", ["status"], registry=r)
        self.outcomes = Counter("rendezvous_outcomes", "Outcomes appended", registry=r)
        self.latency = Histogram(
            "rendezvous_answer_latency_seconds",
            "Time from a request's arrival to its answer",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "rendezvous_overhead_seconds",
            "The service's own time: answer sent minus the moment the decision was due",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.phase = Histogram(
            "rendezvous_phase_seconds",
            "The service's own time per phase: archive (arrival to input committed), wake (decision due "
            "to the loop deciding), record (decision committed), send (answer written)",
            ["phase"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.arrival = Histogram(
            "rendezvous_score_arrival_seconds",
            "A model's score arrival after its request arrived",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("rendezvous_in_flight", "Requests waiting for their answer", registry=r)
        self.deadline = Gauge("rendezvous_deadline_ms", "The hard deadline H = SLA - overhead allowance", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class _Model:
    requests: int = 0
    answers: int = 0
    errors: int = 0
    arrivals_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


class Window:
    """Per-model tallies over one metrics interval (see the module docstring)."""

    def __init__(self) -> None:
        self._models: dict[str, _Model] = defaultdict(_Model)
        self.requests = 0
        self._latency_ms: list[float] = []
        self._overhead_ms: list[float] = []

    def __len__(self) -> int:
        return self.requests

    def observe(
        self,
        chosen: str,
        arrivals: dict[str, tuple[float, float | None, bool]],
        latency_ms: float,
        overhead_ms: float,
    ) -> None:
        """One decided request: `chosen` key (or "default"), each arrived model's (ms, score, ok)."""
        self.requests += 1
        self._latency_ms.append(latency_ms)
        self._overhead_ms.append(overhead_ms)
        for key, (ms, score, ok) in arrivals.items():
            m = self._models[key]
            m.requests += 1
            m.arrivals_ms.append(ms)
            if ok and score is not None:
                m.scores.append(score)
            else:
                m.errors += 1
        self._models[chosen].answers += 1

    def records(self, at: datetime, service: str) -> list[dict[str, Any]]:
        """The interval's `metric` records (empty if no request was decided)."""
        if not self.requests:
            return []
        out: list[dict[str, Any]] = []

        def put(model: str, name: str, value: float) -> None:
            out.append(
                {
                    "name": f"rendezvous.{name}",
                    "value": float(value),
                    "tags": {"model": model, "service": service},
                    "event_time": at,
                }
            )

        put("*", "requests", self.requests)
        lat = np.asarray(self._latency_ms)
        put("*", "latency_p50_ms", float(np.quantile(lat, 0.5)))
        put("*", "latency_p99_ms", float(np.quantile(lat, 0.99)))
        put("*", "overhead_p99_ms", float(np.quantile(np.asarray(self._overhead_ms), 0.99)))
        for key in sorted(self._models):
            m = self._models[key]
            put(key, "requests", m.requests)
            put(key, "answers", m.answers)
            put(key, "share_selected", m.answers / self.requests)
            if m.errors:
                put(key, "errors", m.errors)
            if m.arrivals_ms:
                a = np.asarray(m.arrivals_ms)
                put(key, "latency_p50_ms", float(np.quantile(a, 0.5)))
                put(key, "latency_p99_ms", float(np.quantile(a, 0.99)))
            if m.scores:
                s = np.asarray(m.scores)
                put(key, "score_mean", float(s.mean()))
                put(key, "score_min", float(s.min()))
                put(key, "score_p50", float(np.quantile(s, 0.5)))
                put(key, "score_max", float(s.max()))
        return out
