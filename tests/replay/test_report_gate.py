"""`replay report --fail-on` and `--json`: the rule grammar and its refusals, the rules checked on
real evaluations (a challenger clearly worse than the champion, and one that is not), and the
command's one JSON document, exit codes and thresholds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import pyarrow as pa
import pytest

import logstore
from replay.cli import main
from replay.errors import ReplayValueError
from replay.evaluation import evaluate
from replay.report_curves import threshold_warnings
from replay.report_gate import Rule, check, gate_lines, parse_rule
from replay.report_json import document, dumps

from .builders import Clock

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
CUTOFF = "2026-04-01T00:00:00+00:00"
N = 600


def _sig(x):
    return 1 / (1 + np.exp(-x))


# name -> scores from (x, rng); "ghost" scores requests that never get an outcome
WORSE = {
    "champion": lambda x, r: _sig(2 * x + r.normal(0, 0.7, len(x))),
    "canary": lambda x, r: _sig(2 * x + r.normal(0, 0.7, len(x))),
    "bad": lambda x, r: 0.4 * _sig(0.3 * x + r.normal(0, 1.5, len(x))),  # weak, and all below 0.5
    "ghost": lambda x, r: _sig(r.normal(size=len(x))),
}
BETTER = {**{k: WORSE[k] for k in ("champion", "canary")}, "good": lambda x, r: _sig(2 * x + r.normal(0, 0.3, len(x)))}
REGRESSION = {
    "champion": lambda x, r: 3 * x + r.normal(0, 0.5, len(x)),
    "new": lambda x, r: 3 * x + r.normal(0, 2, len(x)),
}


def _write(path, models, regression=False, seed=3):
    """Scores of `models` for N requests over 4 days and their outcomes; (labels, scores by model)."""
    rng = np.random.default_rng(seed)
    times = [T0 + dt.timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, 4 * 86400, N))]
    x = rng.normal(size=N)
    y = 3 * x if regression else (rng.uniform(size=N) < _sig(2 * x)).astype(float)
    clock, scores, rows = Clock(T0 + dt.timedelta(days=5)), {}, []
    for name, f in models.items():
        scores[name] = s = f(x, rng)
        rid = "g" if name == "ghost" else "r"
        for i, (t, v, ms) in enumerate(zip(times, s, rng.gamma(2, 5, N))):
            rows.append({"request_id": f"{rid}{i}", "event_time": t, "model_id": name, "model_version": "1"})
            rows[-1].update(score=float(v), latency_ms=float(ms))
    with logstore.open(path) as log:
        log.create_topic("scores", "model_score", partitions=1, key_field="request_id")
        log.create_topic("outcomes", "outcome", partitions=1, key_field="request_id")
        with log.writer("scores", clock=clock, linger_ms=None) as w:
            w.append_batch(rows)
        with log.writer("outcomes", clock=clock, linger_ms=None) as w:
            w.append_batch(
                [{"request_id": f"r{i}", "event_time": t, "label": float(v)} for i, (t, v) in enumerate(zip(times, y))]
            )
    return y, scores


def _evaluate(path, **kw):
    kw = {"outcomes": "outcomes", "champion": "champion", "canary": "canary", "bootstrap": 200} | kw
    with logstore.open(path, readonly=True) as log:
        return evaluate(log, "scores", cutoff=dt.datetime.fromisoformat(CUTOFF), **kw)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """{name: (path, (labels, scores by model))}: a challenger clearly worse, one better, a regression."""
    root = tmp_path_factory.mktemp("gate")
    out = {name: (str(root / name), _write(root / name, m)) for name, m in (("worse", WORSE), ("better", BETTER))}
    return out | {"regression": (str(root / "reg"), _write(root / "reg", REGRESSION, regression=True))}


@pytest.fixture(scope="module")
def ev_worse(logs):
    return _evaluate(logs["worse"][0])


@pytest.fixture(scope="module")
def ev_better(logs):
    return _evaluate(logs["better"][0])


def _held(ev, text, confusion_at="max_f1"):
    (result,) = check(ev, [parse_rule(text)], confusion_at)
    return result


# ---- the grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, who, metric, op, value",
    [
        ("auc<0.7", None, "auc", "<", 0.7),
        ("AUC <= 0.7", None, "auc", "<=", 0.7),
        ("champion:latency_p99>50", "champion", "latency_p99", ">", 50.0),
        ("  Champion : Latency_P99 >= 5e1  ", "Champion", "latency_p99", ">=", 50.0),
        ("coverage<99%", None, "coverage", "<", 0.99),
        ("coverage < 99.5 %", None, "coverage", "<", 0.995),
        ("ap<0.5", None, "average_precision", "<", 0.5),
        ("challenger:LIFT>=1.5", "challenger", "lift_top_decile", ">=", 1.5),
        ("challenger:f1<.6", "challenger", "f1", "<", 0.6),
        ("bias>-1e-1", None, "bias", ">", -0.1),
        ("n_requests<10", None, "n_requests", "<", 10.0),
        ("team/m@replay.scores:rmse>2", "team/m@replay.scores", "rmse", ">", 2.0),
        ("a:b:top_decile_rate<0.2", "a:b", "top_decile_rate", "<", 0.2),
    ],
)
def test_comparisons_parse(text, who, metric, op, value):
    assert parse_rule(text) == Rule(text, "compare", who=who, metric=metric, op=op, value=pytest.approx(value))


@pytest.mark.parametrize(
    "text, kind, who, role, metric",
    [
        ("challenger worse than champion", "worse", "challenger", "champion", None),
        ("Challenger WORSE THAN Canary on LOG_LOSS", "worse", "Challenger", "canary", "log_loss"),
        ("  bad   worse  than  champion  on  rmse ", "worse", "bad", "champion", "rmse"),
        ("team/m worse than canary on brier", "worse", "team/m", "canary", "brier"),
        ("drift-alert", "drift-alert", None, None, None),
        ("Drift Alert", "drift-alert", None, None, None),
        ("drift_shift", "drift-shift", None, None, None),
        (" THRESHOLD-warning ", "threshold-warning", None, None, None),
    ],
)
def test_worse_than_and_named_rules_parse(text, kind, who, role, metric):
    assert parse_rule(text) == Rule(text, kind, who=who, role=role, metric=metric)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("auc<<0.7", "does not parse; expected METRIC<NUMBER"),
        ("auc = 0.7", "does not parse"),
        ("auc<", "does not parse"),
        ("", "does not parse"),
        ("worse than champion", "does not parse"),
        ("challenger worse than champions", "does not parse"),
        ("challenger better than champion", "does not parse"),
        ("drift-alarm", "does not parse"),
        ("aucc<0.7", "unknown metric 'aucc'; metrics: n, n_requests"),
        ("champion:latency<5", "unknown metric 'latency'"),
        ("challenger worse than champion on accuracy", "no paired delta 'accuracy'; deltas: ['auc'"),
    ],
)
def test_rules_that_do_not_parse_are_refused_in_one_line(text, needle):
    with pytest.raises(ReplayValueError) as err:
        parse_rule(text)
    assert needle in str(err.value) and repr(text) in str(err.value) and "\n" not in str(err.value)


# ---- check on real evaluations -------------------------------------------------------------


def test_refusals_that_need_the_evaluation(ev_worse, logs):
    regression = _evaluate(logs["regression"][0], canary=None)
    no_canary = _evaluate(logs["better"][0], canary=None, bootstrap=0)
    cases = [
        (ev_worse, "nobody:auc<0.7", "no model 'nobody'; models: ['bad', 'canary', 'champion', 'ghost']"),
        (ev_worse, "Bad worse than champion", "no model 'Bad'"),  # model names are exact
        (no_canary, "challenger worse than canary", "the evaluation has no canary (--canary)"),
        (ev_worse, "rmse>1", "a classification evaluation has no rmse; metrics: n, n_requests"),
        (ev_worse, "challenger worse than champion on mae", "a classification evaluation has no mae delta"),
        (regression, "auc<0.7", "a regression evaluation has no auc"),
        (regression, "challenger:f1<0.5", "a regression evaluation has no f1"),
        (regression, "new worse than champion on auc", "a regression evaluation has no auc delta"),
    ]
    for ev, text, needle in cases:
        with pytest.raises(ReplayValueError) as err:
            check(ev, [parse_rule(text)])
        assert needle in str(err.value) and repr(text) in str(err.value) and "\n" not in str(err.value), text
    assert regression.task == "regression"
    assert _held(regression, "challenger worse than champion").held  # new is noisier: MAE and RMSE higher
    assert _held(regression, "new worse than champion on rmse").details[0].startswith("new rmse delta +")
    assert not _held(regression, "champion:rmse>1").held and _held(regression, "new:rmse>1").held


def test_comparisons_hold_when_a_selected_model_satisfies_them(ev_worse):
    overall = {r["model"]: r for r in ev_worse.overall.to_pylist()}
    ranking = {r["model"]: r for r in ev_worse.ranking.to_pylist()}
    champ_auc, bad_auc = overall["champion"]["auc"], overall["bad"]["auc"]
    assert bad_auc < 0.65 < 0.8 < champ_auc  # the log is what the test means
    expected = {
        "auc<0.7": True,
        "challenger:auc<0.7": True,
        "champion:auc<0.7": False,
        "canary:auc<0.7": False,
        "auc>0.95": False,
        f"champion:auc<={champ_auc!r}": True,
        f"champion:auc<{champ_auc!r}": False,
        f"champion:auc>={champ_auc!r}": True,
        f"champion:auc>{champ_auc!r}": False,
        "coverage<99%": True,  # ghost's requests count: every model covers half
        "coverage<40%": False,
        f"champion:latency_p99>{overall['champion']['latency_p99'] - 0.01}": True,
        f"latency_p99>{max(r['latency_p99'] for r in overall.values()) + 0.01}": False,
        "ap<0.6": True,
        "champion:ap<0.6": False,
        "lift<1.2": True,
        f"champion:lift<{ranking['champion']['lift_top_decile']}": False,
    }
    for text, held in expected.items():
        assert _held(ev_worse, text).held is held, text
    result = _held(ev_worse, "auc<0.7")
    assert result.details == [f"bad auc {bad_auc:.4g} < 0.7", "not measured for ghost"]
    assert _held(ev_worse, "champion:auc<0.7").details == [f"champion {champ_auc:.4g}"]
    # f1 is at the report's confusion threshold: bad predicts no positive at 0.5, not so at max-F1
    f1 = {(r["model"], r["rule"]): r["f1"] for r in ev_worse.thresholds.to_pylist()}
    assert f1["bad", "given"] == 0.0 and f1["bad", "max_f1"] > 0.5
    assert _held(ev_worse, "bad:f1<0.1", "given").held
    assert not _held(ev_worse, "bad:f1<0.1", "max_f1").held
    assert _held(ev_worse, "bad:f1<0.1").details == [f"bad {f1['bad', 'max_f1']:.4g}"]


def test_a_model_without_outcomes_is_not_measured_and_never_trips(ev_worse, ev_better):
    for text in ("ghost:auc<0.9", "ghost:auc>0", "ghost:ap<1", "ghost:f1<1", "ghost:accuracy>=0"):
        result = _held(ev_worse, text)
        assert not result.held and result.details == ["not measured for ghost"], text
    assert _held(ev_worse, "ghost:latency_p99>0").held  # latency needs no outcome
    only_references = dataclasses.replace(ev_better, models=["canary", "champion"])
    result = _held(only_references, "challenger:auc<1")
    assert not result.held and result.details == ["no model selected by 'challenger'"]


def test_worse_than_needs_a_whole_interval_on_the_worse_side(ev_worse, ev_better):
    paired = {(r["model"], r["reference_role"]): r for r in ev_worse.paired.to_pylist()}
    bad = paired["bad", "champion"]
    assert bad["auc_delta_high"] < 0 and bad["log_loss_delta_low"] > 0 and bad["brier_delta_low"] > 0
    result = _held(ev_worse, "challenger worse than champion")
    assert result.held and [d.split(" delta")[0] for d in result.details] == ["bad auc", "bad log_loss", "bad brier"]
    lo, hi = bad["auc_delta_low"], bad["auc_delta_high"]
    assert result.details[0] == f"bad auc delta {bad['auc_delta']:+.4g} [{lo:+.4g}, {hi:+.4g}]"
    assert _held(ev_worse, "bad worse than canary on auc").held
    assert _held(ev_worse, "bad worse than champion on brier").details[0].startswith("bad brier delta +")
    canary = paired["canary", "champion"]
    assert canary["auc_delta_low"] < 0 < canary["auc_delta_high"]  # no clear difference
    assert not _held(ev_worse, "canary worse than champion").held
    ghost = _held(ev_worse, "ghost worse than champion")  # no paired quality: nothing checked
    assert not ghost.held and ghost.details == ["no delta entirely worse (0 checked)"]
    good = {r["model"]: r for r in ev_better.paired.to_pylist() if r["reference_role"] == "champion"}["good"]
    assert good["auc_delta_low"] > 0  # better, not worse
    result = _held(ev_better, "challenger worse than champion")
    assert not result.held and result.details == ["no delta entirely worse (3 checked)"]
    assert not _held(ev_better, "good worse than canary on log_loss").held


def test_worse_than_without_an_interval_does_not_hold(logs):
    for kw in ({"bootstrap": 0}, {"window": "7 days"}):  # no replicates; a single window
        ev = _evaluate(logs["worse"][0], **kw)
        row = next(r for r in ev.paired.to_pylist() if r["model"] == "bad" and r["reference_role"] == "champion")
        assert row["auc_delta"] < -0.2 and row["auc_delta_low"] is None, kw
        result = _held(ev, "challenger worse than champion")
        assert not result.held and result.details[1] == "no interval for bad auc, bad log_loss, bad brier", kw


def test_drift_and_threshold_warning_rules(ev_worse, ev_better):
    drift = ev_worse.drift.to_pylist()
    alerts = [r for r in drift if r["psi_flag"] == "alert"]
    assert alerts and all(r["psi"] >= 0.25 for r in alerts)
    result = _held(ev_worse, "drift-alert")
    assert result.held and len(result.details) == len(alerts)
    assert result.details[0].startswith("bad vs champion: PSI ") and "(alert, vs_champion)" in result.details[0]
    assert any(" in window 2026-03-0" in d for d in result.details)
    flags = {r["psi_flag"] for r in ev_better.drift.to_pylist()}
    assert "alert" not in flags and "shift" in flags
    result = _held(ev_better, "drift-alert")
    assert not result.held and result.details == ["no PSI flagged alert"]
    shifted = _held(ev_better, "drift-shift")
    assert shifted.held and all("(shift, " in d for d in shifted.details)
    shift_or_alert = sum(r["psi_flag"] in ("shift", "alert") for r in drift)
    assert len(_held(ev_worse, "drift-shift").details) == shift_or_alert > len(alerts)
    warning = _held(ev_worse, "threshold-warning")
    assert warning.held and warning.details == threshold_warnings(ev_worse) and warning.details[0].startswith("bad:")
    assert _held(ev_better, "threshold-warning").details == ["no threshold warning"]
    lines = gate_lines(check(ev_worse, [parse_rule("drift-alert"), parse_rule("champion:auc<0.5")]), limit=2)
    assert lines[0].startswith("FAIL drift-alert: bad vs champion") and lines[0].count("; ") == 2
    assert lines[0].endswith(f"and {len(alerts) - 2} more")
    assert lines[1] == f"pass champion:auc<0.5: champion {ev_worse.overall.to_pylist()[2]['auc']:.4g}"
    with pytest.raises(ReplayValueError, match="confusion_at must be one of"):
        check(ev_worse, [], "median")


# ---- JSON ----------------------------------------------------------------------------------


def _loads(text):
    """Strict JSON: NaN, Infinity and -Infinity are not JSON."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


