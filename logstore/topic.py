"""Topics: their settings (``<log>/topics/<topic>/topic.json``), partitions and schema versions.

A JSON object with the fields of `TopicConfig`, written at creation (inside the topic's
temporary directory, which is renamed into place whole) and replaced whole by `alter_topic`
(temp file, fsync, rename, under ``.topic.json.lock``; `logstore.admin` says when writers see a
change). The topic's schemas live beside it in ``schemas/`` (the registry, see `schemas.registry`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

import schemas
from schemas.registry import Registry

from .errors import ArgumentError, LogIOError, SchemaError, TopicError, TopicNotFoundError
from .files import read_small
from .names import SCHEMAS_DIR, SYSTEM_COLUMNS, TOPIC_FILE, TOPICS_DIR, partition_dirname
from .partition import Partition

if TYPE_CHECKING:
    from .log import Log

COMPRESSIONS = (None, "zstd", "lz4")
TIER_FIELDS = ("remote", "local_retention_ms", "local_retention_bytes")
DEFAULT_SEGMENT_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024
COMPATIBILITY_MODES = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
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
    # the remote tier (`tier.py`): the store's URI (without credentials) and how much history
    # stays on local disk; written to topic.json only when set, so a topic without stays as it was
    remote: str | None = None
    local_retention_ms: int | None = None
    local_retention_bytes: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.partitions, int) or not 1 <= self.partitions <= 10_000:
            raise TopicError(
                f"topic {self.name!r}: partitions must be an int from 1 to 10000, found {self.partitions!r}"
            )
        if self.compression not in COMPRESSIONS:
            raise TopicError(
                f"topic {self.name!r}: compression must be one of {COMPRESSIONS}, found {self.compression!r}"
            )
        if self.compatibility not in COMPATIBILITY_MODES:
            raise TopicError(
                f"topic {self.name!r}: compatibility must be one of {', '.join(COMPATIBILITY_MODES)}, "
                f"found {self.compatibility!r}"
            )
        for name in ("segment_bytes", "max_record_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TopicError(f"topic {self.name!r}: {name} must be a positive int, found {value!r}")
        if self.remote is not None and (not isinstance(self.remote, str) or "://" not in self.remote):
            raise TopicError(
                f"topic {self.name!r}: remote must be a URI such as s3://bucket/prefix, found {self.remote!r}"
            )
        for name in ("segment_ms", "retention_ms", "retention_bytes", "local_retention_ms", "local_retention_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise TopicError(f"topic {self.name!r}: {name} must be a non-negative int or None, found {value!r}")

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None or k not in TIER_FIELDS}
        return json.dumps({"format": 1, **data}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: Path, name: str | None = None) -> TopicConfig:
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


def check_fields(name: str, arrow: pa.Schema, event_time_field: str | None, key_field: str | None) -> None:
    """Refuse (SchemaError) system column names, an event-time field that is no timestamp and a
    key field that is not a string, bytes or integer field of `arrow`."""
    reserved = [f for f in arrow.names if f in SYSTEM_COLUMNS]
    if reserved:
        raise SchemaError(f"topic {name!r}: field name(s) {reserved} are reserved for the log's system columns")
    if event_time_field is not None:
        if event_time_field not in arrow.names:
            raise SchemaError(
                f"topic {name!r}: event-time field {event_time_field!r} is not in the schema {arrow.names}"
            )
        f = arrow.field(event_time_field)
        if not pa.types.is_timestamp(f.type):
            raise SchemaError(
                f"topic {name!r}: event-time field {event_time_field!r} must be a timestamp "
                f"(Avro timestamp-micros/millis), found {f.type}"
            )
    if key_field is not None:
        if key_field not in arrow.names:
            raise SchemaError(f"topic {name!r}: key field {key_field!r} is not in the schema {arrow.names}")
        kt = arrow.field(key_field).type
        if not (
            pa.types.is_string(kt) or pa.types.is_binary(kt) or pa.types.is_integer(kt) or pa.types.is_large_string(kt)
        ):
            raise SchemaError(f"topic {name!r}: key field {key_field!r} must be a string, bytes or integer, found {kt}")


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


@dataclass(frozen=True)
class Version:
    """One schema version of a topic, with its Arrow form."""

    version: int
    id: int
    schema: dict[str, Any]
    arrow: pa.Schema


class Topic:
    """A topic's settings, partitions and schema versions (internal; users go through `Log`)."""

    def __init__(self, log: Log, name: str) -> None:
        self.log = log
        self.name = name
        self.dir = log.path / TOPICS_DIR / name
        self._config: TopicConfig | None = None
        self._partitions: dict[int, Partition] = {}
        self._versions: dict[int, Version] = {}
        self._registry: Registry | None = None

    def exists(self) -> bool:
        return (self.dir / TOPIC_FILE).exists()

    @property
    def config(self) -> TopicConfig:
        if self._config is None:
            try:
                self._config = load_config(self.dir / TOPIC_FILE, self.name)
            except FileNotFoundError:
                raise TopicNotFoundError(f"topic {self.name!r} does not exist in {self.log.path}") from None
        return self._config

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.dir / SCHEMAS_DIR)
        return self._registry

    @property
    def write_options(self) -> pa.ipc.IpcWriteOptions:
        return pa.ipc.IpcWriteOptions(compression=self.config.compression)

    def partition(self, number: int) -> Partition:
        part = self._partitions.get(number)
        if part is None:
            if not 0 <= number < self.config.partitions:
                raise ArgumentError(f"topic {self.name!r} has partitions 0..{self.config.partitions - 1}, not {number}")
            part = Partition(
                self.dir / partition_dirname(number), number, readonly=self.log.readonly, remotes=self.log.remotes
            )
            self._partitions[number] = part
        return part

    def version(self, number: int | None = None) -> Version:
        """Schema version `number` (default: the latest), with its Arrow schema."""
        if number is None:
            self.registry.reload()
            latest = self.registry.latest()
            if latest is None:
                raise SchemaError(f"topic {self.name!r} has no schema")
            number = latest.version
        v = self._versions.get(number)
        if v is None:
            sv = self.registry.get(number)
            v = Version(sv.version, sv.id, sv.schema, schemas.to_arrow(sv.schema))
            self._versions[number] = v
        return v

    @property
    def remote(self) -> str | None:
        """The URI this topic's sealed segments move to: its own, else its log's (None: none)."""
        return self.config.remote or self.log.remote

    def create_from_data(self, data: Any) -> None:
        """Create this topic on first use, with the schema of the first data written to it."""
        if isinstance(data, (pa.Table, pa.RecordBatch)):
            schema = data.schema
        else:
            schema = pa.Table.from_pylist(list(data)).schema
        has_time = "event_time" in schema.names and pa.types.is_timestamp(schema.field("event_time").type)
        self.log.create_topic(
            self.name, schema=schema, event_time_field="event_time" if has_time else None, exist_ok=True
        )
        self._config = None

    def close(self) -> None:
        for part in self._partitions.values():
            if not part.readonly:
                part.close_tail()
            part.close()
