"""The front door on loopback: a real aiohttp server on 127.0.0.1:0, real HTTP, scripted scorers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from rendezvous.config import Config, parse_config
from rendezvous.mailbox import Mailboxes
from rendezvous.policy import Policy
from rendezvous.service import Allowance, RequestError, Service, parse_score_request
from tests.rendezvous.service_models import Scorer, amount_score

pytestmark = pytest.mark.timeout(120)

SLA = 300.0  # generous: these tests check what is decided, not how fast (a shared 2-core machine)


def config(**over: Any) -> Config:
    doc: dict[str, Any] = {
        "sla_ms": SLA,
        "default": {"score": 0.25},
        "schedule": [{"model": "m1", "after_ms": 0}, {"model": "m2", "after_ms": 150}],
        "metrics_interval_s": 60,
    }
    doc.update(over)
    return parse_config(doc, decoy_only=not doc["schedule"])


@contextlib.asynccontextmanager
async def serving(log: Any, cfg: Config, **kw: Any) -> AsyncIterator[tuple[Service, aiohttp.ClientSession]]:
    """The service on 127.0.0.1 (a free port) and a client session for it; both closed after."""
    svc = Service(log, cfg, **kw)
    server = TestServer(svc.app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as client:
            yield svc, client
    finally:
        await server.close()


async def post(client: aiohttp.ClientSession, path: str, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post(path, data=data) as r:
        return r.status, await r.json()


def by_request(log: Any, topic: str) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in log.read(topic).to_pylist(maps_as_pydicts="strict")}


@pytest.fixture
def log(tmp_path: Any) -> Any:
    with logstore.open(tmp_path / "log") as lg:
        yield lg


async def _started(log: Any, cfg: Config) -> None:
    """Create the topics (the service does it at start) so scorers can tail before serving."""
    from rendezvous.topics import ensure_topics

    ensure_topics(log, cfg.topics)


@pytest.mark.parametrize("mode", ["loop", "thread"])
def test_answers_are_the_first_models_scores_and_match_the_records(log: Any, mode: str) -> None:
    """The first model's score is served (reason first); the input's raw is the body byte for byte;
    the decision record names what was served and the score record it came from."""
    # m1 must answer before m2's after_ms: wide margins, this checks what is served, not how fast
    cfg = config(sla_ms=1500.0, schedule=[{"model": "m1", "after_ms": 0}, {"model": "m2", "after_ms": 1000}])

    async def main() -> list[tuple[bytes, dict[str, Any]]]:
        await _started(log, cfg)
        out = []
        with Scorer(log, "m1"), Scorer(log, "m2"):
            async with serving(log, cfg, commit_mode=mode) as (_, client):
                for i in range(12):
                    body = (
                        '{ "request_id" : "r'
                        + str(i)
                        + '", "features": {"amount": '
                        + str(7 * i)
                        + ', "ünï": 1.5}, "x": [1] }'
                    ).encode()
                    status, ans = await post(client, "/v1/score", body)
                    assert status == 200, ans
                    out.append((body, ans))
        return out

    answers = asyncio.run(main())
    inputs, decisions, scores = by_request(log, "inputs"), by_request(log, "decisions"), log.read("scores").to_pylist()
    for body, ans in answers:
        rid = ans["request_id"]
        assert (ans["model"], ans["model_version"], ans["reason"], ans["propensity"]) == ("m1", "1", "first", 1.0)
        assert ans["score"] == amount_score(json.loads(body)["features"])
        assert inputs[rid]["raw"] == body.decode() and inputs[rid]["source"] == "rendezvous"
        d = decisions[rid]
        assert d["chosen_model"] == "m1:1" and d["score"] == ans["score"] and d["reason"] == "first"
        assert d["decided_ms"] == d["arrivals"]["m1:1"] <= d["deadline_ms"] == cfg.sla_ms - d["overhead_ms"]
        assert 0 < ans["latency_ms"] <= SLA
        served = [s for s in scores if s["request_id"] == rid and s["model_id"] == "m1"]
        assert served and served[0]["score"] == ans["score"]


def test_fallback_deadline_and_default(log: Any) -> None:
    """m1 fails: m2 serves from its after_ms (fallback); m1 stalls: m2 (deadline); nobody: the default at H."""
    cfg = config(sla_ms=1500.0)  # m1's error must arrive before H, also on a loaded machine

    async def run(behaviour: str, m2: bool) -> dict[str, Any]:
        await _started(log, cfg)
        with Scorer(log, "m1", behaviour=behaviour), contextlib.ExitStack() as stack:
            if m2:
                stack.enter_context(Scorer(log, "m2"))
            async with serving(log, cfg) as (_, client):
                status, ans = await post(client, "/v1/score", {"features": {"amount": 50}})
                assert status == 200
                return ans

    fallback = asyncio.run(run("error", True))
    assert (fallback["model"], fallback["reason"], fallback["score"]) == ("m2", "fallback", 0.5)
    deadline = asyncio.run(run("stall", True))
    assert (deadline["model"], deadline["reason"]) == ("m2", "deadline")
    default = asyncio.run(run("stall", False))
    assert (default["model"], default["model_version"], default["reason"], default["score"]) == (
        "default",
        None,
        "default",
        0.25,
    )
    assert default["latency_ms"] <= cfg.sla_ms
    decisions = by_request(log, "decisions")
    f = decisions[fallback["request_id"]]
    assert f["failed"] == ["m1:1"] and f["decided_ms"] >= 150 and f["candidates"] == ["m2:1"]
    d = decisions[default["request_id"]]
    assert d["chosen_model"] == "default" and json.loads(d["answer"]) == {"score": 0.25}
    assert d["decided_ms"] == d["deadline_ms"]
    assert decisions[deadline["request_id"]]["failed"] == []


def test_bad_requests_are_refused_and_not_archived(log: Any) -> None:
    """Malformed bodies get 400 with the reason, a request id already waiting gets 409; neither is archived."""
    cfg = config()
    bad: list[bytes] = [
        b"not json",
        b"[1, 2]",
        b'{"features": [1]}',
        b'{"features": {"a": "x"}}',
        b'{"features": {"a": true}}',
        b'{"request_id": 7, "features": {}}',
        b'{"request_id": "", "features": {}}',
        b"\xff\xfe",
    ]

    async def main() -> None:
        await _started(log, cfg)
        with Scorer(log, "m1", behaviour="stall"):
            async with serving(log, cfg) as (_, client):
                for body in bad:
                    status, ans = await post(client, "/v1/score", body)
                    assert status == 400 and ans["error"], body
                first = asyncio.create_task(post(client, "/v1/score", {"request_id": "same", "features": {}}))
                await asyncio.sleep(0.05)
                status, ans = await post(client, "/v1/score", {"request_id": "same", "features": {}})
                assert status == 409 and "already waiting" in ans["error"]
                status, ans = await first
                assert status == 200 and ans["reason"] == "default"

    asyncio.run(main())
    assert log.read("inputs").column("request_id").to_pylist() == ["same"]


def test_outcomes_health_and_metrics(log: Any) -> None:
    """POST /v1/outcome appends an outcome; /healthz says ok; /metrics counts requests and answers."""
    cfg = config()

    async def main() -> tuple[str, dict[str, Any]]:
        await _started(log, cfg)
        with Scorer(log, "m1"):
            async with serving(log, cfg) as (_, client):
                for i in range(3):
                    await post(client, "/v1/score", {"request_id": f"q{i}", "features": {"amount": 1}})
                status, ans = await post(client, "/v1/outcome", {"request_id": "q1", "label": 1})
                assert status == 200 and ans == {"request_id": "q1", "recorded": True}
                status, ans = await post(client, "/v1/outcome", {"request_id": "q2"})
                assert status == 400 and "label" in ans["error"]
                async with client.get("/healthz") as r:
                    assert r.status == 200
                    health = await r.json()
                async with client.get("/metrics") as r:
                    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                    return await r.text(), health

    text, health = asyncio.run(main())
    assert health["status"] == "ok" and health["decided"] == 3 and health["deadline_ms"] < SLA
    assert "rendezvous_requests_total 3.0" in text
    assert 'rendezvous_answers_total{model="m1:1",reason="first"} 3.0' in text
    assert "rendezvous_answer_latency_seconds_bucket" in text
    [outcome] = log.read("outcomes").to_pylist()
    assert (outcome["request_id"], outcome["label"], outcome["reward"]) == ("q1", 1.0, None)


def test_decoy_only_archives_and_answers_the_default_at_once(log: Any) -> None:
    """--decoy-only: the input is archived, the default answered without waiting, the decision recorded."""
    cfg = config(schedule=[])

    async def main() -> dict[str, Any]:
        async with serving(log, cfg, decoy_only=True) as (_, client):
            status, ans = await post(client, "/v1/score", {"request_id": "d1", "features": {"amount": 3}})
            assert status == 200
            return ans

    ans = asyncio.run(main())
    assert (ans["model"], ans["reason"], ans["score"]) == ("default", "default", 0.25)
    assert ans["latency_ms"] < SLA / 2
    assert log.read("inputs").column("request_id").to_pylist() == ["d1"]
    [d] = log.read("decisions").to_pylist()
    assert d["chosen_model"] == "default" and d["decided_ms"] < d["deadline_ms"]


def test_metric_records_per_model_per_interval(log: Any) -> None:
    """Each interval appends metric records per model (requests, answers, share, latency, scores)."""
    cfg = config(metrics_interval_s=0.2)

    async def main() -> None:
        await _started(log, cfg)
        with Scorer(log, "m1"), Scorer(log, "m2"):
            async with serving(log, cfg) as (_, client):
                for i in range(6):
                    await post(client, "/v1/score", {"features": {"amount": 10 * i}})
                await asyncio.sleep(0.5)

    asyncio.run(main())
    rows = log.read("metrics").to_pylist(maps_as_pydicts="strict")
    got = {(r["tags"]["model"], r["name"]): r["value"] for r in rows}
    assert sum(v for (m, n), v in got.items() if m == "*" and n == "rendezvous.requests") == 6
    assert sum(v for (m, n), v in got.items() if m == "m1:1" and n == "rendezvous.answers") == 6
    assert ("m1:1", "rendezvous.latency_p99_ms") in got and ("m1:1", "rendezvous.score_mean") in got
    assert ("m1:1", "rendezvous.share_selected") in got


def test_replay_of_the_recorded_rendezvous_reproduces_every_served_model(log: Any) -> None:
    """Policy.replay from each decision's recorded arrivals, failures and seed gives the served model."""
    cfg = config(schedule=[{"model": "m1"}, {"model": "m2", "after_ms": 5}, {"model": "m3", "after_ms": 30}])

    async def main() -> None:
        await _started(log, cfg)
        # m1 fails on odd amounts, m2 is slow, m3 answers at once
        with (
            Scorer(log, "m1", score_of=lambda f: 1 / (int(f["amount"]) % 2 == 0)),
            Scorer(log, "m2", delay_s=0.02),
            Scorer(log, "m3"),
        ):
            async with serving(log, cfg) as (_, client):
                for i in range(30):
                    await post(client, "/v1/score", {"features": {"amount": i}})

    asyncio.run(main())
    decisions = log.read("decisions").to_pylist(maps_as_pydicts="strict")
    policy = Policy(cfg)
    for d in decisions:
        c = policy.replay(d["request_id"], d["arrivals"], set(d["failed"]), d["deadline_ms"], d["policy_version"])
        assert (c.chosen_model, c.reason, c.decided_ms) == (d["chosen_model"], d["reason"], d["decided_ms"])
    assert len(decisions) == 30