def test_json_encodes_nan_infinity_and_times_validly(ev_worse):
    auc = pa.array([math.nan, math.inf, -math.inf, 0.5])
    odd = dataclasses.replace(
        ev_worse,
        overall=ev_worse.overall.set_column(ev_worse.overall.column_names.index("auc"), "auc", auc),
        params={**ev_worse.params, "window_length": dt.timedelta(hours=2)},
    )
    doc = _loads(dumps(odd))
    assert [r["auc"] for r in doc["overall"]] == [None, None, None, 0.5]
    assert doc["params"]["cutoff"] == CUTOFF and doc["params"]["window_length"] == 7200.0
    assert dt.datetime.fromisoformat(doc["overall"][0]["first_event"]) == ev_worse.overall.to_pylist()[0]["first_event"]
    assert document(odd) == doc
    assert "gate" not in doc and "failed" not in doc


def _report(capsys, *argv):
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _same(rows, table):
    """JSON rows equal the evaluation's, times as ISO strings (floats to 1e-12: DuckDB sums in parallel)."""
    expected = table.to_pylist()
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        assert got.keys() == want.keys()
        for k, v in want.items():
            v = v.isoformat() if isinstance(v, dt.datetime) else v
            assert got[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), (want["model"], k)


def test_json_is_one_document_with_the_evaluations_numbers(logs, tmp_path, capsys):
    path, (y, _) = logs["worse"]
    html = tmp_path / "r.html"
    rules = ["--fail-on", "challenger worse than champion", "--fail-on", "champion:auc<0.5"]
    args = [path, "--outcomes", "outcomes", "--champion", "champion", "--canary", "canary", "--bootstrap", "200"]
    code, out, err = _report(capsys, *args, "--cutoff", CUTOFF, "--json", "--html", str(html), *rules)
    assert code == 1
    doc = _loads(out)  # the whole of stdout
    assert err.strip() == f"HTML report: {html}" and html.stat().st_size > 0
    ev = _evaluate(path)
    assert set(doc) == {
        *("task", "models", "champion", "canary", "params", "confusion_at", "overall", "paired", "drift"),
        *("drift_flags", "curves", "calibration", "verdicts", "warnings", "gate", "failed"),
        *("label_maturity", "feature_drift", "feature_drift_summary", "provenance"),
    }
    assert [doc[k] for k in ("task", "models", "champion", "canary")] == [ev.task, ev.models, "champion", "canary"]
    assert doc["params"] == {**ev.params, "cutoff": CUTOFF} and doc["verdicts"] == ev.verdicts
    _same(doc["overall"], ev.overall)
    _same(doc["paired"], ev.paired)
    _same(doc["calibration"], ev.calibration)
    _same([{k: v for k, v in c.items() if k not in ("thresholds", "confusion")} for c in doc["curves"]], ev.ranking)
    by_rule = {(r["model"], r["rule"]): {k: v for k, v in r.items() if k != "model"} for r in ev.thresholds.to_pylist()}
    for c in doc["curves"]:
        assert c["thresholds"] == {rule: counts for (m, rule), counts in by_rule.items() if m == c["model"]}
    assert {c["model"]: c["thresholds"] for c in doc["curves"]}["ghost"] == {}  # no outcomes: no threshold
    assert sum(b["n"] for b in doc["calibration"] if b["model"] == "champion") == len(y)
    assert [d["model"] for d in doc["drift"]] == sorted(ev.models)
    assert doc["drift_flags"] and all(r["psi_flag"] in ("shift", "alert") for r in doc["drift_flags"])
    assert len(doc["drift_flags"]) == sum(r["psi_flag"] != "stable" for r in ev.drift.to_pylist())
    assert doc["warnings"] == threshold_warnings(ev)
    assert [(g["rule"], g["held"]) for g in doc["gate"]] == [(rules[1], True), (rules[3], False)]
    assert doc["failed"] is True
    assert doc["gate"][0]["details"][0].startswith("bad auc delta -")
    assert "Gate (--fail-on)" not in out and "Evaluation" not in out


