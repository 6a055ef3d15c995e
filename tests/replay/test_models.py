"""The model protocol and adapters: contract checks every adapter passes, and each one's specifics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import replay
from replay.errors import ModelError
from replay.models import feature_matrix, learns, load, params_hash

from .builders import Linear, features, make_log

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression, SGDClassifier, SGDRegressor  # noqa: E402

river_linear = pytest.importorskip("river.linear_model")


def _batch(n=6):
    return pa.RecordBatch.from_pylist(
        [
            {
                "request_id": f"r{i}",
                "a": float(i),
                "b": float(-i) / 2,
                "v": [float(i), 1.0],
                "features": [("x", float(i)), ("y", 2.0)],
            }
            for i in range(n)
        ],
        schema=pa.schema(
            [
                ("request_id", pa.string()),
                ("a", pa.float64()),
                ("b", pa.float64()),
                ("v", pa.list_(pa.float64())),
                ("features", pa.map_(pa.string(), pa.float64())),
            ]
        ),
    )


def _fitted_lr():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0], [3.0, 2.0]])
    return LogisticRegression().fit(X, [0, 1, 0, 1])


ADAPTERS = {
    "function": lambda: replay.FunctionModel(lambda r: r["a"] * 2 + 1, name="f"),
    "function-vectorized": lambda: replay.FunctionModel(
        lambda b: np.asarray(b.column("a")) * 2 + 1, name="fv", vectorized=True
    ),
    "sklearn": lambda: replay.SklearnModel(_fitted_lr(), features=["a", "b"], name="lr"),
    "river": lambda: replay.RiverModel(river_linear.LogisticRegression(), features=["a", "b"], name="rv"),
}


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_adapter_contract(kind):
    """Every adapter: a str name and version, one float per row, the same answer twice, a stable
    parameter hash, and it satisfies the Model protocol."""
    m = ADAPTERS[kind]()
    assert isinstance(m, replay.Model)
    assert isinstance(m.name, str) and isinstance(m.version, str) and m.version
    b = _batch()
    s1 = np.asarray(m.predict(b, None), np.float64)
    s2 = np.asarray(m.predict(b, None), np.float64)
    assert s1.shape == (6,) and np.array_equal(s1, s2)
    assert params_hash(m) == params_hash(ADAPTERS[kind]()) and params_hash(m).startswith("sha256:")


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_adapter_replays_without_leaks(tmp_path, kind):
    """Every adapter replays a log end to end and the audit certifies the run."""
    log = make_log(tmp_path / "log", n=20)
    m = ADAPTERS[kind]()
    m.features = ["features.x", "features.y"] if hasattr(m, "features") else None
    if kind.startswith("function"):
        m = replay.FunctionModel(lambda b: features(b)[:, 0], name=kind, vectorized=True)
    run = replay.run(log, "inputs", "outcomes", [m], output="out")
    assert run.scores().num_rows == 20
    assert replay.audit(log, run.id).ok


def test_function_model_per_record_and_with_ctx():
    """A per-record function sees each row as a dict; a 2-argument function also gets ctx."""
    seen = []
    m = replay.FunctionModel(lambda row, ctx: seen.append(ctx) or row["a"], name="f")
    assert list(m.predict(_batch(3), "CTX")) == [0.0, 1.0, 2.0] and seen == ["CTX"] * 3
    assert not learns(m)


def test_sklearn_features_expand_lists_and_read_map_keys():
    """Feature names: numeric columns, list columns expanded, 'col.key' of a map column."""
    X = feature_matrix(_batch(3), ["a", "v", "features.y"])
    assert X.tolist() == [[0.0, 0.0, 1.0, 2.0], [1.0, 1.0, 1.0, 2.0], [2.0, 2.0, 1.0, 2.0]]
    with pytest.raises(ModelError, match="not a column"):
        feature_matrix(_batch(1), ["nope"])


def test_sklearn_uses_predict_proba_else_predict():
    """Classifiers score P(class 1); regressors their prediction."""
    b = _batch()
    lr = _fitted_lr()
    m = replay.SklearnModel(lr, features=["a", "b"])
    X = np.stack([np.asarray(b.column("a")), np.asarray(b.column("b"))], axis=1)
    assert np.array_equal(m.predict(b), lr.predict_proba(X)[:, 1])
    reg = SGDRegressor(random_state=0).fit(X, np.arange(6.0))
    assert np.array_equal(replay.SklearnModel(reg, features=["a", "b"]).predict(b), reg.predict(X))
    assert not learns(replay.SklearnModel(lr, features=["a"]))  # no partial_fit: a frozen model


def test_sklearn_partial_fit_learns_and_refuses_silent_constants():
    """An unfitted online estimator needs `unfitted=`; learn() calls partial_fit with the classes."""
    b = _batch()
    with pytest.raises(ModelError, match="not fitted"):
        replay.SklearnModel(SGDClassifier(loss="log_loss"), features=["a"]).predict(b)
    m = replay.SklearnModel(
        SGDClassifier(loss="log_loss", random_state=0), features=["a", "b"], classes=[0, 1], unfitted=0.5
    )
    assert learns(m) and list(m.predict(b)) == [0.5] * 6

    class Ctx:
        label = "label"

    learn = b.append_column("label", pa.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    m.learn(learn, Ctx())
    assert not np.array_equal(m.predict(b), np.full(6, 0.5))


def test_params_hash_is_deterministic_and_sensitive():
    """Same parameters, same hash (no memory addresses); other parameters or weights, another hash."""
    assert params_hash(Linear()) == params_hash(Linear())
    assert params_hash(Linear((1, 2))) != params_hash(Linear((1, 3)))
    a = replay.SklearnModel(LogisticRegression(C=1.0), features=["a"], unfitted=0.0)
    b = replay.SklearnModel(LogisticRegression(C=2.0), features=["a"], unfitted=0.0)
    assert params_hash(a) != params_hash(b) and a.version != b.version
    assert params_hash(replay.SklearnModel(_fitted_lr(), ["a", "b"])) == params_hash(
        replay.SklearnModel(_fitted_lr(), ["a", "b"])
    )


def test_load_builds_models_from_specs():
    """'module:factory' imports and calls the factory; bad specs say what is wrong."""
    m = load("tests.replay.builders:make_linear")
    assert m.name == "linear"
    for spec, match in [
        ("nocolon", "must look like"),
        ("tests.replay.builders:nothing", "has no"),
        ("tests.replay.builders:T0", "not callable"),
    ]:
        with pytest.raises(ModelError, match=match):
            load(spec)

    class NoName:
        version = "1"

        def predict(self, b, c):
            return []

    with pytest.raises(ModelError, match="name"):
        replay.models.check(NoName())
