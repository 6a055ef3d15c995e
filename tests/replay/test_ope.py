"""Off-policy evaluation (replay.ope): estimators against hand computations, a simulated bandit
whose true value is known, and the log-level call against arrays built by hand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logstore
import replay
import replay.ope
from rendezvous.config import Topics
from rendezvous.topics import ensure_topics
from replay.ope import OPEValueError, estimate, evaluate_policy, fit_reward_model
from tests.replay.builders import at, write_at

pytestmark = pytest.mark.timeout(60)


# ---- hand computations --------------------------------------------------------------------------


def test_ipw_and_snipw_equal_a_hand_computation():
    """4 rounds, 2 actions: w = pi(a)/p = (1.8, 0.2, 1.125, 0.5); IPW = mean(w r), SNIPW = sum(w r)/sum(w)."""
    logged = dict(action=[0, 1, 0, 1], reward=[1.0, 0.0, 1.0, 1.0], pscore=[0.5, 0.5, 0.8, 0.2])
    pi = np.tile([0.9, 0.1], (4, 1))[:, :, None]
    res = estimate(**logged, action_dist=pi, estimators=("ipw", "snipw"))
    assert list(res) == ["ipw", "snipw"]
    assert res["ipw"].value == pytest.approx((1.8 + 0 + 1.125 + 0.5) / 4)
    assert res["snipw"].value == pytest.approx(3.425 / 3.625)
    assert res["ipw"].ess == pytest.approx(3.625**2 / (1.8**2 + 0.2**2 + 1.125**2 + 0.5**2))
    assert res["ipw"].n == 4 and res["ipw"].low is None and res.alpha is None
    assert repr(res).startswith("OPEResult(ipw=0.8562, snipw=0.9448; n=4")
    flat = estimate(**logged, action_dist=pi[:, :, 0], estimators=("ipw", "snipw"))  # (n, k): one position
    assert flat.values_dict() == pytest.approx(res.values_dict())


def test_positions_pick_the_target_probability_of_the_round_position():
    """With positions, the weight uses action_dist[i, a_i, position_i] (4 rounds, 2 positions)."""
    pi = np.zeros((4, 3, 2))
    pi[:, :, 0] = [0.2, 0.3, 0.5]
    pi[:, :, 1] = [0.6, 0.2, 0.2]
    action, position = np.array([2, 0, 1, 0]), np.array([0, 1, 1, 0])
    reward, pscore = np.array([1.0, 2.0, 0.0, 3.0]), np.array([0.25, 0.5, 0.4, 0.1])
    w = np.array([0.5 / 0.25, 0.6 / 0.5, 0.2 / 0.4, 0.2 / 0.1])  # by hand
    res = estimate(action=action, reward=reward, pscore=pscore, action_dist=pi, position=position)
    assert res["ipw"].value == pytest.approx((w * reward).mean())
    assert res["snipw"].value == pytest.approx((w * reward).sum() / w.sum())


def _loop_reference(action, reward, pscore, pi, qhat, position):
    """IPW, SNIPW and DR by plain loops (an independent computation)."""
    n = len(action)
    num = den = dr = 0.0
    for i in range(n):
        a, pos = action[i], position[i]
        w = pi[i][a][pos] / pscore[i]
        num += w * reward[i]
        den += w
        dr += sum(pi[i][b][pos] * qhat[i][b][pos] for b in range(len(pi[i]))) + w * (reward[i] - qhat[i][a][pos])
    return num / n, num / den, dr / n


def test_random_cases_equal_the_loop_reference():
    """On random arrays (with a given reward model) every estimator equals the loop computation."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        n, k, L = 40, 4, 2
        pi = rng.dirichlet(np.ones(k), size=(n, L)).transpose(0, 2, 1)
        action, position = rng.integers(0, k, n), rng.integers(0, L, n)
        reward, pscore, qhat = rng.normal(size=n), rng.uniform(0.05, 1, n), rng.normal(size=(n, k, L))
        res = estimate(
            action=action, reward=reward, pscore=pscore, action_dist=pi, estimated_rewards=qhat, position=position
        )
        ipw, snipw, dr = _loop_reference(action, reward, pscore, pi, qhat, position)
        assert (res["ipw"].value, res["snipw"].value, res["dr"].value) == pytest.approx((ipw, snipw, dr))


