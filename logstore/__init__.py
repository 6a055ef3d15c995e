"""logstore: an embedded, append-only, partitioned segment log for what ML models saw and said.

    import logstore
    log = logstore.open("path/to/log")
    log.create_topic("scores", schema="model_score", partitions=4, key_field="request_id")
    with log.writer("scores", durability="fsync") as w:
        w.append({...})
    log.read("scores", start=..., end=...)   # -> pyarrow.Table with _partition, _offset, _append_time
"""

from .errors import (
    ClockError,
    ClockSkewError,
    ConsumerError,
    CorruptFrameError,
    EvaluationError,
    InvalidNameError,
    LogIOError,
    LogNotFoundError,
    LogstoreError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    RecordValidationError,
    SchemaError,
    SchemaIncompatibleError,
    TimeLeakError,
    TopicError,
    TopicExistsError,
    TopicNotFoundError,
    WriterClosedError,
)
from .log import Log, RetentionReport, VerifyReport, open
from .topic import TopicConfig

__version__ = "0.1.0"

__all__ = [
    "open",
    "Log",
    "TopicConfig",
    "VerifyReport",
    "RetentionReport",
    "LogstoreError",
    "InvalidNameError",
    "TopicError",
    "TopicNotFoundError",
    "TopicExistsError",
    "SchemaError",
    "SchemaIncompatibleError",
    "RecordValidationError",
    "RecordTooLargeError",
    "CorruptFrameError",
    "LogIOError",
    "LogNotFoundError",
    "ClockError",
    "ClockSkewError",
    "WriterClosedError",
    "ConsumerError",
    "OffsetOutOfRangeError",
    "TimeLeakError",
    "EvaluationError",
]
