"""Control records: the fold, the service applying them at their append time, the commands."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from rendezvous.cli import main
from rendezvous.config import Config, Step, parse_config
from rendezvous.control import (
    CONTROL_TOPIC,
    ControlError,
    ControlPlane,
    ControlState,
    Deployed,
    ensure_control,
    fold,
    make_record,
    ramp_draw,
    read_records,
)
from rendezvous.policy import Policy
from rendezvous.topics import ensure_topics
from tests.rendezvous.service_models import Scorer
from tests.rendezvous.test_guardrail import traffic
from tests.rendezvous.test_service import post, serving

pytestmark = pytest.mark.timeout(120)


def config(**over: Any) -> Config:
    doc: dict[str, Any] = {
        "sla_ms": 50.0,
        "default": {"score": 0.0},
        "schedule": [{"model": "m1", "after_ms": 0}, {"model": "m2", "after_ms": 20}],
    }
    doc.update(over)
    return parse_config(doc)


def rec(kind: str, model: str, **kw: Any) -> dict[str, Any]:
    return make_record(kind, model, who="t@h", **kw)


def key(state: ControlState) -> tuple[int, tuple[Deployed, ...]]:
    return state.generation, state.models


# ---- the fold ---------------------------------------------------------------------------------


def test_generation_zero_is_the_config() -> None:
    """The config's schedule, entry 0 the champion; the schedule is the config's own."""
    cfg = config()
    s = ControlState.initial(cfg)
    assert s.generation == 0 and s.schedule == cfg.schedule and s.slots == (0.0, 20.0)
    assert [(d.key, d.role) for d in s.models] == [("m1", "champion"), ("m2", "challenger")]
    assert ControlState.initial(None).schedule == () and ControlState.initial(None).slots == (0.0,)


def test_deploy_promote_retire_move_models_through_the_slots() -> None:
    """Shadows are not scheduled; a challenger goes last (the last slot); promote puts the model
    first and the old champion right after it; retire takes a model out; each bumps the generation."""
    s = ControlState.initial(config())
    s = s.apply(rec("deploy", "m3", version="2", role="shadow"))
    assert s.generation == 1 and [x.model for x in s.schedule] == ["m1", "m2"]
    s = s.apply(rec("deploy", "m4", version="1"))
    assert s.schedule == (Step("m1", 0.0), Step("m2", 20.0), Step("m4:1", 20.0))
    s = s.apply(rec("promote", "m3"))
    assert s.schedule == (Step("m3:2", 0.0), Step("m1", 20.0), Step("m2", 20.0), Step("m4:1", 20.0))
    assert [d.role for d in s.models] == ["champion", "challenger", "challenger", "challenger"]
    s = s.apply(rec("retire", "m3"))
    assert s.generation == 4 and s.role("champion") == Deployed("m1", None, "champion")
    assert s.schedule == (Step("m1", 0.0), Step("m2", 20.0), Step("m4:1", 20.0))
    s = s.apply(rec("deploy", "m1", version="7"))  # a new version of the champion, role kept
    assert s.schedule[0] == Step("m1:7", 0.0) and s.models[0].role == "champion"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (rec("ramp", "m9", weight=0.1), "not deployed"),
        (rec("ramp", "m2", weight=1.5), "weight must be a number in [0, 1]"),
        (rec("ramp", "m1", weight=0.5), "it is the champion"),
        (rec("promote", "m1"), "already the champion"),
        (rec("deploy", "m1", version="2", role="shadow"), "promote another model"),
        (rec("deploy", "m3", version="a:b"), "without ':'"),
        (rec("swap", "m9", version="2"), "not deployed"),
        (rec("refusal", "m2", requested="ramp"), "changes nothing"),
        ({"kind": "nope", "model_id": "m2"}, "kind 'nope'"),
    ],
)
def test_records_that_do_not_apply_change_nothing(record: dict[str, Any], reason: str) -> None:
    """apply raises ControlError naming the model and why; the fold skips it (generation unchanged)."""
    s = ControlState.initial(config())
    with pytest.raises(ControlError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        s.apply(record)
    after, why = s.fold(record, 0, 1)
    assert key(after) == key(s) and after.end == 1 and why is not None and reason in why


def test_a_schedule_the_config_refuses_is_not_applied() -> None:
    """The min_propensity floor times the scheduled models must stay below 1: the 4th deploy is refused."""
    cfg = config(selection={"policy": "thompson", "min_propensity": 0.25}, schedule=[{"model": "m1"}])
    s = ControlState.initial(cfg)
    for m in ("m2", "m3"):
        s = s.apply(rec("deploy", m))
    with pytest.raises(ControlError, match="is refused: selection.min_propensity"):
        s.apply(rec("deploy", "m4"))
    assert s.apply(rec("deploy", "m4", role="shadow")).generation == 3


def test_a_ramp_splits_requests_by_a_stable_draw_with_honest_propensities() -> None:
    """A ramped model is first for the requests whose draw is below its weight (about that share),
    out of the schedule of the others; the branch probability is W or 1 - W, and raising W only
    adds requests."""
    s = ControlState.initial(config()).apply(rec("deploy", "m3", role="shadow"))
    s10 = s.apply(rec("ramp", "m3", weight=0.1))
    s50 = s10.apply(rec("ramp", "m3", weight=0.5))
    assert s50.find("m3") == Deployed("m3", None, "challenger", 0.5)
    ids = [f"req-{i}" for i in range(4000)]
    in10 = {r for r in ids if s10.branch(r)[0][0].model == "m3"}
    in50 = {r for r in ids if s50.branch(r)[0][0].model == "m3"}
    assert in10 < in50 and abs(len(in10) - 400) < 80 and abs(len(in50) - 2000) < 150
    for r in ids[:200]:
        steps, p = s50.branch(r)
        if r in in50:
            assert [x.model for x in steps] == ["m3", "m1", "m2"] and p == 0.5
        else:
            assert [x.model for x in steps] == ["m1", "m2"] and p == 0.5
        assert (ramp_draw(r, "m3") < 0.5) == (r in in50)
    assert s50.apply(rec("ramp", "m3", weight=1.0)).branch("x") == (
        (Step("m3", 0.0), Step("m1", 20.0), Step("m2", 20.0)),
        1.0,
    )


def test_two_ramps_multiply_their_branch_probabilities() -> None:
    """With two ramped models the branch probability is the product of W or 1 - W over both."""
    s = ControlState.initial(config())
    for m, w in (("a", 0.2), ("b", 0.7)):
        s = s.apply(rec("deploy", m)).apply(rec("ramp", m, weight=w))
    for r in (f"q{i}" for i in range(300)):
        steps, p = s.branch(r)
        ina, inb = ramp_draw(r, "a") < 0.2, ramp_draw(r, "b") < 0.7
        assert p == pytest.approx((0.2 if ina else 0.8) * (0.7 if inb else 0.3))
        assert [x.model for x in steps] == [m for m, i in (("a", ina), ("b", inb)) if i] + ["m1", "m2"]


OPS = st.one_of(
    st.tuples(
        st.just("deploy"), st.sampled_from(["m1", "m2", "m3", "m4"]), st.sampled_from([None, "shadow", "canary"])
    ),
    st.tuples(st.just("ramp"), st.sampled_from(["m1", "m2", "m3", "m4"]), st.sampled_from([0.0, 0.3, 1.0, 2.0])),
    st.tuples(
        st.sampled_from(["promote", "retire", "refusal", "swap"]), st.sampled_from(["m1", "m2", "m3"]), st.none()
    ),
)


def _record(op: tuple[str, str, Any]) -> dict[str, Any]:
    kind, m, arg = op
    if kind == "deploy":
        return rec(kind, m, version="1", role=arg)
    if kind == "ramp":
        return rec(kind, m, weight=arg)
    return rec(kind, m, requested="ramp" if kind == "refusal" else None)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, max_size=14), cuts=st.lists(st.integers(1, 4), min_size=1, max_size=14), reads=st.data())
def test_the_state_at_any_append_offset_is_the_fold_of_the_prefix(
    tmp_path_factory: Any, ops: list[tuple[str, str, Any]], cuts: list[int], reads: Any
) -> None:
    """Records appended in commits of a few, read by the service's plane in any steps (catch-up
    reads and tailed batches, overlapping): the state by generation and by append time is the
    pure fold of the records appended before."""
    cfg = config()
    records = [_record(op) for op in ops]
    with logstore.open(tmp_path_factory.mktemp("c") / "log") as log:
        ensure_control(log)
        plane = ControlPlane(log, cfg)
        plane.start().follow = False
        i, j = 0, 0
        with log.writer(CONTROL_TOPIC, linger_ms=None) as w:
            while i < len(records):
                n = cuts[j % len(cuts)]
                j += 1
                w.append_batch(records[i : i + n])
                i += n
                if reads.draw(st.booleans()):
                    plane.catch_up()
        for batch in log.reader(CONTROL_TOPIC, start={0: reads.draw(st.integers(0, len(records)))}):
            plane.apply(batch)  # a tail delivering what was read already: skipped by offset
        plane.catch_up()
        stored = read_records(log)
    assert len(stored) == len(records) and plane.state.end == len(records)
    assert key(plane.state) == key(fold(cfg, stored))
    for k, r in enumerate(stored):
        prefix = [x for x in stored if x["_append_us"] < r["_append_us"]]
        assert key(plane.at_time(r["_append_us"])) == key(fold(cfg, prefix)), k
    assert [s.generation for s in plane.states] == list(range(len(plane.states)))
    assert len(plane.states) - 1 + len(plane.skipped) == len(records)


# ---- the service ------------------------------------------------------------------------------


def _append(log: Any, record: dict[str, Any]) -> None:
    with log.writer(CONTROL_TOPIC, linger_ms=None) as w:
        w.append_batch([record])


def test_the_service_applies_control_records_from_their_append_time_under_load(tmp_path: Any) -> None:
    """Control records appended while requests flow: every decision names the generation of the
    records appended before its input (by append time), and replays exactly under it. m3's runner
    was started as a shadow: it serves once ramped and promoted, with no restart."""
    cfg = config(sla_ms=1500.0, schedule=[{"model": "m1"}, {"model": "m2", "after_ms": 600}])
    steps = [
        rec("deploy", "m3", version="1", role="shadow"),
        rec("ramp", "m3", weight=0.5),
        rec("promote", "m3"),
        rec("retire", "m1"),
    ]

    async def main(log: Any) -> int:
        ensure_topics(log, cfg.topics)
        ensure_control(log)
        stop, n = asyncio.Event(), [0]
        deadline = time.monotonic() + 40
        with Scorer(log, "m1"), Scorer(log, "m2", role="challenger"), Scorer(log, "m3", role="shadow"):
            async with serving(log, cfg) as (svc, client):

                async def client_loop(c: int) -> None:
                    i = 0
                    while not stop.is_set() and n[0] < 1500 and time.monotonic() < deadline:
                        status, ans = await post(
                            client, "/v1/score", {"request_id": f"c{c}-{i}", "features": {"amount": i}}
                        )
                        assert status == 200, ans
                        n[0] += 1
                        i += 1

                clients = [asyncio.create_task(client_loop(c)) for c in range(6)]
                for r in steps:
                    start = n[0]
                    while n[0] < start + 40 and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                    await asyncio.to_thread(_append, log, r)
                start = n[0]
                while n[0] < start + 40 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                stop.set()
                await asyncio.gather(*clients)
                assert svc.control.state.generation == 4 and not svc.control.skipped
                return svc.control.readbacks

    with logstore.open(tmp_path / "log") as log:
        readbacks = asyncio.run(main(log))
        inputs = {
            r["request_id"]: r["_append_us"]
            for r in _with_us(log.read("inputs", columns=["request_id", "_append_time"]))
        }
        decisions = log.read("decisions").to_pylist(maps_as_pydicts="strict")
        plane = ControlPlane(log, cfg)
        plane.catch_up()
    assert len(plane.states) == 5 and len(decisions) == len(inputs) >= 200
    seen = set()
    for d in decisions:
        expected = plane.at_time(inputs[d["request_id"]])
        assert d["control_generation"] == expected.generation, d["request_id"]
        seen.add(expected.generation)
        c = plane.replay(d)
        assert (c.chosen_model, c.reason, c.propensity, c.decided_ms) == (
            d["chosen_model"],
            d["reason"],
            d["propensity"],
            d["decided_ms"],
        )
        if expected.generation == 2:  # m3 ramped at 0.5: every branch has probability 1/2
            assert d["propensity"] == 0.5 and sum(d["propensities"].values()) == 1.0
            assert (d["chosen_model"] == "m3:1") <= (ramp_draw(d["request_id"], "m3") < 0.5)
        if expected.generation in (0, 1):
            assert d["chosen_model"] != "m3:1"
        if expected.generation == 4:
            assert d["chosen_model"] != "m1:1"
    assert seen == {0, 1, 2, 3, 4}, f"generations seen {seen} ({readbacks} input append times read back)"
    served = {(d["control_generation"], d["chosen_model"]) for d in decisions if d["reason"] == "first"}
    assert (3, "m3:1") in served and (0, "m1:1") in served


def _with_us(table: Any) -> list[dict[str, Any]]:
    import pyarrow as pa

    us = table.column("_append_time").cast(pa.int64()).to_pylist()
    return [{**r, "_append_us": t} for r, t in zip(table.to_pylist(), us, strict=True)]


def test_a_decision_names_the_generation_of_its_inputs_append_time_when_in_flight(tmp_path: Any) -> None:
    """A control record appended after a request's input commit began but before the service looks:
    the input's append time is read back and the older state chosen."""
    cfg = config(sla_ms=1500.0, schedule=[{"model": "m1"}])
    with logstore.open(tmp_path / "log") as log:
        ensure_topics(log, cfg.topics)
        plane = ControlPlane(log, cfg, Policy(cfg))
        plane.start().follow = False
        since = time.time_ns() // 1000
        with log.writer("inputs") as w:
            w.append_batch([{"request_id": "r1", "event_time": _now(), "features": {}, "raw": "{}", "source": "t"}])
        _append(log, rec("deploy", "m2", role="challenger"))
        route = plane.route("r1", since)
        assert route.generation == 0 and plane.readbacks == 1
        assert plane.route("r2", time.time_ns() // 1000 + 1).generation == 1 and plane.readbacks == 1


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# ---- the commands -----------------------------------------------------------------------------


@pytest.fixture
def cli_log(tmp_path: Any) -> tuple[str, str]:
    path = tmp_path / "log"
    cfg = tmp_path / "rendezvous.toml"
    cfg.write_text('sla_ms = 50\ndefault = { score = 0.0 }\n[[schedule]]\nmodel = "m1"\n')
    with logstore.open(path) as log:
        ensure_topics(log)
    return str(path), str(cfg)


def _control(path: str) -> list[dict[str, Any]]:
    with logstore.open(path, readonly=True) as log:
        return read_records(log)


def _ends(path: str) -> dict[str, dict[int, int]]:
    with logstore.open(path, readonly=True) as log:
        return {t: log.end_offsets(t) for t in log.topics()}


def test_the_commands_append_one_record_each_and_history_lists_them(cli_log: tuple[str, str], capsys: Any) -> None:
    """deploy, ramp (guardrail passes), promote, retire: one record each (who, why, generation),
    the guardrail's numbers kept; history lists them and the deployment they leave."""
    path, cfg = cli_log
    with logstore.open(path) as log:
        traffic(log, {"m1": (0.3, 5, "champion"), "m2": (0.05, 8, "shadow")})
    assert (
        main(
            ["deploy", path, "--model", "m2", "--version", "1", "--as", "shadow", "--why", "retrained", "--config", cfg]
        )
        == 0
    )
    assert "control offset 0: deploy m2:1 as shadow; generation 1: m1 champion, m2:1 shadow" in capsys.readouterr().out
    assert main(["ramp", path, "--model", "m2", "--weight", "0.25", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "pass  vs champion m1: log_loss_delta" in out and "m2:1 challenger 0.25" in out
    assert main(["promote", path, "--model", "m2", "--config", cfg]) == 0
    assert main(["retire", path, "--model", "m1", "--config", cfg, "--why", "replaced"]) == 0
    assert "generation 4: m2:1 champion" in capsys.readouterr().out
    records = _control(path)
    assert [(r["kind"], r["model_id"], r["generation"], r["forced"]) for r in records] == [
        ("deploy", "m2", 1, False),
        ("ramp", "m2", 2, False),
        ("promote", "m2", 3, False),
        ("retire", "m1", 4, False),
    ]
    assert records[0]["why"] == "retrained" and records[0]["role"] == "shadow" and "@" in records[0]["who"]
    assert records[1]["weight"] == 0.25 and json.loads(records[1]["guardrail"])["passed"] is True
    assert json.loads(records[2]["guardrail"])["references"] == {"champion": "m1"}
    assert records[0]["guardrail"] is None and records[3]["guardrail"] is None
    assert main(["history", path, "--config", cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["offset", "appended", "(UTC)"] and len(lines) == 6
    assert "deploy m2:1 as shadow" in lines[1] and "retrained" in lines[1] and "ramp m2:1 to 0.25" in lines[2]
    assert "passed" in lines[2] and lines[-1] == "generation 4: m2:1 champion"
    assert main(["history", path, "--json", "--config", cfg]) == 0
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["applied"] for d in docs] == [1, 2, 3, 4] and docs[-1]["deployment"] == "generation 4: m2:1 champion"
    assert main(["history", path, "--json"]) == 0  # without the config m1 is unknown: its retire is skipped
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["applied"] for d in docs] == [1, 2, 3, None] and "not deployed" in docs[3]["skipped"]


def test_a_ramp_refused_by_the_guardrail_writes_only_the_refusal(cli_log: tuple[str, str], capsys: Any) -> None:
    """A worse candidate: the numbers are printed, exit 1, and the only thing written is one refusal
    record carrying them; --force appends the ramp itself, forced, with the numbers."""
    path, cfg = cli_log
    with logstore.open(path) as log:
        traffic(log, {"m1": (0.05, 5, "champion"), "m2": (0.4, 5, "shadow")})
    assert main(["deploy", path, "--model", "m2", "--version", "1", "--as", "shadow", "--config", cfg]) == 0
    capsys.readouterr()
    before = _ends(path)
    assert main(["ramp", path, "--model", "m2", "--weight", "0.1", "--config", cfg, "--why", "try"]) == 1
    out, err = capsys.readouterr()
    assert "FAIL  vs champion m1: log_loss_delta +" in out and "> tolerance 0.01" in out
    assert "refused by the guardrail" in err and "--force" in err
    after = _ends(path)
    assert {t: e for t, e in after.items() if t != CONTROL_TOPIC} == {
        t: e for t, e in before.items() if t != CONTROL_TOPIC
    }
    assert after[CONTROL_TOPIC][0] == before[CONTROL_TOPIC][0] + 1
    refusal = _control(path)[-1]
    assert (refusal["kind"], refusal["requested"], refusal["weight"], refusal["generation"]) == (
        "refusal",
        "ramp",
        0.1,
        1,
    )
    numbers = json.loads(refusal["guardrail"])
    assert numbers["passed"] is False and numbers["checks"][0]["high"] > 0.01 and refusal["why"] == "try"
    assert main(["history", path]) == 0
    assert "refused ramp m2:1 to 0.1" in capsys.readouterr().out
    assert main(["ramp", path, "--model", "m2", "--weight", "0.1", "--config", cfg, "--force"]) == 0
    assert "forced over a failed guardrail" in capsys.readouterr().out
    forced = _control(path)[-1]
    assert (forced["kind"], forced["forced"], forced["generation"]) == ("ramp", True, 2)
    assert json.loads(forced["guardrail"])["passed"] is False
    assert main(["history", path]) == 0
    assert "ramp m2:1 to 0.1 FORCED" in capsys.readouterr().out


def test_a_step_that_does_not_apply_appends_nothing(cli_log: tuple[str, str], capsys: Any) -> None:
    """A ramp of an unknown model, a promote of the champion: exit 2 naming why, no record."""
    path, cfg = cli_log
    assert main(["ramp", path, "--model", "m9", "--weight", "0.1", "--config", cfg]) == 2
    assert "ramp m9: not deployed" in capsys.readouterr().err
    assert main(["promote", path, "--model", "m1", "--config", cfg]) == 2
    assert "already the champion" in capsys.readouterr().err
    assert main(["retire", path, "--model", "m1"]) == 2  # without the config, m1 is not known
    assert _control(path) == []
    assert main(["history", path]) == 0
    assert "no control records" in capsys.readouterr().out
