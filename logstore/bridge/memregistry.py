"""A Confluent Schema Registry held in memory: the REST subset Kafka's Avro serializers use.

`MemoryStore.handle(method, path, body)` answers as the registry's REST API does, with the same
status codes and ``{"error_code", "message"}`` bodies:

    POST /subjects/{s}/versions                   register (idempotent) -> {"id"}
    POST /subjects/{s}                            look a schema up -> {"subject", "version", "id", "schema"}
    GET  /subjects, /subjects/{s}/versions        names, version numbers
    GET  /subjects/{s}/versions/{v|latest}        -> {"subject", "version", "id", "schema"}
    GET  /schemas/ids/{id}                        -> {"schema"}
    POST /compatibility/subjects/{s}/versions/{v|latest}   -> {"is_compatible"}
    GET|PUT /config, /config/{s}                  compatibility level (BACKWARD by default)

Ids are global (one id per distinct schema, whatever the subject), as in the registry; a
register is checked against the subject's versions under its compatibility level
(`schemas.check_compatibility`) and refused with 409 and the reasons. `logstore.bridge`'s
client speaks to a store in this process through ``mock://NAME`` URLs (one store per name, as
Confluent's own mock client does), and the bridge's tests serve one over HTTP.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import unquote

from schemas import MODES, check_compatibility

Answer = tuple[int, dict[str, Any] | list[Any]]


def _error(status: int, code: int, message: str) -> Answer:
    return status, {"error_code": code, "message": message}


def canonical(schema_text: str) -> str:
    """The registry's identity of a schema: its JSON, re-serialized with sorted keys."""
    return json.dumps(json.loads(schema_text), sort_keys=True, separators=(",", ":"))


class MemoryStore:
    """Subjects, versions and global ids, guarded by one lock (threads of an HTTP server share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._texts: dict[int, str] = {}
        self._ids: dict[str, int] = {}
        self._subjects: dict[str, list[int]] = {}
        self._levels: dict[str, str] = {}
        self._level = "BACKWARD"

    # --- the model --------------------------------------------------------------------------
    def level(self, subject: str | None = None) -> str:
        return self._levels.get(subject, self._level) if subject is not None else self._level

    def register(self, subject: str, text: str) -> Answer:
        key = canonical(text)
        versions = self._subjects.setdefault(subject, [])
        known = self._ids.get(key)
        if known is not None and known in versions:
            return 200, {"id": known}
        reasons = check_compatibility(
            json.loads(text), [json.loads(self._texts[i]) for i in versions], self.level(subject)
        )
        if reasons:
            return _error(
                409, 409, f"Schema being registered is incompatible with an earlier schema: {'; '.join(reasons)}"
            )
        if known is None:
            known = len(self._texts) + 1
            self._texts[known] = text
            self._ids[key] = known
        versions.append(known)
        return 200, {"id": known}

    def _version(self, subject: str, which: str) -> Answer:
        versions = self._subjects.get(subject)
        if not versions:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        number = len(versions) if which == "latest" else int(which) if which.isdigit() else 0
        if not 1 <= number <= len(versions):
            return _error(404, 40402, f"Version {which} not found.")
        sid = versions[number - 1]
        return 200, {"subject": subject, "version": number, "id": sid, "schema": self._texts[sid]}

    def _lookup(self, subject: str, text: str) -> Answer:
        sid = self._ids.get(canonical(text))
        versions = self._subjects.get(subject)
        if not versions:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        if sid is None or sid not in versions:
            return _error(404, 40403, "Schema not found")
        return self._version(subject, str(versions.index(sid) + 1))

    def _compatible(self, subject: str, which: str, text: str) -> Answer:
        status, found = self._version(subject, which)
        if status != 200:
            return status, found
        assert isinstance(found, dict)
        reasons = check_compatibility(json.loads(text), [json.loads(found["schema"])], self.level(subject))
        return 200, {"is_compatible": not reasons, "messages": reasons}

    def _config(self, subject: str | None, body: dict[str, Any] | None) -> Answer:
        if body is None:
            return 200, {"compatibilityLevel": self.level(subject)}
        level = str(body.get("compatibility", "")).upper()
        if level not in MODES:
            return _error(422, 42203, f"Invalid compatibility level {level!r}")
        if subject is None:
            self._level = level
        else:
            self._levels[subject] = level
        return 200, {"compatibility": level}

    # --- REST -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        """The registry's answer (status, JSON body) to one REST request."""
        parts = [unquote(p) for p in path.split("?")[0].strip("/").split("/") if p]
        with self._lock:
            try:
                return self._route(method.upper(), parts, body)
            except (ValueError, KeyError, TypeError) as e:
                return _error(422, 42201, f"Invalid schema: {e}")

    def _route(self, method: str, parts: list[str], body: dict[str, Any] | None) -> Answer:
        text = body.get("schema") if isinstance(body, dict) else None
        if body is not None and body.get("schemaType", "AVRO") != "AVRO":
            return _error(422, 42201, "only AVRO schemas are kept here")
        match method, parts:
            case "GET", ["subjects"]:
                return 200, sorted(s for s, v in self._subjects.items() if v)
            case "GET", ["subjects", subject, "versions"]:
                if not self._subjects.get(subject):
                    return _error(404, 40401, f"Subject '{subject}' not found.")
                return 200, list(range(1, len(self._subjects[subject]) + 1))
            case "GET", ["subjects", subject, "versions", which]:
                return self._version(subject, which)
            case "POST", ["subjects", subject, "versions"] if isinstance(text, str):
                return self.register(subject, text)
            case "POST", ["subjects", subject] if isinstance(text, str):
                return self._lookup(subject, text)
            case "GET", ["schemas", "ids", sid] if sid.isdigit():
                if int(sid) not in self._texts:
                    return _error(404, 40403, "Schema not found")
                return 200, {"schema": self._texts[int(sid)]}
            case "POST", ["compatibility", "subjects", subject, "versions", which] if isinstance(text, str):
                return self._compatible(subject, which, text)
            case "GET" | "PUT", ["config"]:
                return self._config(None, body if method == "PUT" else None)
            case "GET" | "PUT", ["config", subject]:
                return self._config(subject, body if method == "PUT" else None)
        return _error(404, 404, f"no such endpoint: {method} /{'/'.join(parts)}")


_STORES: dict[str, MemoryStore] = {}
_STORES_LOCK = threading.Lock()


def store(name: str) -> MemoryStore:
    """The process's store called `name` (``mock://NAME``), created on first use."""
    with _STORES_LOCK:
        found = _STORES.get(name)
        if found is None:
            found = _STORES[name] = MemoryStore()
        return found
