"""Scripted in-process scorers for the service's tests: they tail `inputs` and append `scores`.

A `Scorer` plays one model runner in a thread, with a scripted behaviour: answer after `delay_s`
with `score_of(features)` (an input it raises on gets an error score), fail every input (an error
score), or never answer (stall). The
service under test cannot tell it from a runner process: it only sees records in `scores`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def amount_score(features: dict[str, float]) -> float:
    return min(1.0, features.get("amount", 0.0) / 100.0)


class Scorer:
    """One scripted model (see the module docstring). Use as a context manager."""

    def __init__(
        self,
        log: Any,
        model_id: str,
        version: str = "1",
        *,
        behaviour: str = "ok",  # "ok" | "error" | "stall"
        delay_s: float = 0.0,
        role: str | None = "champion",
        score_of: Callable[[dict[str, float]], float] = amount_score,
        inputs: str = "inputs",
        scores: str = "scores",
    ) -> None:
        self.log, self.model_id, self.version = log, model_id, version
        self.behaviour, self.delay_s, self.role, self.score_of = behaviour, delay_s, role, score_of
        self.inputs, self.scores = inputs, scores
        self.scored = 0
        self._reader: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def __enter__(self) -> Scorer:
        self._reader = self.log.reader(
            self.inputs, start=self.log.end_offsets(self.inputs), follow=True, poll_interval=0.02
        )
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"scorer-{self.model_id}")
        self._thread.start()
        if not self._ready.wait(timeout=60):  # cold start (writer open, decoding set-up) before serving
            raise TimeoutError(f"scorer {self.model_id} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.follow = False
        assert self._thread is not None
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            with self.log.writer(self.scores, durability="flush", linger_ms=None) as w:
                from logstore.rowframes import warm

                warm()
                self._ready.set()
                for batch in self._reader:
                    if self.behaviour == "stall":
                        continue
                    received = datetime.now(UTC)
                    if self.delay_s:
                        time.sleep(self.delay_s)
                    rows = []
                    for r in batch.to_pylist(maps_as_pydicts="lossy"):
                        ok = self.behaviour == "ok"
                        score = None
                        if ok:
                            try:  # a model raising on one input fails that input only
                                score = float(self.score_of(r["features"]))
                            except Exception:
                                ok = False
                        rows.append(
                            {
                                "request_id": r["request_id"],
                                "event_time": datetime.now(UTC),
                                "model_id": self.model_id,
                                "model_version": self.version,
                                "score": score,
                                "latency_ms": 1000 * self.delay_s,
                                "role": self.role,
                                "runner_id": f"scripted-{self.model_id}",
                                "input_topic": self.inputs,
                                "input_partition": r["_partition"],
                                "input_offset": r["_offset"],
                                "received_time": received,
                                "answered_time": datetime.now(UTC),
                                "status": "ok" if ok else "error",
                                "error": None if ok else "ValueError: scripted failure",
                            }
                        )
                    w.append_batch(rows)
                    self.scored += len(rows)
        except BaseException as e:  # noqa: BLE001 - surfaced by the test
            self.error = e
        finally:
            self._ready.set()
