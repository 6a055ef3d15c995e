"""The `Run` handle, and finding runs: `runs`, `get`.

A run is recorded in its log: its manifest (`replay.runner.manifest`) and its rows in the output
topic (`replay.runner.sink`). `Run` reads both; it holds the manifest as the JSON object (a dict).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from . import manifest as mf
from .audit import audit
from .logs import open_log
from .sink import read_run


class Run:
    """A replay run recorded in a log: its manifest, and its rows in the output topic."""

    def __init__(self, log: Any, manifest: dict) -> None:
        self.log = log
        self.manifest = manifest

    @property
    def id(self) -> str:
        return self.manifest["run_id"]

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def output(self) -> str:
        return self.manifest["output"]["topic"]

    @property
    def content_hash(self) -> str | None:
        return self.manifest.get("content_hash")

    @property
    def rows(self) -> dict:
        return self.manifest.get("rows", {})

    def refresh(self) -> Run:
        self.manifest = mf.read(self.log, self.id)
        return self

    def scores(self, columns: Sequence[str] | None = None) -> pa.Table:
        """This run's output rows, ordered by input topic, partition, clock, offset, model id."""
        out = self.manifest["output"]
        start = {int(p): o for p, o in out["start"].items()}
        need = ["input_topic", "input_partition", "clock", "input_offset", "model_id"]
        cols = None if columns is None else list(dict.fromkeys(list(columns) + need))
        tables = list(read_run(self.log, out["topic"], self.id, start, None, cols))
        if tables:
            t = pa.concat_tables(tables)
        else:
            schema = self.log.arrow_schema(out["topic"], system_columns=True)
            t = schema.empty_table() if cols is None else schema.empty_table().select(cols)
        t = t.sort_by([(c, "ascending") for c in need])
        return t if columns is None else t.select(list(columns))

    def audit(self):
        """Check every output row against the log (see `replay.audit`)."""
        return audit(self.log, self.id)

    def __repr__(self) -> str:
        rows = self.rows.get("outputs")
        return f"<replay.Run {self.id} {self.status} rows={rows} hash={self.content_hash}>"


def runs(log: Any) -> list[Run]:
    """Every run recorded in `log`, oldest first."""
    log = open_log(log)
    return [Run(log, mf.read(log, rid)) for rid in mf.list_ids(log)]


def get(log: Any, run_id: str) -> Run:
    """The run `run_id` of `log`."""
    log = open_log(log)
    return Run(log, mf.read(log, run_id))
