"""replay.audit: a certificate for honest runs, the violations for tampered or leaky output."""

from __future__ import annotations

from datetime import timedelta

import pytest

import replay
from replay.errors import RunNotFoundError

from .builders import Linear, OnlineMean, make_log


@pytest.fixture
def done(tmp_path):
    log = make_log(tmp_path / "log", n=30)
    run = replay.run(log, "inputs", "outcomes", [Linear(), OnlineMean()], output="out")
    yield log, run
    log.close()


def _forge(log, run, **changes):
    """Append a copy of one of the run's rows with `changes` (as if someone wrote into the output)."""
    row = run.scores().slice(0, 1).to_pylist()[0]
    row = {k: v for k, v in row.items() if not k.startswith("_")}
    row.update(changes)
    with log.writer("out") as w:
        w.append_batch([row])


def test_an_honest_run_is_certified(done):
    """Every row checked, fences <= clocks, coverage complete, content hash matches."""
    log, run = done
    cert = replay.audit(log, run.id)
    assert cert.ok and cert.violation_count == 0
    assert cert.rows_checked == 60 and cert.inputs_expected == 30 and cert.models == 2
    assert cert.recomputed_hash == run.content_hash
    assert cert.min_slack_us == 0 and cert.max_slack_us == 0
    text = str(cert)
    assert "CERTIFIED" in text and run.id in text and "matches the manifest" in text
    assert run.audit().ok


def test_a_row_that_read_past_its_clock_is_a_violation(done):
    """A row whose read_fence is after its clock is reported with the input it belongs to."""
    log, run = done
    row = run.scores().slice(0, 1).to_pylist()[0]
    _forge(log, run, read_fence=row["clock"] + timedelta(seconds=1))
    cert = replay.audit(log, run.id)
    assert not cert.ok
    assert any("read_fence" in v and "after its clock" in v for v in cert.violations)
    assert any("repeated" in v for v in cert.violations)  # the forged row duplicates one
    assert any("content hash" in v for v in cert.violations)
    assert "FAILED" in str(cert)


def test_a_clock_that_is_not_the_inputs_append_time_is_a_violation(done):
    """The audit re-reads the input's append time from the log and compares it with the clock."""
    log, run = done
    row = run.scores().slice(0, 1).to_pylist()[0]
    _forge(log, run, clock=row["clock"] + timedelta(seconds=5), read_fence=row["clock"])
    cert = replay.audit(log, run.id)
    assert any("is not its input's clock" in v for v in cert.violations)


def test_missing_rows_break_coverage(tmp_path):
    """A complete run whose output lacks rows for inputs in its range fails coverage."""
    import replay.runner.manifest as mf

    log = make_log(tmp_path / "log", n=10)
    run = replay.run(log, "inputs", None, [Linear()], output="out")
    forged = {**replay.get(log, run.id).manifest, "run_id": "forged-run", "content_hash": None}
    mf.create(log, forged)  # a manifest claiming a complete run whose rows were never written
    cert = replay.audit(log, "forged-run")
    assert not cert.ok and any("0 rows for" in v for v in cert.violations)


def test_unknown_run_is_a_clear_error(done):
    """Auditing a run id with no manifest raises RunNotFoundError naming it."""
    log, _ = done
    with pytest.raises(RunNotFoundError, match="no run 'nope'"):
        replay.audit(log, "nope")


# --- the manifest: every field the audit certifies is recomputed from the log ---------------------


def _tamper(log, run_id, change):
    """Rewrite the run's manifest with `change(manifest)` applied (as someone editing the file)."""
    import json

    import replay.runner.manifest as mf

    m = mf.read(log, run_id)
    change(m)
    mf.path(log, run_id).write_text(json.dumps(m, indent=2, sort_keys=True))


def _set(path, value):
    """A change setting manifest field `path` (dots; [i] / ["key"] as list index / dict key) to `value`."""

    def change(m):
        *parents, last = _parts(path)
        node = m
        for k in parents:
            node = node[k]
        node[last] = value(node[last]) if callable(value) else value

    return change


def _parts(path):
    out = []
    for piece in path.split("."):
        while "[" in piece:
            head, _, rest = piece.partition("[")
            if head:
                out.append(head)
            key, _, piece = rest.partition("]")
            out.append(int(key) if key.isdigit() else key)
        if piece:
            out.append(piece)
    return out


