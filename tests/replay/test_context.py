"""The as-of view: lookups and history see exactly what was appended by each row's clock."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
import replay
from replay.engine.context import AsOfState, Context
from replay.errors import LookupTopicError

from .builders import T0, at, write_at

INPUT_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("user", pa.string()),
        ("x", pa.float64()),
    ]
)
PROFILE_SCHEMA = pa.schema(
    [("user", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")), ("value", pa.float64())]
)
US = 1_000_000


def _state(records):
    """An AsOfState of 'profiles' fed (time_s, user, value) frames in order, partition 0."""
    schema = pa.schema(
        list(PROFILE_SCHEMA)
        + [
            pa.field("_partition", pa.int32()),
            pa.field("_offset", pa.int64()),
            pa.field("_append_time", pa.timestamp("us", tz="UTC")),
        ]
    )
    st_ = AsOfState("profiles", "user", schema)
    for off, (t, user, value) in enumerate(records):
        b = pa.RecordBatch.from_pylist(
            [
                {
                    "user": user,
                    "event_time": at(t),
                    "value": value,
                    "_partition": 0,
                    "_offset": off,
                    "_append_time": at(t),
                }
            ],
            schema=schema,
        )
        st_.apply(b, 0, int(t * US) + int((T0 - T0.replace(year=1970, month=1, day=1)).total_seconds()) * US)
    return st_


class _M:
    name, version = "m", "1"


def _ctx(state, clock_s, n):
    ctx = Context({"profiles": state})
    batch = pa.RecordBatch.from_pylist([{"_offset": i} for i in range(n)])
    base = int((T0 - T0.replace(year=1970, month=1, day=1)).total_seconds()) * US
    ctx._enter(_M(), batch, "inputs", 0, base + int(clock_s * US), None, np.zeros(n, np.int64))
    return ctx


def test_lookup_returns_latest_per_key_and_nulls_for_unknown_keys():
    """Per key, the latest record applied; a row of nulls for a key never seen."""
    s = _state([(1, "a", 1.0), (2, "b", 2.0), (3, "a", 3.0)])
    ctx = _ctx(s, 3, 3)
    t = ctx.lookup("profiles", ["a", "b", "zz"])
    assert t.column("value").to_pylist() == [3.0, 2.0, None]
    assert t.column("_append_time").to_pylist() == [at(3), at(2), None]
    assert ctx.read_fence.tolist()[:2] == [int(at(3).timestamp() * US), int(at(2).timestamp() * US)]
    assert ctx.read_fence[2] == 0  # nothing read for the unknown key


def test_lookup_as_of_an_earlier_time_and_within_a_ttl():
    """as_of picks an earlier version; ttl drops records older than it."""
    s = _state([(1, "a", 1.0), (5, "a", 5.0), (6, "b", 6.0)])
    ctx = _ctx(s, 10, 2)
    assert ctx.lookup("profiles", ["a", "b"], as_of=at(4)).column("value").to_pylist() == [1.0, None]
    assert ctx.lookup("profiles", ["a", "b"], as_of=at(5)).column("value").to_pylist() == [5.0, None]
    assert ctx.lookup("profiles", ["a", "b"], ttl=timedelta(seconds=4.5)).column("value").to_pylist() == [None, 6.0]
    per_row = pa.array([at(3), at(10)], pa.timestamp("us", tz="UTC"))
    assert ctx.lookup("profiles", ["a", "b"], as_of=per_row).column("value").to_pylist() == [1.0, 6.0]


def test_lookup_after_the_clock_is_a_time_leak():
    """as_of later than a row's clock raises TimeLeakError with the model, the ask and the clock."""
    s = _state([(1, "a", 1.0)])
    ctx = _ctx(s, 2, 1)
    with pytest.raises(replay.TimeLeakError) as err:
        ctx.lookup("profiles", ["a"], as_of=at(3))
    assert "'m'" in str(err.value) and "00:00:03" in str(err.value) and "00:00:02" in str(err.value)
    with pytest.raises(replay.TimeLeakError):
        ctx.history("profiles", "a", since=at(3))


def test_history_is_every_record_of_a_key_in_the_window():
    """history(topic, key, since) returns records appended in [since, clock], oldest first."""
    s = _state([(1, "a", 1.0), (2, "b", 2.0), (4, "a", 4.0), (6, "a", 6.0)])
    ctx = _ctx(s, 6, 1)
    assert ctx.history("profiles", "a").column("value").to_pylist() == [1.0, 4.0, 6.0]
    assert ctx.history("profiles", "a", since=timedelta(seconds=3)).column("value").to_pylist() == [4.0, 6.0]
    assert ctx.history("profiles", "a", since=at(2)).column("value").to_pylist() == [4.0, 6.0]
    assert ctx.history("profiles", "nobody").num_rows == 0


def test_a_context_given_states_reaches_only_those_topics():
    """A Context built from a mapping of states refuses other topics, naming the topic and model."""
    ctx = _ctx(_state([]), 1, 1)
    with pytest.raises(LookupTopicError, match="no topic 'outcomes'") as err:
        ctx.lookup("outcomes", ["r1"])
    assert "'m'" in str(err.value) and "'profiles'" in str(err.value)


