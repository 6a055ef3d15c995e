"""`replay report --fail-on RULE`: rules over an evaluation that fail a CI job when they hold.

    rules = [parse_rule("auc<0.7"), parse_rule("challenger worse than champion")]
    results = check(ev, rules)            # one `GateResult` per rule, in order
    any(r.held for r in results)          # the command exits 1 after printing

The grammar (keywords and metric names are case-insensitive, spaces optional around operators):

    RULE    := [WHO ":"] METRIC OP NUMBER ["%"]     auc<0.7, champion:latency_p99>50, coverage<99%
             | WHO "worse than" ROLE ["on" DELTA]   challenger worse than champion [on log_loss]
             | "drift-alert" | "drift-shift" | "threshold-warning"
    WHO     := "challenger" | a model as the report names it
    OP      := "<" | "<=" | ">" | ">="
    ROLE    := "champion" | "canary"
    DELTA   := auc | log_loss | brier (classification), mae | rmse (regression)

* A comparison holds when any selected model (every model without WHO; "challenger" is every
  model but the champion and the canary) has a value that satisfies it. METRIC is a column of
  `overall` (auc, log_loss, accuracy, coverage, latency_p99, rmse, ...), of `ranking`
  (average_precision or ap, lift_top_decile or lift, top_decile_rate), or f1 at the report's
  confusion threshold. A model without a value (no outcomes known) does not trip it: the result
  says "not measured".
* "worse than" holds when a paired quality delta of a selected model against ROLE has a 95%
  interval entirely on the worse side (AUC lower; log loss, Brier, MAE, RMSE higher). Without
  an interval (bootstrap 0, fewer than 3 windows) it does not hold.
* drift-alert holds when any row of `drift` is flagged alert (PSI >= 0.25), drift-shift when any
  is flagged shift or alert; threshold-warning when the report warns that a threshold metric
  says nothing (`report_curves.threshold_warnings`).

A rule that does not parse, names an unknown model or metric, a metric or delta the evaluation's
task lacks (rmse of a classification, "on auc" of a regression) or a role the evaluation lacks is
a `ReplayValueError` (one line, exit 2), never a silent pass. A WHO of "challenger" when every
model is the champion or the canary selects none: the rule does not hold and says so.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ReplayValueError
from .evaluation.evaluator import METRIC_COLUMNS
from .report_curves import check_rule, confusion_rows, threshold_warnings

__all__ = ["GateResult", "Rule", "check", "gate_lines", "parse_rule"]

NAMED = ("drift-alert", "drift-shift", "threshold-warning")
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
OVERALL_METRICS = METRIC_COLUMNS
RANKING_METRICS = ("average_precision", "lift_top_decile", "top_decile_rate")
ALIASES = {"ap": "average_precision", "lift": "lift_top_decile"}
METRICS = (*OVERALL_METRICS, *RANKING_METRICS, "f1")
# paired quality deltas: True when higher is better
DELTAS = {"auc": True, "log_loss": False, "brier": False, "mae": False, "rmse": False}

_COMPARISON = re.compile(
    r"^\s*(?:(?P<who>.+?)\s*:\s*)?(?P<metric>[a-z][a-z0-9_]*)\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*(?P<pct>%)?\s*$",
    re.IGNORECASE,
)
_WORSE = re.compile(
    r"^\s*(?P<who>.+?)\s+worse\s+than\s+(?P<role>champion|canary)(?:\s+on\s+(?P<metric>[a-z_]+))?\s*$",
    re.IGNORECASE,
)
_GRAMMAR = "expected METRIC<NUMBER (e.g. 'auc<0.7'), 'challenger worse than champion' or one of " + ", ".join(NAMED)


@dataclass(frozen=True)
class Rule:
    """A parsed rule: kind "compare", "worse" or one of `NAMED`; `text` as given."""

    text: str
    kind: str
    who: str | None = None
    metric: str | None = None
    op: str | None = None
    value: float | None = None
    role: str | None = None


@dataclass
class GateResult:
    """Whether `rule` held, and what made it hold (or why it did not)."""

    rule: Rule
    held: bool
    details: list[str] = field(default_factory=list)


def parse_rule(text: str) -> Rule:
    """Parse one rule of the grammar above; a ReplayValueError says what was expected."""
    named = re.sub(r"[\s_]+", "-", text.strip().lower())
    if named in NAMED:
        return Rule(text, named)
    m = _WORSE.match(text)
    if m:
        metric = m["metric"].lower() if m["metric"] else None
        if metric is not None and metric not in DELTAS:
            raise ReplayValueError(f"fail-on rule {text!r}: no paired delta {metric!r}; deltas: {list(DELTAS)}")
        return Rule(text, "worse", who=m["who"].strip(), metric=metric, role=m["role"].lower())
    m = _COMPARISON.match(text)
    if not m:
        raise ReplayValueError(f"fail-on rule {text!r} does not parse; {_GRAMMAR}")
    metric = ALIASES.get(m["metric"].lower(), m["metric"].lower())
    if metric not in METRICS:
        raise ReplayValueError(f"fail-on rule {text!r}: unknown metric {m['metric']!r}; metrics: {', '.join(METRICS)}")
    value = float(m["number"]) / (100 if m["pct"] else 1)
    return Rule(text, "compare", who=m["who"].strip() if m["who"] else None, metric=metric, op=m["op"], value=value)


def _selected(ev: Any, rule: Rule) -> list[str]:
    if rule.who is None:
        return list(ev.models)
    if rule.who.lower() == "challenger":
        return [m for m in ev.models if m not in (ev.champion, ev.canary)]
    if rule.who in ev.models:
        return [rule.who]
    raise ReplayValueError(f"fail-on rule {rule.text!r}: no model {rule.who!r}; models: {ev.models}")


def _measured(ev: Any) -> list[str]:
    """The metrics the evaluation has: its `overall` columns, and the ranking ones and f1 for
    classification."""
    ranked = [*RANKING_METRICS, "f1"] if ev.task == "classification" else []
    return [m for m in OVERALL_METRICS if m in ev.overall.column_names] + ranked


def _values(ev: Any, rule: Rule, confusion_at: str) -> dict[str, Any]:
    metric = rule.metric
    assert metric is not None
    if metric not in _measured(ev):  # e.g. rmse of a classification: no model could ever trip it
        raise ReplayValueError(
            f"fail-on rule {rule.text!r}: a {ev.task} evaluation has no {metric}; metrics: {', '.join(_measured(ev))}"
        )
    if metric in RANKING_METRICS:
        rows = ev.ranking.to_pylist()
    elif metric == "f1":
        rows = confusion_rows(ev, confusion_at)
    else:
        rows = ev.overall.to_pylist()
    return {r["model"]: r.get(metric) for r in rows}


def _compare(ev: Any, rule: Rule, confusion_at: str) -> GateResult:
    assert rule.metric is not None and rule.op is not None and rule.value is not None
    values = _values(ev, rule, confusion_at)
    selected = _selected(ev, rule)
    if not selected:
        return GateResult(rule, False, [f"no model selected by {rule.who!r}"])
    held, passed, unmeasured = [], [], []
    for model in selected:
        v = values.get(model)
        if v is None:
            unmeasured.append(model)
        elif OPS[rule.op](v, rule.value):
            held.append(f"{model} {rule.metric} {v:.4g} {rule.op} {rule.value:g}")
        else:
            passed.append(f"{model} {v:.4g}")
    details = held or passed
    if unmeasured:
        details = [*details, f"not measured for {', '.join(unmeasured)}"]
    return GateResult(rule, bool(held), details)


def _worse(ev: Any, rule: Rule) -> GateResult:
    if rule.role not in ("champion", "canary") or getattr(ev, rule.role) is None:
        raise ReplayValueError(f"fail-on rule {rule.text!r}: the evaluation has no {rule.role} (--{rule.role})")
    models = set(_selected(ev, rule))
    task_deltas = ("auc", "log_loss", "brier") if ev.task == "classification" else ("mae", "rmse")
    if rule.metric is not None and rule.metric not in task_deltas:
        raise ReplayValueError(
            f"fail-on rule {rule.text!r}: a {ev.task} evaluation has no {rule.metric} delta; "
            f"deltas: {list(task_deltas)}"
        )
    deltas = [rule.metric] if rule.metric else list(task_deltas)
    held, no_interval, checked = [], [], 0
    for row in ev.paired.to_pylist():
        if row["reference_role"] != rule.role or row["model"] not in models:
            continue
        for name in deltas:
            low, high = row.get(f"{name}_delta_low"), row.get(f"{name}_delta_high")
            if row.get(f"{name}_delta") is None:
                continue
            checked += 1
            if low is None or high is None:
                no_interval.append(f"{row['model']} {name}")
            elif (high < 0) if DELTAS[name] else (low > 0):
                held.append(f"{row['model']} {name} delta {row[f'{name}_delta']:+.4g} [{low:+.4g}, {high:+.4g}]")
    details = held or [f"no delta entirely worse ({checked} checked)"]
    if no_interval:
        details.append(f"no interval for {', '.join(no_interval)}")
    return GateResult(rule, bool(held), details)


def _drift(ev: Any, rule: Rule) -> GateResult:
    flags = ("alert",) if rule.kind == "drift-alert" else ("shift", "alert")
    found = []
    for r in ev.drift.to_pylist():
        if r["psi_flag"] in flags:
            where = f"vs {r['reference']}" if r.get("reference") else r["kind"]
            when = f" in window {r['window_start']:%Y-%m-%d %H:%M}" if r.get("window_start") else ""
            found.append(f"{r['model']} {where}{when}: PSI {r['psi']:.2f} ({r['psi_flag']}, {r['kind']})")
    return GateResult(rule, bool(found), found or ["no PSI flagged " + " or ".join(flags)])


def check(ev: Any, rules: Sequence[Rule], confusion_at: str = "max_f1") -> list[GateResult]:
    """Each rule against the evaluation `ev`, in order (`confusion_at` as in `replay.report`)."""
    check_rule(confusion_at)
    out = []
    for rule in rules:
        if rule.kind == "compare":
            out.append(_compare(ev, rule, confusion_at))
        elif rule.kind == "worse":
            out.append(_worse(ev, rule))
        elif rule.kind == "threshold-warning":
            warnings = threshold_warnings(ev)
            out.append(GateResult(rule, bool(warnings), warnings or ["no threshold warning"]))
        else:
            out.append(_drift(ev, rule))
    return out


def gate_lines(results: Sequence[GateResult], limit: int = 5) -> list[str]:
    """One line per rule ("FAIL rule: why" or "pass rule: why"), at most `limit` reasons each."""
    out = []
    for r in results:
        shown = r.details[:limit] + ([f"and {len(r.details) - limit} more"] if len(r.details) > limit else [])
        out.append(f"{'FAIL' if r.held else 'pass'} {r.rule.text}: {'; '.join(shown)}")
    return out
