"""The model protocol and adapters for plain functions, scikit-learn and River.

A model is any object with::

    name: str                                    # stable id, written as model_id: 1-200 of
                                                 #   [A-Za-z0-9._-], never '..' (`replay.names`)
    version: str                                 # written as model_version (no control characters)
    predict(batch: pa.RecordBatch, ctx) -> scores   # one float per row (array-like or pa.Array),
                                                 #   or a dict/RecordBatch with "score" and
                                                 #   optionally "scores" (list<double>) and "label"
    learn(batch, ctx) -> None                    # optional: input rows joined with their outcomes,
                                                 #   called when the outcomes become visible
    lookups: list[str] | dict[str, str]          # optional: topics read through ctx.lookup/history,
                                                 #   built up front (a dict gives each topic's key
                                                 #   field); any other topic is built on first use

`predict` receives the input rows with the log's system columns (`_partition`, `_offset`,
`_append_time`); `learn` receives the input columns, then the outcome's columns (an outcome column
whose name the input already uses is renamed ``outcome_<name>``, its system columns are
``_outcome_partition``, ``_outcome_offset``, ``_outcome_append_time``); ``ctx.label`` names the
label column. A model that has `learn` is *stateful*: it replays in one process, in clock order.

Adapters: `FunctionModel` (a per-record function, or a vectorized one), `SklearnModel` (an
estimator on named feature columns: ``predict_proba[:, 1]`` when available, else ``predict``;
learns with ``partial_fit``), `RiverModel` (``predict_proba_one``/``predict_one`` then
``learn_one``: with delayed outcomes, the same sequence as ``river.evaluate.progressive_val_score``
with the same delay). `load` turns ``"package.module:factory"`` into a model;
`replay.check_model(model, sample)` checks one against this protocol on a few rows.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import names
from .errors import ModelError

SYSTEM = ("_partition", "_offset", "_append_time")


@runtime_checkable
class Model(Protocol):
    """What `replay.run` needs of a model (see the module docstring; `learn` is optional)."""

    name: str
    version: str

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> Any: ...


def load(spec: str) -> Any:
    """Import ``"package.module:factory"`` and call the factory (no arguments) to build a model."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ModelError(f"model spec {spec!r} must look like 'package.module:factory'")
    mod_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ModelError(f"cannot import module {mod_name!r} of model spec {spec!r}: {e}") from e
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"module {mod_name!r} has no {attr!r} (model spec {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{spec!r} is not callable: it must be a factory returning a model")
    try:
        model = obj() if (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)) else obj
    except Exception as e:
        raise ModelError(f"the factory {spec!r} raised {type(e).__name__}: {e}") from e
    check(model, spec)
    return model


def check(model: Any, what: str | None = None) -> None:
    """Raise ModelError unless `model` has a `name` valid as a model_id, a `version` (`replay.names`)
    and a callable `predict`."""
    label = what or repr(model)
    for attr in ("name", "version"):
        v = getattr(model, attr, None)
        if not isinstance(v, str) or not v:
            raise ModelError(f"model {label}: `{attr}` must be a non-empty string, found {v!r}")
    names.model_name(model.name, what)
    names.model_version(model.version, model.name)
    if not callable(getattr(model, "predict", None)):
        raise ModelError(f"model {model.name!r}: it has no predict(batch, ctx) method")
    learn = getattr(model, "learn", None)
    if learn is not None and not callable(learn):
        raise ModelError(f"model {model.name!r}: `learn` must be a method learn(batch, ctx)")


def learns(model: Any) -> bool:
    """True when the model learns from outcomes during replay (it has a `learn` method)."""
    fn = getattr(model, "learn", None)
    if fn is None:
        return False
    flag = getattr(model, "learns", None)  # adapters know whether their estimator can learn
    return bool(flag) if isinstance(flag, bool) else True


def lookups_of(model: Any) -> dict[str, str | None]:
    """The lookup topics a model declared, topic -> key field (None: the topic's key field)."""
    decl = getattr(model, "lookups", None) or {}
    if isinstance(decl, str):
        decl = [decl]
    if isinstance(decl, Mapping):
        return {str(k): (None if v is None else str(v)) for k, v in decl.items()}
    return {str(k): None for k in decl}