def test_dr_is_the_direct_method_when_every_weight_is_zero():
    """A target with no mass on any logged action: DR = mean_i sum_a pi(a|x_i) qhat(x_i, a), given or fitted."""
    rng = np.random.default_rng(1)
    n = 30
    action, reward, pscore = rng.integers(0, 2, n), rng.uniform(size=n), np.full(n, 0.5)
    pi = np.zeros((n, 3, 1))
    pi[:, 2, 0] = 1.0  # action 2 was never logged
    qhat = rng.normal(size=(n, 3, 1))
    res = estimate(action=action, reward=reward, pscore=pscore, action_dist=pi, estimated_rewards_by_reg_model=qhat)
    assert res["dr"].value == pytest.approx(qhat[:, 2, 0].mean())
    assert res["ipw"].value == 0.0 and np.isnan(res["snipw"].value) and res["dr"].ess == 0.0
    # fitted: action 2 unseen, so each round gets the other fold's mean reward (K = 2, alternating)
    fitted = estimate(action=action, reward=reward, pscore=pscore, action_dist=pi, estimators="dr")
    even, odd = reward[0::2].mean(), reward[1::2].mean()
    assert fitted["dr"].value == pytest.approx((odd * len(reward[0::2]) + even * len(reward[1::2])) / n)
    assert fitted.notes and "effective sample size" in fitted.notes[0]


def test_dr_is_ipw_when_the_reward_model_is_zero():
    """estimated_rewards all zero: DR = IPW exactly."""
    rng = np.random.default_rng(2)
    n, k = 50, 3
    pi = rng.dirichlet(np.ones(k), size=n)[:, :, None]
    kw = dict(action=rng.integers(0, k, n), reward=rng.normal(size=n), pscore=rng.uniform(0.1, 1, n), action_dist=pi)
    res = estimate(**kw, estimated_rewards=np.zeros((n, k, 1)))
    assert res["dr"].value == pytest.approx(res["ipw"].value, abs=1e-12)


