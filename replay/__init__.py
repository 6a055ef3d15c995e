"""replay: time-leak-free replay of recorded history into candidate models.

    import replay
    run = replay.run(log, inputs="inputs", outcomes="outcomes",
                     models=[my_model, "pkg.mod:make_model"], output="replay.scores",
                     start=0, end=None, workers=1, seed=0)
    run.id, run.manifest["content_hash"], run.scores()     # -> pyarrow.Table
    print(replay.audit(log, run.id))                       # a certificate, or the violations
    replay.resume(log, run_id)                             # finish an interrupted run
    replay.delete_run(log, run_id, with_output=True)       # its record (and an output of its own)

Models follow `replay.Model` (``name``, ``version``, ``predict(batch, ctx)``, optional
``learn(batch, ctx)``; `check_model` checks one); adapters: `FunctionModel`, `SklearnModel`,
`RiverModel`. Nothing appended after a row's clock is reachable through ``ctx``
(``ctx.lookup(topic, keys, as_of=None)`` on any topic of the log); asking raises `TimeLeakError`.
Evaluation (`evaluate`, `summary`, `write_html`) is re-exported lazily from `replay.evaluation`
and `replay.report`; the counterfactual rendezvous (`counterfactual`) from `replay.counterfactuals`.
Off-policy evaluation of a selection policy from logged decisions: `import replay.ope` (IPW, SNIPW, DR).

Layers (docs/architecture.md, "Parts"): `replay.engine` replays models along the clock;
`replay.runner` records runs (manifest, output, content hash, workers, audit);
`replay.evaluation` evaluates scores in DuckDB SQL; `replay.datasets` simulates traffic to replay.
"""

from __future__ import annotations

from typing import Any

from logstore.errors import TimeLeakError

from .checks import check_model
from .engine.context import Context
from .errors import (
    LookupTopicError,
    ModelError,
    ModelNameError,
    RangeError,
    ReplayError,
    ReplayNameError,
    ReplayTypeError,
    ReplayValueError,
    RunInterrupted,
    RunNotFoundError,
    RunStateError,
)
from .models import FunctionModel, Model, RiverModel, SklearnModel
from .models import load as load_model
from .runner.audit import Certificate, audit
from .runner.delete import delete_run
from .runner.handle import Run, get, runs
from .runner.start import rerun, resume, run

__all__ = [
    "run",
    "resume",
    "rerun",
    "runs",
    "get",
    "audit",
    "delete_run",
    "Run",
    "Certificate",
    "Model",
    "Context",
    "FunctionModel",
    "SklearnModel",
    "RiverModel",
    "load_model",
    "check_model",
    "TimeLeakError",
    "ReplayError",
    "ReplayValueError",
    "ReplayTypeError",
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
    "counterfactual",
]

_LAZY = {
    "evaluate": ("replay.evaluation", "evaluate"),
    "summary": ("replay.report", "summary"),
    "write_html": ("replay.report", "write_html"),
    "counterfactual": ("replay.counterfactuals", "counterfactual"),
}


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
