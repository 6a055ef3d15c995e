"""replay.run end to end: output rows, manifest, leaks, learning order, determinism, resume."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

import replay
from replay.errors import ModelError, RangeError, ReplayError, RunInterrupted, RunStateError

from .builders import (
    T0,
    Cheater,
    InterruptAfter,
    Linear,
    OnlineMean,
    Peeker,
    Perceptron,
    at,
    features,
    label_of,
    make_log,
    write_at,
)


@pytest.fixture
def rlog(tmp_path):
    lg = make_log(tmp_path / "log", n=60, partitions=2, delay=3)
    yield lg
    lg.close()


def test_scores_every_input_once_per_model_with_audit_columns(rlog):
    """One output row per input and model, with clock = the input's append time."""
    run = replay.run(rlog, "inputs", "outcomes", [Linear(), Linear((0, 1), name="b")], output="out", append=True)
    t = run.scores()
    assert t.num_rows == 120
    assert sorted(set(t.column("model_id").to_pylist())) == ["b", "linear"]
    inputs = rlog.read("inputs")
    by_key = {
        (p, o): a
        for p, o, a in zip(
            inputs["_partition"].to_pylist(), inputs["_offset"].to_pylist(), inputs["_append_time"].to_pylist()
        )
    }
    for p, o, c, f in zip(
        t["input_partition"].to_pylist(),
        t["input_offset"].to_pylist(),
        t["clock"].to_pylist(),
        t["read_fence"].to_pylist(),
    ):
        assert c == by_key[(p, o)] and f <= c
    ids = dict(
        zip(inputs["request_id"].to_pylist(), zip(inputs["_partition"].to_pylist(), inputs["_offset"].to_pylist()))
    )
    for rid, p, o in zip(t["request_id"].to_pylist(), t["input_partition"].to_pylist(), t["input_offset"].to_pylist()):
        assert ids[rid] == (p, o)
    assert set(t["run_id"].to_pylist()) == {run.id}
    m = run.manifest
    assert m["status"] == "complete" and m["rows"]["outputs"] == 120 and m["rows"]["inputs"] == 60
    assert m["inputs"]["partitions"] == {str(p): [0, e] for p, e in rlog.end_offsets("inputs").items()}
    assert m["content_hash"].startswith("sha256:")
    assert [x["name"] for x in m["models"]] == ["linear", "b"]
    assert all(x["params_hash"].startswith("sha256:") for x in m["models"])
    on_disk = json.loads((rlog.path / "runs" / run.id / "manifest.json").read_text())
    assert on_disk["content_hash"] == m["content_hash"]


def test_scores_match_the_model_on_the_same_rows(rlog):
    """The score of each row is what the model computes on that row."""
    run = replay.run(rlog, "inputs", None, [Linear()], output="out", append=True)
    t = run.scores()
    inputs = rlog.read("inputs")
    want = dict(
        zip(inputs["request_id"].to_pylist(), features(inputs.combine_chunks().to_batches()[0]) @ np.array([1.0, -0.5]))
    )
    for rid, s in zip(t["request_id"].to_pylist(), t["score"].to_pylist()):
        assert s == want[rid]


def test_future_lookup_raises_time_leak_and_marks_the_run_failed(rlog):
    """Asking ctx for data as of after the row's clock raises TimeLeakError naming model, ask and clock."""
    with pytest.raises(replay.TimeLeakError) as err:
        replay.run(rlog, "inputs", "outcomes", [Peeker()], output="out", append=True)
    msg = str(err.value)
    assert "'peeker'" in msg and "ctx.lookup('outcomes')" in msg and "after the clock" in msg
    assert "2026-11-01T00:00:01.000000Z" in msg and "2026-11-01T00:00:00.000000Z" in msg
    (run,) = replay.runs(rlog)
    assert run.status == "failed" and "TimeLeakError" in run.manifest["error"]


