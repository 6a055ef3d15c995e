"""replay.runner.execute: once its manifest exists, a run always ends in a terminal state with its error."""

from __future__ import annotations

import pytest

import replay
import replay.runner.execute as execute
import replay.runner.manifest as mf
from replay.errors import RunInterrupted

from .builders import FailOnPartition, Linear, make_log


@pytest.fixture
def flog(tmp_path):
    log = make_log(tmp_path / "log", n=30, frame=3)
    yield log
    log.close()


def _only_manifest(log) -> dict:
    (rid,) = mf.list_ids(log)
    return mf.read(log, rid)  # from disk, not the Run object


def test_an_error_while_finishing_marks_the_run_failed_and_resume_completes_it(flog, monkeypatch):
    """A failure after every score is written (computing the hash) leaves the manifest failed with
    the error, not running; resume then completes it with the hash of a clean run."""
    clean = replay.run(flog, "inputs", None, [Linear()], output="clean")

    def broken(streams):
        raise RuntimeError("hash store unavailable")

    monkeypatch.setattr(execute.ContentHash, "combine", staticmethod(broken))
    with pytest.raises(RuntimeError, match="hash store unavailable"):
        replay.run(flog, "inputs", None, [Linear()], output="out")
    monkeypatch.undo()
    m = [mf.read(flog, r) for r in mf.list_ids(flog) if mf.read(flog, r)["output"]["topic"] == "out"][0]
    assert m["status"] == "failed" and m["error"] == "RuntimeError: hash store unavailable"
    assert m["content_hash"] is None and m["output"]["end"] is None and m["rows"]["inputs"] == 30
    assert not replay.audit(flog, m["run_id"]).certified
    run = replay.resume(flog, m["run_id"], models=[Linear()])
    assert run.status == "complete" and run.content_hash == clean.content_hash


def test_a_failing_final_manifest_write_still_leaves_a_failed_manifest(flog, monkeypatch):
    """When writing the complete manifest fails, the run is marked failed with that error."""
    real = mf.write

    def write(log, manifest):
        if manifest.status == "complete":
            raise OSError(28, "No space left on device")
        real(log, manifest)

    monkeypatch.setattr(mf, "write", write)
    with pytest.raises(OSError, match="No space"):
        replay.run(flog, "inputs", None, [Linear()], output="out")
    m = _only_manifest(flog)
    assert m["status"] == "failed" and "No space left" in m["error"]


def test_ctrl_c_while_finishing_marks_the_run_incomplete(flog, monkeypatch):
    """KeyboardInterrupt after the last score leaves the run incomplete and raises RunInterrupted."""

    def interrupt(log, m):
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "hash_from_log", interrupt)
    monkeypatch.setattr(execute.ContentHash, "combine", staticmethod(lambda s: interrupt(None, None)))
    with pytest.raises(RunInterrupted) as err:
        replay.run(flog, "inputs", None, [Linear()], output="out")
    m = mf.read(flog, err.value.run_id)
    assert m["status"] == "incomplete" and m["error"] == "interrupted"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_model_error_marks_the_run_failed_with_the_error(flog, workers):
    """A model raising (in this process or a worker) fails the run: status failed, error recorded."""
    with pytest.raises(Exception, match="bad rows in partition 1"):
        replay.run(flog, "inputs", None, [FailOnPartition(1)], output="out", workers=workers)
    m = _only_manifest(flog)
    assert m["status"] == "failed" and "bad rows in partition 1" in m["error"]
    cert = replay.audit(flog, m["run_id"])
    assert not cert.certified and "never certified" in str(cert)


def test_an_error_before_the_replay_starts_is_recorded_too(flog, monkeypatch):
    """Even a failure setting up the replay (before any row) leaves the run failed, never running."""

    class Boom(Exception):
        pass

    def boom(*a, **k):
        raise Boom("no progress bar today")

    monkeypatch.setattr(execute, "Progress", boom)
    with pytest.raises(Boom):
        replay.run(flog, "inputs", None, [Linear()], output="out")
    m = _only_manifest(flog)
    assert m["status"] == "failed" and m["error"] == "Boom: no progress bar today"
