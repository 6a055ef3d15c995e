"""Evaluation of recorded scores: SQL over the log, run by DuckDB.

    import replay
    ev = replay.evaluate(log, scores=["scores", "replay.scores"], outcomes="outcomes",
                         inputs="inputs", champion="champion", canary="canary")
    ev.overall        # pyarrow.Table, one row per model: coverage, latency, quality
    ev.verdicts       # ["candidate-b beats champion on AUC by 0.041 [0.030, 0.052]", ...]

- `evaluator`: `evaluate`, which computes the tables of an `Evaluation` (`result`);
- `queries`: the shipped SQL files of `replay/sql/` (`sql`, `run_sql`, `quote_ident`, ...), to
  read and reuse from a notebook;
- `metrics`: the block bootstrap (numpy), what SQL is the wrong tool for;
- `verdicts`: the sentences that sum an evaluation up;
- `curves`: ROC and precision-recall curves, AUC/AP/lift and confusion counts at thresholds;
- `maturity`: which windows' labels are still arriving (provisional quality numbers);
- `feature_drift`: PSI of each input feature, window by window against the first;
- `provenance`: what the numbers come from (log, cut-off, versions, runs, hashes).

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

from logstore.errors import EvaluationError
from logstore.names import quote_ident

from .evaluator import evaluate
from .queries import parameters, placeholders, render, run_sql, sql, sql_names
from .result import Evaluation
from .verdicts import PSI_ALERT, PSI_SHIFT, format_window

__all__ = [
    "Evaluation",
    "EvaluationError",
    "evaluate",
    "quote_ident",
    "render",
    "run_sql",
    "sql",
    "sql_names",
    "placeholders",
    "parameters",
    "format_window",
    "PSI_SHIFT",
    "PSI_ALERT",
]

# `replay.evaluate` is this function; it carries the SQL helpers too, so `replay.evaluate.sql("psi")`
# and `replay.evaluate.run_sql(...)` work from a notebook that imported only `replay`
for _helper in (sql, run_sql, quote_ident, sql_names):
    setattr(evaluate, _helper.__name__, _helper)
del _helper