def test_fail_on_exit_status_and_gate_lines(logs, capsys):
    args = ["--outcomes", "outcomes", "--champion", "champion", "--canary", "canary", "--bootstrap", "200"]
    rule = ["--fail-on", "challenger worse than champion"]
    code, out, _ = _report(capsys, logs["worse"][0], *args, *rule, "--fail-on", "ghost:auc<0.9")
    assert code == 1 and out.startswith("Evaluation\n")
    gate = out.split("\nGate (--fail-on)\n")[1].splitlines()
    assert gate[0].startswith("FAIL challenger worse than champion: bad auc delta -") and len(gate) == 2
    assert gate[1] == "pass ghost:auc<0.9: not measured for ghost"
    code, out, _ = _report(capsys, logs["better"][0], *args, *rule)
    assert code == 0
    assert out.endswith("Gate (--fail-on)\npass challenger worse than champion: no delta entirely worse (3 checked)\n")
    code, out, _ = _report(capsys, logs["better"][0], *args, *rule, "--json")
    assert code == 0 and _loads(out)["failed"] is False and _loads(out)["gate"][0]["held"] is False
    code, out, _ = _report(capsys, logs["worse"][0], *args)  # no rule: no gate, exit 0
    assert code == 0 and "Gate" not in out
    code, out, _ = _report(capsys, logs["worse"][0], *args, "--json")
    assert code == 0 and "gate" not in _loads(out) and "failed" not in _loads(out)


