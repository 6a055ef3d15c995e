"""replay.check_model: every shipped adapter passes, and each kind of broken model is caught by name."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import replay
from logstore.errors import TimeLeakError
from replay.errors import ModelError, ModelNameError, ReplayTypeError, ReplayValueError

from .builders import Linear, OnlineMean, Peeker, make_log

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression, SGDClassifier  # noqa: E402

river_linear = pytest.importorskip("river.linear_model")


def _batch(n=6):
    return pa.RecordBatch.from_pylist(
        [{"request_id": f"r{i}", "a": float(i), "b": float(-i) / 2} for i in range(n)],
        schema=pa.schema([("request_id", pa.string()), ("a", pa.float64()), ("b", pa.float64())]),
    )


def twice_a(row):
    return row["a"] * 2


def vector_a(batch):
    return np.asarray(batch.column("a")) + 1


def _fitted_lr():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0], [3.0, 2.0]])
    return LogisticRegression().fit(X, [0, 1, 0, 1])


SHIPPED = {
    "function": lambda: replay.FunctionModel(twice_a, name="f"),
    "function-vectorized": lambda: replay.FunctionModel(vector_a, name="fv", vectorized=True),
    "sklearn": lambda: replay.SklearnModel(_fitted_lr(), features=["a", "b"], name="lr"),
    "sklearn-online": lambda: replay.SklearnModel(
        SGDClassifier(loss="log_loss", random_state=0), features=["a", "b"], classes=[0, 1], unfitted=0.5, name="sgd"
    ),
    "river": lambda: replay.RiverModel(river_linear.LogisticRegression(), features=["a", "b"], name="rv"),
    "stateless-object": lambda: Linear(),
    "learning-object": lambda: OnlineMean(),
}


@pytest.fixture(scope="module")
def log_sample(tmp_path_factory):
    """Input rows as `log.read` gives them (model_input, system columns included)."""
    log = make_log(tmp_path_factory.mktemp("check") / "log", n=8)
    yield log.read("inputs")
    log.close()


@pytest.mark.parametrize("kind", sorted(SHIPPED))
def test_every_shipped_adapter_passes(kind, log_sample):
    """Adapters (and the test models replay tests use) keep the protocol: check_model returns None."""
    model = SHIPPED[kind]()
    sample = log_sample if kind.endswith("object") else _batch()  # those read model_input features
    assert replay.check_model(model, sample) is None


def test_a_table_read_from_the_log_and_a_spec_pass(log_sample):
    """A sample as `log.read` gives it and a 'module:factory' spec pass."""
    sample = log_sample
    assert replay.check_model("tests.replay.builders:make_linear", sample) is None
    assert replay.check_model("tests.replay.builders:make_mean", sample.slice(0, 3)) is None


def test_missing_system_columns_are_added_and_clocks_come_from_append_time():
    """predict sees the system columns a replayed batch has; ctx.now is each row's append time."""
    seen = {}

    class Looks:
        name, version = "looks", "1"

        def predict(self, batch, ctx):
            seen["names"], seen["now"] = batch.schema.names, ctx.now
            return np.zeros(batch.num_rows)

    replay.check_model(Looks(), _batch(3), parallel=False)  # a local class does not pickle
    assert seen["names"][-3:] == ["_partition", "_offset", "_append_time"]
    assert seen["now"].timestamp() == 0


class Broken:
    """A model broken in one way (`how`); otherwise it scores column `a`."""

    def __init__(self, how, name="broken", version="1"):
        self.how, self.name, self.version = how, name, version
        self.calls = 0

    def predict(self, batch, ctx):
        self.calls += 1
        a = np.asarray(batch.column("a"))
        if self.how == "short":
            return a[:-1]
        if self.how == "2d":
            return np.stack([a, a], axis=1)
        if self.how == "text":
            return ["high"] * batch.num_rows
        if self.how == "nulls":
            return pa.array([None] + a[1:].tolist(), pa.float64())
        if self.how == "dict":
            return {"scores": a}
        if self.how == "random":
            return a + np.random.default_rng().random(len(a))
        if self.how == "counter":
            return a + self.calls
        if self.how == "mutates":
            np.frombuffer(batch.column("a").buffers()[1], np.float64)[0] = 99.0
            return a
        if self.how == "raises":
            raise RuntimeError("the feature store is down")
        return a