def test_a_cheating_model_cannot_see_its_own_outcome(tmp_path):
    """Looking up its own request on the outcomes topic finds nothing: it is appended after the clock."""
    log = make_log(tmp_path / "log", n=40, delay=0.5)
    cheat = Cheater()
    run = replay.run(log, "inputs", "outcomes", [cheat], output="out", append=True)
    assert len(cheat.seen) == 40
    assert all(label is None for _, label in cheat.seen)
    assert set(run.scores()["score"].to_pylist()) == {-1.0}
    assert replay.audit(log, run.id).ok


def test_lookups_see_past_outcomes_of_other_requests_only(tmp_path):
    """A lookup returns the latest record appended at or before the clock, never later."""
    log = make_log(tmp_path / "log", n=30, delay=2)

    class Prev:
        name, version, lookups = "prev", "1", ["outcomes"]

        def predict(self, batch, ctx):
            ids = [f"r{int(r[1:]) - 2}" for r in batch.column("request_id").to_pylist()]
            ids2 = [f"r{int(r[1:]) - 1}" for r in batch.column("request_id").to_pylist()]
            two = ctx.lookup("outcomes", ids)
            one = ctx.lookup("outcomes", ids2)
            assert one.column("label").null_count == len(ids2)  # appended 1 s after the clock
            return np.array([-1.0 if v is None else v for v in two.column("label").to_pylist()])

    run = replay.run(log, "inputs", "outcomes", [Prev()], output="out", append=True)
    t = run.scores()
    xs = {
        r: v
        for r, v in zip(
            log.read("inputs")["request_id"].to_pylist(),
            features(log.read("inputs").combine_chunks().to_batches()[0])[:, 0],
        )
    }
    for rid, s in zip(t["request_id"].to_pylist(), t["score"].to_pylist()):
        i = int(rid[1:])
        assert s == (-1.0 if i < 2 else label_of(i - 2, xs[f"r{i - 2}"]))
    cert = replay.audit(log, run.id)
    assert cert.ok and cert.fence_entries_checked > 0


def test_progressive_validation_with_delayed_labels_equals_a_hand_written_loop(tmp_path):
    """Learning replay = predict each input, learn each outcome when its delay has passed."""
    n, delay = 80, 5
    log = make_log(tmp_path / "log", n=n, partitions=3, delay=delay)
    run = replay.run(log, "inputs", "outcomes", [Perceptron()], output="out", append=True)
    got = dict(zip(run.scores()["request_id"].to_pylist(), run.scores()["score"].to_pylist()))
    # the loop: at time t, first learn outcomes revealed at <= t (input i at i s, its outcome at i + delay)
    inputs = log.read("inputs").combine_chunks().to_batches()[0]
    order = np.argsort([int(r[1:]) for r in inputs.column("request_id").to_pylist()])
    X = features(inputs.take(pa.array(order)))
    ys = [label_of(i, X[i, 0]) for i in range(n)]
    ref = Perceptron()
    pending, want = [], {}
    for i in range(n):
        while pending and pending[0] + delay <= i:
            j = pending.pop(0)
            w = ref.w
            x = np.append(X[j], 1.0)
            p = 1 / (1 + np.exp(-(x @ w)))
            ref.w = w + ref.lr * (ys[j] - p) * x
        x = np.append(X[i], 1.0)
        want[f"r{i}"] = float(1 / (1 + np.exp(-(x @ ref.w))))
        pending.append(i)
    assert got == want
    assert run.manifest["rows"]["learned"] == n - delay


def test_learning_batches_are_cut_where_outcomes_become_visible(tmp_path):
    """With several inputs per frame, a learner still sees exactly the outcomes known at each clock."""
    log = make_log(tmp_path / "log", n=50, partitions=2, delay=3, frame=4)
    run = replay.run(log, "inputs", "outcomes", [OnlineMean()], output="out", append=True)
    t = run.scores()
    inputs = log.read("inputs")
    when = dict(zip(inputs["request_id"].to_pylist(), inputs["_append_time"].to_pylist()))
    xs = dict(zip(inputs["request_id"].to_pylist(), features(inputs.combine_chunks().to_batches()[0])[:, 0]))
    for rid, s in zip(t["request_id"].to_pylist(), t["score"].to_pylist()):
        clock = when[rid]
        known = [label_of(j, xs[f"r{j}"]) for j in range(50) if at(j + 3) <= clock and when[f"r{j}"] < at(j + 3)]
        assert s == (np.mean(known) if known else 0.5)


