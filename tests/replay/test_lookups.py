"""Lookups of any topic: declared ones built up front, the others on their first use, same answers."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replay
from replay.engine.lookups import snapshot_topics
from replay.errors import LookupTopicError, ReplayError

from .builders import ProfileScore, at, make_log, make_profile_log, write_at

INPUTS = [(t, f"u{t % 3}") for t in range(1, 25)]
PROFILES = [(t + 0.5 * (t % 2), f"u{t % 4}") for t in range(0, 24, 2)]
SAME = ["input_partition", "input_offset", "model_id", "score", "clock", "read_fence", "fence"]


@pytest.fixture
def plog(tmp_path):
    log = make_profile_log(tmp_path / "log", INPUTS, PROFILES)
    yield log
    log.close()


def _same_output(a: replay.Run, b: replay.Run) -> None:
    assert a.content_hash == b.content_hash
    assert a.scores(SAME).to_pylist() == b.scores(SAME).to_pylist()


@pytest.mark.parametrize("after", [0.0, 12.0], ids=["from-the-start", "mid-run"])
def test_an_undeclared_lookup_gives_the_declared_answers_and_output(plog, after):
    """A topic looked up without declaring it (first use at the start or mid-run) gives the same
    scores, fences and content hash as when declared."""
    declared = replay.run(plog, "inputs", None, [ProfileScore(declare=True, after=after)], output="out", append=True)
    on_demand = replay.run(plog, "inputs", None, [ProfileScore(after=after)], output="out", append=True)
    _same_output(declared, on_demand)
    assert on_demand.scores(["fence"]).column("fence").null_count < on_demand.scores().num_rows
    (lk,) = on_demand.manifest["lookups"]
    assert lk["topic"] == "profiles" and lk["key"] == "user" and lk["on_demand"] is True
    assert lk["partitions"] == declared.manifest["lookups"][0]["partitions"]
    cert = replay.audit(plog, on_demand.id)
    assert cert.certified, str(cert)
    assert cert.fence_entries_checked > 0


def test_undeclared_lookups_match_declared_ones_in_event_time_order_and_with_workers(tmp_path):
    """Event-time order (rows of one batch with different clocks) and worker processes keep the
    declared and the on-demand outputs identical."""
    log = make_profile_log(tmp_path / "log", INPUTS, PROFILES, event_lag=1.5)
    kw = dict(output="out", append=True, order="event_time", lateness=timedelta(seconds=2))
    declared = replay.run(log, "inputs", None, [ProfileScore(declare=True)], **kw)
    on_demand = replay.run(log, "inputs", None, [ProfileScore()], **kw)
    _same_output(declared, on_demand)
    assert replay.audit(log, on_demand.id).certified
    one = replay.run(log, "inputs", None, ["tests.replay.builders:make_profile_declared"], output="out", append=True)
    two = replay.run(
        log, "inputs", None, ["tests.replay.builders:make_profile_on_demand"], output="out", append=True, workers=2
    )
    _same_output(one, two)
    assert [lk["topic"] for lk in two.manifest["lookups"]] == ["profiles"]
    assert replay.audit(log, two.id).certified


def test_a_record_appended_after_the_clock_is_never_visible(plog):
    """Every answer of an undeclared lookup was appended at or before its row's clock, and is the
    latest such record of the row's user."""
    model = ProfileScore()
    replay.run(plog, "inputs", None, [model], output="out", append=True)
    prof = plog.read("profiles")
    rows = sorted(zip(prof["_append_time"].to_pylist(), prof["user"].to_pylist()))
    user = {f"r{i}": u for i, (_, u) in enumerate(INPUTS)}
    assert len(model.seen) == len(INPUTS)
    for rid, clock, seen in model.seen:
        visible = [t for t, u in rows if u == user[rid] and t <= clock]
        assert seen == (visible[-1] if visible else None)


def test_records_appended_after_the_run_started_are_not_read(plog):
    """An on-demand lookup reads the topic's range as of the run's start, even when it is
    discovered later: what it sees does not depend on when it first asked."""
    base = replay.run(plog, "inputs", None, [ProfileScore(after=12.0)], output="out", append=True)
    late = {"user": "u0", "event_time": at(1), "value": 99.0}

    class AppendsFirst(ProfileScore):
        def predict(self, batch, ctx):
            if not getattr(self, "_done", False):  # a backdated record, appended after the run started
                self._done = True
                write_at(plog, "profiles", [(at(2), late)])
            return super().predict(batch, ctx)

    model = AppendsFirst(after=12.0)
    run = replay.run(plog, "inputs", None, [model], output="out2", append=True)
    assert run.scores(["score"]).column("score").to_pylist() == base.scores(["score"]).column("score").to_pylist()
    assert 99.0 not in run.scores(["score"]).column("score").to_pylist()


