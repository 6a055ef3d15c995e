"""Model runners: a process tailing ``inputs`` through a consumer group and appending ``scores``.

    rendezvous model LOG --model pkg.mod:factory [--role champion] [--group NAME] [--member 0/2]

The model is the object replay runs (`replay.Model`, loaded by `replay.load_model`), so the
code replayed offline is the code served live. Its ``ctx`` is replay's `Context` answering as of
now: ``ctx.now`` is when the batch is scored, ``ctx.lookup``/``ctx.history`` see every record of
any topic appended by then (`LiveLookups`).

The loop: take a micro-batch of whatever has arrived (at most ``--batch`` inputs, waiting up to
``--max-wait-ms`` for it to fill; `rendezvous.group.InputTail`, woken by commits), score each
partition's rows with one ``predict`` call, append one ``model_score`` per input (who: model id,
version, role, runner id, host, code version; what: the score, or status ``"error"`` with the error
and a null score when the model raised or answered out of protocol; when: received and answered
times, ``latency_ms`` between them, event_time = answered; where from: input topic, partition and
offset), commit them with the chosen durability, and only then commit the group's offsets (at
most every ``--commit-interval-s``, on a thread of their own, `rendezvous.group.OffsetCommits`, so
a cursor's fsyncs never delay a score). A missing inputs topic is waited for (``--wait-s``); a
missing scores topic is created (`rendezvous.topics`, as many partitions as the inputs) and an
old one evolved to the shipped schema.

Invariants:

- at-least-once: an input's offset is committed only after its score is; a runner killed at any
  moment and restarted resumes from the group's committed position and skips no input;
- an input scored twice (scored, then killed before the offset commit) gives a second record
  with the same (request_id, model_id, model_version) and, for a deterministic model, the same
  score: every consumer counts each (request, model, version) once (`dedupe_scores`; the
  service's mailboxes keep the first arrival; replay's evaluation the last appended score);
- a model error never stops the runner: it is recorded per request, and the loop goes on;
- a hot-swap token (`rendezvous.swap`) of its model switches the version of that partition
  exactly there: the inputs before it are scored by the old version, a marker is appended, the
  inputs after it are scored by the new one (tokens are never scored).

With ``--kafka SERVERS --registry URL`` the inputs are read from, and the scores produced to, Kafka
(`rendezvous.kafka_transport`: the group's offsets are Kafka's, committed the same way); the log
still gives the lookups and the hot-swap records.

Several runners of one group divide its partitions explicitly (logstore's groups have no member
assignment): ``--partitions 0,2`` or ``--member I/N`` (partitions p with p % N == I), disjoint sets
covering the topic (`rendezvous.group`). Default: every partition.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import logstore
from logstore.timeutil import now_us
from replay import Context, load_model
from replay.engine.answers import coerce
from replay.engine.tokens import MARKER_STATUS, strip, tokens_in
from replay.models import check as check_model_attributes
from replay.models import lookups_of

from . import heap
from .config import Topics
from .group import POLL_S, OffsetCommits, advance, assigned_partitions, default_group
from .livelookups import LiveLookups
from .swap import Versions, version_loader
from .transport import LogTransport, Transport
from .transport import add_arguments as add_transport_arguments
from .transport import from_args as transport_from_args

__all__ = [
    "ROLES",
    "LiveLookups",
    "Runner",
    "RunnerStats",
    "add_arguments",
    "dedupe_scores",
    "main",
    "run_from_args",
]

log = logging.getLogger("rendezvous.runner")

ROLES = ("champion", "challenger", "canary", "shadow")
TIME = pa.timestamp("us", tz="UTC")
SCORES = pa.list_(pa.float64())
SMALL_COMMIT = 16  # polls of at most this many inputs commit their scores as dicts (row frames)
_WARN_EVERY_S = 10.0  # a failing model is logged at most once per this many seconds


def dedupe_scores(table: pa.Table) -> pa.Table:
    """One row per (request_id, model_id, model_version) of a scores table, as consumers count them.

    Kept: the first appended ``"ok"`` score, else the first appended error (an input re-scored
    after a crash gives identical records; a table without `status` counts every row as ok).
    Order: by (_append_time, _partition, _offset) when the system columns are there, else as given.
    """
    if table.num_rows == 0:
        return table
    n = table.num_rows
    keys = pc.binary_join_element_wise(
        table.column("request_id").cast(pa.string()),
        table.column("model_id").cast(pa.string()),
        table.column("model_version").cast(pa.string()),
        "\x00",
    )
    if "status" in table.column_names:
        status = table.column("status").cast(pa.string())
        failed = pc.fill_null(pc.not_equal(status, "ok"), True)
    else:
        failed = pa.array(np.zeros(n, bool))
    order_cols = [c for c in ("_append_time", "_partition", "_offset") if c in table.column_names]
    helper = pa.table(
        {"__key": keys, "__failed": failed, "__row": pa.array(np.arange(n, dtype=np.int64))}
        | {c: table.column(c) for c in order_cols}
    )
    sort = [("__key", "ascending"), ("__failed", "ascending")] + [(c, "ascending") for c in order_cols]
    idx = pc.sort_indices(helper, sort_keys=sort + [("__row", "ascending")])
    sorted_keys = keys.take(idx).combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys.take(idx)
    first = np.ones(n, bool)
    if n > 1:
        first[1:] = pc.not_equal(sorted_keys.slice(1), sorted_keys.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    keep = np.sort(idx.to_numpy()[first])
    return table.take(pa.array(keep))


@dataclass
class RunnerStats:
    """What a runner has done since it started."""

    batches: int = 0
    inputs: int = 0
    errors: int = 0  # inputs recorded with status "error"
    commits: int = 0  # group offset commits


class Runner:
    """One model, scoring `topics.inputs` into `topics.scores` (module docstring).

    `run()` loops in the calling thread until `stop_event` is set (`stop()`, or SIGTERM/SIGINT
    after `install_signals()`); `start()` runs it on a thread of its own. A model's `learn` is not
    called live: a runner serves frozen models (a new version comes with a hot-swap token or a new
    runner). `versions` builds another version of the model (default: `rendezvous.swap`'s rule).
    """

    def __init__(
        self,
        log: logstore.Log | str | os.PathLike[str],
        model: Any,
        *,
        role: str = "champion",
        group: str | None = None,
        topics: Topics | None = None,
        partitions: Sequence[int] | None = None,
        member: tuple[int, int] | None = None,
        batch: int = 256,
        max_wait_ms: float = 0.0,
        durability: str = "flush",
        runner_id: str | None = None,
        code_version: str | None = None,
        host: str | None = None,
        wait_s: float = 300.0,
        score_partitions: int | None = None,
        commit_interval_s: float = 1.0,
        versions: Callable[[str], Any] | None = None,
        transport: Transport | None = None,
        settle_heap: bool = False,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, found {role!r}")
        if durability not in ("flush", "fsync"):
            raise ValueError(f"durability must be 'flush' or 'fsync', found {durability!r}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, found {batch}")
        self.log = log if isinstance(log, logstore.Log) else logstore.open(log)
        self.transport: Transport = transport or LogTransport(self.log)  # inputs and scores: the log, or Kafka
        self.model = load_model(model) if isinstance(model, str) else model
        check_model_attributes(self.model)
        # the version of each partition, switched at hot-swap tokens (`rendezvous.swap`)
        self.versions = Versions(
            self.model, version_loader(self.model, model if isinstance(model, str) else None, versions)
        )
        self.role = role
        self.group = group or default_group(self.model.name, self.model.version)
        self.topics = topics or Topics()
        self.partitions = None if partitions is None else list(partitions)
        self.member = member
        self.batch = batch
        self.max_wait_s = max(0.0, max_wait_ms / 1000.0)
        self.durability = durability
        self.host = host or socket.gethostname()
        self.runner_id = runner_id or f"{self.host}-{os.getpid()}-{secrets.token_hex(3)}"
        self.code_version = code_version or f"logstore {logstore.__version__}"
        self.wait_s = wait_s
        self.score_partitions = score_partitions
        self.commit_interval_s = commit_interval_s
        self.stop_event = threading.Event()
        self.stats = RunnerStats()
        self.ready = threading.Event()  # set once the consumer and writer are open
        self.settle_heap = settle_heap  # freeze the heap once ready (`heap.settle`; the CLI's runners do)
        self.assigned: list[int] = []
        self.ctx = Context(LiveLookups(self.log, lookups_of(self.model)))
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self._warned_at = -float("inf")
        self._errors_unlogged = 0

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Runner:
        """Run on a background thread; `stop()` ends it."""

        def target() -> None:
            try:
                self.run()
            except BaseException as e:  # kept for stop() to raise
                self.error = e

        self._thread = threading.Thread(target=target, name=f"rendezvous-runner-{self.model.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to stop after the batch in hand (scored, committed) and wait for it."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"runner {self.runner_id} did not stop within {timeout} s (a model stalled?)")
        if self.error is not None:
            raise self.error

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop the loop cleanly; a second one exits at once (a stalled model)."""

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.stop_event.is_set():
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # --- the loop --------------------------------------------------------------------------------
    def run(self) -> RunnerStats:
        """Score until stopped; returns the stats. Raises only for what is not a model's error
        (the log unwritable, the inputs topic never appearing)."""
        try:
            return self._run(self.transport)
        finally:
            self.transport.close()

    def _run(self, transport: Transport) -> RunnerStats:
        inputs = self.topics.inputs
        if not transport.wait_for_inputs(inputs, self.stop_event, self.wait_s):
            return self.stats
        n = transport.input_partitions(inputs)
        transport.prepare_scores(self.topics, self.score_partitions or n)
        self.assigned = assigned_partitions(n, self.partitions, self.member)
        cursor = transport.cursor(inputs, self.group, self.assigned)
        positions = dict(cursor.positions)  # the group's committed position (or the start)
        self.versions = Versions.start(self.log, self.topics, self.model, self.versions.loader, positions)
        with transport.scores_writer(self.topics.scores, self.durability) as writer:
            tail = transport.tail(inputs, positions, cursor)
            commits = OffsetCommits(cursor, self.commit_interval_s)
            self.ready.set()
            if self.settle_heap:
                heap.settle()  # startup's objects out of the collector's walks (rendezvous/heap.py)
            log.info(
                "runner %s: model %s:%s (%s), group %r, partitions %s of %r from %s",
                self.runner_id,
                self.model.name,
                self.model.version,
                self.role,
                self.group,
                self.assigned,
                inputs,
                positions,
            )
            try:
                while not self.stop_event.is_set():
                    table = tail.get(self.batch, POLL_S, self.max_wait_s)
                    if table.num_rows:
                        self.score_table(table, writer)  # committed: now their offsets may be
                        advance(positions, table)
                        commits.put(positions)
            finally:
                tail.close()
                commits.close()
                self.stats.commits = commits.commits
        return self.stats

    def score_table(self, table: pa.Table, writer: Any) -> int:
        """Score polled input rows (one ``predict`` per partition's run of rows) and commit their
        score records; returns how many were recorded."""
        received = now_us()
        records: pa.Table | list[dict[str, Any]]
        if next(tokens_in(table), None) is not None:  # a hot-swap token among them (rare): in order, as dicts
            records = self._score_across_tokens(table, received)
            if records:  # (a poll of another model's tokens only: nothing to record)
                writer.append_batch(records)
            self.stats.batches += 1
            self.stats.inputs += sum(r["status"] != MARKER_STATUS for r in records)
            return len(records)
        parts = table.column("_partition").to_numpy()
        cuts = np.flatnonzero(parts[1:] != parts[:-1]) + 1
        bounds = [0, *cuts.tolist(), table.num_rows]
        out = [self._score(table.slice(lo, hi - lo), int(parts[lo]), received) for lo, hi in zip(bounds, bounds[1:])]
        if table.num_rows <= SMALL_COMMIT:  # the log's cheap path for a few records: dicts
            records = [d for s in out for d in self._dicts(s)]
        else:
            records = pa.concat_tables([self._table(s) for s in out])
        n: int = len(records)
        writer.append_batch(records)  # committed (and synced with fsync) before it returns
        self.stats.batches += 1
        self.stats.inputs += n
        return n

    def _warn(self, m: Any, n: int, error: str) -> None:
        """Log a model's error: the first at once, then at most one line per `_WARN_EVERY_S`."""
        self._errors_unlogged += n
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            log.warning("model %s:%s raised on %d input(s): %s", m.name, m.version, self._errors_unlogged, error)
            self._warned_at, self._errors_unlogged = now, 0

    def _score_across_tokens(self, table: pa.Table, received: int) -> list[dict[str, Any]]:
        """Score a poll holding tokens: each partition's inputs before a token of this model by its
        old version, then a marker, then the rest by the new version (`rendezvous.swap`)."""
        batch = table.combine_chunks().to_batches()[0]
        tokens = dict(tokens_in(batch))
        parts = batch.column(batch.schema.get_field_index("_partition")).to_pylist()
        offsets = batch.column(batch.schema.get_field_index("_offset")).to_pylist()
        records: list[dict[str, Any]] = []
        lo = 0
        for i in range(batch.num_rows + 1):
            if i < batch.num_rows and i not in tokens and parts[i] == parts[lo]:
                continue
            if i > lo:  # the run [lo, i) of one partition, no token in it
                records += self._dicts(
                    self._score(pa.Table.from_batches([batch.slice(lo, i - lo)]), parts[lo], received)
                )
            lo = i + 1 if i in tokens else i
            tok = tokens.get(i)
            if tok is not None and tok["model_id"] == self.model.name:
                old = self.versions.switch(parts[i], tok["version"])
                records.append(self._marker(batch, i, parts[i], offsets[i], old, tok["version"]))
        return records

    def _marker(
        self, batch: pa.RecordBatch, row: int, partition: int, offset: int, old: str, new: str
    ) -> dict[str, Any]:
        """The record of this runner passing a token: where, and from which version to which."""
        now = now_us()
        rid = batch.column(batch.schema.get_field_index("request_id"))[row].as_py()
        return {
            "request_id": rid,
            "event_time": now,
            "model_id": self.model.name,
            "model_version": new,
            "swapped_from": old,
            "host": self.host,
            "code_version": self.code_version,
            "role": self.role,
            "runner_id": self.runner_id,
            "input_topic": self.topics.inputs,
            "input_partition": partition,
            "input_offset": offset,
            "received_time": now,
            "answered_time": now,
            "status": MARKER_STATUS,
        }

    def _score(self, rows: pa.Table, partition: int, received: int) -> _Scored:
        batch = strip(rows.combine_chunks().to_batches()[0])  # `rows` is not empty: one batch
        n = batch.num_rows
        m = self.versions.model(partition)
        score: Any = None
        scores: Any = None
        label: Any = None
        error: str | None = None
        started = now_us()
        try:
            self.ctx._enter(m, batch, self.topics.inputs, partition, started, None, None)
            answer = m.predict(batch, self.ctx)
            score, scores, label = coerce(answer, n, m)
        except Exception as e:  # a model's failure is data, never the runner's end
            error = f"{type(e).__name__}: {e}"[:2000]
            self._warn(m, n, error)
            self.stats.errors += n
        return _Scored(batch, partition, received, now_us(), score, scores, label, error, m)

    def _table(self, s: _Scored) -> pa.Table:
        """A scored run of inputs as `model_score` columns (every run's table has the same columns
        and types, so a poll's tables concatenate)."""
        batch, n, m = s.batch, s.batch.num_rows, s.model
        cols: dict[str, Any] = {
            "request_id": batch.column(batch.schema.get_field_index("request_id")).cast(pa.string()),
            "event_time": pa.array(np.full(n, s.answered, np.int64)).view(TIME),
            "model_id": pa.array([m.name] * n, pa.string()),
            "model_version": pa.array([m.version] * n, pa.string()),
            "score": pa.nulls(n, pa.float64()) if s.error is not None else pa.array(s.score, pa.float64()),
            "latency_ms": pa.array(np.full(n, (s.answered - s.received) / 1000.0, np.float32)),
            "host": pa.array([self.host] * n, pa.string()),
            "code_version": pa.array([self.code_version] * n, pa.string()),
            "role": pa.array([self.role] * n, pa.string()),
            "runner_id": pa.array([self.runner_id] * n, pa.string()),
            "input_topic": pa.array([self.topics.inputs] * n, pa.string()),
            "input_partition": pa.array(np.full(n, s.partition, np.int32)),
            "input_offset": batch.column(batch.schema.get_field_index("_offset")).cast(pa.int64()),
            "received_time": pa.array(np.full(n, s.received, np.int64)).view(TIME),
            "answered_time": pa.array(np.full(n, s.answered, np.int64)).view(TIME),
            "status": pa.array(["ok" if s.error is None else "error"] * n, pa.string()),
            "error": pa.array([s.error] * n, pa.string()),
        }
        cols["scores"] = pa.nulls(n, SCORES) if s.scores is None else s.scores.cast(SCORES)
        cols["label"] = pa.nulls(n, pa.string()) if s.label is None else s.label
        return pa.table(cols)

    def _dicts(self, s: _Scored) -> list[dict[str, Any]]:
        """The same records as `_table`, as dicts: a small commit's path (the log's row frames)."""
        batch, n, m = s.batch, s.batch.num_rows, s.model
        ids = batch.column(batch.schema.get_field_index("request_id")).to_pylist()
        offsets = batch.column(batch.schema.get_field_index("_offset")).to_pylist()
        ok = s.error is None
        score = [None] * n if not ok else pa.array(s.score, pa.float64()).to_pylist()
        scores = [None] * n if s.scores is None else s.scores.cast(SCORES).to_pylist()
        label = [None] * n if s.label is None else s.label.to_pylist()
        common = {
            "event_time": s.answered,
            "model_id": m.name,
            "model_version": m.version,
            "latency_ms": float(np.float32((s.answered - s.received) / 1000.0)),
            "host": self.host,
            "code_version": self.code_version,
            "role": self.role,
            "runner_id": self.runner_id,
            "input_topic": self.topics.inputs,
            "input_partition": s.partition,
            "received_time": s.received,
            "answered_time": s.answered,
            "status": "ok" if ok else "error",
            "error": s.error,
        }
        return [
            {
                **common,
                "request_id": ids[i],
                "input_offset": offsets[i],
                "score": score[i],
                "scores": scores[i],
                "label": label[i],
            }
            for i in range(n)
        ]


@dataclass
class _Scored:
    """One partition's run of inputs, scored (or failed: `error`)."""

    batch: pa.RecordBatch
    partition: int
    received: int
    answered: int
    score: Any
    scores: Any
    label: Any
    error: str | None
    model: Any  # the version that scored them


# --- the command -----------------------------------------------------------------------------------
def _member(text: str) -> tuple[int, int]:
    i, sep, k = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return int(i), int(k)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/2), found {text!r}") from None