def test_two_runs_give_the_same_content_hash_and_rerun_reproduces_it(rlog):
    """Determinism: the same range, models and seed give the same content hash."""
    a = replay.run(rlog, "inputs", "outcomes", [Linear(), OnlineMean()], output="out", append=True)
    b = replay.run(rlog, "inputs", "outcomes", [Linear(), OnlineMean()], output="out", append=True)
    assert a.id != b.id and a.content_hash == b.content_hash
    # more data arrives; a rerun of the manifest still replays exactly the recorded ranges
    write_at(
        rlog,
        "inputs",
        [(at(100), {"request_id": "late", "event_time": at(100), "features": {"x": 1.0}, "raw": "{}", "source": "t"})],
    )
    c = replay.rerun(rlog, a.id, models=[Linear(), OnlineMean()])
    assert c.content_hash == a.content_hash and c.manifest["rerun_of"] == a.id
    d = replay.run(rlog, "inputs", "outcomes", [Linear(), OnlineMean()], output="out", append=True)
    assert d.content_hash != a.content_hash


@pytest.mark.slow
def test_workers_give_the_same_content_hash_as_one_process(tmp_path):
    """workers=1 and workers=4 write the same content (stateless models, 4 partitions)."""
    log = make_log(tmp_path / "log", n=200, partitions=4, frame=5)
    one = replay.run(
        log,
        "inputs",
        None,
        ["tests.replay.builders:make_linear", Linear((2, 3), name="obj")],
        output="out",
        append=True,
        workers=1,
    )
    four = replay.run(
        log,
        "inputs",
        None,
        ["tests.replay.builders:make_linear", Linear((2, 3), name="obj")],
        output="out",
        append=True,
        workers=4,
    )
    assert four.manifest["workers"] == 4
    assert one.content_hash == four.content_hash
    assert four.scores().num_rows == 400
    assert replay.audit(log, four.id).ok


@pytest.mark.parametrize("learning", [False, True], ids=["stateless", "learning"])
def test_interrupt_and_resume_equal_an_uninterrupted_run(tmp_path, learning):
    """Ctrl-C leaves the run incomplete with progress; resume completes it with the same hash."""
    log = make_log(tmp_path / "log", n=60, partitions=2, frame=3)
    extra = [Perceptron()] if learning else []
    full = replay.run(log, "inputs", "outcomes", [Linear()] + extra, output="out", append=True)
    InterruptAfter.armed = True
    models = [InterruptAfter(20)] + ([Perceptron()] if learning else [])
    with pytest.raises(RunInterrupted) as err:
        replay.run(log, "inputs", "outcomes", models, output="out", append=True)
    rid = err.value.run_id
    m = replay.get(log, rid).manifest
    assert m["status"] == "incomplete" and m["error"] == "interrupted"
    assert 0 < m["rows"]["inputs"] < 60 and m["progress"]
    cert = replay.audit(log, rid)
    assert cert.ok and not cert.certified  # what was written is whole and leak-free, the run unfinished
    assert log.verify().ok
    run = replay.resume(log, rid, models=[InterruptAfter(20)] + ([Perceptron()] if learning else []))
    assert run.status == "complete" and run.manifest["resumed"] == 1
    assert run.content_hash == full.content_hash
    assert run.scores().num_rows == full.scores().num_rows
    assert replay.audit(log, rid).certified  # progress, counts and streams of the resumed run check out
    with pytest.raises(RunStateError, match="already complete"):
        replay.resume(log, rid, models=[InterruptAfter(20)])


