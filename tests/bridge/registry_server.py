"""A schema registry over HTTP on 127.0.0.1, for tests where the bridge runs in another process:
`logstore.bridge.memregistry.MemoryStore` (the REST subset Kafka's serializers use) behind the
standard library's threading HTTP server.

    server = RegistryServer()        # serves on 127.0.0.1, a free port, in a daemon thread
    server.url                       # http://127.0.0.1:PORT
    server.store                     # the MemoryStore (set compatibility levels, inspect)
    server.close()

``python -m tests.bridge.registry_server`` serves one until killed (its URL on stdout).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from logstore.bridge.memregistry import MemoryStore


def _handler(store: MemoryStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            body: Any = None
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    self._send(400, {"error_code": 400, "message": "body is not JSON"})
                    return
            status, answer = store.handle(method, self.path, body if isinstance(body, dict) else None)
            self._send(status, answer)

        def _send(self, status: int, answer: Any) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._answer("PUT")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class RegistryServer:
    """A `MemoryStore` served on 127.0.0.1 until `close()`."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.store))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="registry", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    server = RegistryServer()
    print(server.url, flush=True)
    server.thread.join()
