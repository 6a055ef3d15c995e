"""replay.names: every name a run records is checked before anything is written."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import replay
from logstore.errors import InvalidNameError
from logstore.names import validate_name
from replay import names
from replay.errors import ModelError, ModelNameError, ReplayNameError
from replay.runner.hashing import ContentHash

from .builders import Linear, make_log


@pytest.fixture
def nlog(tmp_path):
    log = make_log(tmp_path / "log", n=10)
    yield log
    log.close()


def _nothing_written(log) -> None:
    assert replay.runs(log) == [] and "out" not in log.topics()


@pytest.mark.parametrize(
    "bad", ["team/linear", "a\\b", "..", "x..y", "<lambda>", "two words", "é", "a" * 201, "-lead", "nul\x00"]
)
def test_a_model_name_that_cannot_be_a_model_id_is_refused_before_anything_is_written(nlog, bad):
    """A bad model name raises ModelNameError naming it and why; no manifest, no output topic."""
    with pytest.raises(ModelNameError) as err:
        replay.run(nlog, "inputs", None, [Linear(name=bad)], output="out")
    assert repr(bad)[:60] in str(err.value) and "model" in str(err.value)
    assert isinstance(err.value, ModelError) and isinstance(err.value, InvalidNameError)
    _nothing_written(nlog)


def test_a_model_loaded_from_a_spec_is_named_by_its_spec(nlog):
    """A factory returning a badly named model is refused naming the spec and the name."""
    spec = "tests.replay.builders:make_slash_named"
    with pytest.raises(ModelNameError, match="path separator") as err:
        replay.run(nlog, "inputs", None, [spec], output="out")
    assert spec in str(err.value) and "'team/linear'" in str(err.value)
    _nothing_written(nlog)


@pytest.mark.parametrize("bad", ["1\n2", "v\x00", "\t", "x" * 201])
def test_a_model_version_with_control_characters_is_refused(nlog, bad):
    """A version that cannot be recorded raises ModelNameError naming the model; nothing is written."""
    model = Linear()
    model.version = bad
    with pytest.raises(ModelNameError, match="'linear'"):
        replay.run(nlog, "inputs", None, [model], output="out")
    _nothing_written(nlog)


def test_a_lambda_without_a_name_is_refused_with_a_hint(nlog):
    """FunctionModel(lambda ...) needs name=: its default name '<lambda>' cannot be a model_id."""
    with pytest.raises(ModelNameError, match="'<lambda>'"):
        replay.run(nlog, "inputs", None, [replay.FunctionModel(lambda row: 0.0)], output="out")
    _nothing_written(nlog)


@pytest.mark.parametrize(
    "kw", [{"run_id": "../escape"}, {"run_id": "a/b"}, {"run_id": ""}, {"output": "a/b"}, {"output": ".."}]
)
def test_a_bad_run_id_or_output_topic_is_refused_before_anything_is_written(nlog, kw):
    """Run ids and output topics follow the log's name rule; ReplayNameError says which and why."""
    kw = {"output": "out", **kw}
    with pytest.raises(ReplayNameError) as err:
        replay.run(nlog, "inputs", None, [Linear()], **kw)
    assert ("run id" if "run_id" in kw else "output topic") in str(err.value)
    _nothing_written(nlog)


def test_rerun_checks_its_new_run_id_and_output(nlog):
    """rerun refuses a bad new run id or output topic before creating anything."""
    run = replay.run(nlog, "inputs", None, [Linear()], output="out")
    with pytest.raises(ReplayNameError, match="run id"):
        replay.rerun(nlog, run.id, models=[Linear()], new_run_id="x/y")
    with pytest.raises(ReplayNameError, match="output topic"):
        replay.rerun(nlog, run.id, models=[Linear()], output="x/y")
    assert len(replay.runs(nlog)) == 1


@given(st.text(max_size=30))
def test_model_names_follow_the_log_name_rule_and_fit_a_stream_key(name):
    """Property: a model name is accepted iff it is a valid log name, and then its stream key parses."""
    try:
        validate_name(name, "model")
        valid = True
    except InvalidNameError:
        valid = False
    if not valid:
        with pytest.raises(ModelNameError):
            names.model_name(name)
        return
    assert names.model_name(name) == name
    digest = ContentHash.combine({f"inputs/3/{name}": {"rows": 1, "model_version": "1", "sha256": "0"}})
    assert digest.startswith("sha256:")
