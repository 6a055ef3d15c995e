"""Selection: exact propensities (quadrature vs closed forms and Monte Carlo), floors, seeded draws."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rendezvous.config import Prior, Selection
from rendezvous.selection import (
    BetaPosterior,
    EpsilonSelector,
    NormalPosterior,
    ScheduleSelector,
    ThompsonSelector,
    draw,
    floored,
    make_selector,
    seed_of,
    win_probabilities,
)


def _lbeta(a, b):
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def beta_beats(a_b, b_b, a_a, b_a):
    """P(X_B > X_A), X ~ Beta, integer alpha_B (Evan Miller's closed form)."""
    return sum(
        math.exp(_lbeta(a_a + i, b_a + b_b) - math.log(b_b + i) - _lbeta(1 + i, b_b) - _lbeta(a_a, b_a))
        for i in range(int(a_b))
    )


@pytest.mark.parametrize(
    ("b", "a"),
    [((2, 3), (1, 1)), ((10, 90), (12, 88)), ((1, 1), (1, 1)), ((400, 600), (410, 590)), ((3, 1), (1, 7))],
)
def test_beta_quadrature_matches_the_closed_form(b, a):
    """Two Betas: the quadrature equals the closed-form P(X_B > X_A) to 1e-9."""
    p = win_probabilities([BetaPosterior(*b), BetaPosterior(*a)])
    assert p[0] == pytest.approx(beta_beats(*b, *a), abs=1e-9)
    assert math.fsum(p) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("m1", "s1", "m2", "s2"), [(0, 1, 0, 1), (0.2, 0.7, 0, 0.3), (5, 0.01, 4.9, 2.0), (0, 1e-5, 1e-5, 1e-5)]
)
def test_normal_quadrature_matches_the_closed_form(m1, s1, m2, s2):
    """Two Normals: P(X_1 > X_2) = Phi((m1 - m2) / sqrt(s1^2 + s2^2)), to 1e-9."""
    p = win_probabilities([NormalPosterior(m1, s1), NormalPosterior(m2, s2)])
    z = (m1 - m2) / math.hypot(s1, s2)
    assert p[0] == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)), abs=1e-9)


MC_CASES = [
    [BetaPosterior(3, 5), BetaPosterior(4, 4), BetaPosterior(0.5, 0.5)],  # an unbounded density at 0 and 1
    [BetaPosterior(30, 70), BetaPosterior(2, 3), BetaPosterior(1, 1), BetaPosterior(900, 2100)],
    [NormalPosterior(0, 1), NormalPosterior(0.3, 0.5), NormalPosterior(1, 2), NormalPosterior(0.01, 1e-4)],
    [NormalPosterior(-3, 0.2), NormalPosterior(-2.8, 0.3), NormalPosterior(-3.5, 1.0)],
    [BetaPosterior(0.05, 0.05), BetaPosterior(0.1, 5)],  # most mass within 1e-16 of 0 or 1
    [BetaPosterior(1e6, 1e6), BetaPosterior(1e6 + 1000, 1e6 - 1000), BetaPosterior(1e6 + 500, 1e6 - 500)],
]


@pytest.mark.parametrize(
    "posts", MC_CASES, ids=["beta-edges", "beta-mixed", "normal-scales", "normal-close", "beta-tiny", "beta-huge"]
)
def test_quadrature_agrees_with_a_million_draws(posts):
    """P(i has the largest draw) by quadrature equals 10^6 Monte Carlo draws within 1e-3."""
    rng = np.random.default_rng(20240601)
    samples = np.stack([p.sample(rng, 1_000_000) for p in posts])
    mc = np.bincount(samples.argmax(axis=0), minlength=len(posts)) / 1e6
    q = win_probabilities(posts)
    assert math.fsum(q) == pytest.approx(1.0, abs=1e-12)
    assert np.abs(mc - np.array(q)).max() < 1e-3