@pytest.mark.parametrize(
    "how,match",
    [
        ("short", r"shape \(5,\) for a batch of 6 rows"),
        ("2d", r"shape \(6, 2\)"),
        ("text", "one float per row"),
        ("nulls", "null score"),
        ("dict", "without 'score'"),
        ("random", "not deterministic"),
        ("counter", "not deterministic: .* row 0 was 1.0, then 2.0"),
        ("mutates", r"changed its input batch \(column\(s\) \['a'\]\)"),
        ("raises", "predict.*raised RuntimeError: the feature store is down"),
    ],
)
def test_broken_predictions_are_caught_naming_what_failed(how, match):
    with pytest.raises(ModelError, match=match) as err:
        replay.check_model(Broken(how), _batch())
    assert "'broken'" in str(err.value)


@pytest.mark.parametrize(
    "name,version,match",
    [
        ("team/linear", "1", "model_id"),
        ("..", "1", "model_id"),
        ("", "1", "non-empty"),
        ("ok", "", "non-empty string"),
        ("ok", 2, "non-empty string"),
        ("ok", "v\n1", "control characters"),
        ("ok", "v" * 201, "limit is 200"),
    ],
)
def test_bad_names_and_versions_are_caught(name, version, match):
    with pytest.raises(ModelError, match=match):
        replay.check_model(Broken("fine", name=name, version=version), _batch())


def test_a_name_that_is_not_a_model_id_raises_model_name_error():
    with pytest.raises(ModelNameError):
        replay.check_model(Broken("fine", name="a b"), _batch())


def test_the_protocol_attributes_are_checked():
    """No predict, a learn that is not callable, lookups of the wrong type: each named."""

    class NoPredict:
        name, version = "np", "1"

    class BadLearn(Linear):
        learn = 3

    class BadLookups:
        name, version, lookups = "bl", "1", 5

        def predict(self, batch, ctx):
            return np.zeros(batch.num_rows)

    for model, match in (
        (NoPredict(), "no predict"),
        (BadLearn(), "`learn` must be a method"),
        (BadLookups(), "`lookups` must be a topic"),
    ):
        with pytest.raises(ModelError, match=match):
            replay.check_model(model, _batch())


class BadLearner:
    """A learning model broken in `learn`."""

    name, version = "learner", "1"

    def __init__(self, how):
        self.how = how

    def predict(self, batch, ctx):
        return np.zeros(batch.num_rows)

    def learn(self, batch, ctx):
        if self.how == "raises":
            batch.column("y")  # expects a column the outcomes do not have
        if self.how == "mutates":
            np.frombuffer(batch.column(ctx.label).buffers()[1], np.float64)[:] = 1.0


@pytest.mark.parametrize(
    "how,match",
    [
        ("raises", r"learn\(batch, ctx\) raised KeyError"),
        ("mutates", r"learn\(batch, ctx\) changed its input batch \(column\(s\) \['label'\]\)"),
    ],
)
def test_broken_learning_is_caught(how, match):
    with pytest.raises(ModelError, match=match):
        replay.check_model(BadLearner(how), _batch())


def test_a_stateless_model_must_pickle_unless_replayed_in_one_process():
    """A lambda cannot reach a worker process: caught, with the way out; parallel=False skips it."""
    model = replay.FunctionModel(lambda row: row["a"], name="lam")
    with pytest.raises(ModelError, match="pickling it fails") as err:
        replay.check_model(model, _batch())
    assert "workers=1" in str(err.value) and err.value.__cause__ is not None
    assert replay.check_model(model, _batch(), parallel=False) is None


class ForgetsOnPickle(Linear):
    """Loses its weights when pickled: a worker would score with other ones."""

    def __getstate__(self):
        return {**self.__dict__, "w": np.zeros(2)}


def test_a_copy_that_answers_differently_from_the_original_is_caught(log_sample):
    with pytest.raises(ModelError, match="copy of it a worker process gets .*unpickled"):
        replay.check_model(ForgetsOnPickle(), log_sample)


def test_a_time_leak_is_caught_with_its_cause():
    """A model asking ctx for later data fails the check; the TimeLeakError is the cause."""
    with pytest.raises(ModelError, match="TimeLeakError") as err:
        replay.check_model(Peeker(), _batch())
    assert isinstance(err.value.__cause__, TimeLeakError)


def test_bad_samples_are_refused():
    with pytest.raises(ReplayTypeError, match="Table or RecordBatch"):
        replay.check_model(Linear(), [{"a": 1.0}])
    with pytest.raises(ReplayValueError, match="at least one"):
        replay.check_model(Linear(), _batch().slice(0, 0))
