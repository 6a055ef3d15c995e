"""Tests for rendezvous.runner: scoring, model errors, at-least-once across SIGKILL, groups."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logstore
import schemas
from rendezvous.group import default_group
from rendezvous.runner import (
    Runner,
    add_arguments,
    dedupe_scores,
    run_from_args,
)
from rendezvous.topics import ensure_topics
from tests.rendezvous import models
from tests.rendezvous.procs import ROOT, kill, runner_process, wait_for
from tests.rendezvous.test_topics import V1

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def inputs(start: int, n: int) -> list[dict]:
    return [
        {
            "request_id": f"q{i}",
            "event_time": T0 + timedelta(milliseconds=i),
            "features": {"x": float(i)},
            "raw": f'{{"features": {{"x": {i}}}}}',
            "source": "rendezvous",
        }
        for i in range(start, start + n)
    ]


def new_log(tmp_path, partitions: int = 4) -> logstore.Log:
    log = logstore.open(tmp_path / "log")
    ensure_topics(log, partitions=partitions, roles=["inputs"])
    return log


def append(log: logstore.Log, rows: list[dict]) -> None:
    with log.writer("inputs", linger_ms=None) as w:
        w.append_batch(rows)


def scores(log: logstore.Log) -> pa.Table:
    return log.read("scores") if "scores" in log.topics() else pa.table({"request_id": pa.array([], pa.string())})


def n_scores(log: logstore.Log) -> int:
    return sum(log.end_offsets("scores").values()) if "scores" in log.topics() else 0


def test_runner_scores_every_input_once_with_who_what_when(tmp_path):
    """In process: every input gets one score carrying the runner's metadata; offsets committed."""
    log = new_log(tmp_path)
    append(log, inputs(0, 150))
    runner = Runner(log, models.fast(), role="challenger", batch=32, code_version="abc123").start()
    try:
        append(log, inputs(150, 150))
        assert wait_for(lambda: n_scores(log) >= 300, timeout=30)
    finally:
        runner.stop()
    got = scores(log).to_pylist()
    assert Counter(r["request_id"] for r in got) == Counter(f"q{i}" for i in range(300))
    by_input = {(r["_partition"], r["_offset"]): r["request_id"] for r in log.read("inputs").to_pylist()}
    for r in got:
        assert (r["model_id"], r["model_version"], r["role"], r["status"], r["error"]) == (
            "fast",
            "1",
            "challenger",
            "ok",
            None,
        )
        assert r["score"] == models.hash_score(r["request_id"], "fast:1")
        assert r["runner_id"] == runner.runner_id and r["code_version"] == "abc123" and r["host"]
        assert by_input[(r["input_partition"], r["input_offset"])] == r["request_id"]
        assert r["input_topic"] == "inputs"
        assert r["received_time"] <= r["answered_time"] == r["event_time"]
        assert r["latency_ms"] == pytest.approx((r["answered_time"] - r["received_time"]) / timedelta(milliseconds=1))
    group = log.consumer("inputs", default_group("fast", "1"))
    assert group.committed() == log.end_offsets("inputs")
    assert runner.stats.inputs == 300 and runner.stats.errors == 0


@pytest.mark.parametrize("batch,max_wait_ms", [(1, 0.0), (50, 20.0)])
def test_fsync_durability_and_batching_score_everything_once(tmp_path, batch, max_wait_ms):
    log = new_log(tmp_path, partitions=3)
    runner = Runner(log, models.fast(), durability="fsync", batch=batch, max_wait_ms=max_wait_ms).start()
    try:
        for k in range(6):
            append(log, inputs(k * 10, 10))
        assert wait_for(lambda: n_scores(log) >= 60, timeout=30)
    finally:
        runner.stop()
    assert Counter(scores(log).column("request_id").to_pylist()) == Counter(f"q{i}" for i in range(60))
    assert runner.stats.batches >= (60 if batch == 1 else 2)