def test_the_fitted_reward_model_is_cross_fitted():
    """Round i's qhat is the per-(action, position) mean of the other fold's rewards (its own never enters)."""
    action = np.array([0, 0, 0, 0, 1, 1])
    reward = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    q = fit_reward_model(action, reward, np.zeros(6, dtype=np.int64), 2, 1)
    # fold 0 = rounds 0, 2, 4 (scored by rounds 1, 3, 5), fold 1 = rounds 1, 3, 5 (by 0, 2, 4)
    assert q[0, :, 0].tolist() == [3.0, 6.0] and q[1, :, 0].tolist() == [2.0, 5.0]


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=1, max_value=5),
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_snipw_of_a_constant_reward_is_that_constant(n, k, c, seed):
    """Whatever the weights (some positive), SNIPW of reward == c is c."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(k), size=n)[:, :, None]
    action = rng.integers(0, k, n)
    res = estimate(
        action=action, reward=np.full(n, c), pscore=rng.uniform(0.01, 1, n), action_dist=pi, estimators=["snipw"]
    )
    assert res["snipw"].value == pytest.approx(c, rel=1e-9, abs=1e-9)


def test_bootstrap_intervals_are_reproducible_and_bracket_the_value():
    """Same seed, same intervals; another seed, others; low <= value <= high on a smooth case."""
    rng = np.random.default_rng(4)
    n, k = 200, 3
    kw = dict(
        action=rng.integers(0, k, n),
        reward=rng.uniform(size=n),
        pscore=np.full(n, 1 / 3),
        action_dist=rng.dirichlet(np.ones(k), size=n)[:, :, None],
    )
    a = estimate(**kw, intervals=True, n_bootstrap=300, seed=7)
    b = estimate(**kw, intervals=True, n_bootstrap=300, seed=7)
    c = estimate(**kw, intervals=True, n_bootstrap=300, seed=8)
    assert a.values_dict() == b.values_dict() and [a[e].low for e in a] == [b[e].low for e in b]
    assert [a[e].low for e in a] != [c[e].low for e in c]
    assert a.alpha == 0.05 and a.n_bootstrap == 300
    for e in a:
        assert a[e].low < a[e].value < a[e].high


BAD = [
    (dict(action=[0.5, 1]), "action", "integer"),
    (dict(action=[0, 2]), "action", "out of range"),
    (dict(action=[[0, 1]]), "action", "1-D"),
    (dict(reward=[1.0]), "reward", "2 rounds"),
    (dict(reward=[1.0, float("nan")]), "reward", "non-finite"),
    (dict(pscore=[0.0, 0.5]), "pscore", "(0, 1]"),
    (dict(pscore=[1.5, 0.5]), "pscore", "(0, 1]"),
    (dict(action_dist=[[[0.5], [0.6]], [[1.0], [0.0]]]), "action_dist", "sums to"),
    (dict(action_dist=[[[1.5], [-0.5]], [[1.0], [0.0]]]), "action_dist", "negative"),
    (dict(action_dist=np.ones((3, 2, 1)) / 2), "action_dist", "expected shape"),
    (dict(position=[0, 1]), "position", "out of range"),
    (dict(estimated_rewards=np.zeros((2, 3, 1))), "estimated_rewards", "expected shape"),
    (dict(estimators=("ipw", "magic")), "estimators", "unknown estimator"),
    (dict(estimators=()), "estimators", "at least one"),
    (dict(intervals=True, alpha=1.5), "alpha", "(0, 1)"),
    (dict(intervals=True, n_bootstrap=0), "n_bootstrap", "positive"),
]


@pytest.mark.parametrize(("override", "argument", "reason"), BAD)
def test_validation_errors_name_the_argument(override, argument, reason):
    """Each bad argument raises OPEValueError (a ReplayValueError) naming it and the reason."""
    kw: dict[str, Any] = dict(action=[0, 1], reward=[1.0, 0.0], pscore=[0.5, 0.5], action_dist=np.ones((2, 2, 1)) / 2)
    kw.update(override)
    with pytest.raises(OPEValueError) as info:
        estimate(**kw)
    assert isinstance(info.value, replay.ReplayValueError)
    assert info.value.argument == argument and str(info.value).startswith(f"{argument}: ")
    assert reason in str(info.value)


# ---- a simulated contextual bandit with a known target value ------------------------------------

CONTEXT_P = np.array([0.5, 0.3, 0.2])
MU = np.array([[0.2, 0.5, 0.7], [0.6, 0.3, 0.4], [0.1, 0.8, 0.5]])  # P(reward = 1 | context, action)
GREEDY, EPS = np.array([0, 0, 2]), 0.4  # the logging policy: epsilon-greedy
TARGET = np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.0, 0.9, 0.1]])  # pi(a | context)
TRUE_VALUE = float((CONTEXT_P[:, None] * TARGET * MU).sum())


def simulate(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """n logged rounds: context ~ CONTEXT_P, action ~ epsilon-greedy, reward ~ Bernoulli(MU)."""
    k = MU.shape[1]
    ctx = rng.choice(len(CONTEXT_P), size=n, p=CONTEXT_P)
    logging = np.full((len(CONTEXT_P), k), EPS / k)
    logging[np.arange(len(CONTEXT_P)), GREEDY] += 1 - EPS
    u = rng.uniform(size=n)[:, None]
    action = (u > np.cumsum(logging[ctx], axis=1)).sum(axis=1)
    reward = (rng.uniform(size=n) < MU[ctx, action]).astype(float)
    return {
        "action": action,
        "reward": reward,
        "pscore": logging[ctx, action],
        "action_dist": TARGET[ctx][:, :, None],
    }


def test_ipw_is_unbiased_on_the_simulated_bandit():
    """The mean of IPW (and of DR) over 200 simulated logs is within 3 standard errors of the true value."""
    rng = np.random.default_rng(11)
    values = np.array([[estimate(**simulate(rng, 300))[e].value for e in ("ipw", "dr")] for _ in range(200)])
    se = values.std(axis=0, ddof=1) / np.sqrt(len(values))
    assert (np.abs(values.mean(axis=0) - TRUE_VALUE) < 3 * se).all()


def test_bootstrap_intervals_cover_the_true_value_at_about_their_rate():
    """95% percentile-bootstrap intervals over 100 simulated logs of 300 rounds cover the truth 85-99% of the time."""
    rng = np.random.default_rng(12)
    hits = {e: 0 for e in replay.ope.ESTIMATORS}
    runs = 100
    for i in range(runs):
        res = estimate(**simulate(rng, 300), intervals=True, n_bootstrap=200, seed=i)
        for e in hits:
            hits[e] += res[e].low <= TRUE_VALUE <= res[e].high
    for e, h in hits.items():
        assert 0.85 <= h / runs <= 0.99, (e, h)


# ---- the log level ------------------------------------------------------------------------------

MODELS = ("m1:1", "m2:1")


def decision(i: int, chosen: str, props: dict[str, float], arrivals: dict[str, float]) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "event_time": at(i),
        "candidates": list(props),
        "chosen_model": chosen,
        "reason": "sampled" if len(props) > 1 else ("default" if chosen == "default" else "first"),
        "propensity": props[chosen],
        "deadline_ms": 40.0,
        "arrivals": arrivals,
        "propensities": props,
        "policy": "epsilon",
    }


def make_bandit_log(path: Any, n: int = 40) -> tuple[Any, list[dict[str, Any]], list[float]]:
    """Decisions r0..r{n-1} at i s (epsilon-style among the models that arrived), outcomes at i + 5 s."""
    rng = np.random.default_rng(5)
    log = logstore.open(path)
    ensure_topics(log, Topics(), roles=["decisions", "outcomes"], partitions=2)
    records, labels = [], []
    for i in range(n):
        arrived = [m for m in MODELS if rng.uniform() < 0.8]
        arrivals = {m: float(rng.uniform(1, 30)) for m in arrived}
        if not arrived:
            props, chosen = {"default": 1.0}, "default"
        elif len(arrived) == 1:
            props, chosen = {arrived[0]: 1.0}, arrived[0]
        else:
            props = {"m1:1": 0.8, "m2:1": 0.2}
            chosen = "m1:1" if rng.uniform() < 0.8 else "m2:1"
        records.append(decision(i, chosen, props, arrivals))
        labels.append(float(rng.uniform() < {"m1:1": 0.3, "m2:1": 0.7, "default": 0.1}[chosen]))
    write_at(log, "decisions", [(at(i), r) for i, r in enumerate(records)])
    outcomes = [(at(i + 5), {"request_id": f"r{i}", "event_time": at(i + 5), "label": y}) for i, y in enumerate(labels)]
    write_at(log, "outcomes", outcomes)
    return log, records, labels


def prefer_m2(record: dict[str, Any]) -> dict[str, float]:
    """A target: m2 when it arrived, else m1 when it arrived, else the default."""
    arrived = record["arrivals"]
    for m in ("m2:1", "m1:1"):
        if m in arrived:
            return {m: 1.0}
    return {"default": 1.0}


def by_hand(records: list[dict[str, Any]], labels: list[float], target: Any, keep: int) -> dict[str, Any]:
    actions = ["default", "m1:1", "m2:1"]
    rows = records[:keep]
    pi = np.zeros((keep, 3, 1))
    for i, r in enumerate(rows):
        for a, p in target(r).items():
            pi[i, actions.index(a), 0] = p
    return {
        "action": np.array([actions.index(r["chosen_model"]) for r in rows]),
        "reward": np.array(labels[:keep]),
        "pscore": np.array([r["propensity"] for r in rows]),
        "action_dist": pi,
    }


def test_evaluate_policy_equals_estimate_on_arrays_built_by_hand(tmp_path):
    """From a real log, evaluate_policy gives estimate's values (and intervals) on hand-built arrays."""
    log, records, labels = make_bandit_log(tmp_path / "log")
    res = evaluate_policy(log, prefer_m2, intervals=True, n_bootstrap=100, seed=3)
    ref = estimate(**by_hand(records, labels, prefer_m2, len(records)), intervals=True, n_bootstrap=100, seed=3)
    assert res.actions == ("default", "m1:1", "m2:1")
    assert res.n_used == len(records) and res.n_without_outcome == 0 and res.n_decisions == len(records)
    for e in ref:
        assert (res[e].value, res[e].low, res[e].high) == pytest.approx((ref[e].value, ref[e].low, ref[e].high))