@pytest.mark.slow
def test_interrupt_and_resume_with_workers(tmp_path, monkeypatch):
    """A model interrupting inside a worker stops the run cleanly; resume gives the same hash."""
    log = make_log(tmp_path / "log", n=120, partitions=4, frame=5)
    full = replay.run(log, "inputs", None, [Linear()], output="out", append=True, workers=2)
    marker = tmp_path / "interrupt-once"
    marker.write_text("")
    monkeypatch.setenv("REPLAY_TEST_INTERRUPT_FILE", str(marker))
    with pytest.raises(RunInterrupted) as err:
        replay.run(
            log,
            "inputs",
            None,
            ["tests.replay.builders:make_interrupting_linear"],
            output="out",
            append=True,
            workers=2,
        )
    m = replay.get(log, err.value.run_id).manifest
    assert m["status"] == "incomplete" and m["rows"]["inputs"] < 120
    run = replay.resume(log, err.value.run_id, workers=2)
    assert run.status == "complete" and run.content_hash == full.content_hash
    assert replay.audit(log, run.id).ok


def test_output_append_times_follow_the_replay_clock(rlog):
    """Output frames are appended with the replay clock of their rows (deterministic, never back)."""
    run = replay.run(rlog, "inputs", None, [Linear()], output="out", append=True)
    t = run.scores()
    assert all(a >= c for a, c in zip(t["_append_time"].to_pylist(), t["clock"].to_pylist()))
    assert max(t["_append_time"].to_pylist()) == max(t["clock"].to_pylist())


def test_resume_checks_the_models_are_the_recorded_ones(rlog):
    """Resuming with a different model (version or parameters) is refused."""
    InterruptAfter.armed = True
    with pytest.raises(RunInterrupted) as err:
        replay.run(rlog, "inputs", None, [InterruptAfter(10)], output="out", append=True)
    with pytest.raises(ModelError, match="not the one"):
        replay.resume(rlog, err.value.run_id, models=[InterruptAfter(10, Linear((9, 9)))])


def test_ranges_are_exact_and_bad_bounds_are_refused(rlog):
    """Offsets and datetimes select exact ranges; out-of-range bounds raise RangeError."""
    ends = rlog.end_offsets("inputs")
    run = replay.run(rlog, "inputs", None, [Linear()], output="out", append=True, start={0: 2, 1: 3}, end={0: 5, 1: 4})
    assert run.manifest["inputs"]["partitions"] == {"0": [2, 5], "1": [3, 4]}
    assert run.scores().num_rows == 4
    run = replay.run(rlog, "inputs", None, [Linear()], output="out", append=True, start=at(10), end=at(20))
    assert sorted(run.scores()["clock"].to_pylist()) == [at(i) for i in range(10, 20)]
    with pytest.raises(RangeError, match="past its end"):
        replay.run(rlog, "inputs", None, [Linear()], output="out", append=True, start=ends[0] + 1)
    with pytest.raises(RangeError, match="past its end"):
        replay.run(rlog, "inputs", None, [Linear()], output="out", append=True, end={0: ends[0] + 5})
    with pytest.raises(RangeError, match="before start"):
        replay.run(rlog, "inputs", None, [Linear()], output="out", append=True, start={0: 4}, end={0: 2})
    with pytest.raises(RangeError, match="no time zone"):
        replay.run(rlog, "inputs", None, [Linear()], output="out", append=True, start=T0.replace(tzinfo=None))
    with pytest.raises(RangeError, match="holds no records"):
        replay.run(rlog, "inputs", None, [Linear()], output="out", append=True, start=at(1000))
    with pytest.raises(RangeError, match="partition"):
        replay.run(rlog, "inputs", None, [Linear()], output="out", append=True, start={7: 0})


def test_output_topic_is_reused_only_with_the_same_lineage(rlog):
    """An existing output topic with another schema is refused with a clear error."""
    a = replay.run(rlog, "inputs", None, [Linear()], output="out", append=True)
    b = replay.run(rlog, "inputs", None, [Linear()], output="out", append=True)
    assert a.scores().num_rows == b.scores().num_rows == 60
    rlog.create_topic("other", "model_score")
    with pytest.raises(ReplayError, match="another schema"):
        replay.run(rlog, "inputs", None, [Linear()], output="other")
    with pytest.raises(ReplayError, match="also an input"):
        replay.run(rlog, "inputs", None, [Linear()], output="inputs")