def test_model_errors_are_recorded_per_request_and_the_runner_goes_on(tmp_path):
    """A model raising on some batches: those requests get status "error", the error, a null
    score; the other batches are scored; every input is recorded once."""
    log = new_log(tmp_path, partitions=2)
    runner = Runner(log, models.Failing(every=7), batch=4).start()
    try:
        for k in range(10):
            append(log, inputs(k * 20, 20))
        assert wait_for(lambda: n_scores(log) >= 200, timeout=30)
    finally:
        runner.stop()
    got = scores(log).to_pylist()
    assert sorted(r["request_id"] for r in got) == sorted(f"q{i}" for i in range(200))
    errors = [r for r in got if r["status"] == "error"]
    oks = [r for r in got if r["status"] == "ok"]
    assert errors and oks
    assert all(r["score"] is None and "RuntimeError: this batch holds" in r["error"] for r in errors)
    assert all(r["score"] is not None and r["error"] is None for r in oks)
    assert runner.stats.errors == len(errors)


def test_evaluation_counts_error_scores_as_not_scored(tmp_path):
    """replay.evaluate over live scores: a request whose score is an error is not scored, and a
    request scored twice counts once."""
    from replay import evaluate

    log = new_log(tmp_path, partitions=1)
    append(log, inputs(0, 40))
    runner = Runner(log, models.Failing(every=3), batch=1).start()
    try:
        assert wait_for(lambda: n_scores(log) >= 40, timeout=30)
    finally:
        runner.stop()
    rows = scores(log).to_pylist()
    ok = {r["request_id"] for r in rows if r["status"] == "ok"}
    assert 0 < len(ok) < 40
    with log.writer("scores") as w:  # a re-score of an ok request (a restart): the same record again
        again = next(r for r in rows if r["status"] == "ok")
        w.append_batch([{k: v for k, v in again.items() if not k.startswith("_")}])
    ensure_topics(log, roles=["outcomes"])
    with log.writer("outcomes") as w:
        w.append_batch([{"request_id": f"q{i}", "event_time": T0, "label": float(i % 2)} for i in range(40)])
    ev = evaluate(log, "scores", outcomes="outcomes", inputs="inputs", bootstrap=0)
    row = ev.overall.to_pylist()[0]
    assert (row["model"], row["n"], row["n_labeled"]) == ("failing", len(ok), len(ok))


def test_an_answer_out_of_protocol_is_an_error(tmp_path):
    log = new_log(tmp_path, partitions=1)
    append(log, inputs(0, 5))
    runner = Runner(log, models.WrongShape()).start()
    try:
        assert wait_for(lambda: n_scores(log) >= 5, timeout=30)
    finally:
        runner.stop()
    got = scores(log).to_pylist()
    assert {r["status"] for r in got} == {"error"} and "one score per row" in got[0]["error"]


def test_runner_waits_for_the_inputs_topic(tmp_path):
    """Started before the inputs topic exists, the runner waits for it, then scores."""
    log = logstore.open(tmp_path / "log")
    runner = Runner(log, models.fast(), wait_s=30).start()
    try:
        time.sleep(0.2)
        assert not runner.ready.is_set()
        ensure_topics(log, partitions=2, roles=["inputs"])
        append(log, inputs(0, 10))
        assert wait_for(lambda: n_scores(log) >= 10, timeout=30)
        assert log.config("scores").partitions == 2  # created like the inputs
    finally:
        runner.stop()


def test_runner_gives_up_waiting_after_wait_s(tmp_path):
    log = logstore.open(tmp_path / "log")
    with pytest.raises(TimeoutError, match="did not appear"):
        Runner(log, models.fast(), wait_s=0.1).run()


def test_runner_upgrades_a_scores_topic_made_with_the_old_schema(tmp_path):
    log = new_log(tmp_path, partitions=1)
    log.create_topic("scores", schema=schemas.parse(V1 / "model_score.v1.avsc"), key_field="request_id")
    append(log, inputs(0, 3))
    runner = Runner(log, models.fast()).start()
    try:
        assert wait_for(lambda: n_scores(log) >= 3, timeout=30)
    finally:
        runner.stop()
    assert [v.version for v in log.schemas("scores")] == [1, 2]
    assert {r["role"] for r in scores(log).to_pylist()} == {"champion"}


class LookingUp:
    """Scores each request by the `weight` of its request id in the `weights` topic, as of now."""

    name, version = "lookup", "1"

    def predict(self, batch, ctx):
        w = ctx.lookup("weights", "request_id", columns=["weight"])
        return [x if x is not None else -1.0 for x in w.column("weight").to_pylist()]


