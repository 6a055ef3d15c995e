"""Shared fixtures: small score records and a log in a temp directory."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

os.environ.setdefault("HYPOTHESIS_PROFILE", "default")

T0 = datetime(2026, 11, 1, tzinfo=UTC)

SCORE_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("latency_ms", pa.float32()),
    ]
)


def score_rows(n: int, start: int = 0, t0: datetime = T0) -> list[dict]:
    """`n` score records with request ids r{start}..; event times 1 ms apart."""
    return [
        {
            "request_id": f"r{i}",
            "event_time": t0 + timedelta(milliseconds=i),
            "model_id": f"m{i % 3}",
            "score": (i % 97) / 97.0,
            "latency_ms": float(i % 11),
        }
        for i in range(start, start + n)
    ]


class StepClock:
    """A deterministic writer clock: each call advances `step`."""

    def __init__(self, start: datetime = T0, step: timedelta = timedelta(seconds=1)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        t = self.now
        self.now += self.step
        return t


@pytest.fixture
def log(tmp_path):
    import logstore

    lg = logstore.open(tmp_path / "log")
    yield lg
    lg.close()


@pytest.fixture
def scores(log):
    log.create_topic("scores", schema=SCORE_SCHEMA, partitions=3, key_field="request_id")
    return log