def test_thompson_learns_from_outcomes_and_logs_exact_propensities(log: Any) -> None:
    """With Thompson sampling, outcomes joined to the served model move the posterior (a new policy
    version) and the logged propensities follow; a restarted service rebuilds them from the log."""
    cfg = config(
        schedule=[{"model": "m1", "after_ms": 100}, {"model": "m2", "after_ms": 100}],
        selection={"policy": "thompson", "reward": "label", "snapshot_interval_s": 0.05},
    )

    async def round_(n: int, tag: str) -> int:
        with Scorer(log, "m1"), Scorer(log, "m2"):
            async with serving(log, cfg) as (svc, client):
                for i in range(n):
                    _, ans = await post(client, "/v1/score", {"request_id": f"{tag}{i}", "features": {"amount": 1}})
                    # m1 always pays, m2 never
                    label = 1.0 if ans["model"] == "m1" else 0.0
                    await post(client, "/v1/outcome", {"request_id": ans["request_id"], "label": label})
                await asyncio.sleep(0.2)
                assert svc.feedback is not None
                return svc.feedback.observed

    async def main() -> None:
        await _started(log, cfg)
        assert await round_(25, "a") == 25
        assert await round_(5, "b") == 25 + 5  # the first round's outcomes, read back, and its own

    asyncio.run(main())
    decisions = sorted(log.read("decisions").to_pylist(maps_as_pydicts="strict"), key=lambda d: d["_append_time"])
    # both models answer before their common after_ms (bar a stall of this shared machine): sampled
    sampled = [d for d in decisions if d["reason"] == "sampled"]
    assert len(sampled) >= 0.8 * len(decisions) == 24
    assert all(abs(sum(d["propensities"].values()) - 1) < 1e-9 for d in sampled)
    assert all(min(d["propensities"].values()) > 0 for d in sampled)
    first, last = decisions[0], decisions[24]
    assert first["policy_version"] == 0 and first["propensities"]["m1:1"] == pytest.approx(0.5)
    assert last["policy_version"] > 0 and last["propensities"]["m1:1"] > 0.8
    # the second service read the first one's decisions back: its posterior starts where that one ended
    assert decisions[25]["policy_version"] > 0 and decisions[25]["propensities"]["m1:1"] > 0.8
    policy = Policy(cfg)
    for d in decisions:
        c = policy.replay(
            d["request_id"], d["arrivals"], set(d["failed"]), d["deadline_ms"], d["policy_version"], d["propensities"]
        )
        assert c.chosen_model == d["chosen_model"] and c.propensity == d["propensity"]


