"""The hot-swap token: the cut, runners switching at it, the service aligning on the markers,
replay reproducing the served versions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa
import pytest

import logstore
import replay
from logstore.keyhash import partition_of
from rendezvous.cli import main
from rendezvous.config import parse_config
from rendezvous.control import CONTROL_TOPIC, ControlError, ControlPlane, fold, make_record, read_records
from rendezvous.mailbox import Mailboxes
from rendezvous.runner import Runner
from rendezvous.swap import find_tokens, swap, token_request_id
from rendezvous.topics import ensure_topics
from replay.engine.tokens import VersionCut, strip
from tests.rendezvous import models
from tests.rendezvous.models import hash_score
from tests.rendezvous.procs import wait_for
from tests.rendezvous.test_runner import append, inputs
from tests.rendezvous.test_service import post, serving

pytestmark = pytest.mark.timeout(180)

MODEL = "swappable"


def cfg(**over: Any) -> Any:
    doc: dict[str, Any] = {"sla_ms": 1500.0, "default": {"score": -1.0}, "schedule": [{"model": MODEL}]}
    doc.update(over)
    return parse_config(doc)


def new_log(tmp_path: Any, partitions: int = 4) -> logstore.Log:
    log = logstore.open(tmp_path / "log")
    ensure_topics(log, partitions=partitions)
    return log


def positions(log: logstore.Log) -> dict[str, tuple[int, int]]:
    """request id -> (partition, offset) of every input that is a request."""
    t = log.read("inputs", columns=["request_id", "swap", "_partition", "_offset"])
    return {r["request_id"]: (r["_partition"], r["_offset"]) for r in t.to_pylist() if r["swap"] is None}


def token_offsets(log: logstore.Log) -> dict[int, list[tuple[int, str]]]:
    t = log.read("inputs", columns=["swap", "_partition", "_offset"]).to_pylist()
    out: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for r in t:
        if r["swap"] is not None:
            out[r["_partition"]].append((r["_offset"], r["swap"]["version"]))
    return out


def expected_version(tokens: dict[int, list[tuple[int, str]]], p: int, o: int, first: str = "1") -> str:
    v = first
    for t, to in sorted(tokens.get(p, [])):
        if t < o:
            v = to
    return v


def model_scores(log: logstore.Log) -> list[dict[str, Any]]:
    return [r for r in log.read("scores").to_pylist() if r["model_id"] == MODEL]


# ---- the cut ----------------------------------------------------------------------------------


def test_the_cut_answers_the_version_of_each_offset() -> None:
    cut = VersionCut()
    assert cut.version("m", 0, 5) is None and cut.allows("m", "9", 0, 5)
    assert cut.add("m", 0, 10, "1", "2") and not cut.add("m", 0, 10, "1", "2")  # a marker twice
    cut.add("m", 0, 20, "2", "3")
    assert [cut.version("m", 0, o) for o in (0, 9, 11, 19, 21, 10**9)] == ["1", "1", "2", "2", "3", "3"]
    assert cut.version("m", 1, 11) is None and cut.version("other", 0, 11) is None
    assert cut.allows("m", "2", 0, 15) and not cut.allows("m", "1", 0, 15) and not cut.allows("m", "3", 0, 15)
    assert cut.allows("m", "1", None, None)  # a score that does not say which input: not judged


def test_strip_leaves_out_token_rows_and_the_column() -> None:
    batch = pa.record_batch(
        {
            "request_id": ["a", "swap:t:0", "b"],
            "swap": pa.array([None, {"token": "t", "model_id": "m", "version": "2"}, None]),
        }
    )
    assert strip(batch).to_pylist() == [{"request_id": "a"}, {"request_id": "b"}]
    plain = pa.record_batch({"request_id": ["a"], "swap": pa.nulls(1, batch.schema.field("swap").type)})
    assert strip(plain).schema.names == ["request_id"]


@pytest.mark.parametrize("n", [1, 3, 4, 16])
def test_a_token_request_id_lands_in_its_partition(n: int) -> None:
    for p in range(n):
        assert partition_of(token_request_id("abc", p, n), n) == p


def test_a_swap_in_the_fold_matches_any_version_of_the_model() -> None:
    c = parse_config({"sla_ms": 50.0, "default": {"score": 0.0}, "schedule": [{"model": "m1:1"}]})
    assert fold(c, []).find("m1").key == "m1:1"  # type: ignore[union-attr]
    state = fold(c, [make_record("swap", "m1", who="t", version="2", token="x")])
    assert state.generation == 1 and state.find("m1") is not None and state.find("m1").key == "m1"  # type: ignore[union-attr]
    with pytest.raises(ControlError, match="not deployed"):
        state.apply(make_record("swap", "m9", who="t", version="2", token="y"))


# ---- the command ------------------------------------------------------------------------------


def test_swap_appends_its_control_record_then_one_token_per_partition(tmp_path: Any, capsys: Any) -> None:
    log = new_log(tmp_path)
    append(log, inputs(0, 40))
    path = str(tmp_path / "log")
    assert main(["swap", path, "--model", "m1", "--to", "2", "--why", "hotfix"]) == 2  # not deployed: refused
    assert CONTROL_TOPIC not in log.topics() or not read_records(log)
    assert "not deployed" in capsys.readouterr().err
    done = swap(log, MODEL, "2", config=cfg(), why="hotfix", by="t@h")
    tokens = token_offsets(log)
    assert sorted(tokens) == [0, 1, 2, 3] and all(len(v) == 1 for v in tokens.values())
    assert done.tokens == {p: v[0][0] for p, v in tokens.items()}
    recs = read_records(log)
    assert [(r["kind"], r["model_id"], r["version"], r["token"], r["why"]) for r in recs] == [
        ("swap", MODEL, "2", done.token, "hotfix")
    ]
    t = log.read("inputs", columns=["swap", "_append_time"])
    us = t.column("_append_time").cast(pa.int64()).to_pylist()
    times = {u for u, tok in zip(us, t.column("swap").to_pylist()) if tok is not None}
    assert len(times) == 1 and min(times) >= recs[0]["_append_us"]  # one commit for every token, after the record
    assert find_tokens(log, "inputs", done.token, recs[0]["_append_us"]) == done.tokens
    assert main(["history", path]) == 0
    assert f"swap {MODEL} to 2 (token {done.token})" in capsys.readouterr().out


# ---- runners ----------------------------------------------------------------------------------


def _feed(log: logstore.Log, stop: threading.Event, n: list[int], limit: int) -> None:
    while not stop.is_set() and n[0] < limit:
        append(log, inputs(n[0], 5))
        n[0] += 5
        time.sleep(0.002)


def test_runners_switch_at_the_token_and_none_handles_an_input_with_both(tmp_path: Any) -> None:
    """3 runners over 4 partitions, inputs flowing: every input before its partition's token is
    scored by version 1, every one after by version 2, each by one version; one marker per partition."""
    log = new_log(tmp_path)
    runners = [
        Runner(log, "tests.rendezvous.models:swappable", member=(i, 3), batch=8, runner_id=f"r{i}").start()
        for i in range(3)
    ]
    stop, n = threading.Event(), [0]
    feeder = threading.Thread(target=_feed, args=(log, stop, n, 3000))
    try:
        for r in runners:
            assert r.ready.wait(10)
        feeder.start()
        assert wait_for(lambda: n[0] >= 600, timeout=30)
        swap(log, MODEL, "2", config=cfg())
        start = n[0]
        assert wait_for(lambda: n[0] >= start + 600, timeout=30)
        stop.set()
        feeder.join()
        total = n[0]
        assert wait_for(lambda: sum(1 for r in model_scores(log) if r["status"] == "ok") >= total, timeout=30)
    finally:
        stop.set()
        for r in runners:
            r.stop()
    where = positions(log)
    tokens = token_offsets(log)
    got = model_scores(log)
    markers = [r for r in got if r["status"] == "swap"]
    assert sorted(r["input_partition"] for r in markers) == [0, 1, 2, 3]
    assert all((r["swapped_from"], r["model_version"]) == ("1", "2") for r in markers)
    assert {r["input_offset"] for r in markers} == {v[0][0] for v in tokens.values()}
    versions: dict[str, set[str]] = defaultdict(set)
    for r in got:
        if r["status"] == "ok":
            versions[r["request_id"]].add(r["model_version"])
            assert r["score"] == hash_score(r["request_id"], f"{MODEL}:{r['model_version']}")
    assert set(versions) == set(where) and len(where) == total
    mixed = [q for q, vs in versions.items() if len(vs) != 1]
    assert not mixed
    wrong = [q for q, vs in versions.items() if vs != {expected_version(tokens, *where[q])}]
    assert not wrong
    assert Counter(v for vs in versions.values() for v in vs).keys() == {"1", "2"}


def test_a_restarted_runner_resumes_with_the_version_of_its_position(tmp_path: Any) -> None:
    """A runner started (with version 1's factory) after its group passed a token scores with version 2."""
    log = new_log(tmp_path)
    append(log, inputs(0, 40))
    a = Runner(log, "tests.rendezvous.models:swappable", batch=16, commit_interval_s=0.05).start()
    assert wait_for(lambda: len(model_scores(log)) >= 40, timeout=30)
    swap(log, MODEL, "2", config=cfg())
    append(log, inputs(40, 40))
    assert wait_for(lambda: len(model_scores(log)) >= 84, timeout=30)
    a.stop()
    append(log, inputs(80, 40))
    b = Runner(log, "tests.rendezvous.models:swappable", batch=16).start()
    try:
        assert wait_for(lambda: sum(r["status"] == "ok" for r in model_scores(log)) >= 120, timeout=30)
    finally:
        b.stop()
    tokens, where = token_offsets(log), positions(log)
    for r in model_scores(log):
        if r["status"] == "ok":
            assert r["model_version"] == expected_version(tokens, *where[r["request_id"]]), r
    assert {r["model_version"] for r in model_scores(log) if r["request_id"] in {f"q{i}" for i in range(80, 120)}} == {
        "2"
    }
    assert sum(r["status"] == "swap" for r in model_scores(log)) == 4  # b met no token: no marker


def test_a_version_that_cannot_be_loaded_is_recorded_as_errors_of_that_version(tmp_path: Any) -> None:
    log = new_log(tmp_path, partitions=1)
    r = Runner(log, models.HashModel(MODEL, "1"), batch=8).start()  # an object: no way to build version 2
    try:
        append(log, inputs(0, 10))
        assert wait_for(lambda: len(model_scores(log)) >= 10, timeout=30)
        swap(log, MODEL, "2", config=cfg())
        append(log, inputs(10, 10))
        assert wait_for(lambda: len(model_scores(log)) >= 21, timeout=30)
    finally:
        r.stop()
    after = [s for s in model_scores(log) if s["request_id"] in {f"q{i}" for i in range(10, 20)}]
    assert {(s["model_version"], s["status"]) for s in after} == {("2", "error")}
    assert "cannot load version 2" in after[0]["error"]


def test_the_mailbox_drops_a_score_that_contradicts_a_seen_marker() -> None:
    boxes = Mailboxes()
    a, b = boxes.open("a", 0.0), boxes.open("b", 0.0)

    def batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
        base = {"score": 0.5, "status": "ok", "role": "champion", "swapped_from": None, "_partition": 0, "_offset": 0}
        return pa.RecordBatch.from_pylist([{**base, **r} for r in rows])

    marker = {"request_id": "swap:t:0", "model_id": "m", "model_version": "2", "status": "swap", "score": None}
    boxes.deliver_batch(batch([{**marker, "swapped_from": "1", "input_partition": 0, "input_offset": 10}]))
    boxes.deliver_batch(
        batch(
            [
                {"request_id": "a", "model_id": "m", "model_version": "1", "input_partition": 0, "input_offset": 11},
                {"request_id": "a", "model_id": "m", "model_version": "2", "input_partition": 0, "input_offset": 11},
                {"request_id": "b", "model_id": "m", "model_version": "1", "input_partition": 0, "input_offset": 9},
                {"request_id": "b", "model_id": "m", "model_version": "2", "input_partition": 0, "input_offset": 9},
            ]
        )
    )
    assert set(a.arrivals) == {"m:2"} and set(b.arrivals) == {"m:1"} and boxes.misaligned == 2


# ---- the service, under load, and replay ------------------------------------------------------


def test_under_load_the_service_serves_each_request_from_its_cut_and_replay_reproduces_it(tmp_path: Any) -> None:
    """3 runners over 4 partitions behind the live service; a swap mid-stream. Zero requests
    served by (or scored under) both versions; every served version is the cut's, and replay's
    cut (from the log alone) reproduces the served version of 100% of requests."""
    c = cfg()

    async def run(log: Any) -> None:
        ensure_topics(log, c.topics)
        runners = [
            Runner(log, "tests.rendezvous.models:swappable", member=(i, 3), batch=16, runner_id=f"r{i}").start()
            for i in range(3)
        ]
        try:
            for r in runners:
                assert r.ready.wait(10)
            stop, n = asyncio.Event(), [0]
            deadline = time.monotonic() + 60

            async with serving(log, c) as (svc, client):

                async def client_loop(k: int) -> None:
                    i = 0
                    while not stop.is_set() and n[0] < 1500 and time.monotonic() < deadline:
                        status, ans = await post(client, "/v1/score", {"request_id": f"c{k}-{i}", "features": {"x": i}})
                        assert status == 200, ans
                        n[0] += 1
                        i += 1

                clients = [asyncio.create_task(client_loop(k)) for k in range(6)]
                while n[0] < 300 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(swap, log, MODEL, "2", config=c)
                start = n[0]
                while n[0] < start + 300 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                stop.set()
                await asyncio.gather(*clients)
        finally:
            for r in runners:
                r.stop()

    with logstore.open(tmp_path / "log") as log:
        asyncio.run(run(log))
        where, tokens = positions(log), token_offsets(log)
        decisions = log.read("decisions").to_pylist(maps_as_pydicts="strict")
        got = model_scores(log)
        cut = VersionCut.read(log)
        plane = ControlPlane(log, c)
        plane.catch_up()
        cf = replay.counterfactual(log, config=c)
    assert cf.summary["identical"] == 1.0 and cf.summary["changed"] == 0  # the schedule used, replayed
    assert len(decisions) == len(where) >= 600 and sorted(tokens) == [0, 1, 2, 3]
    versions: dict[str, set[str]] = defaultdict(set)
    for r in got:
        if r["status"] == "ok":
            versions[r["request_id"]].add(r["model_version"])
    assert not [q for q, vs in versions.items() if len(vs) != 1]
    served = [d for d in decisions if d["chosen_model"].startswith(f"{MODEL}:")]
    assert len(served) >= 0.95 * len(decisions)
    seen = Counter()
    for d in served:
        p, o = where[d["request_id"]]
        v = d["chosen_model"].split(":", 1)[1]
        assert v == expected_version(tokens, p, o) == cut.version(MODEL, p, o) or (
            cut.version(MODEL, p, o) is None and v == "1"
        ), d["request_id"]
        assert plane.replay(d).chosen_model == d["chosen_model"]
        seen[v] += 1
    assert set(seen) == {"1", "2"}


def test_replay_never_hands_a_token_to_a_model(tmp_path: Any) -> None:
    log = new_log(tmp_path, partitions=2)
    append(log, inputs(0, 20))
    swap(log, MODEL, "2", config=cfg())
    append(log, inputs(20, 20))
    seen: list[str] = []

    class Count:
        name, version = "count", "1"

        def predict(self, batch: pa.RecordBatch, ctx: Any) -> list[float]:
            assert "swap" not in batch.schema.names
            seen.extend(batch.column(batch.schema.get_field_index("request_id")).to_pylist())
            return [0.0] * batch.num_rows

    run = replay.run(log, "inputs", None, [Count()], output="out")
    assert sorted(seen) == sorted(f"q{i}" for i in range(40))
    assert sorted(run.scores()["request_id"].to_pylist()) == sorted(seen)
    assert replay.audit(log, run.id).ok
