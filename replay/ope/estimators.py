"""Off-policy estimators on arrays: IPW, SNIPW and DR, with percentile-bootstrap intervals.

Array conventions are Open Bandit Pipeline's, for ``n`` rounds, ``k`` actions, ``L`` positions:

- ``action`` (n,) ints in [0, k): the logged action; ``reward`` (n,) finite floats;
- ``pscore`` (n,) in (0, 1]: the probability the logging policy gave the logged action;
- ``action_dist`` (n, k, L): the target policy's probabilities, each ``[i, :, l]`` summing to 1
  (an (n, k) array is taken as L = 1);
- ``estimated_rewards`` (n, k, L) (or (n, k)) or None: a reward model ``qhat(x_i, a, l)`` for DR;
- ``position`` (n,) ints in [0, L) or None (every round at position 0).

With ``w_i = action_dist[i, a_i, pos_i] / pscore_i``:

- IPW   = mean(w r)
- SNIPW = sum(w r) / sum(w)                      (nan when every weight is 0)
- DR    = mean(sum_a pi(a|x_i) qhat(x_i, a) + w_i (r_i - qhat(x_i, a_i)))

DR without ``estimated_rewards`` fits the reward model itself: the mean reward per (action,
position), cross-fitted over K = 2 folds (rounds alternate between folds: even rounds are scored by
the model fitted on odd rounds and vice versa; a pair not seen in the other fold takes that fold's
overall mean), so no round's own reward enters its ``qhat``. The effective sample size
``ess = (sum w)^2 / sum w^2`` says how many rounds the estimate effectively rests on.

Intervals (``intervals=True``) are percentile bootstrap intervals over rounds: ``n_bootstrap``
resamples of the n rounds with replacement (index matrices drawn at once from ``seed``, so the
same call gives the same intervals), every estimator computed on every resample; the reward
model, fitted or given, is held fixed across resamples.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import OPEValueError

__all__ = ["ESTIMATORS", "Estimate", "OPEResult", "estimate", "fit_reward_model"]

ESTIMATORS = ("ipw", "snipw", "dr")
REWARD_MODEL_FOLDS = 2
_SUM_TOL = 1e-6  # how far a target distribution's sum may be from 1
_CHUNK = 4_000_000  # bootstrap cells (resamples x rounds) computed at once, to bound memory


@dataclass(frozen=True)
class Estimate:
    """One estimator's value; ``low``/``high`` the interval (None when not asked for)."""

    value: float
    low: float | None
    high: float | None
    n: int  # rounds used
    ess: float  # effective sample size of the importance weights


@dataclass(frozen=True, eq=False)
class OPEResult(Mapping[str, Estimate]):
    """Estimator name -> `Estimate`, in the order asked; ``alpha``/``n_bootstrap`` None without
    intervals; ``notes`` warn about what weakens the estimates (e.g. a small ess)."""

    estimates: Mapping[str, Estimate]
    n: int
    ess: float
    alpha: float | None = None
    n_bootstrap: int | None = None
    notes: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> Estimate:
        return self.estimates[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.estimates)

    def __len__(self) -> int:
        return len(self.estimates)

    def values_dict(self) -> dict[str, float]:
        """Estimator name -> point value."""
        return {k: e.value for k, e in self.estimates.items()}

    def __repr__(self) -> str:
        parts = []
        for k, e in self.estimates.items():
            ci = "" if e.low is None else f" [{e.low:.4g}, {e.high:.4g}]"
            parts.append(f"{k}={e.value:.4g}{ci}")
        return f"OPEResult({', '.join(parts)}; n={self.n}, ess={self.ess:.4g})"


# ---- validation ---------------------------------------------------------------------------------


