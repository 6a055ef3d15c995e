"""The rendezvous rule: the served model is the rule's answer, never past H; online == offline."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rendezvous.config import Config, Selection, Step, parse_config
from rendezvous.policy import REASONS, Choice, Policy
from rendezvous.selection import EpsilonSelector, ScheduleSelector, ThompsonSelector, seed_of

ISSUE = parse_config(
    {
        "sla_ms": 50,
        "schedule": [{"model": "m3"}, {"model": "m2", "after_ms": 20}, {"model": "m1", "after_ms": 35}],
    }
)
H = 48.0


# ---- an independent oracle: step a clock over every moment something can change --------------


def oracle(schedule, arrivals, failed, deadline):
    """(served key or None, decision time, reason) by brute force: at each candidate moment in time
    order, the first schedule entry (then key) with an ok score arrived and its after_ms passed."""
    moments = sorted({t for t in [*arrivals.values(), *(s.after_ms for s in schedule)] if t <= deadline} | {deadline})
    for tau in moments:
        for i, step in enumerate(schedule):
            mid, _, version = step.model.partition(":")
            for key in sorted(arrivals):
                kid, _, kver = key.partition(":")
                if kid != mid or (version and kver != version):
                    continue
                earlier = any(  # the key answers for an earlier entry: not this one
                    s.model.partition(":")[0] == kid
                    and (not s.model.partition(":")[2] or s.model.partition(":")[2] == kver)
                    for s in schedule[:i]
                )
                if earlier or key in failed or arrivals[key] > tau or step.after_ms > tau:
                    continue
                if i == 0:
                    reason = "first"
                elif any(
                    f.partition(":")[0] == s.model.partition(":")[0]
                    and (not s.model.partition(":")[2] or s.model.partition(":")[2] == f.partition(":")[2])
                    for s in schedule[:i]
                    for f in failed
                ):
                    reason = "fallback"
                else:
                    reason = "deadline"
                return key, tau, reason
    return None, deadline, "default"


KEYS = ["m1:1", "m1:2", "m2:1", "m3:1", "m3:2", "shadow:1"]
ties = st.integers(0, 40).map(float)  # ties with after_ms and with each other
anytime = st.floats(0, 100, allow_nan=False)  # after H too
times = st.one_of(ties, ties, anytime, anytime, st.just(math.inf))  # inf: never (as absence is)


@st.composite
def schedules(draw):
    ids = draw(st.lists(st.sampled_from(["m1", "m2", "m3", "m1:1", "m3:2"]), min_size=1, max_size=3, unique=True))
    steps, taken = [], set()
    for m in ids:
        if m.partition(":")[0] in taken:
            continue
        taken.add(m.partition(":")[0])
        steps.append(m)
    after = st.one_of(st.sampled_from([0.0, 10.0, 20.0, 35.0]), st.integers(0, 45).map(float))  # often equal
    afters = sorted(draw(st.lists(after, min_size=len(steps), max_size=len(steps))))
    return Config(sla_ms=50, schedule=tuple(Step(m, a) for m, a in zip(steps, afters)))


@st.composite
def requests(draw, config=None):
    """Arrivals (mostly of scheduled models, some versions and shadows), failures, a deadline."""
    keys = KEYS
    if config is not None:
        scheduled = [k for k in KEYS if any(step.matches(k) for step in config.schedule)]
        keys = scheduled * 3 + KEYS  # weighted towards models that can serve
    arrivals = draw(st.dictionaries(st.sampled_from(keys), times, min_size=1, max_size=6))
    failed = draw(st.sets(st.sampled_from(keys), max_size=3))
    for k in failed:
        arrivals.pop(k, None)  # an error score is the model's one answer
    deadline = draw(st.one_of(st.just(H), st.just(H), st.floats(1, 50), st.integers(1, 50).map(float)))
    return arrivals, failed, deadline


def _trained(selector):
    for m, wins in (("m1:1", 3), ("m2:1", 1), ("m3:2", 4)):
        for i in range(5):
            selector.observe(m, 1.0 if i < wins else 0.0)
    selector.snapshot()
    return selector


_SELECTORS = {
    "schedule": ScheduleSelector,
    "thompson": lambda: _trained(ThompsonSelector()),
    "epsilon": lambda: _trained(EpsilonSelector(0.3)),
}


@st.composite
def cases(draw):
    config = draw(schedules())
    return config, draw(requests(config))


def online(policy, request_id, arrivals, failed_at, deadline):
    """A service's loop on a virtual clock: wake at each arrival and at next_check_ms; decide with
    what has arrived by then."""
    events = sorted({t for t in [*arrivals.values(), *failed_at.values()] if math.isfinite(t)})
    now = 0.0
    for _ in range(10_000):
        seen = {k: a for k, a in arrivals.items() if a <= now}
        errs = {k for k, f in failed_at.items() if f <= now}
        choice = policy.decide(request_id, seen, errs, now, deadline)
        if choice is not None:
            return choice
        nxt = policy.next_check_ms(seen, errs, now, deadline)
        assert nxt > now  # nothing is due now, so the next check lies ahead
        later = [t for t in events if t > now]
        now = min([nxt, *later])
    raise AssertionError("the online loop did not decide")


@settings(max_examples=400, deadline=None)
@given(case=cases())
def test_served_model_is_the_rules_answer(case):
    """Over random arrivals (never, late, after H, ties), replay serves what the oracle says, when it says."""
    config, (arrivals, failed, deadline) = case
    choice = Policy(config).replay("r", arrivals, failed, deadline)
    key, at, reason = oracle(config.schedule, arrivals, failed, deadline)
    assert (choice.chosen, choice.decided_ms, choice.reason) == (key, at, reason)
    assert choice.decided_ms <= deadline == choice.deadline_ms
    if key is not None:
        assert arrivals[key] <= choice.decided_ms and choice.arrivals[key] == arrivals[key]
        assert choice.candidates[0] == key and choice.propensity == 1.0 and choice.propensities[key] == 1.0
    else:
        assert choice.chosen_model == "default" and choice.propensities == {"default": 1.0}
    assert set(choice.arrivals) == {k for k, a in arrivals.items() if a <= choice.decided_ms}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=cases(),
    fail_times=st.lists(st.floats(0, 60), min_size=3, max_size=3),
    selector=st.sampled_from(["schedule", "thompson", "epsilon"]),
    rid=st.sampled_from(["req-1", "req-2", "req-3"]),
)
def test_online_loop_equals_offline_replay(case, fail_times, selector, rid):
    """Stepping decide through arrivals and next_check_ms gives exactly the replayed Choice, for
    every selector (sampled choices included)."""
    config, (arrivals, failed, deadline) = case
    failed_at = dict(zip(sorted(failed), fail_times))
    policy = Policy(config, _SELECTORS[selector]())
    live = online(policy, rid, arrivals, failed_at, deadline)
    assert live.decided_ms <= deadline
    # the record: what had arrived and failed by the decision; replaying it gives the same choice
    assert policy.replay(rid, live.arrivals, set(live.failed), deadline) == live
    assert policy.replay(rid, arrivals, failed_at, deadline) == live
    assert policy.run(rid, arrivals, failed_at, deadline) == live
    assert live.reason == "sampled" or live.propensity == 1.0


@settings(max_examples=200, deadline=None)
@given(case=cases(), now=st.floats(0, 60))
def test_nothing_changes_before_next_check(case, now):
    """While waiting, the decision stays 'wait' until min(next_check_ms, next arrival)."""
    config, (arrivals, failed, deadline) = case
    policy = Policy(config)
    seen = {k: a for k, a in arrivals.items() if a <= now}
    if policy.decide("r", seen, failed, now, deadline) is not None:
        assert policy.next_check_ms(seen, failed, now, deadline) == now
        return
    assert now < deadline
    until = min([policy.next_check_ms(seen, failed, now, deadline), *(a for a in arrivals.values() if a > now)])
    assert now < until <= deadline
    for tau in np.linspace(now, until, 7)[1:-1]:
        visible = {k: a for k, a in arrivals.items() if a <= tau}
        assert policy.decide("r", visible, failed, float(tau), deadline) is None


def test_decide_never_waits_at_or_past_the_deadline():
    """At H (and after), decide always answers: the default when nothing is acceptable."""
    p = Policy(ISSUE)
    for now in (H, H + 0.001, 1e9):
        c = p.decide("r", {"m1:1": H + 1e-6}, set(), now, H)
        assert c is not None and c.reason == "default" and c.decided_ms == H
    c = p.decide("r", {"m1:1": H}, set(), H, H)  # acceptable exactly at H: served (H is inclusive)
    assert c is not None and c.chosen == "m1:1" and c.reason == "deadline"


@pytest.mark.parametrize(
    ("arrivals", "failed", "expect"),
    [
        ({"m3:1": 10, "m2:1": 1, "m1:1": 1}, set(), ("m3:1", 10.0, "first")),
        ({"m3:1": 25, "m2:1": 1, "m1:1": 1}, set(), ("m2:1", 20.0, "deadline")),
        ({"m3:1": 20, "m2:1": 1}, set(), ("m3:1", 20.0, "first")),  # a tie at 20: schedule order
        ({"m2:1": 1, "m1:1": 1}, {"m3:1"}, ("m2:1", 20.0, "fallback")),
        ({"m3:1": 40, "m2:1": 36, "m1:1": 1}, set(), ("m1:1", 35.0, "deadline")),
        ({"m1:1": 1}, {"m3:1", "m2:1"}, ("m1:1", 35.0, "fallback")),
        ({"m1:1": 49, "shadow:1": 1}, set(), (None, H, "default")),
        ({"m3:2": 5, "m3:1": 7}, set(), ("m3:2", 5.0, "first")),  # "m3" takes any version
    ],
)
def test_the_issues_schedule(arrivals, failed, expect):
    """ "m3; after 20 ms m2 if available; after 35 ms m1", decided from arrival times alone."""
    c = Policy(ISSUE).replay("r", arrivals, failed, H)
    assert (c.chosen, c.decided_ms, c.reason) == expect
    assert c.reason in REASONS


def test_a_version_pinned_entry_ignores_other_versions():
    """ "m3:2" serves only version 2; a score of m3:1 is a shadow's, never served."""
    config = Config(sla_ms=50, schedule=(Step("m3:2"), Step("m1", 30)))
    c = Policy(config).replay("r", {"m3:1": 1, "m1:1": 2}, set(), H)
    assert (c.chosen, c.reason) == ("m1:1", "deadline")


