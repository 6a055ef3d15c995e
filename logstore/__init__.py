"""logstore: an embedded, append-only, partitioned segment log for what ML models saw and said.

import logstore
log = logstore.open("path/to/log")
log.create_topic("scores", schema="model_score", partitions=4, key_field="request_id")
with log.writer("scores", durability="fsync") as w:
    w.append({...})
log.read("scores", start=..., end=...)   # -> pyarrow.Table with _partition, _offset, _append_time
"""

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ArgumentError,
    ArgumentTypeError,
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

if TYPE_CHECKING:
    from .consumer import Consumer
    from .describe import RetentionReport, VerifyReport
    from .keyhash import partition_of
    from .log import Log, open
    from .partition import Snapshot
    from .reader import Reader
    from .topic import TopicConfig
    from .writer import Writer

# The engine loads on first use of one of these names (PEP 562), so that importing a leaf such
# as `logstore.errors` (as `schemas` does) loads nothing else; see docs/architecture.md, layers.
_LAZY = {
    "open": "log",
    "Log": "log",
    "TopicConfig": "topic",
    "VerifyReport": "describe",
    "RetentionReport": "describe",
    "Snapshot": "partition",
    "Writer": "writer",
    "Reader": "reader",
    "Consumer": "consumer",
    "partition_of": "keyhash",  # the partition a key lands in (what a keyed writer uses)
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'logstore' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "open",
    "Log",
    "Writer",
    "Reader",
    "Consumer",
    "TopicConfig",
    "Snapshot",
    "VerifyReport",
    "RetentionReport",
    "partition_of",
    "LogstoreError",
    "ArgumentError",
    "ArgumentTypeError",
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