def test_a_restarted_service_goes_on(log: Any) -> None:
    """Stopped and started again on the same log, a service answers on; every answered request's
    input and decision are there once, and old scores are not delivered to new requests."""
    cfg = config()

    async def round_(tag: str) -> list[str]:
        with Scorer(log, "m1"):
            async with serving(log, cfg) as (_, client):
                out = []
                for i in range(5):
                    _, ans = await post(client, "/v1/score", {"request_id": f"{tag}{i}", "features": {"amount": i}})
                    assert ans["reason"] == "first"
                    out.append(ans["request_id"])
                return out

    async def main() -> list[str]:
        await _started(log, cfg)
        return await round_("a") + await round_("b")

    answered = asyncio.run(main())
    assert sorted(log.read("inputs").column("request_id").to_pylist()) == sorted(answered)
    assert sorted(log.read("decisions").column("request_id").to_pylist()) == sorted(answered)


# ---- the parts ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.floats(allow_nan=False, allow_infinity=False), max_size=6))
def test_a_score_body_is_archived_exactly_as_received(features: dict[str, float]) -> None:
    """Whatever the spacing and characters, `raw` is the body as received and features parse back."""
    body = (" " + json.dumps({"features": features, "extra": "é"}, ensure_ascii=False, indent=1) + "\n").encode()
    rid, parsed, raw = parse_score_request(body)
    assert rid is None and raw.encode() == body and parsed == {k: float(v) for k, v in features.items()}


