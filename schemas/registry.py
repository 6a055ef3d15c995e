"""A topic's schema registry: immutable, numbered Avro schema versions in one directory.

On disk (``<log>/topics/<topic>/schemas/``)::

    v00001.avsc   version 1, pretty-printed normalized Avro JSON
    v00002.avsc   version 2, ...
    .lock         an empty file; fcntl.flock()ed around every register()

A version file is never rewritten or deleted: it is written to ``.v00002.avsc.<pid>.tmp``,
fsynced, renamed into place, and the directory is fsynced. A crash leaves at most a stray temp
file, ignored (and removed by the next register). The id of a version is `fingerprint(schema)`
(CRC-64-AVRO of the Parsing Canonical Form), as in Avro single-object encoding; several
versions can share an id when they differ only in what the canonical form strips (doc,
defaults, aliases, logical types), so `by_id` returns the latest of them, which decodes the
same bytes.

Registering a schema whose `full_form` equals an existing version's returns that version
(idempotent). Anything else is checked with `check_compatibility(new, all versions, mode)` and
refused with SchemaIncompatibleError listing every reason. Several processes may register at
once: the lock serializes read-check-write, and each register re-reads the directory first.
Thread-safety: one Registry object may be shared by threads (an internal lock guards the cache).
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import re
import threading
from typing import Any, NamedTuple

from logstore.errors import LogIOError, SchemaError, SchemaIncompatibleError
from logstore.files import write_atomic
from schemas.avro import fingerprint, full_form, parse
from schemas.compat import MODES, check_compatibility

LOCK_NAME = ".lock"
SUFFIX = ".avsc"
_VERSION_RE = re.compile(r"^v(\d{5,})\.avsc$")


def version_file_name(version: int) -> str:
    """`v00007.avsc` for version 7 (zero-padded so `ls` sorts them)."""
    return f"v{version:05d}{SUFFIX}"


class SchemaVersion(NamedTuple):
    version: int
    id: int
    schema: dict


class Registry:
    """The schema versions of one topic, stored in `directory` (created if missing)."""

    def __init__(self, directory: pathlib.Path | str) -> None:
        self.directory = pathlib.Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LogIOError(f"create schema registry directory {self.directory}: {e.strerror or e}") from None
        self._lock = threading.Lock()
        self._versions: list[SchemaVersion] | None = None
        self._forms: list[str] = []

    def __repr__(self) -> str:
        return f"Registry({str(self.directory)!r})"

    # ------------------------------------------------------------------ reading
    def reload(self) -> list[SchemaVersion]:
        """Re-read the directory (other processes may have registered versions)."""
        with self._lock:
            return self._load()

    def _load(self) -> list[SchemaVersion]:
        try:
            entries = sorted(os.listdir(self.directory))
        except OSError as e:
            raise LogIOError(f"list schema registry {self.directory}: {e.strerror or e}") from None
        found = []
        for name in entries:
            m = _VERSION_RE.match(name)
            if m:
                found.append((int(m.group(1)), name))
        found.sort()
        versions: list[SchemaVersion] = []
        for expected, (number, name) in enumerate(found, start=1):
            if number != expected:
                raise SchemaError(f"schema registry {self.directory}: expected version {expected}, found {name} "
                                  "(versions must be dense)")
            path = self.directory / name
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise SchemaError(f"schema version file {path} cannot be read: {e}") from None
            versions.append(SchemaVersion(number, fingerprint(schema), schema))
        self._versions = versions
        self._forms = [full_form(v.schema) for v in versions]
        return list(versions)

    def versions(self) -> list[SchemaVersion]:
        """All versions, oldest first (cached; `reload` refreshes)."""
        with self._lock:
            if self._versions is None:
                self._load()
            return list(self._versions or [])

    def latest(self) -> SchemaVersion | None:
        """The newest version, or None when nothing is registered."""
        versions = self.versions()
        return versions[-1] if versions else None

    def get(self, version: int) -> SchemaVersion:
        """Version number `version` (1-based)."""
        versions = self.versions()
        if not 1 <= version <= len(versions):
            versions = self.reload()
        if not 1 <= version <= len(versions):
            raise SchemaError(f"schema registry {self.directory}: no version {version} "
                              f"(versions 1..{len(versions)})" if versions else
                              f"schema registry {self.directory}: no version {version} (no schema registered)")
        return versions[version - 1]

    def by_id(self, schema_id: int) -> SchemaVersion:
        """The latest version whose id (fingerprint) is `schema_id`."""
        for attempt in (self.versions, self.reload):
            for v in reversed(attempt()):
                if v.id == schema_id:
                    return v
        raise SchemaError(f"schema registry {self.directory}: no version with id {schema_id:#018x}")

    # ------------------------------------------------------------------ writing
    def register(self, schema: Any, mode: str = "BACKWARD") -> SchemaVersion:
        """Add `schema` as the next version (or return the identical existing one).

        Raises SchemaIncompatibleError (with `.reasons`) when `mode` refuses it.
        """
        mode = str(mode).upper()
        if mode not in MODES:
            raise SchemaError(f"unknown compatibility mode {mode!r}; expected one of {', '.join(MODES)}")
        parsed = parse(schema)
        form = full_form(parsed)
        with self._lock, _FileLock(self.directory / LOCK_NAME):
            versions = self._load()
            for v, f in zip(versions, self._forms):
                if f == form:
                    return v
            reasons = check_compatibility(parsed, [v.schema for v in versions], mode)
            if reasons:
                raise SchemaIncompatibleError(
                    f"schema refused by {self.directory} under {mode} compatibility "
                    f"(latest is version {len(versions)})", reasons)
            number = len(versions) + 1
            self._write(number, parsed)
            new = SchemaVersion(number, fingerprint(parsed), parsed)
            self._versions = versions + [new]
            self._forms.append(form)
            return new

    def _write(self, number: int, schema: dict) -> None:
        final = self.directory / version_file_name(number)
        data = (json.dumps(schema, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        for stray in self.directory.glob(".v*.tmp"):  # left by a writer that died mid-write
            stray.unlink(missing_ok=True)
        if final.exists():  # pragma: no cover - the file lock makes this impossible
            raise SchemaError(f"schema version file {final} already exists; versions are immutable")
        write_atomic(final, data, "write schema version")


class _FileLock:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> "_FileLock":
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as e:
            if self.fd >= 0:
                os.close(self.fd)
            raise LogIOError(f"lock {self.path}: {e.strerror or e}") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
