"""The River adapter under replay equals River's own progressive validation with the same delay."""

from __future__ import annotations

import itertools

import pytest

river = pytest.importorskip("river")

from river import compose, datasets, evaluate, linear_model, metrics, preprocessing  # noqa: E402

import replay  # noqa: E402

from .builders import at, write_at  # noqa: E402


def _log_from(tmp_path, data, delay, partitions=2):
    """Inputs i appended at i seconds, their outcomes at i + delay seconds (River's `delay` in steps)."""
    import logstore

    log = logstore.open(tmp_path / "log")
    log.create_topic("inputs", "model_input", partitions=partitions, key_field="request_id")
    log.create_topic("outcomes", "outcome", partitions=1, key_field="request_id")
    write_at(
        log,
        "inputs",
        [
            (
                at(i),
                {
                    "request_id": f"r{i}",
                    "event_time": at(i),
                    "raw": "{}",
                    "source": "river",
                    "features": {k: float(v) for k, v in x.items()},
                },
            )
            for i, (x, _) in enumerate(data)
        ],
    )
    write_at(
        log,
        "outcomes",
        [
            (at(i + delay), {"request_id": f"r{i}", "event_time": at(i + delay), "label": float(y)})
            for i, (_, y) in enumerate(data)
        ],
    )
    return log


def _river_predictions(data, model, metric, delay):
    preds = []
    for state in evaluate.iter_progressive_val_score(data, model, metric, delay=delay, step=1, yield_predictions=True):
        preds.append(state["Prediction"])
    return preds


@pytest.mark.parametrize("delay", [1, 7])
def test_classifier_matches_progressive_val_score(tmp_path, delay):
    """RiverModel(predict_proba_one, learn_one) replayed with delayed labels = River's predictions."""
    data = [(x, y) for x, y in itertools.islice(datasets.Phishing(), 150)]
    make = lambda: compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())  # noqa: E731
    want = _river_predictions(data, make(), metrics.LogLoss(), delay)
    log = _log_from(tmp_path, data, delay)
    run = replay.run(log, "inputs", "outcomes", [replay.RiverModel(make(), name="lr")], output="out")
    t = run.scores()
    got = dict(zip(t["request_id"].to_pylist(), t["score"].to_pylist()))
    assert [got[f"r{i}"] for i in range(len(data))] == [p.get(True, 0.0) for p in want]
    # and the metric River reports equals the one over the replayed scores
    ref = evaluate.progressive_val_score(data, make(), metrics.LogLoss(), delay=delay)
    mine = metrics.LogLoss()
    for i, (_, y) in enumerate(data):
        mine.update(y, {True: got[f"r{i}"], False: 1 - got[f"r{i}"]})
    assert mine.get() == pytest.approx(ref.get(), abs=1e-12)


def test_regressor_matches_progressive_val_score(tmp_path):
    """A River regressor's predict_one scores equal River's with the same delay (MAE too)."""
    data = [(x, y) for x, y in itertools.islice(datasets.TrumpApproval(), 120)]
    delay = 4
    make = lambda: compose.Pipeline(preprocessing.StandardScaler(), linear_model.LinearRegression())  # noqa: E731
    want = _river_predictions(data, make(), metrics.MAE(), delay)
    log = _log_from(tmp_path, data, delay, partitions=3)
    run = replay.run(log, "inputs", "outcomes", [replay.RiverModel(make(), name="reg")], output="out")
    t = run.scores()
    got = dict(zip(t["request_id"].to_pylist(), t["score"].to_pylist()))
    assert [got[f"r{i}"] for i in range(len(data))] == [float(p) for p in want]
    ref = evaluate.progressive_val_score(data, make(), metrics.MAE(), delay=delay)
    mae = metrics.MAE()
    for i, (_, y) in enumerate(data):
        mae.update(y, got[f"r{i}"])
    assert mae.get() == pytest.approx(ref.get(), abs=1e-9)
