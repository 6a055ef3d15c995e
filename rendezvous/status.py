"""`rendezvous status LOG`: the live side on one screen, from the log only (DuckDB SQL over its views).

    import logstore, rendezvous.status
    st = rendezvous.status.status(logstore.open("log", readonly=True))
    print(st.format())

Per model (``model_id:model_version``, with its role: the deployment's where a control record
names the model, else the one its runner reports): requests scored, of which errors; lag behind
``inputs`` (inputs appended past the last one it scored, by partition and offset when the runner
records them, else inputs it has not scored); its own latency p50/p99 (the runner's ``latency_ms``);
when the service saw its scores arrive (p99 of the decisions' ``arrivals``); answers served and
its share of all decisions. Then how requests were decided (reasons, the default's share, the
deadline and the overhead allowance), and for each canary the stability of its score
distribution: the PSI of its last `window` scores against its first (replay's ``psi.sql``: deciles
of the first window as bins; below 0.1 stable, 0.25 and up an alert).

Each (request, model, version) counts once: a runner restarted after a crash may score an input
twice, with identical records. Nothing is written: the log may be opened read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from logstore.names import quote_ident
from replay.evaluation import PSI_ALERT, PSI_SHIFT, run_sql

from .config import Topics
from .control import fold, read_records

WINDOW = 500  # canary scores per PSI window


@dataclass
class Status:
    """What `status` found: `models` (one dict per model), `decisions` (a dict), `canaries`."""

    inputs: int
    models: list[dict[str, Any]] = field(default_factory=list)
    decisions: dict[str, Any] = field(default_factory=dict)
    canaries: list[dict[str, Any]] = field(default_factory=list)

    def format(self) -> str:
        """The one-screen text report."""
        lines = [f"inputs {self.inputs:,}"]
        header = ["model", "role", "scored", "errors", "lag", "p50 ms", "p99 ms", "arrive p99", "served", "share"]
        rows = [header]
        for m in self.models:
            rows.append(
                [
                    m["model"],
                    m["role"] or "-",
                    f"{m['scored']:,}",
                    f"{m['errors']:,}",
                    f"{m['lag']:,}",
                    _ms(m["latency_p50_ms"]),
                    _ms(m["latency_p99_ms"]),
                    _ms(m["arrival_p99_ms"]),
                    f"{m['served']:,}",
                    f"{100 * m['share']:.1f}%",
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            lines.append(
                "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            )
        d = self.decisions
        if d.get("total"):
            reasons = "  ".join(f"{k} {100 * v / d['total']:.1f}%" for k, v in d["reasons"].items())
            lines.append(f"decisions {d['total']:,}: {reasons}")
            lines.append(
                f"  decided p50 {_ms(d['decided_p50_ms'])} ms, p99 {_ms(d['decided_p99_ms'])} ms; "
                f"deadline {_ms(d['deadline_ms'])} ms of SLA {_ms(d['sla_ms'])} ms "
                f"(overhead allowance {_ms(d['overhead_ms'])} ms)"
            )
        else:
            lines.append("decisions 0")
        for c in self.canaries:
            lines.append(
                f"canary {c['model']}: PSI {c['psi']:.3f} ({c['flag']}), its last {c['n_current']:,} scores "
                f"against its first {c['n_reference']:,}"
            )
        if not self.canaries:
            lines.append("canary: none scored (a runner with --role canary)")
        return "\n".join(lines)


def _ms(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1f}"


def status(log: Any, topics: Topics | None = None, *, window: int = WINDOW) -> Status:
    """Read `log` (see the module docstring); topics missing from the log count as empty."""
    t = topics or Topics()
    have = set(log.topics())
    names = [n for n in (t.inputs, t.scores, t.decisions) if n in have]
    con = log.duckdb(topics=names) if names else None
    inputs = _count(con, t.inputs) if t.inputs in have else 0
    st = Status(inputs=inputs)
    if con is None:
        return st
    decisions = _decisions(con, t.decisions) if t.decisions in have else {}
    st.decisions = decisions
    if t.scores in have:
        ends = log.end_offsets(t.inputs) if t.inputs in have else {}
        st.models = _models(con, t.scores, ends, inputs, decisions)
        _deployment_roles(log, st.models)
        st.canaries = _canaries(con, t.scores, window)
    return st


def _deployment_roles(log: Any, models: list[dict[str, Any]]) -> None:
    """Where the control topic deployed a model, its role there (a shadow ramped serves as a
    challenger whatever its runner says), with its ramp weight: ``challenger 50%``."""
    state = fold(None, read_records(log))
    for m in models:
        d = state.find(str(m["model"]).partition(":")[0])
        if d is not None:
            m["role"] = d.role if d.weight is None else f"{d.role} {d.weight:.0%}"


def _count(con: Any, topic: str) -> int:
    return int(con.sql(f"SELECT count(*) FROM {quote_ident(topic)}").fetchall()[0][0])


def _columns(con: Any, topic: str) -> set[str]:
    return {str(r[0]) for r in con.sql(f"DESCRIBE {quote_ident(topic)}").fetchall()}


def _scores(con: Any, topic: str) -> str:
    """SQL for the topic's scores, one row per (request, model, version): the first appended."""
    cols = _columns(con, topic)
    role = "role" if "role" in cols else "NULL::VARCHAR AS role"
    status = "status" if "status" in cols else "'ok' AS status"
    where = (
        "input_partition, input_offset"
        if "input_offset" in cols
        else "NULL::INT AS input_partition, NULL::BIGINT AS input_offset"
    )
    return (
        f"SELECT DISTINCT ON (request_id, model_id, model_version) request_id, model_id || ':' || model_version "
        f"AS model, {role}, {status}, score, latency_ms, event_time, {where}, _append_time, _partition, _offset "
        f"FROM {quote_ident(topic)} ORDER BY request_id, model_id, model_version, _append_time, _partition, _offset"
    )