def _vector(name: str, value: Any, n: int | None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise OPEValueError(name, f"expected a 1-D array, found shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise OPEValueError(name, f"expected {n} rounds (the length of action), found {len(arr)}")
    return arr


def _ints(name: str, value: Any, n: int | None, upper: int | None, what: str) -> np.ndarray:
    arr = _vector(name, value, n)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise OPEValueError(name, f"expected integer {what} indices, found dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise OPEValueError(name, f"negative {what} {int(arr.min())} at round {int(np.argmin(arr))}")
    if upper is not None and arr.size and arr.max() >= upper:
        i = int(np.argmax(arr))
        raise OPEValueError(name, f"{what} {int(arr[i])} at round {i} is out of range (there are {upper})")
    return arr


def _as_float(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OPEValueError(name, f"expected an array of numbers ({exc})") from None


def _floats(name: str, value: Any, shape: tuple[int, ...] | None = None, n: int | None = None) -> np.ndarray:
    arr = _as_float(name, value)
    if shape is not None and arr.shape != shape:
        raise OPEValueError(name, f"expected shape {shape}, found {arr.shape}")
    if shape is None:
        arr = _vector(name, arr, n)
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise OPEValueError(name, f"non-finite value {arr[tuple(where)]} at index {tuple(int(i) for i in where)}")
    return arr


def _estimators(estimators: Sequence[str] | str) -> tuple[str, ...]:
    names = (estimators,) if isinstance(estimators, str) else tuple(estimators)
    if not names:
        raise OPEValueError("estimators", f"at least one is needed, from {ESTIMATORS}")
    for e in names:
        if e not in ESTIMATORS:
            raise OPEValueError("estimators", f"unknown estimator {e!r}; the estimators are {ESTIMATORS}")
    if len(set(names)) != len(names):
        raise OPEValueError("estimators", f"each estimator at most once, found {names}")
    return names


def _check_options(alpha: float, n_bootstrap: int, seed: int) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise OPEValueError("alpha", f"expected a number in (0, 1), found {alpha!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 1:
        raise OPEValueError("n_bootstrap", f"expected a positive int, found {n_bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OPEValueError("seed", f"expected a non-negative int, found {seed!r}")


# ---- the reward model ---------------------------------------------------------------------------


def fit_reward_model(action: np.ndarray, reward: np.ndarray, position: np.ndarray, k: int, L: int) -> np.ndarray:
    """The cross-fitted direct-method reward model as an (n, k, L) array (module docstring):
    round i gets the per-(action, position) mean reward of the other fold."""
    n = len(action)
    folds = np.arange(n) % REWARD_MODEL_FOLDS
    out = np.empty((n, k, L))
    for f in range(REWARD_MODEL_FOLDS):
        scored = folds == f
        train = ~scored if n >= REWARD_MODEL_FOLDS else scored  # one round: nothing else to fit on
        if not scored.any():
            continue
        sums = np.zeros(k * L)
        counts = np.zeros(k * L)
        cell = action[train] * L + position[train]
        np.add.at(sums, cell, reward[train])
        np.add.at(counts, cell, 1.0)
        overall = float(reward[train].mean())
        means = np.where(counts > 0, sums / np.maximum(counts, 1.0), overall).reshape(k, L)
        out[scored] = means
    return out


# ---- estimation ---------------------------------------------------------------------------------


def _values(names: tuple[str, ...], w: np.ndarray, r: np.ndarray, dr: np.ndarray | None) -> dict[str, np.ndarray]:
    """Every estimator along the last axis of (..., n) arrays of weights, rewards and DR terms."""
    out: dict[str, np.ndarray] = {}
    wr = w * r
    for e in names:
        if e == "ipw":
            out[e] = wr.mean(axis=-1)
        elif e == "snipw":
            sw = w.sum(axis=-1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[e] = np.where(sw > 0, wr.sum(axis=-1) / np.where(sw > 0, sw, 1.0), np.nan)
        else:
            assert dr is not None
            out[e] = dr.mean(axis=-1)
    return out


def ess_of(w: np.ndarray) -> float:
    """(sum w)^2 / sum w^2; 0 when every weight is 0."""
    s2 = float(np.square(w).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def estimate(
    *,
    action: Any,
    reward: Any,
    pscore: Any,
    action_dist: Any,
    estimated_rewards: Any = None,
    position: Any = None,
    estimators: Sequence[str] | str = ESTIMATORS,
    intervals: bool = False,
    alpha: float = 0.05,
    n_bootstrap: int = 500,
    seed: int = 0,
    estimated_rewards_by_reg_model: Any = None,
) -> OPEResult:
    """The target policy's value by each of `estimators` (module docstring for the arrays and the
    formulas); with ``intervals=True`` also ``1 - alpha`` percentile-bootstrap intervals.

    ``estimated_rewards_by_reg_model`` is Open Bandit Pipeline's name for ``estimated_rewards``.
    Raises `OPEValueError` naming the argument and the reason.
    """
    names = _estimators(estimators)
    _check_options(alpha, n_bootstrap, seed)
    if estimated_rewards is not None and estimated_rewards_by_reg_model is not None:
        raise OPEValueError("estimated_rewards", "given twice (also as estimated_rewards_by_reg_model)")
    qhat_in = estimated_rewards if estimated_rewards is not None else estimated_rewards_by_reg_model
    a = _ints("action", action, None, None, "action")
    n = len(a)
    if n == 0:
        raise OPEValueError("action", "no rounds to evaluate")
    r = _floats("reward", reward, n=n)
    p = _floats("pscore", pscore, n=n)
    if (p <= 0).any() or (p > 1).any():
        i = int(np.argmax((p <= 0) | (p > 1)))
        raise OPEValueError("pscore", f"expected probabilities in (0, 1], found {p[i]} at round {i}")
    pi = _as_float("action_dist", action_dist)
    if pi.ndim == 2:
        pi = pi[:, :, None]
    if pi.ndim != 3 or pi.shape[0] != n:
        raise OPEValueError("action_dist", f"expected shape ({n}, actions, positions), found {pi.shape}")
    pi = _floats("action_dist", pi, shape=pi.shape)
    _, k, L = pi.shape
    if (pi < 0).any():
        where = tuple(int(i) for i in np.argwhere(pi < 0)[0])
        raise OPEValueError("action_dist", f"negative probability {pi[where]} at {where}")
    sums = pi.sum(axis=1)
    if (np.abs(sums - 1) > _SUM_TOL).any():
        i, j = (int(x) for x in np.argwhere(np.abs(sums - 1) > _SUM_TOL)[0])
        raise OPEValueError("action_dist", f"action_dist[{i}, :, {j}] sums to {sums[i, j]}, not 1")
    if a.max() >= k:
        i = int(np.argmax(a))
        raise OPEValueError("action", f"action {int(a[i])} at round {i} is out of range (action_dist has {k})")
    pos = np.zeros(n, dtype=np.int64) if position is None else _ints("position", position, n, L, "position")
    qhat = None
    if qhat_in is not None:
        q_arr = _as_float("estimated_rewards", qhat_in)
        qhat = _floats("estimated_rewards", q_arr[:, :, None] if q_arr.ndim == 2 else q_arr, shape=pi.shape)
    elif "dr" in names:
        qhat = fit_reward_model(a, r, pos, k, L)

    rows = np.arange(n)
    w = pi[rows, a, pos] / p
    dr = None
    if qhat is not None:
        direct = (pi[rows, :, pos] * qhat[rows, :, pos]).sum(axis=1)
        dr = direct + w * (r - qhat[rows, a, pos])
    point = _values(names, w, r, dr)
    ess = ess_of(w)
    bounds: dict[str, tuple[float | None, float | None]] = dict.fromkeys(names, (None, None))
    if intervals:
        bounds = _bootstrap(names, w, r, dr, alpha, int(n_bootstrap), int(seed))
    result = {e: Estimate(float(point[e]), bounds[e][0], bounds[e][1], n, ess) for e in names}
    notes = []
    if ess < 0.1 * n:
        notes.append(
            f"effective sample size {ess:.3g} is under 10% of the {n} rounds: the target policy puts "
            "little mass where the logging policy explored, so the estimates are noisy"
        )
    return OPEResult(
        result,
        n,
        ess,
        alpha if intervals else None,
        int(n_bootstrap) if intervals else None,
        tuple(notes),
    )


def _bootstrap(
    names: tuple[str, ...], w: np.ndarray, r: np.ndarray, dr: np.ndarray | None, alpha: float, B: int, seed: int
) -> dict[str, tuple[float | None, float | None]]:
    """Percentile intervals of every estimator over `B` resamples of the rounds (module docstring)."""
    n = len(w)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {e: [] for e in names}
    step = max(1, _CHUNK // n)
    for start in range(0, B, step):
        idx = rng.integers(0, n, size=(min(step, B - start), n))
        vals = _values(names, w[idx], r[idx], None if dr is None else dr[idx])
        for e in names:
            draws[e].append(vals[e])
    out: dict[str, tuple[float | None, float | None]] = {}
    for e in names:
        v = np.concatenate(draws[e])
        v = v[~np.isnan(v)]
        if not v.size:
            out[e] = (float("nan"), float("nan"))
            continue
        lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2])
        out[e] = (float(lo), float(hi))
    return out
