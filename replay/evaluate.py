"""Evaluation and meta-analysis of recorded scores: SQL over the log, run by DuckDB.

    import replay
    ev = replay.evaluate(log, scores=["scores", "replay.scores"], outcomes="outcomes",
                         inputs="inputs", champion="champion", canary="canary")
    ev.overall        # pyarrow.Table, one row per model: coverage, latency, quality
    ev.verdicts       # ["candidate-b beats champion on AUC by 0.041 [0.030, 0.052]", ...]

The metrics are the SQL files in `replay/sql/`, each a plain query with a header saying which
tables it reads and which `$parameters` it takes. They are meant to be read and reused from a
notebook: `sql("psi")` returns the text, `run_sql(con, "psi", {...}, samples="my_view")` runs it
and returns Arrow. Table names reach the SQL only through `quote_ident` (double quotes, embedded
quotes doubled); values only as DuckDB parameters. Python does what SQL is the wrong tool for:
the block bootstrap (`replay/metrics.py`) and the verdict sentences.

What counts (the decisions an evaluation makes, in one place):
* An outcome counts if the log appended it by `cutoff` (`_append_time <= cutoff`). Append time,
  not event time, is the fence: it says when we could have known the outcome. Of several outcomes
  for a request, the latest appended by the cut-off wins. Scores are not fenced: replayed scores
  are appended long after the traffic they score.
* One score per (topic, model, request): the last appended. NULL/NaN scores count as not scored.
* Windows are `time_bucket(window)` of the score's event time, aligned on UTC.
* Coverage is the share of input requests (by request_id) a model scored; without an input topic
  the denominator is every request scored by any model.
* Paired comparisons use only requests both models scored. Intervals are 95% percentile
  intervals of a block bootstrap that resamples whole windows (requests in one window are not
  independent); with fewer than 3 windows there is no interval.

Evaluation creates a few uniquely named TEMP tables on the connection while it runs and drops
them afterwards.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from logstore.errors import EvaluationError, InvalidNameError, TopicNotFoundError

from . import metrics

__all__ = [
    "Evaluation",
    "EvaluationError",
    "evaluate",
    "quote_ident",
    "render",
    "run_sql",
    "sql",
    "sql_names",
]

SQL_DIR = Path(__file__).with_name("sql")
PSI_SHIFT = 0.1  # conventional PSI thresholds: "some shift" ...
PSI_ALERT = 0.25  # ... and "significant shift, investigate"
HISTOGRAM_BINS = 30
CALIBRATION_BINS = 10

SCORE_COLUMNS = ("request_id", "event_time", "model_id", "model_version", "score", "latency_ms")
OUTCOME_COLUMNS = ("request_id", "event_time", "label", "reward")
INPUT_COLUMNS = ("request_id", "event_time")
SYSTEM_COLUMNS = ("_append_time", "_partition", "_offset")

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")
_PARAMETER = re.compile(r"\$([A-Za-z_]\w*)")
_COMMENT = re.compile(r"--[^\n]*")
_SQL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# ---- the SQL files --------------------------------------------------------------------------


def sql_names() -> list[str]:
    """The names of the shipped metric queries (`sql(name)` reads one)."""
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))


def sql(name: str) -> str:
    """The text of the shipped query `replay/sql/<name>.sql` (placeholders not yet filled)."""
    stem = name[:-4] if name.endswith(".sql") else name
    if not _SQL_NAME.match(stem) or not (SQL_DIR / f"{stem}.sql").is_file():
        raise EvaluationError(f"no query named {name!r} in {SQL_DIR}; available: {sql_names()}")
    return (SQL_DIR / f"{stem}.sql").read_text(encoding="utf-8")


def quote_ident(name: str) -> str:
    """`name` as a DuckDB quoted identifier: the only way a table or column name enters SQL.

    Embedded double quotes are doubled, so the name cannot end the identifier early. Control
    characters (newline, NUL, ...) are refused: a newline could end a `--` comment around a
    placeholder and no legitimate topic or column name needs one.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"an SQL identifier must be a non-empty string, found {name!r}")
    bad = [c for c in name if ord(c) < 32 or ord(c) == 127]
    if bad:
        raise InvalidNameError(
            f"identifier {name!r} contains control character {bad[0]!r}; refused"
        )
    return '"' + name.replace('"', '""') + '"'


