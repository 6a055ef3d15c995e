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
    import replay.manifest as mf

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
