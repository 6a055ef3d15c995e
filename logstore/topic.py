"""Topic settings: ``<log>/topics/<topic>/topic.json``.

A JSON object with the fields of `TopicConfig`, written once at creation (inside the topic's
temporary directory, which is renamed into place whole). The topic's schemas live beside it in
``schemas/`` (the registry, see `schemas.registry`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import LogIOError, TopicError
from .files import read_small

COMPRESSIONS = (None, "zstd", "lz4")
DEFAULT_SEGMENT_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024
COMPATIBILITY_MODES = (
    "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE",
)


@dataclass(frozen=True)
class TopicConfig:
    """What a topic is: its partitioning, clocks, storage and retention settings."""

    name: str
    partitions: int = 1
    key_field: str | None = None
    event_time_field: str | None = "event_time"
    compatibility: str = "BACKWARD"
    compression: str | None = "zstd"
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    segment_ms: int | None = None
    retention_ms: int | None = None
    retention_bytes: int | None = None
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.partitions, int) or not 1 <= self.partitions <= 10_000:
            raise TopicError(f"topic {self.name!r}: partitions must be an int from 1 to 10000, found {self.partitions!r}")
        if self.compression not in COMPRESSIONS:
            raise TopicError(f"topic {self.name!r}: compression must be one of {COMPRESSIONS}, found {self.compression!r}")
        if self.compatibility not in COMPATIBILITY_MODES:
            raise TopicError(
                f"topic {self.name!r}: compatibility must be one of {', '.join(COMPATIBILITY_MODES)}, "
                f"found {self.compatibility!r}"
            )
        for name in ("segment_bytes", "max_record_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TopicError(f"topic {self.name!r}: {name} must be a positive int, found {value!r}")
        for name in ("segment_ms", "retention_ms", "retention_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise TopicError(f"topic {self.name!r}: {name} must be a non-negative int or None, found {value!r}")

    def to_json(self) -> str:
        return json.dumps({"format": 1, **asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: Path, name: str | None = None) -> "TopicConfig":
        """Parse a topic.json; anything but a whole, valid one raises TopicError naming `path`."""
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError as e:
            raise TopicError(f"{path}: not valid JSON ({e}); the topic cannot be used until it is restored") from e
        if not isinstance(data, dict):
            raise TopicError(f"{path}: expected a JSON object, found {type(data).__name__}")
        if not isinstance(data.get("name"), str) or (name is not None and data["name"] != name):
            raise TopicError(f"{path}: field 'name' must be the topic's name {name!r}, found {data.get('name')!r}")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, TopicError) as e:
            raise TopicError(f"{path}: {e}") from e


def load_config(path: Path, name: str | None = None) -> TopicConfig:
    """The settings in `path` (refusing a symlink). FileNotFoundError if there is none."""
    try:
        raw = read_small(path, 1 << 20)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise LogIOError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TopicError(f"{path}: not UTF-8 text ({e})") from e
    return TopicConfig.from_json(text, path, name)
