"""Evaluating recorded scores: the tables of an `Evaluation`, computed in DuckDB over the log.

`evaluate` stages the score, outcome and input topics into TEMP tables (dropped afterwards), runs
the shipped queries (`replay.evaluation.queries`) and adds what SQL is the wrong tool for: the
block bootstrap (`replay.evaluation.metrics`) and the verdicts (`replay.evaluation.verdicts`).
What counts as an outcome, a score and a window is set out in `replay.evaluation`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from logstore.errors import EvaluationError, TopicNotFoundError
from logstore.names import SYSTEM_COLUMNS, quote_ident

from ..errors import ReplayTypeError
from . import curves as score_curves
from . import metrics, provenance
from .feature_drift import FEATURE_DRIFT_SCHEMA, feature_drift
from .maturity import MATURITY_SCHEMA, label_maturity, mark_windows
from .queries import TempTables, prepare, run_sql, scalar
from .result import Evaluation
from .verdicts import PSI_ALERT, PSI_SHIFT, verdicts

HISTOGRAM_BINS = 30
CALIBRATION_BINS = 10
LOG_BINS_RATIO = 20  # latency bins are log-spaced when max / p50 exceeds this (histogram.sql)

SCORE_COLUMNS = ("request_id", "event_time", "model_id", "model_version", "score", "latency_ms")
OUTCOME_COLUMNS = ("request_id", "event_time", "label", "reward")
INPUT_COLUMNS = ("request_id", "event_time")


def _connection(con_or_log: Any):
    import duckdb

    if isinstance(con_or_log, duckdb.DuckDBPyConnection):
        return con_or_log
    opener = getattr(con_or_log, "duckdb", None)
    if callable(opener):
        return opener()
    raise ReplayTypeError(
        "evaluate() takes a logstore Log (anything with a .duckdb() method) or a "
        f"duckdb connection, not {type(con_or_log).__name__}"
    )


def _columns(con: Any, topic: str, role: str, required: tuple[str, ...]) -> list[str]:
    import duckdb

    try:
        cur = con.execute(f"SELECT * FROM {quote_ident(topic)} LIMIT 0")
    except duckdb.CatalogException as exc:
        raise TopicNotFoundError(f"{role} topic {topic!r}: no such table or view on the connection ({exc})") from None
    names = [d[0] for d in cur.description]
    cur.fetchall()  # finish the result: duckdb >= 2 refuses new work while one is pending
    missing = [c for c in required if c not in names]
    if missing:
        raise EvaluationError(
            f"{role} topic {topic!r}: expected columns {list(required)}, missing {missing}; found {names}"
        )
    return names


def _interval_ok(con: Any, window: str) -> None:
    import duckdb

    try:
        seconds = con.execute("SELECT epoch(CAST($w AS INTERVAL))", {"w": window}).fetchall()[0][0]
    except duckdb.Error:
        seconds = None
    if not seconds or seconds <= 0:
        raise EvaluationError(f"window {window!r} is not a positive interval; expected e.g. '1 day' or '6 hours'")


def _utc(cutoff: dt.datetime | None) -> dt.datetime:
    if cutoff is None:
        return dt.datetime.now(dt.UTC)
    if not isinstance(cutoff, dt.datetime):
        raise ReplayTypeError(f"cutoff must be a datetime, not {type(cutoff).__name__}")
    if cutoff.tzinfo is None:  # a naive cut-off is read as UTC, like the log's append times
        return cutoff.replace(tzinfo=dt.UTC)
    return cutoff.astimezone(dt.UTC)


def _resolve(role: str, name: str | None, scored_models: pa.Table) -> str | None:
    """A champion/canary name as given -> its `model` label (exact label, else unique model_id)."""
    if name is None:
        return None
    labels = scored_models["model"].to_pylist()
    if name in labels:
        return name
    matches = [m for m, i in zip(labels, scored_models["model_id"].to_pylist()) if i == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise EvaluationError(f"{role} {name!r} is ambiguous: it is scored in {matches}; pick one")
    raise EvaluationError(f"{role} {name!r} has no scores in the score topics; models: {labels}")


def _merge(tables: list[pa.Table], keys: list[str]) -> pa.Table:
    """Full outer join of metric tables on `keys` (no NULL keys), then sort by the keys."""
    out = tables[0]
    for t in tables[1:]:
        dup = [c for c in t.column_names if c in out.column_names and c not in keys]
        t = t.drop_columns(dup)
        if t.num_rows or not out.num_rows:
            out = out.join(t, keys, join_type="full outer")
        else:  # empty right side: keep the rows, add the columns as nulls
            for c in t.column_names:
                if c not in keys:
                    f = t.schema.field(c)
                    out = out.append_column(f, pa.nulls(out.num_rows, f.type))
    return out.sort_by([(k, "ascending") for k in keys])


# the metric columns of `overall` and `by_window`, in their order (`replay.report_gate` names them)
METRIC_COLUMNS = (
    *("n", "n_requests", "n_covered", "coverage", "latency_n", "latency_p50", "latency_p95", "latency_p99"),
    *("n_labeled", "n_positive", "base_rate", "auc", "log_loss", "brier", "accuracy", "precision", "recall"),
    *("mae", "rmse", "bias"),
)


def _metric_table(con, scored, requests, quality, threshold, by_window) -> pa.Table:
    p = {"by_window": by_window, "threshold": threshold}
    parts = [
        run_sql(con, "volume", p, scored=scored),
        run_sql(con, "coverage", p, scored=scored, requests=requests),
        run_sql(con, "latency", p, scored=scored),
        run_sql(con, quality, p, scored=scored),
    ]
    keys = ["model", "window_start"] if by_window else ["model"]
    if not by_window:
        parts = [t.drop_columns(["window_start"]) for t in parts]
    out = _merge(parts, keys)
    for c in ("n", "n_labeled", "latency_n"):
        if c in out.column_names:
            i = out.column_names.index(c)
            out = out.set_column(i, c, pc.fill_null(out[c], 0))
    order = [*keys, "sources", "versions", *METRIC_COLUMNS, "first_event", "last_event"]
    return out.select([c for c in order if c in out.column_names])


def _paired(con, scored, roles, task, threshold, n_boot, seed):
    """(paired overall with intervals, paired by window), against each reference in `roles`."""
    overall_rows: list[dict[str, Any]] = []
    by_window: list[pa.Table] = []
    for role, reference in roles.items():
        p = {"reference": reference, "threshold": threshold}
        sql_overall = run_sql(con, "paired", {**p, "by_window": False}, scored=scored)
        by_window.append(run_sql(con, "paired", {**p, "by_window": True}, scored=scored))
        rows = run_sql(con, "paired_rows", p, scored=scored)
        model_col = rows["model"].to_numpy(zero_copy_only=False)
        window = rows["window_start"].cast(pa.int64()).to_numpy(zero_copy_only=False)
        score = rows["score"].to_numpy(zero_copy_only=False)
        ref = rows["reference_score"].to_numpy(zero_copy_only=False)
        label = rows["label"].cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False)
        for point in sql_overall.to_pylist():
            model = point["model"]
            sel = model_col == model
            _, n_windows = metrics.block_index(window[sel])
            counts = metrics.block_replicates(n_windows, n_boot, seed)
            stats = metrics.paired_statistics(
                score[sel],
                ref[sel],
                label[sel],
                window[sel],
                task=task,
                threshold=threshold,
                counts=counts,
                seed=seed,
            )
            row: dict[str, Any] = {
                "model": model,
                "reference": reference,
                "reference_role": role,
                "n_paired": point["n_paired"],
                "n_labeled": point["n_labeled"],
                "n_windows": n_windows,
            }
            for name, interval in stats.items():
                # SQL holds the reference point estimates; the bootstrap adds the bounds
                estimate = point.get(name, interval.estimate)
                row[name] = _finite(estimate)
                row[f"{name}_low"] = _finite(interval.low)
                row[f"{name}_high"] = _finite(interval.high)
            overall_rows.append(row)
    quality = (
        ["auc_delta", "log_loss_delta", "brier_delta"] if task == "classification" else ["mae_delta", "rmse_delta"]
    )
    fields = [
        pa.field("model", pa.string()),
        pa.field("reference", pa.string()),
        pa.field("reference_role", pa.string()),
        pa.field("n_paired", pa.int64()),
        pa.field("n_labeled", pa.int64()),
        pa.field("n_windows", pa.int64()),
    ]
    for name in ["mean_delta", "disagreement", "spearman", *quality]:
        fields += [pa.field(n, pa.float64()) for n in (name, f"{name}_low", f"{name}_high")]
    schema = pa.schema(fields)
    paired = pa.Table.from_pylist(overall_rows, schema=schema)
    if by_window:
        windows = pa.concat_tables(by_window)
        role_of = {v: k for k, v in roles.items()}
        windows = windows.append_column(
            "reference_role", pa.array([role_of[r] for r in windows["reference"].to_pylist()])
        )
    else:
        windows = pa.table({"model": pa.array([], pa.string())})
    return paired, windows


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _drift(con, tmp, scored, champion, canary) -> pa.Table:
    samples = tmp.create("samples", "drift_samples", {"champion": champion, "canary": canary}, scored=scored)
    psi = run_sql(con, "psi", {"psi_shift": PSI_SHIFT, "psi_alert": PSI_ALERT}, samples=samples)
    ks = run_sql(con, "ks", {}, samples=samples)
    key = ("kind", "model", "reference", "window_start")
    found = {tuple(r[k] for k in key): r for r in ks.to_pylist()}
    ks_col = [found.get(tuple(r[k] for k in key), {}).get("ks") for r in psi.to_pylist()]
    w_col = [found.get(tuple(r[k] for k in key), {}).get("wasserstein") for r in psi.to_pylist()]
    return psi.append_column("ks", pa.array(ks_col, pa.float64())).append_column(
        "wasserstein", pa.array(w_col, pa.float64())
    )


def _task(con, scored, task: str) -> str:
    n, binary, lo, hi = scalar(
        con,
        "SELECT count(label), coalesce(bool_and(label IN (0, 1)), true), min(score), max(score) FROM {{scored}}",
        scored=scored,
    )
    if task == "classification" and not binary:
        raise EvaluationError("task='classification' needs 0/1 labels, found other label values; use task='regression'")
    if task != "auto":
        return task
    if n:
        return "classification" if binary else "regression"
    return "classification" if lo is None or (0 <= lo and hi <= 1) else "regression"


def evaluate(
    con_or_log: Any,
    scores: str | list[str],
    outcomes: str | None = None,
    inputs: str | None = None,
    champion: str | None = None,
    canary: str | None = None,
    window: str = "1 day",
    cutoff: dt.datetime | None = None,
    threshold: float = 0.5,
    task: str = "auto",
    bootstrap: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Evaluate every model in the score topics, overall and per window, and compare them.

    `con_or_log` is a logstore Log (its `.duckdb()` views are used) or a DuckDB connection where
    each topic is a table or view with the system columns. `scores` is one score topic or several
    (production and replay outputs alike). `outcomes` enables quality metrics, counting only
    outcomes appended by `cutoff` (default: now); `label_maturity` (and `by_window.mature`) says
    which windows' labels have not all arrived by then (`replay.evaluation.maturity`). `inputs`
    gives the coverage denominator and the per-feature input drift (`feature_drift`,
    `replay.evaluation.feature_drift`). `provenance` records what was read
    (`replay.evaluation.provenance`).
    `champion`/`canary` name models (model_id, or `model_id@topic` when a model_id is in several
    topics) to pair every other model with. `bootstrap` replicates (0: no intervals), drawn
    from `seed`, give 95% block-bootstrap intervals over windows.
    """
    con = _connection(con_or_log)
    topics = [scores] if isinstance(scores, str) else list(scores)
    if not topics or not all(isinstance(t, str) for t in topics):
        raise EvaluationError(f"scores must be a topic name or a non-empty list of them, not {scores!r}")
    if len(set(topics)) != len(topics):
        raise EvaluationError(f"scores lists a topic twice: {topics}")
    if task not in ("auto", "classification", "regression"):
        raise EvaluationError(f"task must be 'auto', 'classification' or 'regression', not {task!r}")
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise EvaluationError(f"threshold must be a finite number, not {threshold!r}")
    if not isinstance(bootstrap, int) or bootstrap < 0:
        raise EvaluationError(f"bootstrap must be a non-negative int, not {bootstrap!r}")
    for t in topics:
        _columns(con, t, "score", SCORE_COLUMNS + SYSTEM_COLUMNS)
    if outcomes is not None:
        _columns(con, outcomes, "outcome", OUTCOME_COLUMNS + SYSTEM_COLUMNS)
    if inputs is not None:
        _columns(con, inputs, "input", INPUT_COLUMNS)
    _interval_ok(con, window)
    cutoff = _utc(cutoff)
    threshold = float(threshold)

    with TempTables(con) as tmp:
        raw = tmp.create("raw_scores", "scores", {"source": topics[0]}, topic=topics[0])
        for t in topics[1:]:
            rendered, used = prepare("scores", {"source": t}, {"topic": t})
            con.execute(f"INSERT INTO {quote_ident(raw)} {rendered}", used)
        if outcomes is not None:
            known = tmp.create("outcomes", "outcomes", {"cutoff": cutoff}, outcomes=outcomes)
        else:
            known = tmp.name("outcomes")
            con.execute(
                f"CREATE TEMP TABLE {quote_ident(known)} (request_id VARCHAR, label DOUBLE, "
                "reward DOUBLE, outcome_time TIMESTAMPTZ, known_at TIMESTAMPTZ)"
            )
        scored = tmp.create("scored", "scored", {"window": window}, raw_scores=raw, outcomes=known)
        requests = tmp.create("requests", "requests", {"window": window}, inputs=inputs if inputs else scored)
        model_table = run_sql(con, "SELECT DISTINCT model, model_id FROM {{scored}} ORDER BY model", scored=scored)
        models = model_table["model"].to_pylist()
        if not models:
            raise EvaluationError(f"no scores found in {topics}")
        champion_label = _resolve("champion", champion, model_table)
        canary_label = _resolve("canary", canary, model_table)
        task = _task(con, scored, task)
        quality = "classification" if task == "classification" else "regression"

        overall = _metric_table(con, scored, requests, quality, threshold, False)
        by_window = _metric_table(con, scored, requests, quality, threshold, True)
        if outcomes is not None:
            maturity = label_maturity(con, scored, window, cutoff)
        else:
            maturity = MATURITY_SCHEMA.empty_table()
        by_window = mark_windows(by_window, maturity)
        if inputs is not None:
            drifted = feature_drift(con, tmp, inputs, window, PSI_SHIFT, PSI_ALERT)
        else:
            drifted = FEATURE_DRIFT_SCHEMA.empty_table()
        roles = {r: m for r, m in (("champion", champion_label), ("canary", canary_label)) if m}
        paired, paired_by_window = _paired(con, scored, roles, task, threshold, bootstrap, seed)
        drift = _drift(con, tmp, scored, champion_label, canary_label)
        if task == "classification":
            lo, hi = 0.0, 1.0
        else:
            lo, hi = scalar(
                con,
                "SELECT min(score), max(score) FROM {{scored}} WHERE label IS NOT NULL",
                scored=scored,
            )
            lo, hi = (lo or 0.0), (hi if hi is not None and hi > (lo or 0.0) else (lo or 0.0) + 1)
        calibration = run_sql(con, "calibration", {"lo": lo, "hi": hi, "bins": CALIBRATION_BINS}, scored=scored)
        histograms = pa.concat_tables(
            [
                _histogram(con, scored, "score", 1.0, None),
                _histogram(con, scored, "latency_ms", 0.99, LOG_BINS_RATIO),
            ]
        )
        if task == "classification":
            curves, ranking, thresholds = score_curves.score_curves(con, scored, models, threshold)
        else:
            curves, ranking, thresholds = score_curves.empty_tables()

    params = {
        "scores": topics,
        "outcomes": outcomes,
        "inputs": inputs,
        "window": window,
        "cutoff": cutoff,
        "threshold": threshold,
        "bootstrap": bootstrap,
        "seed": seed,
        "champion": champion_label,
        "canary": canary_label,
    }
    ev = Evaluation(
        overall=overall,
        by_window=by_window,
        paired=paired,
        paired_by_window=paired_by_window,
        drift=drift,
        calibration=calibration,
        histograms=histograms,
        curves=curves,
        ranking=ranking,
        thresholds=thresholds,
        label_maturity=maturity,
        feature_drift=drifted,
        verdicts=[],
        task=task,
        models=models,
        champion=champion_label,
        canary=canary_label,
        params=params,
    )
    ev.provenance = provenance.collect(con_or_log, ev, con=con)
    ev.verdicts = verdicts(ev)
    return ev


def _histogram(con, scored, column, upper_q, log_ratio) -> pa.Table:
    p = {"bins": HISTOGRAM_BINS, "upper_q": upper_q, "log_ratio": log_ratio}
    t = run_sql(con, "histogram", p, scored=scored, column=column)
    return t.add_column(1, "column", pa.array([column] * t.num_rows, pa.string()))
