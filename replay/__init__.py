"""replay: time-leak-free replay of recorded history into candidate models.

    import replay
    run = replay.run(log, inputs="inputs", outcomes="outcomes",
                     models=[my_model, "pkg.mod:make_model"], output="replay.scores",
                     start=0, end=None, workers=1, seed=0)
    run.id, run.manifest["content_hash"], run.scores()     # -> pyarrow.Table
    print(replay.audit(log, run.id))                       # a certificate, or the violations
    replay.resume(log, run_id)                             # finish an interrupted run

Models follow `replay.Model` (``name``, ``version``, ``predict(batch, ctx)``, optional
``learn(batch, ctx)``); adapters: `FunctionModel`, `SklearnModel`, `RiverModel`. Nothing appended
after a row's clock is reachable through ``ctx`` (``ctx.lookup(topic, keys, as_of=None)`` on any
topic of the log); asking raises `TimeLeakError`.
Evaluation (`evaluate`, `summary`, `write_html`) is re-exported lazily from `replay.evaluate`
and `replay.report`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from logstore.errors import TimeLeakError

from .audit import Certificate, audit
from .context import Context
from .errors import (
    LookupTopicError,
    ModelError,
    ModelNameError,
    RangeError,
    ReplayError,
    ReplayNameError,
    RunInterrupted,
    RunNotFoundError,
    RunStateError,
)
from .models import FunctionModel, Model, RiverModel, SklearnModel
from .models import load as load_model
from .runner import Run, get, rerun, resume, run, runs

__all__ = [
    "run",
    "resume",
    "rerun",
    "runs",
    "get",
    "audit",
    "Run",
    "Certificate",
    "Model",
    "Context",
    "FunctionModel",
    "SklearnModel",
    "RiverModel",
    "load_model",
    "TimeLeakError",
    "ReplayError",
    "RangeError",
    "ModelError",
    "ModelNameError",
    "ReplayNameError",
    "LookupTopicError",
    "RunNotFoundError",
    "RunStateError",
    "RunInterrupted",
    "evaluate",
    "summary",
    "write_html",
]

_LAZY = {"evaluate": ("replay.evaluate", "evaluate"), "summary": ("replay.report", "summary"),
         "write_html": ("replay.report", "write_html")}


def _lazy(name: str) -> Any:
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)


def __getattr__(name: str) -> Any:
    # evaluation lives in its own modules (heavier imports); load it on first use only, so a
    # missing or broken evaluation module never breaks `import replay`
    if name in _LAZY:
        return _lazy(name)
    raise AttributeError(f"module 'replay' has no attribute {name!r}")


class _Package(types.ModuleType):
    """`replay.evaluate` is the function even after ``import replay.evaluate`` (which would
    otherwise rebind the package attribute to the submodule); the submodule stays importable."""

    @property
    def evaluate(self) -> Any:
        return _lazy("evaluate")

    @evaluate.setter
    def evaluate(self, value: Any) -> None:  # the import system binding the submodule: ignore
        pass


sys.modules[__name__].__class__ = _Package
