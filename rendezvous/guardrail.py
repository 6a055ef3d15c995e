"""The guardrail of a ramp or promote step, from the log alone: is the candidate no worse than the
champion and the canary on the requests both scored, and fast enough for the SLA?

`check` runs `replay.evaluate` over the score topic and the outcomes appended by now (its
`cutoff`), so the numbers are the ones an evaluation of the same log shows:

- for each reference (the champion, the canary; those scored, other than the candidate): the
  paired loss delta, candidate minus reference (``log_loss_delta`` with 0/1 labels, ``mae_delta``
  otherwise) over the requests both scored whose outcome is known, with its 95% block-bootstrap
  interval over windows (`window`). It passes when at least `min_labeled` pairs are labelled and
  the interval's upper bound is at most `tolerance` (non-inferiority: "at worst this much worse").
  No interval (fewer than 3 windows) fails: no evidence is not evidence of no harm;
- the candidate's latency p99 (its runner's ``latency_ms``) is at most the SLA;
- with no reference at all the check fails (``--force`` is the way to take a first step blind).

The step passes when every check does. Evaluation groups scores by model id, so two versions of
one model scoring the same requests count as one model (the later appended score wins).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from logstore.errors import EvaluationError
from logstore.names import quote_ident

__all__ = ["DEFAULT_TOLERANCE", "DEFAULT_WINDOW", "MIN_LABELED", "Check", "Report", "check", "scored_roles", "summary"]

DEFAULT_WINDOW = "1 minute"
DEFAULT_TOLERANCE = 0.01
MIN_LABELED = 30


@dataclass(frozen=True)
class Check:
    """One check: what was measured, against what limit, and whether it passed (`reason` says why)."""

    name: str  # "quality" | "latency" | "references" | "evaluation"
    passed: bool
    reason: str
    reference: str | None = None
    role: str | None = None  # the reference's role: champion | canary
    metric: str | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    limit: float | None = None
    n: int | None = None
    windows: int | None = None


@dataclass(frozen=True)
class Report:
    """The guardrail's verdict on a candidate, with every number it used."""

    candidate: str
    checks: tuple[Check, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_json(self) -> str:
        """The numbers as the control record's ``guardrail`` field keeps them."""
        doc = {"candidate": self.candidate, "passed": self.passed, **self.params}
        doc["checks"] = [{k: v for k, v in asdict(c).items() if v is not None} for c in self.checks]
        return json.dumps(doc, sort_keys=True, default=str)

    def lines(self) -> list[str]:
        """One line per check, for the terminal."""
        return [("  pass  " if c.passed else "  FAIL  ") + c.reason for c in self.checks]


def _f(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def scored_roles(con: Any, scores: str) -> dict[str, str | None]:
    """model_id -> the role its latest score declares (None if the topic has no role column)."""
    cols = {str(r[0]) for r in con.sql(f"DESCRIBE {quote_ident(scores)}").fetchall()}
    role = "arg_max(role, _append_time)" if "role" in cols else "NULL"
    rows = con.sql(f"SELECT model_id, {role} FROM {quote_ident(scores)} GROUP BY model_id").fetchall()
    return {str(m): (None if r is None else str(r)) for m, r in rows}


def check(
    log: Any,
    candidate: str,
    *,
    champion: str | None,
    canary: str | None,
    sla_ms: float | None,
    scores: str = "scores",
    outcomes: str = "outcomes",
    window: str = DEFAULT_WINDOW,
    tolerance: float = DEFAULT_TOLERANCE,
    min_labeled: int = MIN_LABELED,
    cutoff: datetime | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> Report:
    """The guardrail of `candidate` (a model id) against `champion` and `canary` (model ids; None:
    the latest role declared in the scores), see the module docstring. Never raises for missing
    data: a check that cannot be made fails, saying why."""
    from replay.evaluation import evaluate

    cutoff = cutoff or datetime.now(UTC)
    params: dict[str, Any] = {
        "window": window,
        "tolerance": tolerance,
        "min_labeled": min_labeled,
        "sla_ms": sla_ms,
        "cutoff": cutoff.isoformat(),
        "scores": scores,
        "outcomes": outcomes,
    }
    have = set(log.topics())
    if scores not in have:
        return Report(candidate, (Check("evaluation", False, f"no score topic {scores!r} in the log"),), params)
    con = log.duckdb(topics=[t for t in (scores, outcomes) if t in have])
    roles = scored_roles(con, scores)
    if candidate not in roles:
        why = f"{candidate} has no scores in {scores!r} (scored: {', '.join(sorted(roles)) or 'none'})"
        return Report(candidate, (Check("evaluation", False, why),), params)
    refs: dict[str, str] = {}
    for role, named in (("champion", champion), ("canary", canary)):
        name = named if named is not None else next((m for m, r in roles.items() if r == role), None)
        if name is not None and name != candidate and name in roles and name not in refs.values():
            refs[role] = name
    params["references"] = refs
    try:
        ev = evaluate(
            con,
            scores,
            outcomes if outcomes in have else None,
            champion=refs.get("champion"),
            canary=refs.get("canary"),
            window=window,
            cutoff=cutoff,
            bootstrap=bootstrap,
            seed=seed,
        )
    except EvaluationError as e:
        return Report(candidate, (Check("evaluation", False, f"evaluation failed: {e}"),), params)
    params["task"] = ev.task
    metric = "log_loss_delta" if ev.task == "classification" else "mae_delta"
    checks: list[Check] = []
    if not refs:
        checks.append(Check("references", False, f"no champion or canary scored to compare {candidate} with"))
    paired = ev.paired.to_pylist()
    for role, ref in refs.items():
        row = next((r for r in paired if r["model"] == candidate and r["reference_role"] == role), None)
        checks.append(_quality(candidate, role, ref, metric, row, tolerance, min_labeled))
    overall: dict[str, Any] = next((r for r in ev.overall.to_pylist() if r["model"] == candidate), {})
    checks.append(_latency(candidate, _f(overall.get("latency_p99")), int(overall.get("latency_n") or 0), sla_ms))
    return Report(candidate, tuple(checks), params)


def _quality(
    candidate: str, role: str, ref: str, metric: str, row: dict[str, Any] | None, tolerance: float, min_labeled: int
) -> Check:
    if row is None:
        why = f"vs {role} {ref}: no request scored by both"
        return Check("quality", False, why, ref, role, metric, limit=tolerance, n=0)
    n, windows = int(row["n_labeled"] or 0), int(row["n_windows"] or 0)
    est, low, high = _f(row.get(metric)), _f(row.get(f"{metric}_low")), _f(row.get(f"{metric}_high"))
    head = f"vs {role} {ref}: {metric} {_num(est)} [{_num(low)}, {_num(high)}] ({n} labelled pairs, {windows} windows)"
    if n < min_labeled:
        ok, verdict = False, f"fewer than {min_labeled} labelled pairs"
    elif high is None:
        ok, verdict = False, "no interval (fewer than 3 windows)"
    else:
        ok = high <= tolerance
        verdict = f"upper bound {'<=' if ok else '>'} tolerance {tolerance:g}"
    return Check("quality", ok, f"{head}: {verdict}", ref, role, metric, est, low, high, tolerance, n, windows)


def _latency(candidate: str, p99: float | None, n: int, sla_ms: float | None) -> Check:
    if sla_ms is None:
        ok, why = False, f"{candidate} latency p99 {_ms(p99)} ms: no SLA known (pass --config)"
    elif p99 is None:
        ok, why = False, f"{candidate} latency: no latency_ms recorded"
    else:
        ok = p99 <= sla_ms
        why = f"{candidate} latency p99 {p99:.1f} ms {'<=' if ok else '>'} SLA {sla_ms:g} ms ({n} scores)"
    return Check("latency", ok, why, metric="latency_p99_ms", value=p99, limit=sla_ms, n=n)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


def summary(report_json: str | None, width: int = 100) -> str:
    """A short line from a recorded ``guardrail`` field (for history listings)."""
    if not report_json:
        return ""
    doc = json.loads(report_json)
    failed: Sequence[dict[str, Any]] = [c for c in doc.get("checks", []) if not c.get("passed")]
    text = "passed" if doc.get("passed") else "failed: " + "; ".join(str(c.get("reason")) for c in failed)
    return text if len(text) <= width else text[: width - 3] + "..."