def test_ctx_answers_lookups_as_of_now(tmp_path):
    """A model's ctx.lookup sees what was appended to any topic before the batch was scored."""
    log = new_log(tmp_path, partitions=1)
    weight = {
        "type": "record",
        "name": "W",
        "fields": [{"name": "request_id", "type": "string"}, {"name": "weight", "type": "double"}],
    }
    log.create_topic("weights", schema=weight, partitions=2, key_field="request_id")
    with log.writer("weights") as w:
        w.append_batch([{"request_id": "q0", "weight": 0.5}, {"request_id": "q1", "weight": 0.75}])
    runner = Runner(log, LookingUp()).start()
    try:
        append(log, inputs(0, 3))
        assert wait_for(lambda: n_scores(log) >= 3, timeout=30)
        with log.writer("weights") as w:
            w.append_batch([{"request_id": "q0", "weight": 0.125}])
        append(log, [dict(inputs(0, 1)[0], request_id="q0")])
        assert wait_for(lambda: n_scores(log) >= 4, timeout=30)
    finally:
        runner.stop()
    got = [(r["request_id"], r["score"]) for r in scores(log).sort_by("_append_time").to_pylist()]
    assert sorted(got[:3]) == [("q0", 0.5), ("q1", 0.75), ("q2", -1.0)]
    assert got[3] == ("q0", 0.125)


def test_two_runners_of_one_group_divide_the_partitions(tmp_path):
    """Members 0/2 and 1/2 of one group read disjoint partitions that cover the topic: every input
    is scored exactly once, each partition by one runner."""
    log = new_log(tmp_path, partitions=4)
    runners = [Runner(log, models.fast(), member=(i, 2), batch=16, runner_id=f"r{i}").start() for i in range(2)]
    try:
        for k in range(8):
            append(log, inputs(k * 50, 50))
        assert wait_for(lambda: n_scores(log) >= 400, timeout=30)
        time.sleep(0.3)  # nothing more may come
    finally:
        for r in runners:
            r.stop()
    assert sorted(runners[0].assigned + runners[1].assigned) == [0, 1, 2, 3]
    got = scores(log).to_pylist()
    assert Counter(r["request_id"] for r in got) == Counter(f"q{i}" for i in range(400))
    owner: dict[int, set[str]] = {}
    for r in got:
        owner.setdefault(r["input_partition"], set()).add(r["runner_id"])
    assert sorted(owner) == [0, 1, 2, 3] and all(len(v) == 1 for v in owner.values())
    group = log.consumer("inputs", default_group("fast", "1"))
    assert group.committed() == log.end_offsets("inputs")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["a", "b"]), st.booleans()), max_size=40))
def test_dedupe_scores_keeps_one_row_per_request_model_version(rows):
    """One row per (request, model, version): the first ok one, else the first error; order kept."""
    table = pa.table(
        {
            "request_id": [f"q{r}" for r, _, _ in rows],
            "model_id": ["m"] * len(rows),
            "model_version": [v for _, v, _ in rows],
            "status": ["ok" if ok else "error" for _, _, ok in rows],
            "_offset": list(range(len(rows))),
        }
    )
    out = dedupe_scores(table).to_pylist()
    keys = [(r["request_id"], r["model_version"]) for r in out]
    assert len(keys) == len(set(keys)) == len({(f"q{r}", v) for r, v, _ in rows})
    assert [r["_offset"] for r in out] == sorted(r["_offset"] for r in out)
    for r in out:
        same = [i for i, (q, v, _) in enumerate(rows) if (f"q{q}", v) == (r["request_id"], r["model_version"])]
        oks = [i for i in same if rows[i][2]]
        assert r["_offset"] == (oks[0] if oks else same[0])