@pytest.mark.parametrize("body", [b"{}", b'{"features": {"a": NaN}}', b'{"features": {"a": 1e999}}'])
def test_bodies_without_finite_features_are_refused(body: bytes) -> None:
    """A body without a features object, or with a non-finite value, is a RequestError."""
    with pytest.raises(RequestError):
        parse_score_request(body)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a:1", "b:1", "c:2"]), st.booleans(), st.sampled_from([None, "shadow"]))),
    st.sets(st.sampled_from(["a", "b", "c"])),
)
def test_mailbox_keeps_the_first_answer_of_each_model(events: list[tuple[str, bool, str | None]], served: set) -> None:
    """Per model the first score wins (ok: in arrivals; error: in failed); a score its runner marks
    shadow arrives only while the deployment serves its model."""
    import pyarrow as pa

    boxes = Mailboxes(served=served.__contains__)
    mb = boxes.open("r", 0.0)
    for i, (key, ok, role) in enumerate(events):
        mid, _, ver = key.partition(":")
        batch = pa.RecordBatch.from_pylist(
            [
                {
                    "request_id": "r",
                    "model_id": mid,
                    "model_version": ver,
                    "score": 0.5 if ok else None,
                    "status": "ok" if ok else "error",
                    "role": role,
                    "_partition": 0,
                    "_offset": i,
                }
            ]
        )
        boxes.deliver_batch(batch, now=float(i))
    first: dict[str, tuple[bool, int]] = {}
    for i, (key, ok, role) in enumerate(events):
        if role != "shadow" or key.partition(":")[0] in served:
            first.setdefault(key, (ok, i))
    assert mb.arrivals == {k: 1000.0 * i for k, (ok, i) in first.items() if ok}
    assert mb.failed == {k: 1000.0 * i for k, (ok, i) in first.items() if not ok}


def test_the_overhead_allowance() -> None:
    """Fixed: the config's; measured: the worst recent overhead with a margin, within [floor, SLA/2]."""
    assert Allowance(50, 3.0).ms == 3.0
    assert Allowance(300).ms == 60.0 and Allowance(10).ms == 2.5
    a = Allowance(50)
    assert a.ms == 10.0
    for i in range(200):
        a.observe(1.0 + (i % 100) / 100)
    assert a.ms == pytest.approx(1.99 * 1.25 + 1.0)
    for _ in range(2000):
        a.observe(100.0)
    assert a.ms == 25.0
