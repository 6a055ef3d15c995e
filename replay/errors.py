"""The errors replay raises. They hang off the one tree of `logstore.errors`:

    LogstoreError
    ├── TimeLeakError          a model asked `ctx` for data from after its row's clock
    └── ReplayError            base of the rest: a run that cannot start, continue or be found
        ├── ReplayValueError   an argument whose value a call does not accept (also a ValueError)
        │   └── RangeError     a start/end that does not name an exact range of the log
        ├── ReplayTypeError    an argument of a type a call does not accept (also a TypeError)
        ├── ModelError         a model that cannot be loaded, breaks the protocol (`check_model`),
        │                      or answered with the wrong shape
        │   └── ModelNameError a model name or version replay cannot record (also a ReplayNameError)
        ├── ReplayNameError    a run id or output topic that is not a valid name (also a
        │                      `logstore.InvalidNameError`)
        ├── LookupTopicError   ctx.lookup/history of a topic the log did not hold when the run
        │                      started (also a `logstore.TopicNotFoundError`)
        ├── RunNotFoundError   no manifest for that run id in this log
        └── RunStateError      e.g. resuming a run that is complete

    RunInterrupted (KeyboardInterrupt)   Ctrl-C during a run: the log is consistent, the run is
                                         marked incomplete, `.run_id` names it for `replay.resume`.

Evaluation raises `logstore.EvaluationError` (a ValueError) for what it cannot evaluate as asked.
Every message says which run/model/topic/partition, what was expected and what was found.
"""

from __future__ import annotations

from logstore.errors import InvalidNameError, LogstoreError, TimeLeakError, TopicNotFoundError

__all__ = [
    "TimeLeakError",
    "ReplayError",
    "ReplayValueError",
    "ReplayTypeError",
    "RangeError",
    "ModelError",
    "ReplayNameError",
    "ModelNameError",
    "LookupTopicError",
    "RunNotFoundError",
    "RunStateError",
    "RunInterrupted",
]


class ReplayError(LogstoreError):
    """Base class of replay's own errors."""


class ReplayValueError(ReplayError, ValueError):
    """An argument whose value the call does not accept (`except ValueError` catches it too)."""


class ReplayTypeError(ReplayError, TypeError):
    """An argument of a type the call does not accept (`except TypeError` catches it too)."""


class RangeError(ReplayValueError):
    """A start/end bound that does not name an exact range (past the end, deleted, reversed...)."""


class ModelError(ReplayError):
    """A model that cannot be imported or built, breaks the protocol, or answers wrongly."""


class ReplayNameError(ReplayError, InvalidNameError):
    """A name replay writes into a path, a manifest or the output (run id, output topic) that is invalid."""


class ModelNameError(ModelError, ReplayNameError):
    """A model whose name (its model_id) or version replay cannot record; names the model and why."""


class LookupTopicError(ReplayError, TopicNotFoundError):
    """ctx.lookup/history of a topic that did not exist in the log when the run started."""


class RunNotFoundError(ReplayError, KeyError):
    """No run with that id in this log."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "run not found"


class RunStateError(ReplayError):
    """An operation the run's status does not allow (e.g. resuming a complete run)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; the output written so far is whole and the manifest says where it stopped."""

    def __init__(self, run_id: str, message: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(message or f"run {run_id} interrupted; finish it with replay.resume(log, {run_id!r})")
