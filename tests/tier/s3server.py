"""A moto S3 server on loopback: the real S3 protocol for the remote-tier tests and benchmark.

`S3Server.start()` runs ``moto_server -H 127.0.0.1 -p PORT`` on a free port, waits (bounded) until
it answers and sets the ``AWS_*`` environment a client needs; `bucket()` makes a bucket and gives
its URI in the form `pyarrow.fs.FileSystem.from_uri` takes; `stop()` kills the server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pyarrow.fs as pafs

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe), "-H", "127.0.0.1", "-p", str(port)]
    found = shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server not found: pip install 'moto[server]>=5'")
    return [found, "-H", "127.0.0.1", "-p", str(port)]


class S3Server:
    """A running moto server (see the module docstring)."""

    def __init__(self, port: int, proc: subprocess.Popen[bytes], saved: dict[str, str | None]) -> None:
        self.port = port
        self.proc = proc
        self._saved = saved

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls) -> S3Server:
        saved = {k: os.environ.get(k) for k in ENV}
        os.environ.update(ENV)
        port = _free_port()
        proc = subprocess.Popen(_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = cls(port, proc, saved)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                server.stop()
                raise RuntimeError(f"moto_server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://{server.endpoint}/", timeout=1) as r:
                    r.read()
                return server
            except OSError:
                if time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError(
                        f"moto_server did not answer on {server.endpoint} in {START_TIMEOUT_S} s"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def query(self) -> str:
        return f"endpoint_override={self.endpoint}&scheme=http&region=us-east-1"

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=ENV["AWS_ACCESS_KEY_ID"],
            secret_key=ENV["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=self.endpoint,
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )

    def bucket(self, name: str | None = None, prefix: str = "tier") -> str:
        """Create a bucket (a fresh name by default); the URI of `prefix` in it."""
        name = name or f"b-{uuid.uuid4().hex[:12]}"
        self.filesystem().create_dir(name)
        return f"s3://{name}/{prefix}?{self.query()}"

    def objects(self, uri: str) -> dict[str, int]:
        """Keys (relative to the URI's prefix) and sizes of the objects under `uri`."""
        path = uri.removeprefix("s3://").partition("?")[0].rstrip("/")
        infos = self.filesystem().get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return {i.path.removeprefix(path + "/"): i.size for i in infos if i.type == pafs.FileType.File}