def _first_stream(m):
    return sorted(m["streams"])[0]


TAMPERS = [
    ("content_hash", None, "content_hash"),
    ("content_hash", "sha256:" + "0" * 64, "content_hash"),
    ("models[0].version", "2", "models[0].version"),
    ("models[1].name", "mean2", "models[1].name"),
    ("models", lambda v: v[:1], "models"),
    ("rows.outputs", lambda v: v + 1, "rows.outputs"),
    ("rows.inputs", lambda v: v - 1, "rows.inputs"),
    ("rows.inputs_planned", lambda v: v + 5, "rows.inputs_planned"),
    ("status", "failed", "status"),
    ("status", "incomplete", "status"),
    ("status", "running", "status"),
    ("status", "exploded", "status"),
    ("error", "ValueError: boom", "error"),
    ("finished", None, "finished"),
    ("run_id", "someone-else", "run_id"),
    ("inputs.topic", "nope", "inputs.topic"),
    ("inputs.topic", "outcomes", "inputs.topic"),
    ("inputs.partitions", {"0": [0, 3], "1": [0, 3]}, "inputs.partitions"),
    ("inputs.partitions.0", [0, 10_000], "inputs.partitions[0]"),
    ("inputs.event_time_field", "ts", "inputs.event_time_field"),
    ("order", "sideways", "order"),
    ("lateness_us", 5_000_000, "lateness_us"),
    ("outcomes.partitions.0", [0, 10_000], "outcomes.partitions[0]"),
    ("topics.outcomes.0", [0, 10_000], "topics.outcomes"),
    ("output.topic", "nope", "output.topic"),
    ("output.topic", "inputs", "output.topic"),
    ("output.start.0", 5, "output.start[0]"),
    ("output.end.0", 1, "output.end[0]"),
    ("output.end", None, "output.end"),
    ("progress.0.offset", lambda v: v - 1, "progress[0].offset"),
    ("progress.1.inputs", lambda v: v + 1, "progress[1].inputs"),
    ("progress.0.clock", lambda v: v + 1, "progress[0].clock"),
    ("streams", lambda v: {k: x for k, x in list(v.items())[1:]}, "streams"),
]


@pytest.mark.parametrize("path,value,field", TAMPERS, ids=[f"{p}={'fn' if callable(v) else v}" for p, v, _ in TAMPERS])
def test_a_tampered_manifest_field_is_refused_naming_it(done, path, value, field):
    """Editing any field the audit certifies makes it refuse the run, naming that field."""
    log, run = done
    _tamper(log, run.id, _set(path, value))
    cert = replay.audit(log, run.id)
    assert not cert.ok and not cert.certified
    assert any(field in v for v in cert.violations), str(cert)
    assert "FAILED" in str(cert) and "not certified" in str(cert)


@pytest.mark.parametrize("part", ["rows", "model_version", "sha256"])
def test_a_tampered_stream_is_refused_naming_it(done, part):
    """Each stream's rows, model version and digest are recomputed from the output rows."""
    log, run = done
    key = _first_stream(run.manifest)
    _tamper(log, run.id, lambda m: m["streams"][key].__setitem__(part, "x"))
    cert = replay.audit(log, run.id)
    assert not cert.certified and f"streams[{key}].{part}" in cert.fields