def test_record_fields_fit_the_decision_schema():
    """record_fields gives the decision schema's names and types, and replays from the record."""
    import schemas

    names = {f["name"] for f in schemas.load("decision")["fields"]}
    p = Policy(ISSUE)
    c = p.replay("r-9", {"m3:1": 30.5, "m2:1": 2.25}, {"m1:1"}, H)
    rec = c.record_fields()
    assert set(rec) <= names
    again = p.replay("r-9", rec["arrivals"], set(rec["failed"]), rec["deadline_ms"])
    assert again.record_fields() == rec
    assert p.replay_record({"request_id": "r-9", **rec}) == c


def _sampling_config(policy="thompson"):
    return Config(
        sla_ms=50,
        schedule=(Step("a", 10), Step("b", 10), Step("c", 10)),
        selection=Selection(policy=policy),
    )


@settings(max_examples=200, deadline=None)
@given(deadline=st.floats(10, 50), rid=st.text(max_size=8), version=st.integers(0, 3))
def test_sampled_choices_are_recomputable_from_the_record(deadline, rid, version):
    """With Thompson sampling, the recorded seed and propensities alone reproduce the choice."""
    arrivals = {"a:1": 3.0, "b:1": 9.0, "c:1": 12.0}
    selector = ThompsonSelector()
    for i in range(3):
        for r in (1.0, 0.0, 1.0, 1.0):
            selector.observe("b:1", r)
        selector.observe("a:1", 0.0 if i else 1.0)
        selector.snapshot()
    policy = Policy(_sampling_config(), selector)
    c = policy.replay(rid, arrivals, set(), deadline, policy_version=version)
    assert c.candidates == ("a:1", "b:1") and c.reason == "sampled" and c.decided_ms == 10.0
    assert c.seed == seed_of(rid, version) and c.policy_version == version and c.policy == "thompson"
    assert math.isclose(sum(c.propensities.values()), 1.0) and min(c.propensities.values()) > 0
    assert c.propensity == c.propensities[c.chosen]
    fresh = Policy(_sampling_config(), ThompsonSelector())  # knows no posterior at all
    again = fresh.replay(rid, c.arrivals, set(c.failed), c.deadline_ms, c.policy_version, c.propensities)
    assert again == c
    record = {"request_id": rid, **c.record_fields()}
    record["arrivals"] = list(record["arrivals"].items())  # maps as pyarrow's to_pylist gives them
    assert fresh.replay_record(record) == c == policy.replay_record(record, redraw=True)
    assert online(policy, rid, arrivals, {}, deadline) == policy.replay(rid, arrivals, set(), deadline)


