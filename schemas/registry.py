"""A topic's schema registry: immutable, numbered Avro schema versions in one directory.

On disk (``<log>/topics/<topic>/schemas/``)::

    v00001.avsc          version 1, pretty-printed normalized Avro JSON
    v00001.fingerprint   what version 1 was when registered: {"format": 1, "version": 1,
                         "sha256": <hex SHA-256 of full_form(schema)>, "id": <CRC-64-AVRO, hex>}
    v00002.avsc          version 2, ...
    .lock                an empty file; fcntl.flock()ed around every register()

A version file is never rewritten or deleted: a register writes ``v0000N.avsc`` then
``v0000N.fingerprint``, each as a temp file beside it, fsynced, renamed into place, with the
directory fsynced after each rename (and the directory itself, when a register creates it, fsynced
into its parent). A crash leaves at most a stray temp file, ignored (and removed by the next
register), or a version file without its fingerprint (see below).

Frames name the schema version they were written with, so a version file changed by hand would
silently retype old frames. Loading checks every version file against its fingerprint record and
refuses a mismatch with SchemaError naming the file, the recorded and the found fingerprint. The
fingerprint is SHA-256 over `full_form` (every attribute: doc, defaults, logical types...), not the
Avro id, which ignores logical types. Backward compatible: a version without a record (a log made
before records existed, or a crash between the two renames) loads unchecked, and the next
register records it as it is then. A record whose version file is missing is refused too.

The id of a version is `fingerprint(schema)` (CRC-64-AVRO of the Parsing Canonical Form), as in
Avro single-object encoding; several versions can share an id when they differ only in what the
canonical form strips (doc, defaults, aliases, logical types), so `by_id` returns the latest of
them, which decodes the same bytes.

Registering a schema whose `full_form` equals an existing version's returns that version
(idempotent). Anything else is checked with `check_compatibility(new, all versions, mode)` and
refused with SchemaIncompatibleError listing every reason. Several processes may register at
once: the lock serializes read-check-write, and each register re-reads the directory first.
Reading never writes: `Registry(...)`, `versions()`, `get()`... create nothing (a registry whose
directory does not exist has no versions); only `register()` creates the directory and the lock.
Thread-safety: one Registry object may be shared by threads (an internal lock guards the cache).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pathlib
import re
import threading
from typing import Any, NamedTuple

from logstore.errors import LogIOError, SchemaError, SchemaIncompatibleError
from logstore.files import CLOEXEC, NOFOLLOW, make_dir, read_small, write_atomic
from schemas.avro import expand, fingerprint, full_form
from schemas.compat import MODES, check_expanded
from schemas.parse import parse

LOCK_NAME = ".lock"
SUFFIX = ".avsc"
RECORD_SUFFIX = ".fingerprint"
_VERSION_RE = re.compile(r"^v(\d{5,})\.avsc$")
_RECORD_RE = re.compile(r"^v(\d{5,})\.fingerprint$")
_MAX_FILE = 1 << 30  # a version file is read whole; 100k fields take a few MB


def version_file_name(version: int) -> str:
    """`v00007.avsc` for version 7 (zero-padded so `ls` sorts them)."""
    return f"v{version:05d}{SUFFIX}"


def record_file_name(version: int) -> str:
    """`v00007.fingerprint`: the fingerprint of version 7 recorded when it was registered."""
    return f"v{version:05d}{RECORD_SUFFIX}"


class SchemaVersion(NamedTuple):
    version: int
    id: int
    schema: dict[str, Any]


class Registry:
    """The schema versions of one topic, stored in `directory` (created by the first register)."""

    def __init__(self, directory: pathlib.Path | str) -> None:
        self.directory = pathlib.Path(directory)
        self._lock = threading.Lock()
        self._versions: list[SchemaVersion] | None = None
        self._forms: list[str] = []
        self._recorded: set[int] = set()  # versions whose fingerprint record exists
        # name -> (version file bytes, record bytes, version, full form) as last loaded
        self._files: dict[str, tuple[bytes, bytes | None, SchemaVersion, str]] = {}

    def __repr__(self) -> str:
        return f"Registry({str(self.directory)!r})"

    # ------------------------------------------------------------------ reading
    def reload(self) -> list[SchemaVersion]:
        """Re-read the directory (other processes may have registered versions)."""
        with self._lock:
            return self._load()

    def _load(self) -> list[SchemaVersion]:
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            entries = []  # nothing registered yet (reading never creates the directory)
        except OSError as e:
            raise LogIOError(f"list schema registry {self.directory}: {e.strerror or e}") from None
        found, records = [], {}
        for name in entries:
            m = _VERSION_RE.match(name)
            if m:
                found.append((int(m.group(1)), name))
                continue
            m = _RECORD_RE.match(name)
            if m:
                records[int(m.group(1))] = name
        found.sort()
        versions: list[SchemaVersion] = []
        forms: list[str] = []
        files: dict[str, tuple[bytes, bytes | None, SchemaVersion, str]] = {}
        for expected, (number, name) in enumerate(found, start=1):
            if number != expected:
                raise SchemaError(
                    f"schema registry {self.directory}: expected version {expected}, found {name} "
                    "(versions must be dense)"
                )
            version, form = self._load_version(number, name, records.get(number), files)
            versions.append(version)
            forms.append(form)
        orphans = sorted(n for n in records if n > len(found))
        if orphans:
            n = orphans[0]
            raise SchemaError(
                f"schema registry {self.directory}: {records[n]} records version {n}, but its version file "
                f"{version_file_name(n)} is missing (versions are never deleted: restore it)"
            )
        self._versions = versions
        self._forms = forms
        self._recorded = {n for n in records if n <= len(found)}
        self._files = files
        return list(versions)

    def _load_version(
        self,
        number: int,
        name: str,
        record: str | None,
        files: dict[str, tuple[bytes, bytes | None, SchemaVersion, str]],
    ) -> tuple[SchemaVersion, str]:
        """Version `number` from file `name`, checked against its fingerprint `record` if any.

        A version file and record whose bytes are those of the last load are not parsed again.
        """
        path = self.directory / name
        rpath = self.directory / record if record is not None else None
        try:
            raw = read_small(path, _MAX_FILE)
        except OSError as e:
            raise SchemaError(f"schema version file {path} cannot be read: {e}") from None
        try:
            rraw = read_small(rpath, 1 << 16) if rpath is not None else None
        except OSError as e:
            raise SchemaError(f"schema fingerprint record {rpath} cannot be read: {e}") from None
        cached = self._files.get(name)
        if cached is not None and cached[0] == raw and cached[1] == rraw:
            files[name] = cached
            return cached[2], cached[3]
        try:
            schema = json.loads(raw.decode("utf-8"))
        except ValueError as e:
            raise SchemaError(f"schema version file {path} cannot be read: {e}") from None
        if not isinstance(schema, dict):
            raise SchemaError(f"schema version file {path} does not hold an Avro record schema (a JSON object)")
        try:
            form = full_form(schema)
        except (KeyError, TypeError, AttributeError) as e:
            raise SchemaError(f"schema version file {path} does not hold a valid schema: {e!r}") from None
        schema_id = None
        if rpath is not None and rraw is not None:
            recorded, schema_id = _parse_record(rpath, rraw, number)
            found = _digest(form)
            if recorded != found:
                raise SchemaError(
                    f"schema version file {path} is not the schema registered as version {number}: its "
                    f"fingerprint (SHA-256 of the full form) was recorded as {recorded} in {rpath}, found "
                    f"{found}; version files must never change (frames written under version {number} would be "
                    "read with another type): restore the original file"
                )
        # the id recorded with a matching digest is that of this very schema (CRC-64 is slow in Python)
        version = SchemaVersion(number, fingerprint(schema) if schema_id is None else schema_id, schema)
        files[name] = (raw, rraw, version, form)
        return version, form

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
            raise SchemaError(
                f"schema registry {self.directory}: no version {version} (versions 1..{len(versions)})"
                if versions
                else f"schema registry {self.directory}: no version {version} (no schema registered)"
            )
        return versions[version - 1]

    def by_id(self, schema_id: int) -> SchemaVersion:
        """The latest version whose id (fingerprint) is `schema_id`."""
        for versions in (self.versions(), self.reload()):
            found = [v for v in versions if v.id == schema_id]
            if found:
                return found[-1]
        raise SchemaError(f"schema registry {self.directory}: no version with id {schema_id:#018x}")

    # ------------------------------------------------------------------ writing
    def register(self, schema: Any, mode: str = "BACKWARD") -> SchemaVersion:
        """Add `schema` as the next version (or return the identical existing one).

        Raises SchemaIncompatibleError (with `.reasons`) when `mode` refuses it. Versions found
        without a fingerprint record (older logs) are recorded as they are now.
        """
        mode = str(mode).upper()
        if mode not in MODES:
            raise SchemaError(f"unknown compatibility mode {mode!r}; expected one of {', '.join(MODES)}")
        parsed = parse(schema)
        form = full_form(parsed)
        try:
            make_dir(self.directory)  # each directory created is fsynced into its parent
        except OSError as e:
            raise LogIOError(f"create schema registry directory {self.directory}: {e.strerror or e}") from None
        with self._lock, _FileLock(self.directory / LOCK_NAME):
            versions = self._load()
            self._clean_strays()
            for v, f in zip(versions, self._forms):
                if v.version not in self._recorded:
                    self._write_record(v.version, f, v.id)
            for v, f in zip(versions, self._forms):
                if f == form:
                    return v
            # `parsed` was validated by parse(), stored versions when registered: expand, no re-parse;
            # only the latest matters unless the mode is transitive
            against = versions if mode.endswith("_TRANSITIVE") else versions[-1:]
            reasons = check_expanded(expand(parsed), [expand(v.schema) for v in against], mode)
            if reasons:
                raise SchemaIncompatibleError(
                    f"schema refused by {self.directory} under {mode} compatibility "
                    f"(latest is version {len(versions)})",
                    reasons,
                )
            number = len(versions) + 1
            new = SchemaVersion(number, fingerprint(parsed), parsed)
            self._write(number, parsed)
            self._write_record(number, form, new.id)
            self._versions = versions + [new]
            self._forms.append(form)
            return new

    def _clean_strays(self) -> None:
        """(Under the file lock.) Remove temp files left by a register that died mid-write."""
        for stray in self.directory.glob(".v*.tmp"):
            stray.unlink(missing_ok=True)

    def _write(self, number: int, schema: dict[str, Any]) -> None:
        final = self.directory / version_file_name(number)
        data = (json.dumps(schema, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        if final.exists():  # pragma: no cover - the file lock makes this impossible
            raise SchemaError(f"schema version file {final} already exists; versions are immutable")
        write_atomic(final, data, "write schema version")

    def _write_record(self, number: int, form: str, schema_id: int) -> None:
        """(Under the file lock, after version `number`'s file is durable.) Record its fingerprint."""
        doc = {
            "format": 1,
            "version": number,
            "file": version_file_name(number),
            "sha256": _digest(form),
            "id": f"{schema_id:#018x}",
        }
        write_atomic(
            self.directory / record_file_name(number),
            (json.dumps(doc, indent=2) + "\n").encode(),
            "write schema fingerprint",
        )
        self._recorded.add(number)


def _digest(form: str) -> str:
    """The fingerprint a record holds: hex SHA-256 of a schema's `full_form`."""
    return hashlib.sha256(form.encode("utf-8")).hexdigest()


def _parse_record(path: pathlib.Path, raw: bytes, number: int) -> tuple[str, int | None]:
    """(SHA-256, id or None) recorded in fingerprint record `path` (bytes `raw`) for version `number`."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError as e:
        raise SchemaError(f"schema fingerprint record {path} is damaged: not JSON ({e})") from None
    digest = doc.get("sha256") if isinstance(doc, dict) else None
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise SchemaError(
            f"schema fingerprint record {path} is damaged: field 'sha256' must be 64 hex digits, found {digest!r}"
        )
    if doc.get("version") != number:
        raise SchemaError(
            f"schema fingerprint record {path} is damaged: field 'version' must be {number}, "
            f"found {doc.get('version')!r}"
        )
    schema_id = doc.get("id")
    if isinstance(schema_id, str) and re.fullmatch(r"0x[0-9a-f]{16}", schema_id):
        return digest, int(schema_id, 16)
    return digest, None


class _FileLock:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _FileLock:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as e:
            if self.fd >= 0:
                os.close(self.fd)
            raise LogIOError(f"lock {self.path}: {e.strerror or e}") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