def test_rows_with_different_clocks_each_see_their_own_records():
    """In one batch, each row sees what was appended by its own clock; its fence is read per row."""
    s = _state([(1, "a", 1.0), (3, "a", 3.0), (5, "a", 5.0)])
    base = int((T0 - T0.replace(year=1970, month=1, day=1)).total_seconds()) * US
    ctx = Context({"profiles": s})
    clocks = np.array([base + 2 * US, base + 4 * US, base + 6 * US], np.int64)
    batch = pa.RecordBatch.from_pylist([{"_offset": i} for i in range(3)])
    ctx._enter(_M(), batch, "inputs", 0, int(clocks[0]), clocks, np.zeros(3, np.int64))
    assert ctx.lookup("profiles", ["a", "a", "a"]).column("value").to_pylist() == [1.0, 3.0, 5.0]
    assert ctx.read_fence.tolist() == [base + US, base + 3 * US, base + 5 * US]
    assert ctx.read_topics == {"profiles": None}
    assert s.fence_at(base + 4 * US) == {0: 1} and s.fence_at(base + 9 * US) == {0: 2} and s.fence_at(base) == {}


def _build(root: Path, inputs, profiles, outcomes):
    log = logstore.open(root)
    log.create_topic("inputs", INPUT_SCHEMA, partitions=2, key_field="request_id")
    log.create_topic("profiles", PROFILE_SCHEMA, partitions=2, key_field="user")
    log.create_topic("outcomes", "outcome", partitions=2, key_field="request_id")
    write_at(
        log,
        "inputs",
        [(at(t), {"request_id": f"r{i}", "event_time": at(t), "user": u, "x": 1.0}) for i, (t, u) in enumerate(inputs)],
    )
    if profiles:
        write_at(
            log,
            "profiles",
            [(at(t), {"user": u, "event_time": at(t), "value": float(i)}) for i, (t, u) in enumerate(profiles)],
        )
    if outcomes:
        write_at(
            log,
            "outcomes",
            [(at(t), {"request_id": f"r{j}", "event_time": at(t), "label": float(j % 2)}) for t, j in outcomes],
        )
    return log


class Spy:
    """Looks up profiles and outcomes for every row and records what it saw against the row's clock."""

    name, version = "spy", "1"
    lookups = {"profiles": "user", "outcomes": "request_id"}

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def predict(self, batch, ctx):
        clocks = ctx.clock.to_pylist()
        prof = ctx.lookup("profiles", batch.column("user"))
        outs = ctx.lookup("outcomes", batch.column("request_id"))
        hist = [ctx.history("profiles", u, row=i) for i, u in enumerate(batch.column("user").to_pylist())]
        for i, rid in enumerate(batch.column("request_id").to_pylist()):
            self.seen.append(
                (
                    rid,
                    clocks[i],
                    prof.column("_append_time")[i].as_py(),
                    prof.column("value")[i].as_py(),
                    outs.column("_append_time")[i].as_py(),
                    hist[i].column("_append_time").to_pylist(),
                )
            )
        return np.zeros(batch.num_rows)

    def learn(self, batch, ctx):  # learning forces one process and exercises outcome joins too
        pass


times = st.integers(min_value=0, max_value=8)
users = st.sampled_from(["u0", "u1", "u2"])


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=st.lists(st.tuples(times, users), min_size=1, max_size=12),
    profiles=st.lists(st.tuples(times, users), max_size=12),
    outcome_delays=st.lists(st.integers(min_value=0, max_value=4), max_size=12),
)
def test_no_prediction_ever_reads_anything_appended_after_its_clock(inputs, profiles, outcome_delays):
    """Property: over random interleavings (ties included) every lookup/history answer was appended
    at or before the row's clock, and it is exactly the latest such record."""
    outcomes = [(inputs[j][0] + d, j) for j, d in enumerate(outcome_delays[: len(inputs)])]
    with tempfile.TemporaryDirectory() as d:
        log = _build(Path(d) / "log", inputs, profiles, outcomes)
        spy = Spy()
        run = replay.run(log, "inputs", "outcomes", [spy], output="out")
        prof = log.read("profiles")
        prows = sorted(
            zip(
                prof["_append_time"].to_pylist(),
                prof["_partition"].to_pylist(),
                prof["_offset"].to_pylist(),
                prof["user"].to_pylist(),
                prof["value"].to_pylist(),
            )
        )
        outs = log.read("outcomes")
        orows = sorted(
            zip(
                outs["_append_time"].to_pylist(),
                outs["_partition"].to_pylist(),
                outs["_offset"].to_pylist(),
                outs["request_id"].to_pylist(),
            )
        )
        user_of = {f"r{i}": u for i, (_, u) in enumerate(inputs)}
        assert len(spy.seen) == len(inputs)
        for rid, clock, p_at, p_val, o_at, hist in spy.seen:
            assert p_at is None or p_at <= clock
            assert o_at is None or o_at <= clock
            assert all(h <= clock for h in hist)
            visible = [r for r in prows if r[0] <= clock and r[3] == user_of[rid]]
            assert (p_at, p_val) == ((visible[-1][0], visible[-1][4]) if visible else (None, None))
            assert hist == [r[0] for r in visible]
            seen_o = [r for r in orows if r[0] <= clock and r[3] == rid]
            assert o_at == (seen_o[-1][0] if seen_o else None)
        cert = replay.audit(log, run.id)
        assert cert.ok, str(cert)
        log.close()