def test_models_load_from_specs_and_bad_models_are_refused(rlog):
    """'module:factory' strings load; bad specs, duplicate names and wrong shapes fail clearly."""
    run = replay.run(rlog, "inputs", None, ["tests.replay.builders:make_linear"], output="out", append=True)
    assert run.manifest["models"][0]["spec"] == "tests.replay.builders:make_linear"
    with pytest.raises(ModelError, match="cannot import"):
        replay.run(rlog, "inputs", None, ["no_such_module_xyz:f"], output="out", append=True)
    with pytest.raises(ModelError, match="unique"):
        replay.run(rlog, "inputs", None, [Linear(), Linear()], output="out", append=True)

    class Short:
        name, version = "short", "1"

        def predict(self, batch, ctx):
            return [0.0, 1.0]

    with pytest.raises(ModelError, match="one score per row"):
        replay.run(rlog, "inputs", None, [Short()], output="out", append=True)


def test_event_time_order_decides_rows_at_event_time_plus_lateness(tmp_path):
    """order='event_time': clock = max(event_time + lateness, append time); audit agrees."""
    import logstore as ls

    log = ls.open(tmp_path / "log")
    log.create_topic("inputs", "model_input", partitions=1)
    # appended in order 0..9, but event times shuffled within 3 s; r7 arrives 10 s late
    ev = {0: 0, 1: 2, 2: 1, 3: 3.5, 4: 3, 5: 6, 6: 5, 7: -6, 8: 8, 9: 7.5}
    write_at(
        log,
        "inputs",
        [
            (
                at(i + 1),
                {"request_id": f"r{i}", "event_time": at(ev[i]), "features": {"x": 1.0}, "raw": "{}", "source": "t"},
            )
            for i in range(10)
        ],
    )
    run = replay.run(
        log, "inputs", None, [Linear()], output="out", append=True, order="event_time", lateness=timedelta(seconds=2)
    )
    t = run.scores()
    got = dict(zip(t["request_id"].to_pylist(), t["clock"].to_pylist()))
    assert got == {f"r{i}": max(at(ev[i] + 2), at(i + 1)) for i in range(10)}
    cert = replay.audit(log, run.id)
    assert cert.ok, str(cert)


def test_progress_bar_is_silent_off_a_terminal(rlog, capsys):
    """No progress output when stderr is not a TTY."""
    replay.run(rlog, "inputs", None, [Linear()], output="out", append=True)
    assert capsys.readouterr().err == ""


def test_progress_bar_draws_rows_rate_and_eta_on_a_terminal():
    """On a TTY the bar shows rows done, the rate and an ETA on one redrawn line."""
    import io

    from replay.runner.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    with Progress(1000, label="replay x", stream=out, interval=0) as bar:
        bar.update(250)
        bar.update(500)
    text = out.getvalue()
    assert "\r" in text and "500/1,000 rows" in text and "rows/s" in text and "ETA" in text
    assert text.endswith("\n")
    quiet = io.StringIO()
    Progress(10, stream=quiet).update(5)
    assert quiet.getvalue() == ""


def test_output_is_uncompressed_unless_its_topic_has_a_codec(rlog):
    """The output topic is created uncompressed; one created beforehand with a codec keeps it,
    and the rows and content hash are the same either way."""
    from replay.runner.sink import ensure_output, output_avro

    plain = replay.run(rlog, "inputs", "outcomes", [Linear()], output="out", append=True)
    ensure_output(rlog, "packed")
    rlog.create_topic("zstd-out", schema=output_avro(), event_time_field="event_time", compression="zstd")
    packed = replay.run(rlog, "inputs", "outcomes", [Linear()], output="zstd-out")
    assert rlog.config("out").compression is None and rlog.config("packed").compression is None
    assert rlog.config("zstd-out").compression == "zstd"
    assert packed.content_hash == plain.content_hash
    cols = ["request_id", "model_id", "score", "input_offset", "clock"]
    assert packed.scores(cols).to_pylist() == plain.scores(cols).to_pylist()