def test_outcomes_after_the_cutoff_are_excluded(tmp_path):
    """Only outcomes appended at or before the cut-off count; the first outcome (and decision) per request wins."""
    log, records, labels = make_bandit_log(tmp_path / "log")
    # a second, contradicting outcome for r0 after its first: ignored
    write_at(log, "outcomes", [(at(100), {"request_id": "r0", "event_time": at(100), "label": 1 - labels[0]})])
    # r1 decided again later (e.g. a retried write): its first decision is the round
    write_at(log, "decisions", [(at(101), {**records[1], "chosen_model": "default", "propensity": 1.0})])
    cutoff = at(24)  # outcomes of r0..r19 (appended at i + 5 s) are known
    res = evaluate_policy(log, prefer_m2, cutoff=cutoff)
    ref = estimate(**by_hand(records, labels, prefer_m2, 20))
    assert res.n_used == 20 and res.n_without_outcome == len(records) - 20 and res.n_duplicates == 1
    assert res.values_dict() == pytest.approx(ref.values_dict())
    micros = int((cutoff - datetime(1970, 1, 1, tzinfo=cutoff.tzinfo)).total_seconds() * 1_000_000)
    assert evaluate_policy(log, prefer_m2, cutoff=micros).values_dict() == pytest.approx(ref.values_dict())
    assert any("no outcome" in note for note in res.notes)


