"""What an evaluation found: the `Evaluation` tables and verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from logstore.errors import EvaluationError

from .curves import CURVES_SCHEMA, RANKING_SCHEMA, THRESHOLDS_SCHEMA
from .feature_drift import FEATURE_DRIFT_SCHEMA
from .maturity import MATURITY_SCHEMA
from .provenance import Provenance


@dataclass
class Evaluation:
    """What `evaluate` found. Tables are pyarrow; `to_pandas()` converts them.

    overall           one row per model: volume, coverage, latency percentiles, quality
    by_window         the same per (model, window_start), with `mature`: whether the window's
                      labels have all arrived by the cut-off (null: unknown)
    paired            one row per (model, reference): deltas, disagreement, Spearman, with
                      `<metric>_low`/`<metric>_high` 95% block-bootstrap bounds
    paired_by_window  paired point estimates per window
    drift             PSI (+ flag), KS and Wasserstein per comparison (see drift_samples.sql)
    calibration       mean score vs mean label per score bin, per model
    histograms        score and latency histograms per model (`column` says which)
    curves            ROC and precision-recall curve points per model (classification;
                      `replay.evaluation.curves` says how they are counted)
    ranking           per model: AUC, average precision, lift of the top decile
    thresholds        per (model, rule): confusion counts at the max-F1 and the given threshold
    label_maturity    per window: label rate, label delay quantiles, `mature` and why not
                      (`replay.evaluation.maturity`; empty without outcomes)
    feature_drift     per (input feature, later window): PSI against the feature's first window
                      (`replay.evaluation.feature_drift`; empty without inputs)
    verdicts          plain sentences
    provenance        the log, topics, cut-off, model versions and replay runs read
                      (`replay.evaluation.provenance`; empty unless `evaluate` made it)
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
    curves: pa.Table = field(default_factory=CURVES_SCHEMA.empty_table)
    ranking: pa.Table = field(default_factory=RANKING_SCHEMA.empty_table)
    thresholds: pa.Table = field(default_factory=THRESHOLDS_SCHEMA.empty_table)
    label_maturity: pa.Table = field(default_factory=MATURITY_SCHEMA.empty_table)
    feature_drift: pa.Table = field(default_factory=FEATURE_DRIFT_SCHEMA.empty_table)
    provenance: Provenance = field(default_factory=Provenance)

    TABLES = (
        "overall",
        "by_window",
        "paired",
        "paired_by_window",
        "drift",
        "calibration",
        "histograms",
        "curves",
        "ranking",
        "thresholds",
        "label_maturity",
        "feature_drift",
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