@pytest.mark.slow
def test_kill_9_and_restart_skips_no_input_and_rescores_identically(tmp_path):
    """A runner process SIGKILLed mid-stream three times and restarted: every input is scored, and
    every (request, model, version) has one distinct score value however often it was scored."""
    log = new_log(tmp_path, partitions=2)
    out = tmp_path / "runner.out"
    total, chunk = 1200, 40
    stop = threading.Event()

    def produce() -> None:
        for k in range(total // chunk):
            if stop.is_set():
                return
            append(log, inputs(k * chunk, chunk))
            time.sleep(0.03)

    producer = threading.Thread(target=produce)
    producer.start()
    args = ("--batch", "8", "--wait-s", "30", "--commit-interval-s", "5")  # kills land between commits
    env = {"TEST_SLOW_MS": "2"}
    try:
        for _ in range(3):
            with runner_process(log.path, "tests.rendezvous.models:slow", *args, output=out, env=env) as proc:
                target = n_scores(log) + 60
                assert wait_for(lambda t=target: n_scores(log) >= t, timeout=60), out.read_text()
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                assert proc.returncode == -signal.SIGKILL
        producer.join(60)
        with runner_process(log.path, "tests.rendezvous.models:slow", *args, output=out, env=env):
            seen = lambda: {r for r in scores(log).column("request_id").to_pylist()}  # noqa: E731
            assert wait_for(lambda: len(seen()) >= total, timeout=90, interval=0.2), out.read_text()
    finally:
        stop.set()
        producer.join(60)
    got = scores(log)
    assert set(got.column("request_id").to_pylist()) == {f"q{i}" for i in range(total)}
    distinct: dict[tuple[str, str, str], set[float]] = {}
    for r in got.select(["request_id", "model_id", "model_version", "score"]).to_pylist():
        distinct.setdefault((r["request_id"], r["model_id"], r["model_version"]), set()).add(r["score"])
    assert all(len(v) == 1 for v in distinct.values())
    assert dedupe_scores(got).num_rows == total < got.num_rows  # some inputs were scored again
    assert len({r for r in got.column("runner_id").to_pylist()}) == 4  # four process starts


def test_sigterm_stops_cleanly_with_offsets_committed(tmp_path):
    log = new_log(tmp_path, partitions=2)
    append(log, inputs(0, 100))
    out = tmp_path / "runner.out"
    with runner_process(log.path, "tests.rendezvous.models:fast", "--group", "g", output=out) as proc:
        assert wait_for(lambda: n_scores(log) >= 100, timeout=60), out.read_text()
        assert kill(proc, signal.SIGTERM) == 0, out.read_text()
    assert "stopped after 100 inputs" in out.read_text()
    assert log.consumer("inputs", "g").committed() == log.end_offsets("inputs")


def test_cli_errors_are_one_line_and_exit_1(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "log"), "--model", "no_such_module:make", "--wait-s", "0"])
    assert run_from_args(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("rendezvous model: cannot import module 'no_such_module'") and err.count("\n") == 1


def test_module_runs_as_a_command():
    out = subprocess.run(
        [sys.executable, "-m", "rendezvous.runner", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--member I/N" in out.stdout and "example:" in out.stdout


@pytest.mark.parametrize("model", [models.fast(), models.Failing(every=2)], ids=["ok", "failing"])
def test_a_small_poll_commits_the_same_records_as_a_large_one(tmp_path, model):
    """Polls of a few inputs commit dicts (the log's row frames), larger ones Arrow tables: the
    stored records are the same either way."""
    log = new_log(tmp_path, partitions=1)
    append(log, inputs(0, 6))
    for topic in ("scores", "scores_b"):
        log.create_topic(topic, "model_score", partitions=1)
    runner = Runner(log, model, runner_id="r1", code_version="c")
    table = pa.Table.from_batches(list(log.reader("inputs")))
    scored = runner._score(table, 0, int(time.time() * 1e6))
    with log.writer("scores", linger_ms=None) as w:
        w.append_batch(runner._dicts(scored))
    with log.writer("scores_b", linger_ms=None) as w:
        w.append_batch(runner._table(scored))
    small, large = (
        [{k: v for k, v in r.items() if k != "_append_time"} for r in log.read(t).to_pylist()]
        for t in ("scores", "scores_b")
    )
    assert small == large and [r["request_id"] for r in small] == [f"q{i}" for i in range(6)]
    assert {r["status"] for r in small} == ({"ok"} if model.name == "fast" else {"error"})