def test_a_single_candidate_is_not_sampled():
    """With a sampling selector, one acceptable model is served by the rule, propensity 1."""
    policy = Policy(_sampling_config("epsilon"), EpsilonSelector(0.5))
    c = policy.replay("r", {"b:1": 11.0, "a:1": 30.0}, set(), H)
    assert (c.chosen, c.reason, c.propensity, c.candidates) == ("b:1", "deadline", 1.0, ("b:1",))


# ---- at scale, on a virtual clock --------------------------------------------------------------


def _traffic(n, seed):
    """Arrival columns for a fast, a heavy-tailed (Pareto), a stalling and a dead model."""
    rng = np.random.default_rng(seed)
    heavy = 5.0 * (1 + rng.pareto(1.1, n))  # heavy tail: a few answers take seconds
    fast = rng.lognormal(math.log(3.0), 0.5, n)
    stall = np.where(rng.random(n) < 0.3, np.inf, rng.lognormal(math.log(30.0), 0.3, n))  # 30% never answer
    dead = rng.lognormal(math.log(1.0), 0.2, n)  # always an error
    return heavy, fast, stall, dead


def _million(n, seed, run):
    config = Config(sla_ms=50, schedule=(Step("heavy", 0), Step("stall", 10), Step("dead", 15), Step("fast", 40)))
    policy = Policy(config)
    deadline = policy.deadline_ms(2.0)
    heavy, fast, stall, dead = (c.tolist() for c in _traffic(n, seed))
    late = 0
    reasons: dict[str, int] = {}
    began = time.perf_counter()
    for i in range(n):
        arrivals = {"heavy:1": heavy[i], "fast:1": fast[i]}
        if stall[i] != math.inf:
            arrivals["stall:1"] = stall[i]
        c = run(policy, f"r{i}", arrivals, {"dead:1": dead[i]}, deadline)
        late += c.decided_ms > deadline
        reasons[c.reason] = reasons.get(c.reason, 0) + 1
    return late, reasons, time.perf_counter() - began