def test_a_config_target_is_replayed_from_the_records(tmp_path):
    """A schedule config (m2 first, m1 after 0 ms too) equals the same target written as a function."""
    log, records, labels = make_bandit_log(tmp_path / "log")
    config = {
        "sla_ms": 50,
        "schedule": [{"model": "m2", "after_ms": 0}, {"model": "m1", "after_ms": 35}],
    }

    def by_schedule(record: dict[str, Any]) -> dict[str, float]:  # the rule, written out
        arrived = record["arrivals"]
        t = {m: max(arrived[m], after) for m, after in (("m2:1", 0.0), ("m1:1", 35.0)) if m in arrived}
        return {min(t, key=lambda m: (t[m], m != "m2:1")): 1.0} if t else {"default": 1.0}

    res = evaluate_policy(log, config)
    ref = estimate(**by_hand(records, labels, by_schedule, len(records)))
    assert res.values_dict() == pytest.approx(ref.values_dict())


def test_target_errors_name_the_request(tmp_path):
    """A target answering an unknown action, or probabilities not summing to 1, is refused naming the
    request; a bad topic, cut-off, reward field or config is refused naming the argument."""
    log, _, _ = make_bandit_log(tmp_path / "log", n=5)
    with pytest.raises(OPEValueError, match=r"target: request 'r0': unknown action 'm9:1'"):
        evaluate_policy(log, lambda r: {"m9:1": 1.0})
    with pytest.raises(OPEValueError, match=r"target: request 'r0': probabilities sum to 0.5"):
        evaluate_policy(log, lambda r: {"m1:1": 0.5})
    with pytest.raises(OPEValueError, match=r"^decisions: no topic 'nope'"):
        evaluate_policy(log, prefer_m2, decisions="nope")
    with pytest.raises(OPEValueError, match=r"^outcomes: none of the 5 decisions"):
        evaluate_policy(log, prefer_m2, cutoff=at(0))
    with pytest.raises(OPEValueError, match=r"^target: not a usable rendezvous config \(schedule: "):
        evaluate_policy(log, {"sla_ms": 50})
    with pytest.raises(OPEValueError, match=r"^cutoff: expected an aware datetime"):
        evaluate_policy(log, prefer_m2, cutoff=datetime(2026, 1, 1))
    with pytest.raises(OPEValueError, match=r"^reward: expected 'label' or 'reward'"):
        evaluate_policy(log, prefer_m2, reward="score")


def test_deterministic_logging_cannot_evaluate_another_target(tmp_path):
    """Schedule logging (propensity 1 on the served model): a target serving another model gets weight 0 and a note."""
    log = logstore.open(tmp_path / "log")
    ensure_topics(log, Topics(), roles=["decisions", "outcomes"], partitions=1)
    recs = [decision(i, "m1:1", {"m1:1": 1.0}, {"m1:1": 3.0, "m2:1": 4.0}) for i in range(10)]
    write_at(log, "decisions", [(at(i), r) for i, r in enumerate(recs)])
    write_at(
        log, "outcomes", [(at(i + 1), {"request_id": f"r{i}", "event_time": at(i), "label": 1.0}) for i in range(10)]
    )
    res = evaluate_policy(log, prefer_m2, estimators=("ipw", "snipw"))
    assert res["ipw"].value == 0.0 and res.ess == 0.0
    assert any("deterministic" in note for note in res.notes)
    same = evaluate_policy(log, lambda r: {"m1:1": 1.0})  # the logging policy itself: on-policy
    assert same["ipw"].value == 1.0 and same["snipw"].value == 1.0 and not same.notes


def test_the_logging_config_as_target_gives_the_on_policy_mean(tmp_path):
    """The config the log was made under (epsilon over m1, m2 acceptable together): sampled rounds
    take the logged propensities, so every weight is 1 and IPW = SNIPW = the mean reward."""
    log, records, labels = make_bandit_log(tmp_path / "log")
    config = {
        "sla_ms": 50,
        "schedule": [{"model": "m1", "after_ms": 30}, {"model": "m2", "after_ms": 30}],
        "selection": {"policy": "epsilon"},
    }
    arrays = replay.ope.build_arrays(log, config)
    sampled = [i for i, r in enumerate(records) if r["reason"] == "sampled"]
    assert sampled and (arrays.action_dist[sampled, 1:, 0] == [0.8, 0.2]).all()
    res = evaluate_policy(log, config, estimators=("ipw", "snipw"))
    assert res.ess == pytest.approx(len(records)) and not res.notes
    assert res["ipw"].value == pytest.approx(np.mean(labels)) and res["snipw"].value == pytest.approx(np.mean(labels))
