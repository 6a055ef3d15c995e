"""Test models for runners: fast, slow (heavy-tailed), failing and stalling, all `replay.Model`s.

Every score is a pure function of the request id and the model (`hash_score`), whatever the
batch, so an input scored twice gets the same score. Factories take no arguments (for
``--model tests.rendezvous.models:fast``); the environment tunes them where a test needs it:

- ``TEST_SLOW_MS``: the slow model's median delay per batch (default 5 ms; Pareto tail, capped
  at 40x the median);
- ``TEST_FAIL_EVERY``: the failing model raises on a batch holding a request whose hash is 0
  modulo this (default 5);
- ``TEST_STALL_S``: how long the stalling model stalls on each batch (default 3600 s), unless
  `Stalling.release` is set.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from typing import Any

import numpy as np
import pyarrow as pa


def _hashes(batch: pa.RecordBatch) -> np.ndarray:
    ids = batch.column(batch.schema.get_field_index("request_id")).to_pylist()
    return np.array([zlib.crc32(str(r).encode()) for r in ids], np.uint64)


def hash_score(request_id: str, salt: str) -> float:
    """The score every test model gives `request_id` (salted by the model's name and version)."""
    return zlib.crc32(f"{salt}/{request_id}".encode()) / 2**32


class HashModel:
    """Scores each request `hash_score(request_id, name:version)`; deterministic and batch-free."""

    def __init__(self, name: str = "fast", version: str = "1") -> None:
        self.name = name
        self.version = version

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        ids = batch.column(batch.schema.get_field_index("request_id")).to_pylist()
        salt = f"{self.name}:{self.version}"
        return np.array([hash_score(str(r), salt) for r in ids], np.float64)


class Slow(HashModel):
    """A `HashModel` that takes a heavy-tailed (Pareto) time per batch, seeded by its first request."""

    def __init__(self, median_ms: float | None = None) -> None:
        super().__init__("slow", "1")
        self.median_ms = float(os.environ.get("TEST_SLOW_MS", "5")) if median_ms is None else median_ms

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        h = int(_hashes(batch)[0]) if batch.num_rows else 0
        u = (h % 10_000 + 0.5) / 10_000
        # Pareto with alpha 1.5 and median `median_ms`: x_m u^(-1/alpha), x_m = median 2^(-1/alpha)
        delay = min(self.median_ms * 2 ** (-1 / 1.5) * u ** (-1 / 1.5), 40 * self.median_ms)
        time.sleep(delay / 1000)
        return super().predict(batch, ctx)


class Failing(HashModel):
    """A `HashModel` that raises on every batch holding a request whose hash is 0 modulo `every`."""

    def __init__(self, every: int | None = None) -> None:
        super().__init__("failing", "1")
        self.every = int(os.environ.get("TEST_FAIL_EVERY", "5")) if every is None else every

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        if (_hashes(batch) % np.uint64(self.every) == 0).any():
            raise RuntimeError("this batch holds a request the model cannot score")
        return super().predict(batch, ctx)


class Stalling(HashModel):
    """A `HashModel` that stalls on every batch for `stall_s` seconds (until `release` is set)."""

    release = threading.Event()

    def __init__(self, stall_s: float | None = None) -> None:
        super().__init__("stalling", "1")
        self.stall_s = float(os.environ.get("TEST_STALL_S", "3600")) if stall_s is None else stall_s

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        self.release.wait(self.stall_s)
        return super().predict(batch, ctx)


class WrongShape(HashModel):
    """Answers one score too few: out of protocol, recorded as an error."""

    def __init__(self) -> None:
        super().__init__("wrongshape", "1")

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        return super().predict(batch, ctx)[1:]


def fast() -> HashModel:
    return HashModel("fast", "1")


def challenger() -> HashModel:
    return HashModel("challenger", "2")


def canary() -> HashModel:
    return HashModel("canary", "1.0")


def slow() -> Slow:
    return Slow()


def failing() -> Failing:
    return Failing()


def stalling() -> Stalling:
    return Stalling()


def swappable(version: str = "1") -> HashModel:
    """``swappable`` at `version` (a factory taking ``version``: a runner can hot-swap it)."""
    return HashModel("swappable", version)
