"""The one exception tree of logstore (and of the `schemas` and `replay` packages).

    LogstoreError                      base: catch this to catch everything we raise
    ├── ArgumentError                  an argument out of its domain (also a ValueError)
    ├── ArgumentTypeError              an argument of the wrong type (also a TypeError)
    ├── InvalidNameError               a topic/group/run name that is empty, too long or unsafe
    ├── TopicError
    │   ├── TopicNotFoundError
    │   └── TopicExistsError
    ├── SchemaError                    an Avro schema that does not parse or cannot map to Arrow
    │   └── SchemaIncompatibleError    a new version refused by the compatibility mode (.reasons)
    ├── RecordValidationError          a record that does not match its topic (.index, .field, .reason)
    ├── RecordTooLargeError            (also a RecordValidationError)
    ├── CorruptFrameError              bytes that failed their checksum or do not parse (.path, .position)
    ├── LogIOError                     an OSError wrapped with the operation and the path
    │   └── LogNotFoundError           no log at the path (also a FileNotFoundError)
    ├── ClockError                     a writer clock that returns no aware datetime
    │   └── ClockSkewError             a writer's clock ahead of the machine's by more than the bound
    ├── WriterClosedError
    ├── ConsumerError
    │   └── OffsetOutOfRangeError      a cursor offset outside the partition (also a ValueError)
    ├── TimeLeakError                  replay: a model asked for data from after its clock
    ├── EvaluationError                an evaluation that cannot run as asked
    └── replay.errors.ReplayError      a run that cannot start, continue or be found
        ├── RangeError, ModelError, RunNotFoundError, RunStateError

Every message says where, what was expected and what was found.
"""

from __future__ import annotations


class LogstoreError(Exception):
    """Base class of every error raised by logstore, schemas and replay."""


class InvalidNameError(LogstoreError, ValueError):
    """A name (topic, group, run) that is empty, too long or could escape the log directory."""


class TopicError(LogstoreError):
    """A problem with a topic as a whole."""


class TopicNotFoundError(TopicError, KeyError):
    """The topic does not exist in this log."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "topic not found"


class TopicExistsError(TopicError):
    """create_topic() on a name already taken (pass exist_ok=True to reuse it)."""


class SchemaError(LogstoreError, ValueError):
    """An Avro schema that does not parse, or that cannot be represented in Arrow."""


class SchemaIncompatibleError(SchemaError):
    """A new schema version refused under the topic's compatibility mode.

    `reasons` lists every incompatibility found, each naming the field path and what breaks.
    """

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        self.reasons: list[str] = list(reasons or [])
        if self.reasons:
            message = message + ":\n  - " + "\n  - ".join(self.reasons)
        super().__init__(message)


class RecordValidationError(LogstoreError, ValueError):
    """A record that does not match its topic's schema; the whole batch was rejected.

    `index` is the position of the record in the batch given to the writer, `field` the dotted
    field path (or None for the record as a whole) and `reason` what was expected and found.
    """

    def __init__(self, index: int | None, field: str | None, reason: str, topic: str | None = None) -> None:
        self.index = index
        self.field = field
        self.reason = reason
        self.topic = topic
        where = []
        if topic is not None:
            where.append(f"topic {topic!r}")
        if index is not None:
            where.append(f"record {index}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where) if where else "record"
        super().__init__(f"{prefix}: {reason}; the batch was rejected and nothing was written")


class RecordTooLargeError(RecordValidationError):
    """A record over the topic's `max_record_bytes`."""


class ArgumentError(LogstoreError, ValueError):
    """An argument a public call cannot take: out of range, an unknown option, malformed text."""


class ArgumentTypeError(LogstoreError, TypeError):
    """An argument of a type a public call does not take."""


class CorruptFrameError(LogstoreError):
    """A frame whose bytes failed the checksum or do not parse; nothing from it is returned."""

    def __init__(self, path: str, position: int, reason: str) -> None:
        self.path = path
        self.position = position
        self.reason = reason
        super().__init__(f"frame at byte {position} of {path}: {reason}")


class LogIOError(LogstoreError, OSError):
    """An operating-system error, wrapped with the operation and the path it concerned."""


class LogNotFoundError(LogIOError, FileNotFoundError):
    """There is no log at the path given (nothing is created by a read)."""


class ClockError(LogstoreError, ValueError):
    """A clock (a writer's `clock=`, or a datetime bound) that gives no aware datetime."""


class ClockSkewError(ClockError):
    """A commit stamped further ahead of the machine's own clock than the writer's bound allows."""


class WriterClosedError(LogstoreError):
    """append() or flush() on a writer that was closed (or failed and closed itself)."""


class ConsumerError(LogstoreError):
    """A consumer group cursor that cannot be read, or a commit that cannot be honoured."""


class OffsetOutOfRangeError(ConsumerError, ValueError):
    """An offset given to `seek()`/`commit()` that is not an int in [0, end offset of the partition],
    or a partition this consumer does not read."""


class TimeLeakError(LogstoreError):
    """Replay: a model asked to see data from after its clock. Says what was asked and the clock."""


class EvaluationError(LogstoreError, ValueError):
    """An evaluation that cannot run as asked: a missing column, an unknown model, a bad window."""