# --------------------------------------------------------------------------------------------
# parameter hash


def _canon(obj: Any, depth: int = 0) -> Any:
    """A JSON-able, deterministic stand-in for `obj` (arrays by content hash, no memory addresses)."""
    if depth > 6:
        return type(obj).__qualname__
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, np.generic):
        return _canon(obj.item(), depth)
    if isinstance(obj, np.ndarray):
        return {
            "ndarray": str(obj.dtype),
            "shape": list(obj.shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(),
        }
    if isinstance(obj, Mapping):
        return {str(k): _canon(v, depth + 1) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canon(v, depth + 1) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(repr(_canon(v, depth + 1)) for v in obj)
    if callable(obj) and hasattr(obj, "__code__"):
        code = obj.__code__
        return {
            "function": f"{obj.__module__}.{obj.__qualname__}",
            "code": hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest(),
        }
    if hasattr(obj, "get_params"):
        try:
            return {
                "class": _qualname(obj),
                "params": _canon(obj.get_params(deep=True), depth + 1),
                "fitted": _canon(_fitted_state(obj), depth + 1),
            }
        except TypeError:
            pass
    r = repr(obj)
    if " at 0x" in r:  # the default repr: describe by class and attributes instead
        state = getattr(obj, "__dict__", None)
        return {"class": _qualname(obj), "state": _canon(state, depth + 1) if state is not None else None}
    return r


def _fitted_state(est: Any) -> dict:
    """A fitted scikit-learn estimator's learned attributes (names ending in '_')."""
    out = {}
    for k, v in sorted(vars(est).items()):
        if k.endswith("_") and not k.startswith("_") and isinstance(v, (np.ndarray, int, float, str, list, tuple)):
            out[k] = v
    return out


def _qualname(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def params_hash(model: Any) -> str:
    """A deterministic hash of what defines a model: its `params()` (method, or attribute) if it has
    one, else its state.

    scikit-learn estimators (and adapters wrapping them) hash ``get_params()`` plus fitted
    attributes; River models their ``_get_params()``; other objects their repr, or their class and
    attribute values when the repr is the default one (which holds a memory address).
    """
    p = getattr(model, "params", None)
    if callable(p):
        desc = p()
    elif p is not None:  # a `params` attribute or property
        desc = p
    else:
        desc = model
    data = json.dumps(_canon(desc), sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# feature extraction


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    i = batch.schema.get_field_index(name)
    if i >= 0:
        return batch.column(i)
    col, _, sub = name.partition(".")
    j = batch.schema.get_field_index(col)
    if sub and j >= 0 and pa.types.is_map(batch.schema.field(j).type):
        return pc.map_lookup(batch.column(j), pa.scalar(sub, batch.schema.field(j).type.key_type), "first")
    raise ModelError(
        f"feature {name!r} is not a column of the batch ({batch.schema.names}); "
        f"use 'column.key' for a key of a map column"
    )


def feature_matrix(batch: pa.RecordBatch, features: Sequence[str]) -> np.ndarray:
    """A float64 matrix, one row per record: numeric columns, list columns expanded, map keys."""
    cols = []
    n = batch.num_rows
    for name in features:
        arr = _column(batch, name)
        t = arr.type
        if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
            flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float64)
            width = len(flat) // n if n else (t.list_size if pa.types.is_fixed_size_list(t) else 0)
            if n and width * n != len(flat):
                raise ModelError(f"feature column {name!r} has lists of different lengths")
            cols.append(flat.reshape(n, width))
        else:
            if pa.types.is_timestamp(t):
                arr = arr.cast(pa.int64())
            cols.append(arr.cast(pa.float64()).to_numpy(zero_copy_only=False).reshape(n, 1))
    return np.hstack(cols) if cols else np.empty((n, 0))


def default_features(schema: pa.Schema) -> list[str]:
    """Numeric user columns (no system, time or key columns), or the `features` column if present."""
    if "features" in schema.names:
        return ["features"]
    out = []
    for f in schema:
        if f.name in SYSTEM or f.name.startswith("_"):
            continue
        if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type):
            out.append(f.name)
    return out


def feature_dicts(batch: pa.RecordBatch, features: Sequence[str] | None) -> list[dict]:
    """One dict of feature name -> value per row (River's input); map columns are spread out."""
    names = list(features) if features is not None else default_features(batch.schema)
    n = batch.num_rows
    rows: list[dict] = [{} for _ in range(n)]
    for name in names:
        arr = _column(batch, name)
        t = arr.type
        if pa.types.is_map(t):
            for d, items in zip(rows, arr.to_pylist()):
                if items:
                    d.update(items)
        elif pa.types.is_fixed_size_list(t) or pa.types.is_list(t):
            for d, vals in zip(rows, arr.to_pylist()):
                if vals:
                    d.update({f"{name}_{k}": v for k, v in enumerate(vals)})
        else:
            for d, v in zip(rows, arr.to_pylist()):
                d[name] = v
    return rows


def _labels(batch: pa.RecordBatch, ctx: Any) -> list:
    label = getattr(ctx, "label", None) or "label"
    if label not in batch.schema.names:
        raise ModelError(f"learn: the batch has no label column {label!r} ({batch.schema.names})")
    return batch.column(batch.schema.get_field_index(label)).to_pylist()


# --------------------------------------------------------------------------------------------
# adapters


class FunctionModel:
    """A model from a function: per record ``fn(row: dict) -> float``, or ``fn(batch) -> scores``
    with ``vectorized=True`` (``fn(batch, ctx)`` if it takes two arguments).

    Per-record functions see the row as a dict of the input's columns (system columns included;
    map columns, e.g. `features` of model_input, as dicts).
    """

    learns = False

    def __init__(
        self,
        fn: Callable,
        name: str | None = None,
        version: str = "1",
        *,
        vectorized: bool = False,
        lookups: Any = None,
    ) -> None:
        if not callable(fn):
            raise ModelError(f"FunctionModel needs a callable, found {fn!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")
        self.version = version
        self.vectorized = vectorized
        if lookups is not None:
            self.lookups = lookups
        try:
            self._takes_ctx = len(inspect.signature(fn).parameters) >= 2
        except (TypeError, ValueError):
            self._takes_ctx = False

    def params(self) -> Any:
        return {"fn": self.fn, "vectorized": self.vectorized}

    def predict(self, batch: pa.RecordBatch, ctx: Any = None) -> Any:
        if self.vectorized:
            return self.fn(batch, ctx) if self._takes_ctx else self.fn(batch)
        fn = self.fn
        if self._takes_ctx:
            return np.fromiter(
                (fn(r, ctx) for r in batch.to_pylist(maps_as_pydicts="lossy")), np.float64, batch.num_rows
            )
        return np.fromiter((fn(r) for r in batch.to_pylist(maps_as_pydicts="lossy")), np.float64, batch.num_rows)

    def __repr__(self) -> str:
        return f"FunctionModel({self.name!r}, version={self.version!r})"


class SklearnModel:
    """A scikit-learn estimator on named feature columns.

    Scores are ``predict_proba(X)[:, 1]`` when the estimator has it (binary classifiers), else
    ``predict(X)``. With outcomes, an estimator with ``partial_fit`` learns online (pass
    ``classes`` for classifiers); before its first lesson it scores `unfitted` (required then, so a
    constant is never written silently). Features: column names; list columns are expanded;
    ``"col.key"`` reads a key of a map column (e.g. ``"features.amount"`` of `model_input`).
    """

    def __init__(
        self,
        estimator: Any,
        features: Sequence[str],
        name: str | None = None,
        version: str | None = None,
        *,
        classes: Sequence[Any] | None = None,
        unfitted: float | None = None,
        learn: bool | None = None,
    ) -> None:
        if not features:
            raise ModelError("SklearnModel needs features=[column names]")
        self.estimator = estimator
        self.features = list(features)
        self.name = name or type(estimator).__name__
        self.classes = list(classes) if classes is not None else None
        self.unfitted = unfitted
        can = hasattr(estimator, "partial_fit")
        self.learns = can if learn is None else bool(learn and can)
        self._fitted: bool | None = None
        self.version = version or params_hash(self)[7:19]

    def params(self) -> Any:
        return {"estimator": self.estimator, "features": self.features, "classes": self.classes}

    def _is_fitted(self) -> bool:
        if self._fitted:
            return True
        try:
            from sklearn.utils.validation import check_is_fitted

            check_is_fitted(self.estimator)
            self._fitted = True
        except Exception:
            self._fitted = False
        return self._fitted

    def predict(self, batch: pa.RecordBatch, ctx: Any = None) -> np.ndarray:
        n = batch.num_rows
        if not self._is_fitted():
            if self.unfitted is None:
                raise ModelError(
                    f"model {self.name!r}: the estimator is not fitted; fit it first, or pass "
                    f"unfitted=<score> to score rows before its first partial_fit"
                )
            return np.full(n, float(self.unfitted))
        X = feature_matrix(batch, self.features)
        est = self.estimator
        if hasattr(est, "predict_proba"):
            p = est.predict_proba(X)
            return np.asarray(p[:, 1] if p.ndim == 2 and p.shape[1] > 1 else p.ravel(), np.float64)
        return np.asarray(est.predict(X), np.float64).ravel()

    def learn(self, batch: pa.RecordBatch, ctx: Any) -> None:
        if not self.learns:
            return
        X = feature_matrix(batch, self.features)
        y = np.asarray(_labels(batch, ctx))
        keep = np.array([v is not None for v in y])
        if not keep.all():
            X, y = X[keep], y[keep]
        if not len(y):
            return
        y = y.astype(np.float64)
        if self.classes is not None:
            self.estimator.partial_fit(X, y, classes=np.asarray(self.classes, dtype=np.float64))
        else:
            self.estimator.partial_fit(X, y)
        self._fitted = True

    def __repr__(self) -> str:
        return f"SklearnModel({self.estimator!r}, features={self.features!r})"


class RiverModel:
    """A River model, one record at a time: predict, then learn when the outcome becomes visible.

    Classifiers score ``predict_proba_one(x)[positive]`` (labels go through ``bool`` by default,
    so the positive class is ``True``); regressors score ``predict_one(x)``. Features: None takes
    the `features` map column (model_input) or every numeric column; a list names columns (map
    columns are spread into their keys, ``"col.key"`` picks one). With an outcome delay `d`, the
    scores equal ``river.evaluate.progressive_val_score(..., delay=d)``'s predictions.
    """

    learns = True

    def __init__(
        self,
        model: Any,
        features: Sequence[str] | None = None,
        name: str | None = None,
        version: str | None = None,
        *,
        target: Callable[[Any], Any] | None = None,
        positive: Any = True,
    ) -> None:
        self.model = model
        self.features = list(features) if features is not None else None
        self.name = name or type(model).__name__
        self.positive = positive
        self._proba = hasattr(model, "predict_proba_one") and _is_classifier(model)
        self.target = target or (bool if self._proba else float)
        self.version = version or params_hash(self)[7:19]

    def params(self) -> Any:
        getter = getattr(self.model, "_get_params", None)
        return {
            "model": _qualname(self.model),
            "params": getter() if getter else repr(self.model),
            "features": self.features,
        }

    def predict(self, batch: pa.RecordBatch, ctx: Any = None) -> np.ndarray:
        xs = feature_dicts(batch, self.features)
        out = np.empty(len(xs), np.float64)
        m = self.model
        if self._proba:
            pos = self.positive
            for i, x in enumerate(xs):
                out[i] = m.predict_proba_one(x).get(pos, 0.0)
        else:
            for i, x in enumerate(xs):
                y = m.predict_one(x)
                out[i] = np.nan if y is None else float(y)
        return out

    def learn(self, batch: pa.RecordBatch, ctx: Any) -> None:
        xs = feature_dicts(batch, self.features)
        ys = _labels(batch, ctx)
        m, target = self.model, self.target
        for x, y in zip(xs, ys):
            if y is not None:
                m.learn_one(x, target(y))

    def __repr__(self) -> str:
        return f"RiverModel({self.model!r})"


def _is_classifier(model: Any) -> bool:
    try:
        from river import base

        return isinstance(model, base.Classifier)
    except ImportError:  # pragma: no cover - only with river missing
        return True