def test_no_answer_past_the_deadline_at_scale():
    """10^5 requests stepped on a virtual clock: heavy-tailed, stalled and dead models, none past H."""
    late, reasons, secs = _million(100_000, 1, Policy.run)
    assert late == 0
    assert set(reasons) == {"first", "deadline", "fallback"}  # fast at 40 ms: never the default
    assert secs < 30


@pytest.mark.slow
def test_no_answer_past_the_deadline_for_a_million_requests():
    """10^6 requests stepped on a virtual clock: zero decided past H."""
    late, reasons, _ = _million(1_000_000, 2, Policy.run)
    assert late == 0 and sum(reasons.values()) == 1_000_000


def test_choice_is_a_value():
    """A Choice compares by value and says its model id and version."""
    c = Choice("m3:1.0", "first", 1.0, {"m3:1.0": 1.0}, ("m3:1.0",), 3.0, 48.0, 1, 0, "schedule")
    assert (c.model_id, c.model_version, c.chosen_model) == ("m3", "1.0", "m3:1.0")
    assert c == Choice("m3:1.0", "first", 1.0, {"m3:1.0": 1.0}, ("m3:1.0",), 3.0, 48.0, 1, 0, "schedule")


@given(overhead=st.floats(0, 49.9), arrival=st.floats(0, 60))
def test_times_at_the_records_precision(overhead, arrival):
    """H and arrivals taken at the record's float32 precision: H never above sla - overhead, and a
    decision on recorded values replays exactly from the record."""
    import numpy as np

    from rendezvous.policy import record_ms

    policy = Policy(ISSUE)
    h = policy.deadline_ms(overhead)
    assert h <= 50 - overhead and 50 - overhead - h < 1e-5
    assert record_ms(h) == h == float(np.float32(h))
    a = record_ms(arrival)
    assert record_ms(a) == a and abs(a - arrival) <= 1e-6 * max(1.0, arrival)
    c = policy.replay("r", {"m2:1": a}, set(), h)
    rec = {k: float(np.float32(v)) for k, v in c.record_fields()["arrivals"].items()}
    assert policy.replay("r", rec, set(), float(np.float32(c.deadline_ms))) == c


def test_the_simulated_week_replays_exactly_from_its_decision_records(tmp_path):
    """The simulated week's decisions come from this policy: each record replays to itself."""
    from datetime import timedelta

    import logstore
    from replay.datasets import fraud

    with logstore.open(tmp_path / "log") as log:
        traffic = fraud.simulate(log, days=0.5, rate=2, seed=5, tick=timedelta(minutes=30), compression=None)
        records = log.read("decisions").to_pylist()
    assert len(records) == traffic.requests > 500
    policy = Policy(fraud.RENDEZVOUS)
    reasons = set()
    for r in records:
        c = policy.replay_record(r)
        assert (c.chosen_model, c.reason, c.seed, c.candidates) == (
            r["chosen_model"],
            r["reason"],
            r["seed"],
            tuple(r["candidates"]),
        )
        assert c.decided_ms == pytest.approx(r["decided_ms"]) and c.decided_ms <= r["deadline_ms"]
        reasons.add(c.reason)
    assert {"first", "deadline"} <= reasons