def test_any_edited_count_is_refused(tmp_path):
    """Property: shifting any count the manifest records by any amount is refused, naming it."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    log = make_log(tmp_path / "log", n=12)
    run = replay.run(log, "inputs", "outcomes", [Linear(), OnlineMean()], output="out")
    key = _first_stream(run.manifest)
    fields = [
        "rows.inputs",
        "rows.outputs",
        "rows.inputs_planned",
        "progress.0.offset",
        "progress.1.clock",
        f"streams[{key}].rows",
    ]
    original = dict(replay.get(log, run.id).manifest)

    @settings(max_examples=20, deadline=None)
    @given(field=st.sampled_from(fields), delta=st.integers(-(10**6), 10**6).filter(bool))
    def check(field, delta):
        import copy

        import replay.runner.manifest as mf

        m = copy.deepcopy(original)
        _set(field, lambda v: v + delta)(m)
        mf.write(log, m)
        try:
            cert = replay.audit(log, run.id)
            name = field.replace("progress.0", "progress[0]").replace("progress.1", "progress[1]")
            assert not cert.certified and any(name in f for f in cert.fields), str(cert)
        finally:
            mf.write(log, copy.deepcopy(original))

    check()
    assert replay.audit(log, run.id).certified
    log.close()


def test_an_untouched_complete_run_is_certified_and_its_fields_are_clean(done):
    """With nothing edited the audit certifies the run and refuses no field."""
    log, run = done
    cert = replay.audit(log, run.id)
    assert cert.certified and cert.fields == [] and str(cert).splitlines()[0].endswith("CERTIFIED")


def test_a_run_that_failed_with_a_time_leak_is_never_certified(tmp_path):
    """A run stopped by TimeLeakError is FAILED, not certified, with the error in the certificate."""
    from .builders import Peeker

    log = make_log(tmp_path / "log", n=20)
    with pytest.raises(replay.TimeLeakError):
        replay.run(log, "inputs", "outcomes", [Linear(), Peeker()], output="out")
    (run,) = replay.runs(log)
    cert = replay.audit(log, run.id)
    assert not cert.ok and not cert.certified and "status" in cert.fields
    text = str(cert)
    assert "FAILED, not certified" in text and "TimeLeakError" in text and "never certified" in text


@pytest.mark.parametrize("forge", ["status", "status+error", "everything"])
def test_a_failed_run_flipped_to_complete_is_caught(tmp_path, forge):
    """Flipping a failed run's status to complete (even clearing its error and writing a matching
    content hash, end and finish time) is refused: the output does not cover the range."""
    from replay.runner.execute import hash_from_log

    from .builders import Peeker

    log = make_log(tmp_path / "log", n=20)
    with pytest.raises(replay.TimeLeakError):
        replay.run(log, "inputs", "outcomes", [Linear(), Peeker()], output="out")
    (run,) = replay.runs(log)

    def flip(m):
        m["status"] = "complete"
        if forge != "status":
            m["error"] = None
        if forge == "everything":
            h = hash_from_log(log, m)
            m["streams"], m["content_hash"] = h.summary(), h.hexdigest()
            m["finished"] = m["updated"]
            m["output"]["end"] = {str(p): o for p, o in log.end_offsets("out").items()}

    _tamper(log, run.id, flip)
    cert = replay.audit(log, run.id)
    assert not cert.certified, str(cert)
    if forge == "status":
        assert "error" in cert.fields
    else:
        assert any("rows for" in v for v in cert.violations)


def test_an_incomplete_run_is_checked_but_not_certified(tmp_path):
    """An interrupted run's rows check out (ok) but it is not certified until it completes."""
    from replay.errors import RunInterrupted

    from .builders import InterruptAfter

    log = make_log(tmp_path / "log", n=30, frame=3)
    InterruptAfter.armed = True
    with pytest.raises(RunInterrupted) as err:
        replay.run(log, "inputs", None, [InterruptAfter(10)], output="out")
    cert = replay.audit(log, err.value.run_id)
    assert cert.ok and not cert.certified and "NOT CERTIFIED" in str(cert)
    _tamper(log, err.value.run_id, _set("error", "ValueError: hidden"))
    assert "error" in replay.audit(log, err.value.run_id).fields
    _tamper(log, err.value.run_id, _set("error", "interrupted"))
    run = replay.resume(log, err.value.run_id, models=[InterruptAfter(10)])
    assert replay.audit(log, run.id).certified


def test_lookup_ranges_are_checked_against_the_fences(tmp_path):
    """A run's lookup ranges are certified through its rows' fences: shrinking or dropping one is refused."""
    from .builders import Cheater

    log = make_log(tmp_path / "log", n=20, delay=0.5)
    run = replay.run(log, "inputs", "outcomes", [Cheater()], output="out")
    assert replay.audit(log, run.id).certified
    _tamper(log, run.id, _set("lookups[0].partitions.0", [0, 1]))
    cert = replay.audit(log, run.id)
    assert not cert.certified and any("lookups" in v for v in cert.violations)
    _tamper(log, run.id, _set("lookups", []))
    cert = replay.audit(log, run.id)
    assert not cert.certified and any("manifest's lookups" in v for v in cert.violations)
