"""Logs and models shared by the replay tests (importable by worker processes and the CLI)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Clock:
    """A settable writer clock."""

    def __init__(self, t: datetime = T0) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def write_at(log: Any, topic: str, rows: Iterable[tuple[datetime, dict]]) -> None:
    """Append `rows` (append time, record), one append per distinct time, in time order."""
    clock = Clock()
    rows = sorted(rows, key=lambda r: r[0])
    with log.writer(topic, clock=clock, linger_ms=None) as w:
        i = 0
        while i < len(rows):
            j = i
            while j < len(rows) and rows[j][0] == rows[i][0]:
                j += 1
            clock.t = rows[i][0]
            w.append_batch([r for _, r in rows[i:j]])
            i = j


def label_of(i: int, x: float) -> float:
    return float((x + 0.3 * np.sin(i)) > 0)


def make_log(
    path: Any,
    n: int = 60,
    *,
    partitions: int = 2,
    delay: float = 3.0,
    seed: int = 0,
    frame: int = 1,
    outcomes: bool = True,
) -> Any:
    """A log with `n` model_input records ("inputs") appended 1 s apart (`frame` per append) and
    their outcomes ("outcomes") appended `delay` seconds after each input."""
    import logstore

    log = logstore.open(path)
    log.create_topic("inputs", "model_input", partitions=partitions, key_field="request_id")
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=n)
    ys = rng.normal(size=n)
    rows = [
        (
            at(i - i % frame),
            {
                "request_id": f"r{i}",
                "event_time": at(i - 0.5),
                "features": {"x": float(xs[i]), "y": float(ys[i])},
                "raw": "{}",
                "source": "test",
            },
        )
        for i in range(n)
    ]
    write_at(log, "inputs", rows)
    if outcomes:
        log.create_topic("outcomes", "outcome", partitions=1, key_field="request_id")
        write_at(
            log,
            "outcomes",
            [
                (
                    at(i + delay),
                    {"request_id": f"r{i}", "event_time": at(i + delay), "label": label_of(i, float(xs[i]))},
                )
                for i in range(n)
            ],
        )
    return log


def features(batch: pa.RecordBatch) -> np.ndarray:
    """(n, 2) matrix of the x, y features of model_input rows."""
    import pyarrow.compute as pc

    col = batch.column("features")
    x = pc.map_lookup(col, "x", "first").to_numpy(zero_copy_only=False)
    y = pc.map_lookup(col, "y", "first").to_numpy(zero_copy_only=False)
    return np.stack([x, y], axis=1).astype(np.float64)


class Linear:
    """A stateless vectorized model: w . (x, y)."""

    def __init__(self, w: tuple[float, float] = (1.0, -0.5), name: str = "linear") -> None:
        self.w = np.array(w)
        self.name = name
        self.version = "1"

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        return features(batch) @ self.w


def make_linear() -> Linear:
    return Linear()


def make_other() -> Linear:
    return Linear((0.2, 0.7), name="other")


class OnlineMean:
    """A learning model: predicts the running mean of the labels learned so far (0.5 before)."""

    name = "mean"
    version = "1"

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        return np.full(batch.num_rows, self.total / self.count if self.count else 0.5)

    def learn(self, batch: pa.RecordBatch, ctx: Any) -> None:
        for y in batch.column(ctx.label).to_pylist():
            self.total += y
            self.count += 1


def make_mean() -> OnlineMean:
    return OnlineMean()


class Perceptron:
    """A learning model whose scores depend on the order it learns in (an online linear model)."""

    name = "perceptron"
    version = "1"

    def __init__(self, lr: float = 0.1) -> None:
        self.w = np.zeros(3)
        self.lr = lr

    def _x(self, batch: pa.RecordBatch) -> np.ndarray:
        f = features(batch)
        return np.hstack([f, np.ones((len(f), 1))])

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        return 1 / (1 + np.exp(-(self._x(batch) @ self.w)))

    def learn(self, batch: pa.RecordBatch, ctx: Any) -> None:
        X = self._x(batch)
        for x, y in zip(X, batch.column(ctx.label).to_pylist()):
            p = 1 / (1 + np.exp(-(x @ self.w)))
            self.w += self.lr * (y - p) * x


def make_perceptron() -> Perceptron:
    return Perceptron()


class InterruptAfter:
    """A stateless model that raises KeyboardInterrupt once, after `n` rows.

    "Once" is the class flag `armed` in this process; when the environment names a file in
    REPLAY_TEST_INTERRUPT_FILE (worker processes), whoever deletes that file first interrupts.
    """

    armed = True

    def __init__(self, n: int, inner: Any = None) -> None:
        self.n = n
        self.seen = 0
        self.inner = inner or Linear()
        self.name = self.inner.name
        self.version = self.inner.version

    def params(self) -> Any:
        return {"inner": self.inner}

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        self.seen += batch.num_rows
        if self.seen > self.n and self._fire():
            raise KeyboardInterrupt
        return self.inner.predict(batch, ctx)

    @staticmethod
    def _fire() -> bool:
        import os

        marker = os.environ.get("REPLAY_TEST_INTERRUPT_FILE")
        if marker:
            try:
                os.remove(marker)
                return True
            except FileNotFoundError:
                return False
        if InterruptAfter.armed:
            InterruptAfter.armed = False
            return True
        return False


def make_interrupting_linear() -> InterruptAfter:
    return InterruptAfter(20)


class Cheater:
    """Tries to read its own request's outcome through ctx (as a lookup on the outcomes topic)."""

    name = "cheater"
    version = "1"
    lookups = ["outcomes"]

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        found = ctx.lookup("outcomes", batch.column("request_id"))
        labels = found.column("label").to_pylist()
        self.seen += list(zip(batch.column("request_id").to_pylist(), labels))
        return np.array([-1.0 if y is None else y for y in labels])