def test_a_lookup_of_a_topic_that_does_not_exist_names_it(plog):
    """ctx.lookup of an unknown topic raises LookupTopicError naming the topic and the model; the run fails."""

    class Typo:
        name, version = "typo", "1"

        def predict(self, batch, ctx):
            ctx.lookup("profilez", batch.column("user"))
            return np.zeros(batch.num_rows)

    with pytest.raises(LookupTopicError, match="no topic 'profilez'") as err:
        replay.run(plog, "inputs", None, [Typo()], output="out", append=True)
    assert "'typo'" in str(err.value) and "'profiles'" in str(err.value)
    (run,) = replay.runs(plog)
    assert run.status == "failed" and "LookupTopicError" in run.manifest["error"]
    assert not replay.audit(plog, run.id).certified


def test_a_run_cannot_look_up_its_own_output(plog):
    """Looking up the run's own output topic is refused with a clear error."""

    class Self:
        name, version = "self", "1"

        def predict(self, batch, ctx):
            ctx.lookup("out", batch.column("request_id"))
            return np.zeros(batch.num_rows)

    replay.run(plog, "inputs", None, [ProfileScore()], output="out", append=True)
    with pytest.raises(ReplayError, match="its own scores"):
        replay.run(plog, "inputs", None, [Self()], output="out", append=True)


def test_an_undeclared_topic_without_key_field_takes_the_lookups_key(tmp_path):
    """A topic with no key field is indexed by the first lookup's key=, else the run's join key."""
    log = make_log(tmp_path / "log", n=12)
    log.create_topic("notes", "outcome")  # no key field; has request_id

    class Notes:
        name, version = "notes", "1"

        def predict(self, batch, ctx):
            found = ctx.lookup("notes", batch.column("request_id"))
            return np.array([-1.0 if v is None else v for v in found.column("label").to_pylist()])

    write_at(log, "notes", [(at(-1), {"request_id": "r5", "event_time": at(-1), "label": 7.0})])
    run = replay.run(log, "inputs", None, [Notes()], output="out", append=True)
    scores = dict(zip(run.scores()["request_id"].to_pylist(), run.scores()["score"].to_pylist()))
    assert scores["r5"] == 7.0 and scores["r4"] == -1.0
    assert run.manifest["lookups"][0]["key"] == "request_id"


def test_resume_after_an_interrupt_before_the_discovery_gives_the_same_hash(plog):
    """Interrupted before its first lookup, a run resumed from the manifest reads the same range."""
    full = replay.run(plog, "inputs", None, [ProfileScore(after=12.0)], output="out", append=True)

    class Stops(ProfileScore):
        armed = True

        def predict(self, batch, ctx):
            if Stops.armed and ctx.clock.to_pylist()[-1] >= at(6):
                Stops.armed = False
                raise KeyboardInterrupt
            return super().predict(batch, ctx)

    with pytest.raises(replay.RunInterrupted) as err:
        replay.run(plog, "inputs", None, [Stops(after=12.0)], output="out", append=True)
    assert replay.get(plog, err.value.run_id).manifest["lookups"] == []
    write_at(plog, "profiles", [(at(3), {"user": "u0", "event_time": at(3), "value": 50.0})])  # after the start
    run = replay.resume(plog, err.value.run_id, models=[Stops(after=12.0)])
    assert run.content_hash == full.content_hash
    assert replay.audit(plog, run.id).certified


def test_snapshot_topics_lists_every_stored_range_but_the_excluded_one(plog):
    """snapshot_topics gives [first stored, end) per partition of every topic."""
    snap = snapshot_topics(plog, exclude="inputs")
    assert set(snap) == {"profiles"}
    assert snap["profiles"] == {p: (0, e) for p, e in plog.end_offsets("profiles").items()}


times = st.integers(min_value=0, max_value=8)
users = st.sampled_from(["u0", "u1", "u2"])


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=st.lists(st.tuples(times, users), min_size=1, max_size=10),
    profiles=st.lists(st.tuples(times, users), max_size=10),
    after=st.sampled_from([0.0, 4.0]),
    lag=st.sampled_from([None, 1.0]),
)
def test_declared_and_on_demand_are_identical_over_random_logs(inputs, profiles, after, lag):
    """Property: over random interleavings (ties included), both orders and a mid-run discovery,
    the on-demand output equals the declared one and the audit certifies it."""
    with tempfile.TemporaryDirectory() as d:
        log = make_profile_log(Path(d) / "log", inputs, profiles, event_lag=lag or 0.0)
        kw = dict(output="out", append=True)
        if lag is not None:
            kw.update(order="event_time", lateness=timedelta(seconds=1))
        declared = replay.run(log, "inputs", None, [ProfileScore(declare=True, after=after)], **kw)
        model = ProfileScore(after=after)
        on_demand = replay.run(log, "inputs", None, [model], **kw)
        _same_output(declared, on_demand)
        assert all(seen is None or seen <= clock for _, clock, seen in model.seen)
        cert = replay.audit(log, on_demand.id)
        assert cert.certified, str(cert)
        log.close()