def render(text: str, /, **tables: str) -> str:
    """Fill the `{{placeholder}}`s of a query with quoted identifiers (see `quote_ident`)."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in tables:
            raise EvaluationError(
                f"query needs a table for {{{{{key}}}}}; given: {sorted(tables) or 'none'}"
            )
        return quote_ident(tables[key])

    return _PLACEHOLDER.sub(fill, text)


def placeholders(text: str) -> list[str]:
    """The `{{placeholder}}` names a query needs."""
    return sorted(set(_PLACEHOLDER.findall(text)))


def parameters(text: str) -> list[str]:
    """The `$parameter` names a query uses (outside `--` comments)."""
    return sorted(set(_PARAMETER.findall(_COMMENT.sub("", text))))


def duckdb_relation_type() -> type:
    import duckdb

    return duckdb.DuckDBPyRelation


def _to_arrow(result: Any) -> pa.Table:
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table  # duckdb < 1.4
    return fetch()


def _prepare(name_or_text: str, params: dict[str, Any] | None, tables: dict[str, str]):
    """(rendered SQL, the parameters it uses) for a shipped query name or a query text."""
    is_name = _SQL_NAME.match(name_or_text.removesuffix(".sql"))
    text = sql(name_or_text) if is_name else name_or_text
    params = dict(params or {})
    needed = parameters(text)
    missing = [p for p in needed if p not in params]
    if missing:
        raise EvaluationError(f"query needs parameters {missing}; given: {sorted(params)}")
    return render(text, **tables), {k: params[k] for k in needed}


def run_sql(con: Any, name_or_text: str, params: dict[str, Any] | None = None, /, **tables: str):
    """Run a shipped query by name (or any query text) and return a `pyarrow.Table`.

    `params` are DuckDB named parameters (`$cutoff`, `$threshold`, ...); those the query does not
    use are ignored. `tables` fill the query's `{{placeholders}}`, quoted:

        run_sql(con, "outcomes", {"cutoff": cutoff}, outcomes="outcomes")
    """
    rendered, used = _prepare(name_or_text, params, tables)
    relation = getattr(con, "sql", None)
    if relation is not None and hasattr(duckdb_relation_type(), "to_arrow_table"):
        return relation(rendered, params=used).to_arrow_table()
    return _to_arrow(con.execute(rendered, used))  # duckdb < 1.4


# ---- the result -----------------------------------------------------------------------------


@dataclass
class Evaluation:
    """What `evaluate` found. Tables are pyarrow; `to_pandas()` converts them.

    overall           one row per model: volume, coverage, latency percentiles, quality
    by_window         the same per (model, window_start)
    paired            one row per (model, reference): deltas, disagreement, Spearman, with
                      `<metric>_low`/`<metric>_high` 95% block-bootstrap bounds
    paired_by_window  paired point estimates per window
    drift             PSI (+ flag), KS and Wasserstein per comparison (see drift_samples.sql)
    calibration       mean score vs mean label per score bin, per model
    histograms        score and latency histograms per model (`column` says which)
    verdicts          plain sentences
    """

    overall: pa.Table
    by_window: pa.Table
    paired: pa.Table
    paired_by_window: pa.Table
    drift: pa.Table
    calibration: pa.Table
    histograms: pa.Table
    verdicts: list[str]
    task: str
    models: list[str]
    champion: str | None = None
    canary: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    TABLES = (
        "overall", "by_window", "paired", "paired_by_window", "drift", "calibration", "histograms"
    )

    def table(self, name: str) -> pa.Table:
        if name not in self.TABLES:
            raise EvaluationError(f"no table {name!r}; tables: {list(self.TABLES)}")
        return getattr(self, name)

    def to_pandas(self, name: str | None = None):
        """One table as a pandas DataFrame, or all of them as a dict when `name` is None."""
        try:
            import pandas  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas: pip install 'logstore[report]'") from exc
        if name is not None:
            return self.table(name).to_pandas()
        return {n: getattr(self, n).to_pandas() for n in self.TABLES}

    @property
    def stability(self) -> pa.Table:
        """Drift rows over time: each model against its first window, and its gap to the canary."""
        kinds = pa.array(["vs_first_window", "gap_vs_first_window"])
        return self.drift.filter(pc.is_in(self.drift["kind"], kinds))

    def __repr__(self) -> str:
        return (
            f"Evaluation(task={self.task!r}, models={self.models}, champion={self.champion!r}, "
            f"canary={self.canary!r}, verdicts={len(self.verdicts)})"
        )


# ---- evaluate -------------------------------------------------------------------------------


def _connection(con_or_log: Any):
    import duckdb

    if isinstance(con_or_log, duckdb.DuckDBPyConnection):
        return con_or_log
    opener = getattr(con_or_log, "duckdb", None)
    if callable(opener):
        return opener()
    raise TypeError(
        "evaluate() takes a logstore Log (anything with a .duckdb() method) or a "
        f"duckdb connection, not {type(con_or_log).__name__}"
    )


def _columns(con: Any, topic: str, role: str, required: tuple[str, ...]) -> list[str]:
    import duckdb

    try:
        cur = con.execute(f"SELECT * FROM {quote_ident(topic)} LIMIT 0")
    except duckdb.CatalogException as exc:
        raise TopicNotFoundError(
            f"{role} topic {topic!r}: no such table or view on the connection ({exc})"
        ) from None
    names = [d[0] for d in cur.description]
    cur.fetchall()  # finish the result: duckdb >= 2 refuses new work while one is pending
    missing = [c for c in required if c not in names]
    if missing:
        raise EvaluationError(
            f"{role} topic {topic!r}: expected columns {list(required)}, missing {missing}; "
            f"found {names}"
        )
    return names


def _interval_ok(con: Any, window: str) -> None:
    import duckdb

    try:
        seconds = con.execute(
            "SELECT epoch(CAST($w AS INTERVAL))", {"w": window}
        ).fetchall()[0][0]
    except duckdb.Error:
        seconds = None
    if not seconds or seconds <= 0:
        raise EvaluationError(
            f"window {window!r} is not a positive interval; expected e.g. '1 day' or '6 hours'"
        )


def _utc(cutoff: dt.datetime | None) -> dt.datetime:
    if cutoff is None:
        return dt.datetime.now(dt.timezone.utc)
    if not isinstance(cutoff, dt.datetime):
        raise TypeError(f"cutoff must be a datetime, not {type(cutoff).__name__}")
    if cutoff.tzinfo is None:  # a naive cut-off is read as UTC, like the log's append times
        return cutoff.replace(tzinfo=dt.timezone.utc)
    return cutoff.astimezone(dt.timezone.utc)


class _Temp:
    """Uniquely named TEMP tables for one evaluation, dropped on exit."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.prefix = f"__replay_eval_{uuid.uuid4().hex[:12]}_"
        self.names: list[str] = []

    def name(self, role: str) -> str:
        full = self.prefix + role
        self.names.append(full)
        return full

    def create(self, role: str, query: str, params: dict[str, Any], **tables: str) -> str:
        target = self.name(role)
        rendered, used = _prepare(query, params, tables)
        self.con.execute(f"CREATE TEMP TABLE {quote_ident(target)} AS {rendered}", used)
        return target

    def __enter__(self) -> _Temp:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in reversed(self.names):
            try:
                self.con.execute(f"DROP TABLE IF EXISTS temp.{quote_ident(name)}")
            except Exception:  # noqa: BLE001 - cleanup must not hide the real error
                pass


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