def test_a_bad_rule_exits_2_in_one_line_before_any_evaluation(logs, capsys, monkeypatch):
    import replay.evaluation

    def refuse(*a, **kw):
        raise AssertionError("evaluated")

    monkeypatch.setattr(replay.evaluation, "evaluate", refuse)
    for log in (logs["worse"][0], "/no/such/log"):
        code, out, err = _report(capsys, log, "--json", "--fail-on", "drift-alert", "--fail-on", "auc<<0.7")
        assert code == 2 and out == "" and err.count("\n") == 1
        assert err.startswith("replay: error: fail-on rule 'auc<<0.7' does not parse"), err
    monkeypatch.undo()
    code, out, err = _report(capsys, logs["worse"][0], "--outcomes", "outcomes", "--json", "--fail-on", "nobody:auc<1")
    assert code == 2 and out == "" and err.count("\n") == 1 and "no model 'nobody'" in err


def _accuracy(y, s, t):
    return float(np.mean((s >= t) == (y == 1)))


def test_confusion_at_max_f1_and_metrics_at_half_unless_a_threshold_is_given(logs, capsys):
    path, (y, scores) = logs["better"]
    args = [path, "--outcomes", "outcomes", "--champion", "champion", "--bootstrap", "0"]
    for given in (None, 0.3):
        extra = [] if given is None else ["--threshold", str(given)]
        _, out, _ = _report(capsys, *args, *extra, "--json")
        doc = _loads(out)
        rule, t = ("max_f1", 0.5) if given is None else ("given", given)
        assert doc["confusion_at"] == rule and doc["params"]["threshold"] == t
        for c in doc["curves"]:
            assert c["confusion"] == c["thresholds"][rule] and c["thresholds"]["given"]["threshold"] == t
            row = next(r for r in doc["overall"] if r["model"] == c["model"])
            assert row["accuracy"] == pytest.approx(_accuracy(y, scores[c["model"]], t), abs=1e-12)
            assert row["accuracy"] == pytest.approx(c["thresholds"]["given"]["accuracy"])
        assert {c["confusion"]["threshold"] != t for c in doc["curves"]} == {given is None}
        _, text, _ = _report(capsys, *args, *extra)
        assert ("chosen by the rule max-F1" in text) is (given is None)
        assert ("threshold 0.3 as given" in text) is (given is not None)