class Peeker:
    """Asks for the outcomes as of one second after its clock: a time leak."""

    name = "peeker"
    version = "1"
    lookups = ["outcomes"]

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        found = ctx.lookup("outcomes", batch.column("request_id"), as_of=ctx.now + timedelta(seconds=1))
        return np.zeros(found.num_rows)


def make_peeker() -> Peeker:
    return Peeker()


class FailOnPartition:
    """A stateless model that raises ValueError on the rows of one input partition."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.name = "fails"
        self.version = "1"

    def params(self) -> Any:
        return {"partition": self.partition}

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        if ctx.partition == self.partition:
            raise ValueError(f"bad rows in partition {self.partition}")
        return np.zeros(batch.num_rows)


PROFILE_INPUT_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("user", pa.string()),
        ("x", pa.float64()),
    ]
)
PROFILE_SCHEMA = pa.schema(
    [("user", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")), ("value", pa.float64())]
)


def make_profile_log(
    path: Any,
    inputs: Iterable[tuple[float, str]],
    profiles: Iterable[tuple[float, str]],
    *,
    partitions: int = 2,
    event_lag: float = 0.0,
) -> Any:
    """A log with "inputs" (request r{i} of `user` appended at time t, event time t - event_lag)
    and "profiles" (value i for `user`, appended at time t), both keyed (user / request id)."""
    import logstore

    log = logstore.open(path)
    log.create_topic(
        "inputs", PROFILE_INPUT_SCHEMA, partitions=partitions, key_field="request_id", event_time_field="event_time"
    )
    log.create_topic("profiles", PROFILE_SCHEMA, partitions=partitions, key_field="user")
    write_at(
        log,
        "inputs",
        [
            (at(t), {"request_id": f"r{i}", "event_time": at(t - event_lag), "user": u, "x": 1.0})
            for i, (t, u) in enumerate(inputs)
        ],
    )
    write_at(
        log,
        "profiles",
        [(at(t), {"user": u, "event_time": at(t), "value": float(i)}) for i, (t, u) in enumerate(profiles)],
    )
    return log


class ProfileScore:
    """Scores each row with its user's latest profile value (-1 when none) plus a tenth of the
    number of profiles in its history; looks up only rows at or after `after` seconds (so a topic
    not declared is discovered mid-run). `declare`: list "profiles" in `lookups`."""

    version = "1"

    def __init__(self, declare: bool = False, after: float = 0.0, name: str = "profile") -> None:
        self.name = name
        self.after = after
        self.declare = declare
        if declare:
            self.lookups = {"profiles": "user"}
        self.seen: list[tuple[str, Any, Any]] = []  # (request id, row clock, append time of the answer)

    def params(self) -> Any:
        return {"after": self.after}  # declared or not, the same model

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        n = batch.num_rows
        clocks = ctx.clock.to_pylist()
        if not n or clocks[-1] < at(self.after):
            return np.zeros(n)
        found = ctx.lookup("profiles", batch.column("user"))
        values = found.column("value").to_pylist()
        times = found.column("_append_time").to_pylist()
        users = batch.column("user").to_pylist()
        hist = [ctx.history("profiles", u, row=i).num_rows for i, u in enumerate(users)]
        self.seen += list(zip(batch.column("request_id").to_pylist(), clocks, times))
        return np.array([(-1.0 if v is None else v) + h / 10 for v, h in zip(values, hist)])


def make_profile_declared() -> ProfileScore:
    return ProfileScore(declare=True)


def make_profile_on_demand() -> ProfileScore:
    return ProfileScore(declare=False)


def make_slash_named() -> Linear:
    return Linear(name="team/linear")