def _scalar(con: Any, query: str, params: dict[str, Any] | None = None, **tables: str):
    rendered, used = _prepare(query, params, tables)
    return con.execute(rendered, used).fetchall()[0]


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
    order = [
        *keys, "sources", "versions", "n", "n_requests", "n_covered", "coverage",
        "latency_n", "latency_p50", "latency_p95", "latency_p99", "n_labeled", "n_positive",
        "base_rate", "auc", "log_loss", "brier", "accuracy", "precision", "recall",
        "mae", "rmse", "bias", "first_event", "last_event",
    ]
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
        label = rows["label"].cast(pa.float64()).fill_null(float("nan")).to_numpy(
            zero_copy_only=False
        )
        for point in sql_overall.to_pylist():
            model = point["model"]
            sel = model_col == model
            _, n_windows = metrics.block_index(window[sel])
            counts = metrics.block_replicates(n_windows, n_boot, seed)
            stats = metrics.paired_statistics(
                score[sel], ref[sel], label[sel], window[sel],
                task=task, threshold=threshold, counts=counts, seed=seed,
            )
            row: dict[str, Any] = {
                "model": model, "reference": reference, "reference_role": role,
                "n_paired": point["n_paired"], "n_labeled": point["n_labeled"],
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
        ["auc_delta", "log_loss_delta", "brier_delta"] if task == "classification"
        else ["mae_delta", "rmse_delta"]
    )
    fields = [
        pa.field("model", pa.string()), pa.field("reference", pa.string()),
        pa.field("reference_role", pa.string()), pa.field("n_paired", pa.int64()),
        pa.field("n_labeled", pa.int64()), pa.field("n_windows", pa.int64()),
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
    samples = tmp.create("samples", "drift_samples", {"champion": champion, "canary": canary},
                         scored=scored)
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
    n, binary, lo, hi = _scalar(
        con,
        "SELECT count(label), coalesce(bool_and(label IN (0, 1)), true), min(score), max(score) "
        "FROM {{scored}}",
        scored=scored,
    )
    if task == "classification" and not binary:
        raise EvaluationError(
            "task='classification' needs 0/1 labels, found other label values; "
            "use task='regression'"
        )
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
    outcomes appended by `cutoff` (default: now). `inputs` gives the coverage denominator.
    `champion`/`canary` name models (model_id, or `model_id@topic` when a model_id is in several
    topics) to pair every other model with. `bootstrap` replicates (0: no intervals), drawn
    from `seed`, give 95% block-bootstrap intervals over windows.
    """
    con = _connection(con_or_log)
    topics = [scores] if isinstance(scores, str) else list(scores)
    if not topics or not all(isinstance(t, str) for t in topics):
        raise EvaluationError(
            f"scores must be a topic name or a non-empty list of them, not {scores!r}"
        )
    if len(set(topics)) != len(topics):
        raise EvaluationError(f"scores lists a topic twice: {topics}")
    if task not in ("auto", "classification", "regression"):
        raise EvaluationError(
            f"task must be 'auto', 'classification' or 'regression', not {task!r}"
        )
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

    with _Temp(con) as tmp:
        raw = tmp.create("raw_scores", "scores", {"source": topics[0]}, topic=topics[0])
        for t in topics[1:]:
            rendered, used = _prepare("scores", {"source": t}, {"topic": t})
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
        requests = tmp.create(
            "requests", "requests", {"window": window}, inputs=inputs if inputs else scored
        )
        model_table = run_sql(
            con, "SELECT DISTINCT model, model_id FROM {{scored}} ORDER BY model", scored=scored
        )
        models = model_table["model"].to_pylist()
        if not models:
            raise EvaluationError(f"no scores found in {topics}")
        champion_label = _resolve("champion", champion, model_table)
        canary_label = _resolve("canary", canary, model_table)
        task = _task(con, scored, task)
        quality = "classification" if task == "classification" else "regression"

        overall = _metric_table(con, scored, requests, quality, threshold, False)
        by_window = _metric_table(con, scored, requests, quality, threshold, True)
        roles = {r: m for r, m in (("champion", champion_label), ("canary", canary_label)) if m}
        paired, paired_by_window = _paired(
            con, scored, roles, task, threshold, bootstrap, seed
        )
        drift = _drift(con, tmp, scored, champion_label, canary_label)
        if task == "classification":
            lo, hi = 0.0, 1.0
        else:
            lo, hi = _scalar(
                con, "SELECT min(score), max(score) FROM {{scored}} WHERE label IS NOT NULL",
                scored=scored,
            )
            lo, hi = (lo or 0.0), (hi if hi is not None and hi > (lo or 0.0) else (lo or 0.0) + 1)
        calibration = run_sql(
            con, "calibration", {"lo": lo, "hi": hi, "bins": CALIBRATION_BINS}, scored=scored
        )
        histograms = pa.concat_tables([
            _histogram(con, scored, "score", 1.0),
            _histogram(con, scored, "latency_ms", 0.99),
        ])

    params = {
        "scores": topics, "outcomes": outcomes, "inputs": inputs, "window": window,
        "cutoff": cutoff, "threshold": threshold, "bootstrap": bootstrap, "seed": seed,
        "champion": champion_label, "canary": canary_label,
    }
    ev = Evaluation(
        overall=overall, by_window=by_window, paired=paired, paired_by_window=paired_by_window,
        drift=drift, calibration=calibration, histograms=histograms, verdicts=[], task=task,
        models=models, champion=champion_label, canary=canary_label, params=params,
    )
    ev.verdicts = _verdicts(ev)
    return ev


def _histogram(con, scored, column, upper_q) -> pa.Table:
    t = run_sql(con, "histogram", {"bins": HISTOGRAM_BINS, "upper_q": upper_q},
                scored=scored, column=column)
    return t.add_column(1, "column", pa.array([column] * t.num_rows, pa.string()))


# ---- verdicts -------------------------------------------------------------------------------


def format_window(ts: Any) -> str:
    """A window start in UTC: the date when it is midnight, else ISO minutes."""
    if ts is None:
        return "all"
    ts = ts.astimezone(dt.timezone.utc) if ts.tzinfo else ts
    if (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%dT%H:%MZ")


# (column in `paired`, label in sentences, higher is better)
_PRIMARY = {
    "classification": [("auc_delta", "AUC", True), ("log_loss_delta", "log loss", False)],
    "regression": [("rmse_delta", "RMSE", False), ("mae_delta", "MAE", False)],
}


def _quality_verdict(row: dict[str, Any], task: str, n_boot: int) -> str | None:
    model, role = row["model"], row["reference_role"]
    for column, label, higher in _PRIMARY[task]:
        delta = row.get(column)
        if delta is None:
            continue
        sign = 1 if higher else -1  # report the improvement: positive = model is better
        gain = sign * delta
        low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
        if low is None or high is None:
            why = (
                "bootstrap=0" if n_boot == 0
                else f"{row['n_windows']} window(s), need {metrics.MIN_BLOCKS}"
            )
            return f"{model} vs {role} on {label}: {gain:+.3f} (no interval: {why})"
        g_low, g_high = sorted((sign * low, sign * high))
        if g_low > 0:
            return f"{model} beats {role} on {label} by {gain:.3f} [{g_low:.3f}, {g_high:.3f}]"
        if g_high < 0:
            return (
                f"{model} is worse than {role} on {label} by {-gain:.3f} "
                f"[{-g_high:.3f}, {-g_low:.3f}]"
            )
        return (
            f"{model} vs {role} on {label}: {gain:+.3f} [{g_low:+.3f}, {g_high:+.3f}], "
            "no clear difference"
        )
    if row["n_labeled"]:
        return None
    return f"{model} vs {role}: no outcomes known by the cut-off on their common requests"


def _verdicts(ev: Evaluation) -> list[str]:
    out: list[str] = []
    n_boot = ev.params.get("bootstrap", 0)
    labelled = sum(ev.overall["n_labeled"].to_pylist()) if ev.overall.num_rows else 0
    if ev.params.get("outcomes") is not None and labelled == 0:
        cutoff = ev.params["cutoff"].strftime("%Y-%m-%d %H:%M:%S UTC")
        out.append(f"no outcomes known by the cut-off {cutoff}: quality not measured")
    for row in ev.paired.to_pylist():
        if row["reference_role"] == "champion":
            sentence = _quality_verdict(row, ev.task, n_boot)
            if sentence:
                out.append(sentence)
    if ev.params.get("inputs") is not None:
        for row in ev.overall.to_pylist():
            if row.get("coverage") is not None and row["coverage"] < 0.99:
                out.append(f"{row['model']} scored {row['coverage']:.1%} of input requests")
    drift = ev.drift.to_pylist()
    for row in drift:
        if row["kind"] == "vs_champion" and row["window_start"] is None and row["psi"] is not None:
            if row["psi"] >= PSI_SHIFT:
                out.append(
                    f"{row['model']} scores are distributed unlike the champion's "
                    f"(PSI {row['psi']:.2f}, {row['psi_flag']})"
                )
    if ev.canary is not None:
        canary = [
            r for r in drift
            if r["kind"] == "vs_first_window" and r["model"] == ev.canary and r["psi"] is not None
        ]
        later = sorted(canary, key=lambda r: r["window_start"])[1:]
        drifted: set[Any] = set()
        if not later:
            out.append("canary stability: one window only, nothing to compare")
        else:
            worst = max(r["psi"] for r in later)
            moved = [r for r in later if r["psi"] >= PSI_SHIFT]
            drifted.update(r["window_start"] for r in moved)
            if not moved:
                out.append(f"canary stable (max PSI {worst:.2f}): no input drift")
            for r in moved:
                what = "input drift" if r["psi"] >= PSI_ALERT else "input shift"
                when = format_window(r["window_start"])
                out.append(f"{what}: canary PSI {r['psi']:.2f} in window {when}")
        gaps: dict[str, list[dict[str, Any]]] = {}
        for r in drift:
            if r["kind"] == "gap_vs_first_window" and r["psi"] is not None:
                gaps.setdefault(r["model"], []).append(r)
        for model, rows in sorted(gaps.items()):
            rows = sorted(rows, key=lambda r: r["window_start"])[1:]
            if not rows:
                continue
            top = max(rows, key=lambda r: r["psi"])
            if top["psi"] >= PSI_SHIFT:
                sentence = (
                    f"model change: {model} moved against the canary in window "
                    f"{format_window(top['window_start'])} (PSI of its score gap {top['psi']:.2f})"
                )
                if top["window_start"] in drifted:
                    sentence += "; the inputs drifted then too, so part of it may be the model's "
                    sentence += "response to new inputs"
                out.append(sentence)
            else:
                out.append(f"{model} steady against the canary (max gap PSI {top['psi']:.2f})")
    return out


# `replay.evaluate` is this function once replay/__init__.py re-exports it, which hides this
# module; these attributes keep `replay.evaluate.sql("psi")` and friends working from a notebook.
evaluate.sql = sql  # type: ignore[attr-defined]
evaluate.run_sql = run_sql  # type: ignore[attr-defined]
evaluate.quote_ident = quote_ident  # type: ignore[attr-defined]
evaluate.sql_names = sql_names  # type: ignore[attr-defined]
