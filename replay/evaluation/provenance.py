"""Where an evaluation's numbers come from: the log, the cut-off, the topics, the model versions
and the replay runs behind the scores, with what each run's manifest records.

    prov = collect(log, ev)          # `evaluate` does this into `Evaluation.provenance`
    prov.to_dict()                   # plain values (the report's `provenance` block and JSON key)

Per model: the distinct `model_version`s and `code_version`s of its scores (non-null scores, as
the evaluation counts them) and the distinct non-null `run_id`s (replayed scores). Per run: the
status, error, content hash, code version and model `params_hash`es its manifest records
(`replay.runner.manifest`); a run id without a manifest in the log is "not recorded". Auditing
re-reads every input of a run (`replay.audit`), so it is never run here: the audit status is
"not audited" unless the caller passes `Certificate`s it computed (`audits`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from logstore.errors import LogstoreError
from logstore.names import quote_ident

from .queries import run_sql

__all__ = ["ModelProvenance", "Provenance", "RunProvenance", "collect"]

NOT_RECORDED = "not recorded"
NOT_AUDITED = "not audited"


@dataclass(frozen=True)
class ModelProvenance:
    """One evaluated model: the versions, serving code versions and replay runs in its scores."""

    model: str
    model_id: str
    sources: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    code_versions: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunProvenance:
    """One replay run behind the scores, as its manifest records it (`status` "not recorded"
    when the log has no manifest for it; then every other field is empty)."""

    run_id: str
    status: str
    audit: str = NOT_AUDITED
    error: str | None = None
    created: str | None = None
    finished: str | None = None
    content_hash: str | None = None
    code_version: str | None = None
    rerun_of: str | None = None
    model_hashes: dict[str, str | None] = field(default_factory=dict)  # "name@version" -> params_hash


@dataclass
class Provenance:
    """What an evaluation read and when (module docstring); every field empty by default."""

    log_path: str | None = None
    cutoff: dt.datetime | None = None
    window: str | None = None
    generated: dt.datetime | None = None  # UTC
    generated_by: str | None = None  # the evaluating code's version (`code_version()`)
    score_topics: list[str] = field(default_factory=list)
    outcomes: str | None = None
    inputs: str | None = None
    models: list[ModelProvenance] = field(default_factory=list)
    runs: list[RunProvenance] = field(default_factory=list)
    logstore_version: str | None = None
    log_format: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The provenance as plain values (datetimes stay datetimes)."""
        return asdict(self)

    def run(self, run_id: str) -> RunProvenance | None:
        return next((r for r in self.runs if r.run_id == run_id), None)


def _topic_rows(con: Any, topic: str) -> list[dict[str, Any]]:
    """Distinct (model_id, model_version, code_version, run_id) of a score topic's non-null scores."""
    cur = con.execute(f"SELECT * FROM {quote_ident(topic)} LIMIT 0")
    names = {d[0] for d in cur.description}
    cur.fetchall()
    optional = {c: (quote_ident(c) if c in names else "NULL") for c in ("code_version", "run_id")}
    query = (
        "SELECT DISTINCT CAST(model_id AS VARCHAR) AS model_id, CAST(model_version AS VARCHAR) AS version, "
        f"CAST({optional['code_version']} AS VARCHAR) AS code_version, "
        f"CAST({optional['run_id']} AS VARCHAR) AS run_id "
        "FROM {{topic}} WHERE score IS NOT NULL AND NOT isnan(CAST(score AS DOUBLE))"
    )
    return run_sql(con, query, {}, topic=topic).to_pylist()


def _models(con: Any, topics: list[str], labels: list[str]) -> list[ModelProvenance]:
    found: dict[str, dict[str, set[str]]] = {}
    ids: dict[str, str] = {}
    for topic in topics:
        for r in _topic_rows(con, topic):
            label = f"{r['model_id']}@{topic}"
            label = label if label in labels else r["model_id"]
            if label not in labels:
                continue  # not evaluated (e.g. only null scores)
            ids[label] = r["model_id"]
            mine = found.setdefault(label, {k: set() for k in ("sources", "versions", "code_versions", "run_ids")})
            mine["sources"].add(topic)
            for key, col in (("versions", "version"), ("code_versions", "code_version"), ("run_ids", "run_id")):
                if r[col] is not None:
                    mine[key].add(r[col])
    return [
        ModelProvenance(label, ids[label], **{k: sorted(v) for k, v in found[label].items()})
        for label in labels
        if label in found
    ]


def _audit_status(cert: Any) -> str:
    """A `replay.audit` certificate in a few words; "not audited" without one."""
    if cert is None:
        return NOT_AUDITED
    if cert.certified:
        return "certified"
    if not cert.ok:
        return f"failed ({cert.violation_count:,} violation(s))"
    return f"not certified: the run is {cert.status}"


def _run(log: Any, run_id: str, audits: Mapping[str, Any]) -> RunProvenance:
    from ..runner import manifest as mf

    verdict = _audit_status(audits.get(run_id))
    if getattr(log, "path", None) is None:
        return RunProvenance(run_id, NOT_RECORDED, verdict)
    try:
        m = mf.read(log, run_id)
    except (LogstoreError, OSError):  # no manifest, an id that is no run name, an unreadable file
        return RunProvenance(run_id, NOT_RECORDED, verdict)
    hashes = {
        f"{x.get('name')}@{x.get('version')}": x.get("params_hash")
        for x in m.get("models") or []
        if isinstance(x, dict)
    }
    return RunProvenance(
        run_id=run_id,
        status=str(m.get("status")),
        audit=verdict,
        error=m.get("error"),
        created=m.get("created"),
        finished=m.get("finished"),
        content_hash=m.get("content_hash"),
        code_version=m.get("code_version"),
        rerun_of=m.get("rerun_of"),
        model_hashes=hashes,
    )


def _log_format(log: Any) -> int | None:
    value = getattr(log, "_format", None)
    return value if isinstance(value, int) else None


def collect(log: Any, ev: Any, *, con: Any = None, audits: Mapping[str, Any] | None = None) -> Provenance:
    """The provenance of `ev`, evaluated over `log` (a logstore Log, anything with `.duckdb()`, or a
    DuckDB connection). `con` is the connection the evaluation read (default: `log.duckdb()`, or
    `log` itself); `audits` maps run ids to `replay.audit` certificates already computed."""
    import logstore

    from ..runner.manifest import code_version

    if con is None:
        opener = getattr(log, "duckdb", None)
        con = opener() if callable(opener) else log
    p = ev.params
    topics = list(p.get("scores") or [])
    models = _models(con, topics, list(ev.models))
    run_ids = sorted({r for m in models for r in m.run_ids})
    path = getattr(log, "path", None)
    return Provenance(
        log_path=None if path is None else str(path),
        cutoff=p.get("cutoff"),
        window=p.get("window"),
        generated=dt.datetime.now(dt.UTC),
        generated_by=code_version(),
        score_topics=topics,
        outcomes=p.get("outcomes"),
        inputs=p.get("inputs"),
        models=models,
        runs=[_run(log, r, audits or {}) for r in run_ids],
        logstore_version=logstore.__version__,
        log_format=_log_format(log),
    )
