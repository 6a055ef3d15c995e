"""A Confluent Schema Registry client: the three calls the bridge makes, over the registry's REST API.

    schema(id)                 GET  /schemas/ids/{id}                 a writer schema, by the id framed messages carry
    register(subject, schema)  POST /subjects/{subject}/versions       the id of a schema (registered if new)
    latest(subject)            GET  /subjects/{subject}/versions/latest

``http://`` and ``https://`` URLs go over the network (the standard library's urllib: no extra
dependency); ``mock://NAME`` is an in-memory registry of this process (`memregistry`), for tests.
Ids are immutable, so `schema(id)` and `register` are cached for the client's life.

Errors: a registry that does not answer (refused, reset, timed out, a 5xx) is retried with
`kafka.Backoff` until `retry_timeout`, then BridgeError("cannot reach the schema registry at URL:
..."); a refusal (4xx: incompatible schema, unknown id or subject) is raised at once with the
registry's own message.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .kafka import Backoff, BridgeError
from .memregistry import store

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryRefused(BridgeError):
    """The registry answered no (a 4xx): `status` and the registry's `code`."""

    def __init__(self, message: str, status: int, code: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryClient:
    """A schema registry at `url` (http(s):// or mock://NAME)."""

    def __init__(self, url: str, *, retry_timeout: float = 30.0, request_timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.retry_timeout = retry_timeout
        self.request_timeout = request_timeout
        self._auth: str | None = None
        self._memory = store(self.url.removeprefix("mock://")) if url.startswith("mock://") else None
        if self._memory is None:
            self._parse_url(url)
        self._schemas: dict[int, dict[str, Any]] = {}
        self._registered: dict[tuple[str, str], int] = {}

    def _parse_url(self, url: str) -> None:
        """Check an http(s) URL; credentials in it (http://user:secret@host) become basic auth."""
        try:
            parsed = urllib.parse.urlsplit(url)
            parsed.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as e:
            raise BridgeError(f"schema registry URL {url!r}: {e}") from None
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BridgeError(f"schema registry URL {url!r}: expected http://, https:// or mock://NAME")
        if parsed.username is not None:
            creds = f"{urllib.parse.unquote(parsed.username)}:{urllib.parse.unquote(parsed.password or '')}"
            self._auth = "Basic " + base64.b64encode(creds.encode()).decode()
            host = parsed.netloc.rsplit("@", 1)[1]
            self.url = urllib.parse.urlunsplit(parsed._replace(netloc=host)).rstrip("/")

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r})"

    # --- the calls ------------------------------------------------------------------------------
    def schema(self, schema_id: int) -> dict[str, Any]:
        """The schema registered under `schema_id` (RegistryRefused when there is none)."""
        found = self._schemas.get(schema_id)
        if found is None:
            body = self._call("GET", f"/schemas/ids/{int(schema_id)}")
            assert isinstance(body, dict)
            if body.get("schemaType", "AVRO") != "AVRO":
                raise BridgeError(f"schema id {schema_id} is a {body['schemaType']} schema: the bridge reads Avro")
            found = self._schemas[schema_id] = json.loads(body["schema"])
        return found

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """The id of `schema` under `subject`, registered if it is new (the registry checks it)."""
        text = json.dumps(schema, separators=(",", ":"))
        key = (subject, text)
        found = self._registered.get(key)
        if found is None:
            body = self._call("POST", f"/subjects/{_quote(subject)}/versions", {"schema": text})
            assert isinstance(body, dict)
            found = self._registered[key] = int(body["id"])
            self._schemas.setdefault(found, schema)
        return found

    def latest(self, subject: str) -> tuple[int, int, dict[str, Any]] | None:
        """(id, version, schema) of the subject's latest version, None when it has none."""
        try:
            body = self._call("GET", f"/subjects/{_quote(subject)}/versions/latest")
        except RegistryRefused as e:
            if e.status == 404:
                return None
            raise
        assert isinstance(body, dict)
        return int(body["id"]), int(body["version"]), json.loads(body["schema"])

    # --- transport ------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._memory is not None:
            status, answer = self._memory.handle(method, path, body)
            return self._answer(method, path, status, answer)
        backoff = Backoff(self.retry_timeout)
        while True:
            try:
                status, answer = self._http(method, path, body)
                if status < 500:
                    return self._answer(method, path, status, answer)
                last = f"HTTP {status}: {_message(answer)}"
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                last = str(getattr(reason, "strerror", None) or reason)
            if not backoff.wait():
                raise BridgeError(f"cannot reach the schema registry at {self.url}: {last} ({backoff.spent()})")

    def _http(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", f"{CONTENT_TYPE}, application/json")
        if data is not None:
            request.add_header("Content-Type", CONTENT_TYPE)
        if self._auth is not None:
            request.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as e:
            return e.code, _json(e.read())

    def _answer(self, method: str, path: str, status: int, answer: Any) -> Any:
        if 200 <= status < 300:
            return answer
        code = answer.get("error_code") if isinstance(answer, dict) else None
        raise RegistryRefused(
            f"schema registry {self.url} refused {method} {path}: {_message(answer)} (HTTP {status})", status, code
        )


def _quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else {}
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}


def _message(answer: Any) -> str:
    if isinstance(answer, dict) and "message" in answer:
        return str(answer["message"])
    return json.dumps(answer)[:200]