def _models(con: Any, topic: str, ends: dict[int, int], inputs: int, decisions: dict[str, Any]) -> list[dict[str, Any]]:
    rows = con.sql(
        f"""WITH s AS ({_scores(con, topic)})
        SELECT model, arg_max(role, _append_time) AS role, count(*) AS scored,
               count(*) FILTER (WHERE status <> 'ok') AS errors,
               quantile_cont(latency_ms, 0.5) AS p50, quantile_cont(latency_ms, 0.99) AS p99
        FROM s WHERE status <> 'swap' GROUP BY model ORDER BY model"""  # a swap marker is no request
    ).fetchall()
    last = con.sql(
        f"""WITH s AS ({_scores(con, topic)})
        SELECT model, input_partition, max(input_offset) FROM s
        WHERE input_offset IS NOT NULL GROUP BY ALL"""
    ).fetchall()
    done: dict[str, dict[int, int]] = {}
    for model, part, off in last:
        done.setdefault(model, {})[int(part)] = int(off)
    served = decisions.get("served", {})
    arrival = decisions.get("arrival_p99_ms", {})
    total = max(1, int(decisions.get("total", 0)))
    out = []
    for model, role, scored, errors, p50, p99 in rows:
        if model in done and ends:
            lag = sum(max(0, end - done[model].get(p, -1) - 1) for p, end in ends.items())
        else:
            lag = max(0, inputs - int(scored))
        out.append(
            {
                "model": model,
                "role": role,
                "scored": int(scored),
                "errors": int(errors),
                "lag": int(lag),
                "latency_p50_ms": p50,
                "latency_p99_ms": p99,
                "arrival_p99_ms": arrival.get(model),
                "served": int(served.get(model, 0)),
                "share": served.get(model, 0) / total,
            }
        )
    if served.get("default"):
        n = int(served["default"])
        out.append(
            {
                "model": "default",
                "role": None,
                "scored": 0,
                "errors": 0,
                "lag": 0,
                "latency_p50_ms": None,
                "latency_p99_ms": None,
                "arrival_p99_ms": None,
                "served": n,
                "share": n / total,
            }
        )
    return out


def _decisions(con: Any, topic: str) -> dict[str, Any]:
    q = quote_ident(topic)
    total = _count(con, topic)
    if not total:
        return {"total": 0}
    cols = _columns(con, topic)
    reasons = dict(con.sql(f"SELECT reason::VARCHAR, count(*) FROM {q} GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
    served = dict(con.sql(f"SELECT chosen_model, count(*) FROM {q} GROUP BY 1").fetchall())
    out: dict[str, Any] = {"total": total, "reasons": reasons, "served": served}
    if "decided_ms" in cols:
        row = con.sql(
            f"""SELECT quantile_cont(decided_ms, 0.5), quantile_cont(decided_ms, 0.99),
                       arg_max(deadline_ms, _append_time), arg_max(sla_ms, _append_time),
                       arg_max(overhead_ms, _append_time) FROM {q}"""
        ).fetchall()[0]
        out.update(decided_p50_ms=row[0], decided_p99_ms=row[1], deadline_ms=row[2], sla_ms=row[3], overhead_ms=row[4])
        out["arrival_p99_ms"] = dict(
            con.sql(
                f"""SELECT k, quantile_cont(v, 0.99) FROM (
                      SELECT unnest(map_keys(arrivals)) AS k, unnest(map_values(arrivals)) AS v FROM {q}
                    ) GROUP BY k"""
            ).fetchall()
        )
    else:
        row = con.sql(f"SELECT arg_max(deadline_ms, _append_time) FROM {q}").fetchall()[0]
        out.update(decided_p50_ms=None, decided_p99_ms=None, deadline_ms=row[0], sla_ms=None, overhead_ms=None)
    return out


def _canaries(con: Any, topic: str, window: int) -> list[dict[str, Any]]:
    if "role" not in _columns(con, topic):
        return []
    models = [
        r[0]
        for r in con.sql(
            f"SELECT DISTINCT model_id || ':' || model_version AS m FROM {quote_ident(topic)} "
            "WHERE role = 'canary' ORDER BY 1"
        ).fetchall()
    ]
    out = []
    for model in models:
        table = "__rendezvous_status_samples"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {table} AS
            WITH s AS ({_scores(con, topic)}),
            c AS (SELECT score AS value, row_number() OVER (ORDER BY event_time, _partition, _offset) AS i,
                         count(*) OVER () AS n
                  FROM s WHERE model = $model AND score IS NOT NULL AND isfinite(score)),
            w AS (SELECT *, least($window, n // 2) AS w FROM c)
            SELECT 'score' AS kind, $model AS model, 'first' AS reference, NULL::TIMESTAMP AS window_start,
                   CASE WHEN i <= w THEN 'reference' ELSE 'current' END AS side, value
            FROM w WHERE w > 0 AND (i <= w OR i > n - w)""",
            {"model": model, "window": window},
        )
        try:
            res = run_sql(con, "psi", {"psi_shift": PSI_SHIFT, "psi_alert": PSI_ALERT}, samples=table).to_pylist()
        finally:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        for r in res:
            out.append(
                {
                    "model": model,
                    "psi": float(r["psi"]),
                    "flag": r["psi_flag"],
                    "n_reference": int(r["n_reference"]),
                    "n_current": int(r["n_current"]),
                }
            )
    return out