def _partition_list(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected partition numbers separated by commas, found {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rendezvous model``."""
    parser.add_argument("log", metavar="LOG", help="the log directory")
    parser.add_argument("--model", required=True, metavar="MODULE:FACTORY", help="the model (replay.load_model)")
    parser.add_argument("--role", choices=ROLES, default="champion", help="the model's role (default: champion)")
    parser.add_argument("--group", help="consumer group (default: <name>_<version> of the model)")
    share = parser.add_mutually_exclusive_group()
    share.add_argument("--partitions", type=_partition_list, metavar="P,Q", help="input partitions to read")
    share.add_argument("--member", type=_member, metavar="I/N", help="read partitions p with p %% N == I")
    parser.add_argument("--batch", type=int, default=256, metavar="N", help="most inputs per batch (default 256)")
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="wait this long for a batch to fill (default 0: score at once)",
    )
    parser.add_argument("--durability", choices=("flush", "fsync"), default="flush", help="score commits (flush)")
    parser.add_argument(
        "--commit-interval-s",
        type=float,
        default=1.0,
        metavar="S",
        help="commit the group's offsets at most this often (default 1; a crash re-scores up to this much)",
    )
    parser.add_argument("--runner-id", metavar="ID", help="this runner's id in its scores (default: host-pid-random)")
    parser.add_argument("--code-version", metavar="V", help="the serving code's version, recorded in each score")
    parser.add_argument("--inputs", default="inputs", metavar="TOPIC", help="the inputs topic (default: inputs)")
    parser.add_argument("--scores", default="scores", metavar="TOPIC", help="the scores topic (default: scores)")
    parser.add_argument(
        "--wait-s",
        type=float,
        default=300.0,
        metavar="S",
        help="how long to wait for the inputs topic to appear (default 300)",
    )
    add_transport_arguments(parser, service=False)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``rendezvous model`` until SIGTERM/SIGINT; 0 on a clean stop, 1 on a failure (one line)."""
    try:
        lg = logstore.open(args.log)
        runner = Runner(
            lg,
            args.model,
            role=args.role,
            group=args.group,
            topics=Topics(inputs=args.inputs, scores=args.scores),
            partitions=args.partitions,
            member=args.member,
            batch=args.batch,
            max_wait_ms=args.max_wait_ms,
            durability=args.durability,
            runner_id=args.runner_id,
            code_version=args.code_version,
            wait_s=args.wait_s,
            commit_interval_s=args.commit_interval_s,
            transport=transport_from_args(args, lg),
            settle_heap=True,
        )
        runner.install_signals()
        stats = runner.run()
    except (logstore.LogstoreError, ValueError, TimeoutError, OSError) as e:
        print(f"rendezvous model: {e}", file=sys.stderr)
        return 1
    print(
        f"rendezvous model: stopped after {stats.inputs} inputs in {stats.batches} batches ({stats.errors} errors)",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rendezvous model",
        description="Score the inputs topic with a model, appending model_score records.",
        epilog="example:\n  rendezvous model ./log --model mypkg.models:champion --role champion --member 0/2\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
