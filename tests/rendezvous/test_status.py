"""`rendezvous status`: per model figures and the canary's PSI, from the log only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

import logstore
from rendezvous.config import Topics
from rendezvous.status import status
from rendezvous.topics import ensure_topics

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def score(rid: str, model: str, role: str, value: float | None, i: int, part: int, off: int) -> dict[str, Any]:
    return {
        "request_id": rid,
        "event_time": T0 + timedelta(milliseconds=10 * i),
        "model_id": model,
        "model_version": "1",
        "score": value,
        "latency_ms": float(1 + i % 10),
        "role": role,
        "input_topic": "inputs",
        "input_partition": part,
        "input_offset": off,
        "status": "ok" if value is not None else "error",
        "error": None if value is not None else "boom",
    }


@pytest.fixture
def log(tmp_path: Any) -> Any:
    """2,000 inputs; champion scores all (20 twice, as after a runner restart), with 10 errors;
    a challenger scores the first 1,500; a stable and a drifting canary score all; decisions."""
    lg = logstore.open(tmp_path / "log")
    ensure_topics(lg, partitions=1)
    n = 2000
    rng = np.random.default_rng(0)
    with lg.writer("inputs") as w:
        w.append_batch(
            [{"request_id": f"r{i}", "event_time": T0, "features": {}, "raw": "{}", "source": "t"} for i in range(n)]
        )
    rows = []
    for i in range(n):
        rid = f"r{i}"
        rows.append(score(rid, "champion", "champion", None if i < 10 else float(rng.random()), i, 0, i))
        if i < 1500:
            rows.append(score(rid, "challenger", "shadow", float(rng.random()), i, 0, i))
        rows.append(score(rid, "stable", "canary", float(rng.random()), i, 0, i))
        drift = 0.0 if i < n // 2 else 0.4
        rows.append(score(rid, "drifting", "canary", float(min(1.0, rng.random() * 0.6 + drift)), i, 0, i))
    rows += [dict(r) for r in rows[40:120] if r["model_id"] == "champion"]  # rescored after a restart
    with lg.writer("scores") as w:
        w.append_batch(rows)
    decisions = []
    for i in range(n):
        chosen, reason = ("champion:1", "first") if i >= 10 else ("default", "default")
        decisions.append(
            {
                "request_id": f"r{i}",
                "event_time": T0,
                "candidates": [] if chosen == "default" else [chosen],
                "chosen_model": chosen,
                "reason": reason,
                "propensity": 1.0,
                "deadline_ms": 45.0,
                "arrivals": {} if chosen == "default" else {"champion:1": 3.0 + i % 5},
                "failed": ["champion:1"] if chosen == "default" else [],
                "sla_ms": 50.0,
                "overhead_ms": 5.0,
                "decided_ms": 45.0 if chosen == "default" else 3.0 + i % 5,
            }
        )
    with lg.writer("decisions") as w:
        w.append_batch(decisions)
    return lg


def test_status_counts_each_request_once_and_says_how_far_behind(log: Any) -> None:
    """Scored (each request once), errors, lag by input offset, latency, served share, per model."""
    st = status(log)
    models = {m["model"]: m for m in st.models}
    assert st.inputs == 2000
    champ = models["champion:1"]
    assert (champ["scored"], champ["errors"], champ["lag"], champ["role"]) == (2000, 10, 0, "champion")
    assert champ["served"] == 1990 and champ["share"] == pytest.approx(0.995)
    assert champ["latency_p50_ms"] == pytest.approx(5.5) and champ["arrival_p99_ms"] == pytest.approx(7.0)
    shadow = models["challenger:1"]
    assert (shadow["scored"], shadow["lag"], shadow["served"], shadow["role"]) == (1500, 500, 0, "shadow")
    assert models["default"]["served"] == 10
    assert st.decisions["reasons"] == {"first": 1990, "default": 10}
    assert st.decisions["decided_p99_ms"] == pytest.approx(7.0)  # the 0.5% decided at H lie past p99


def test_canary_psi_flags_a_drifting_canary_and_not_a_stable_one(log: Any) -> None:
    """PSI of a canary's last window against its first: small when stable, an alert when it drifts."""
    canaries = {c["model"]: c for c in status(log, window=500).canaries}
    assert canaries["stable:1"]["psi"] < 0.1 and canaries["stable:1"]["flag"] == "stable"
    assert canaries["drifting:1"]["psi"] >= 0.25 and canaries["drifting:1"]["flag"] == "alert"
    assert canaries["drifting:1"]["n_reference"] == canaries["drifting:1"]["n_current"] == 500


def test_the_report_fits_one_screen_and_reads_a_read_only_log(log: Any, tmp_path: Any) -> None:
    """The text report is one line per model plus a few: under 25 lines of under 120 characters."""
    ro = logstore.open(tmp_path / "log", readonly=True)
    text = status(ro).format()
    lines = text.splitlines()
    assert len(lines) < 25 and max(map(len, lines)) < 120
    assert any(line.startswith("champion:1") for line in lines)
    assert "canary drifting:1: PSI" in text and "decisions 2,000: first 99.5%  default 0.5%" in text


def test_an_empty_or_partial_log_reports_what_there_is(tmp_path: Any) -> None:
    """No topics, or inputs only: zeros, no error."""
    lg = logstore.open(tmp_path / "empty")
    st = status(lg)
    assert (st.inputs, st.models, st.canaries) == (0, [], [])
    assert "decisions 0" in st.format()
    ensure_topics(lg, Topics(), roles=["inputs"])
    assert status(lg).inputs == 0


def test_swap_markers_are_not_counted_as_requests_or_errors(tmp_path: Any) -> None:
    """A hot-swap marker (status "swap", no score) is the switch's record, not a scored request."""
    lg = logstore.open(tmp_path / "log")
    ensure_topics(lg, partitions=1)
    with lg.writer("inputs") as w:
        w.append_batch(
            [{"request_id": f"r{i}", "event_time": T0, "features": {}, "raw": "{}", "source": "t"} for i in range(4)]
        )
    rows = [score(f"r{i}", "m", "champion", 0.5, i, 0, i) for i in range(4)]
    rows.append({**score("swap:abc:0", "m", "champion", None, 4, 0, 2), "status": "swap", "error": None})
    with lg.writer("scores") as w:
        w.append_batch(rows)
    [m] = [m for m in status(lg).models if m["model"].startswith("m:")]
    assert (m["scored"], m["errors"]) == (4, 0)


def test_a_model_the_control_topic_deployed_shows_its_deployment_role(log: Any) -> None:
    """The challenger's runner says shadow; once deployed as a shadow and ramped, the screen says
    what the deployment does with it (a challenger at its weight); models no control record names
    keep their runner's role."""
    from rendezvous.control import ensure_control, make_record

    assert {m["model"]: m["role"] for m in status(log).models}["challenger:1"] == "shadow"
    ensure_control(log)
    with log.writer("control") as w:
        w.append(make_record("deploy", "challenger", who="t", version="1", role="shadow"))
        w.flush()
    assert {m["model"]: m["role"] for m in status(log).models}["challenger:1"] == "shadow"
    with log.writer("control") as w:
        w.append(make_record("ramp", "challenger", who="t", weight=0.25))
    roles = {m["model"]: m["role"] for m in status(log).models}
    assert roles["challenger:1"] == "challenger 25%" and roles["stable:1"] == "canary"