posterior_stats = st.lists(
    st.tuples(st.integers(0, 2000), st.floats(0, 1)),  # (observations, success share)
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(stats=posterior_stats, policy=st.sampled_from(["thompson", "epsilon"]), prior=st.floats(0.3, 3))
def test_propensities_sum_to_one_and_are_never_zero(stats, policy, prior):
    """For any posteriors, every eligible model has probability >= the floor, and they sum to 1."""
    sel = make_selector(Selection(policy=policy, epsilon=0.05, prior=Prior(alpha=prior, beta=prior)))
    models = [f"m{i}:1" for i in range(len(stats))]
    for m, (n, share) in zip(models, stats):
        k = round(n * share)
        for r in [1.0] * k + [0.0] * (n - k):
            sel.observe(m, r)
    sel.snapshot()
    p = sel.probabilities(models)
    assert list(p) == models
    assert math.fsum(p.values()) == pytest.approx(1.0, abs=1e-12)
    assert min(p.values()) >= sel.min_propensity * (1 - 1e-12)
    choice, propensity, seed = sel.choose("req-7", models)
    assert propensity == p[choice] and seed == seed_of("req-7", sel.version)


@settings(max_examples=200, deadline=None)
@given(p=st.lists(st.floats(0, 1), min_size=1, max_size=8), floor=st.floats(1e-6, 0.3))
def test_floored_keeps_a_distribution(p, floor):
    """floored: sums to 1, every entry at least the floor (or uniform), larger stays larger."""
    q = floored(p, floor)
    assert math.fsum(q) == pytest.approx(1.0, abs=1e-12)
    if len(p) * floor < 1:
        assert min(q) >= floor * (1 - 1e-12)
        order = [i for i in range(len(p)) if q[i] > floor * (1 + 1e-9)]
        for i in order:
            for j in order:
                if p[i] > p[j]:
                    assert q[i] >= q[j]
    else:
        assert q == [1 / len(p)] * len(p)


def test_choices_follow_the_logged_propensities():
    """20,000 request ids: choice frequencies match the propensities (chi-square, p > 0.001)."""
    sel = ThompsonSelector()
    for r in [1.0] * 12 + [0.0] * 8:
        sel.observe("a:1", r)
    for r in [1.0] * 5 + [0.0] * 5:
        sel.observe("b:1", r)
    sel.observe("c:1", 0.0)
    sel.snapshot()
    eligible = ["a:1", "b:1", "c:1"]
    probs = sel.probabilities(eligible)
    n = 20_000
    counts = dict.fromkeys(eligible, 0)
    for i in range(n):
        choice, propensity, _ = sel.choose(f"req-{i:06d}", eligible)
        assert propensity == probs[choice]
        counts[choice] += 1
    chi2 = sum((counts[m] - n * probs[m]) ** 2 / (n * probs[m]) for m in eligible)
    assert chi2 < 13.82  # chi-square, 2 degrees of freedom, p = 0.001


def test_draw_is_inverse_cdf_of_the_seed():
    """draw maps the seed's low 53 bits, as u in [0, 1), onto cumulative weights."""
    w = [0.25, 0.0, 0.5, 0.25]
    u = lambda x: int(x * 2**53)  # noqa: E731
    assert [draw(u(x), w) for x in (0.0, 0.2499, 0.25, 0.7499, 0.75, 0.99999)] == [0, 0, 2, 2, 3, 3]
    assert draw(2**53 - 1, [0.5, 0.5 - 1e-12]) == 1  # rounding below 1: the last positive weight


def test_seed_is_stable_and_separates_versions():
    """The seed is BLAKE2b of (request id, version): fixed across processes, 63 bits."""
    s = seed_of("req-0000001", 3)
    assert s == seed_of("req-0000001", 3) != seed_of("req-0000001", 4) != seed_of("req-0000002", 3)
    assert 0 <= s < 2**63
    digest = hashlib.blake2b(b"r\x1f0", digest_size=8, person=b"rendezvous").digest()
    assert seed_of("r", 0) == int.from_bytes(digest, "big") >> 1 == 8599156752203868920  # never hash()


def test_posteriors_change_only_at_snapshots_and_old_versions_stay():
    """observe is invisible until snapshot; snapshot bumps the version; old versions recompute."""
    sel = ThompsonSelector(history=3)
    before = sel.probabilities(["a:1", "b:1"])
    assert before == {"a:1": 0.5, "b:1": 0.5} or before["a:1"] == pytest.approx(0.5, abs=1e-12)
    for _ in range(20):
        sel.observe("a:1", 1.0)
    assert sel.probabilities(["a:1", "b:1"]) == before and sel.version == 0
    assert sel.snapshot() == 1
    after = sel.probabilities(["a:1", "b:1"])
    assert after["a:1"] == pytest.approx(21 / 22, abs=1e-12)  # Beta(21, 1) against Beta(1, 1)
    assert sel.probabilities(["a:1", "b:1"], version=0) == before
    assert sel.probabilities(["a:1", "b:1"]) is after  # cached per (version, eligible)
    assert sel.posterior("a:1") == BetaPosterior(21.0, 1.0) and sel.posterior("z:9") == BetaPosterior(1.0, 1.0)
    sel.snapshot(), sel.snapshot()
    with pytest.raises(KeyError, match="policy version 0 is not kept"):
        sel.probabilities(["a:1", "b:1"], version=0)


def test_rewards_are_checked():
    """A Beta posterior takes rewards in [0, 1] only; none takes NaN."""
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        ThompsonSelector().observe("a:1", 2.0)
    with pytest.raises(ValueError, match="finite"):
        ThompsonSelector("gaussian").observe("a:1", math.nan)


def test_gaussian_posterior_with_known_noise():
    """Normal-normal with known noise: the textbook posterior mean and sd."""
    sel = ThompsonSelector("gaussian", Prior(mean=0.0, sd=2.0, noise_sd=1.0))
    xs = [1.0, 2.0, 3.0, 4.0]
    for x in xs:
        sel.observe("a:1", x)
    sel.snapshot()
    precision = 1 / 4 + len(xs) / 1
    post = sel.posterior("a:1")
    assert post.mean == pytest.approx(sum(xs) / precision) and post.sd == pytest.approx(precision**-0.5)
    est = ThompsonSelector("gaussian", Prior(sd=1.0))  # noise estimated from the rewards
    for x in [10.0, 12.0] * 50:
        est.observe("b:1", x)
    est.snapshot()
    assert est.posterior("b:1").mean == pytest.approx(11.0, rel=0.01)


def test_epsilon_spreads_epsilon_and_is_greedy_on_the_mean():
    """Epsilon-greedy: the best posterior mean gets 1 - eps + eps/n, each other eps/n."""
    sel = EpsilonSelector(0.3)
    for r in (1.0, 1.0, 0.0):
        sel.observe("b:1", r)
    sel.snapshot()
    p = sel.probabilities(["a:1", "b:1", "c:1"])
    assert p == pytest.approx({"a:1": 0.1, "b:1": 0.8, "c:1": 0.1})
    assert EpsilonSelector(0.3).probabilities(["a:1", "b:1"]) == pytest.approx({"a:1": 0.85, "b:1": 0.15})


def test_schedule_selector_is_deterministic():
    """The schedule selector picks the first eligible model with probability 1, whatever it observes."""
    sel = ScheduleSelector()
    sel.observe("b:1", 1.0)
    assert sel.snapshot() == 0
    assert sel.choose("r", ["b:1", "a:1"]) == ("b:1", 1.0, seed_of("r", 0))
    assert sel.probabilities(["b:1", "a:1"]) == {"b:1": 1.0, "a:1": 0.0} and not sel.sampling


SELECTORS = {
    "schedule": ScheduleSelector,
    "thompson-beta": lambda: ThompsonSelector("beta"),
    "thompson-gaussian": lambda: ThompsonSelector("gaussian", Prior(mean=0.0, sd=5.0)),
    "epsilon-beta": lambda: EpsilonSelector(0.2, "beta"),
    "epsilon-gaussian": lambda: EpsilonSelector(0.2, "gaussian"),
}


@pytest.mark.parametrize("make", SELECTORS.values(), ids=SELECTORS.keys())
def test_selector_contract(make):
    """Every selector: probabilities over the eligible set in its order, summing to 1; choose is
    pure in (request id, version) and agrees with probabilities and draw; snapshots are versions."""
    sel = make()
    eligible = ["a:1", "b:2", "c:1"]
    for m, rewards in (("a:1", [1.0, 0.0, 1.0]), ("c:1", [0.0, 0.0])):
        for r in rewards:
            sel.observe(m, r)
    v = sel.snapshot()
    assert v == sel.version
    p = sel.probabilities(eligible)
    assert list(p) == eligible and math.fsum(p.values()) == pytest.approx(1.0, abs=1e-12)
    if sel.sampling:
        assert min(p.values()) > 0 and v == 1
    for rid in ("r1", "r2", "a much longer request id"):
        choice, propensity, seed = sel.choose(rid, eligible)
        assert (choice, propensity, seed) == sel.choose(rid, eligible, version=v)
        assert seed == seed_of(rid, v) and propensity == p[choice]
        assert choice == eligible[draw(seed, [p[m] for m in eligible])]
    assert sel.probabilities(["b:2"]) == {"b:2": 1.0}


def test_make_selector_follows_the_config():
    """[selection] picks the selector; the reward field picks Beta (label) or Gaussian (reward)."""
    assert isinstance(make_selector(Selection()), ScheduleSelector)
    t = make_selector(Selection(policy="thompson", reward="reward", min_propensity=0.01))
    assert isinstance(t, ThompsonSelector) and t.family == "gaussian" and t.min_propensity == 0.01
    e = make_selector(Selection(policy="epsilon", epsilon=0.3))
    assert isinstance(e, EpsilonSelector) and e.family == "beta" and e.epsilon == 0.3


def test_decisions_follow_their_logged_propensities():
    """Through the policy: over 30,000 sampled decisions, chosen-model counts match the propensities
    each decision logged (chi-square on the expected counts summed from the records)."""
    from rendezvous.config import Config, Step
    from rendezvous.policy import Policy

    config = Config(
        sla_ms=50,
        schedule=(Step("a", 10), Step("b", 10), Step("c", 10)),
        selection=Selection(policy="thompson"),
    )
    policy = Policy(config)
    for m, wins in (("a:1", 7), ("b:1", 5), ("c:1", 2)):
        for i in range(10):
            policy.selector.observe(m, 1.0 if i < wins else 0.0)
    policy.selector.snapshot()
    observed = {"a:1": 0, "b:1": 0, "c:1": 0}
    expected = dict.fromkeys(observed, 0.0)
    for i in range(30_000):
        c = policy.replay(f"req-{i}", {"a:1": 1.0, "b:1": 2.0, "c:1": 3.0}, set(), 40.0)
        assert c.reason == "sampled" and c.candidates == ("a:1", "b:1", "c:1")
        observed[c.chosen] += 1
        for m, p in c.propensities.items():
            expected[m] += p
    chi2 = sum((observed[m] - expected[m]) ** 2 / expected[m] for m in observed)
    assert chi2 < 13.82  # 2 degrees of freedom, p = 0.001
