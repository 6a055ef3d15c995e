"""Paired comparison statistics and their block-bootstrap confidence intervals (numpy only).

The point metrics live in SQL (`replay/sql/*.sql`, run by `replay.evaluation.queries`); this
module holds what SQL is the wrong tool for: resampling. Requests in one time window share
traffic, inputs and label delays, so they are not independent; resampling single requests would
give intervals that are too narrow. We resample whole windows instead (a block bootstrap): each
replicate draws W windows with replacement out of the W observed, and recomputes the statistic on
the pooled rows of the drawn windows.

Recomputing AUC or a rank correlation on millions of pooled rows a thousand times is slow, so each
statistic is reduced once to per-window (or window-by-window) sufficient statistics, and a
replicate with window multiplicities `c` (a length-W count vector, sum W) is a few dot products:

* means and ratios (mean delta, disagreement, log loss, Brier, MAE): per-window sums;
* RMSE: per-window sums of squared errors, then sqrt;
* AUC: the Mann-Whitney count U[i, j] = #(positive in window i beats negative in window j), ties
  one half; a replicate's AUC is c @ U @ c / ((c @ pos) * (c @ neg));
* Spearman: for every row x, A[x, j] = #(values in window j below x) + #(equal)/2; the average
  rank of x in a replicate is A[x] @ c + 1/2, and the statistic is the Pearson correlation of
  ranks weighted by each row's window multiplicity.

These are exact: they give the same number as pooling the drawn rows and computing the
statistic directly (tests check it). The replicates are drawn once per evaluation from
`numpy.random.default_rng(seed)`, and every pair uses the same draws, so results are
deterministic and comparisons share their randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from logstore.errors import EvaluationError

__all__ = [
    "Interval",
    "average_ranks",
    "block_replicates",
    "block_index",
    "percentile_interval",
    "auc",
    "spearman",
    "paired_statistics",
]

# Rows x windows above which the Spearman rank matrix is computed on a seeded subsample of rows
# (keeps memory near 8 * _RANK_MATRIX_CELLS bytes per model).
_RANK_MATRIX_CELLS = 20_000_000
_LOG_CLIP = 1e-15
# Fewer windows than this give no interval: resampling 2 blocks has 3 distinct outcomes, which
# says little about the spread.
MIN_BLOCKS = 3


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile confidence interval (NaN bounds: no interval)."""

    estimate: float
    low: float = float("nan")
    high: float = float("nan")


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks where ties share their average rank (scipy.stats.rankdata 'average')."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # start index of each run of equal values, and the run each sorted element belongs to
    new_run = np.empty(len(x), dtype=bool)
    if len(x):
        new_run[0] = True
        new_run[1:] = sorted_x[1:] != sorted_x[:-1]
    run_id = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], len(x))
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = avg[run_id]
    return ranks


def block_index(blocks: np.ndarray) -> tuple[np.ndarray, int]:
    """Map block labels (e.g. window starts) to 0..W-1 in sorted order; returns (index, W)."""
    labels, index = np.unique(np.asarray(blocks), return_inverse=True)
    return index.astype(np.int64), len(labels)


def block_replicates(n_blocks: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_blocks) multiplicities: row b draws n_blocks windows with replacement."""
    rng = np.random.default_rng(seed)
    if n_blocks == 0 or n_boot <= 0:
        return np.zeros((0, n_blocks), dtype=float)
    draws = rng.integers(0, n_blocks, size=(n_boot, n_blocks))
    counts = np.zeros((n_boot, n_blocks), dtype=float)
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_blocks), draws.ravel()), 1.0)
    return counts


def percentile_interval(estimate: float, replicates: np.ndarray, level: float = 0.95) -> Interval:
    """Percentile interval of the finite replicates; NaN bounds if there are none."""
    r = np.asarray(replicates, dtype=float)
    r = r[np.isfinite(r)]
    if r.size == 0 or not np.isfinite(estimate):
        return Interval(float(estimate))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(r, [alpha, 1.0 - alpha])
    return Interval(float(estimate), float(low), float(high))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by rank sum (ties count one half); NaN if a class is missing."""
    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(labels) == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation: Pearson correlation of average ranks; NaN if either is constant."""
    if len(a) < 2:
        return float("nan")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


# ---- per-window sufficient statistics -------------------------------------------------------


def _block_sums(values: np.ndarray, block: np.ndarray, n_blocks: int) -> np.ndarray:
    return np.bincount(block, weights=np.asarray(values, dtype=float), minlength=n_blocks)


def _ratio(num: np.ndarray, den: np.ndarray, counts: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ num) / (counts @ den)


def _columns_below(x: np.ndarray, member: np.ndarray, n_blocks: int):
    """For j in 0..W-1, yield (j, col) with col[r] = #(x[k] < x[r], member[k] == j)
    + #(x[k] == x[r], member[k] == j) / 2. One sort, then O(n) per window (no searchsorted)."""
    n = len(x)
    order = np.argsort(x, kind="stable")
    xs, ms = x[order], member[order]
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = xs[1:] != xs[:-1]
    run = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], n)
    col = np.empty(n)
    for j in range(n_blocks):
        cum = np.concatenate(([0.0], np.cumsum(ms == j, dtype=float)))
        below, upto = cum[starts][run], cum[ends][run]
        col[order] = below + 0.5 * (upto - below)
        yield j, col


def _mann_whitney_matrix(scores, positive, block, n_blocks):
    """U[i, j] = positives of window i above negatives of window j (ties 1/2); pos/neg counts."""
    u = np.zeros((n_blocks, n_blocks))
    negatives = np.where(positive, -1, block)
    pos_block = block[positive]
    for j, col in _columns_below(scores, negatives, n_blocks):
        u[:, j] = np.bincount(pos_block, weights=col[positive], minlength=n_blocks)
    pos = np.bincount(pos_block, minlength=n_blocks).astype(float)
    neg = np.bincount(block[~positive], minlength=n_blocks).astype(float)
    return u, pos, neg


def _auc_replicates(u, pos, neg, counts):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("bi,ij,bj->b", counts, u, counts) / ((counts @ pos) * (counts @ neg))


def _rank_matrix(x, block, n_blocks):
    """A[r, j] = #(x in window j below x[r]) + #(equal)/2, so ranks = A @ c + 1/2."""
    a = np.empty((len(x), n_blocks))
    for j, col in _columns_below(x, block, n_blocks):
        a[:, j] = col
    return a


def _spearman_replicates(a, b, block, n_blocks, counts):
    """Weighted Pearson correlation of replicate ranks, from W x W (x W) moment tensors.

    With ranks r = A @ c (+1/2, which cancels) and weights w_x = c[block(x)], every weighted
    moment is a polynomial in c: sum w r_a = c @ M_a @ c with M_a[j] = sum of A's rows in
    window j, and sum w r_a r_b = sum_jlm c_j c_l c_m T[j, l, m] with T[j] = A_j.T @ B_j.
    """
    ra, rb = _rank_matrix(a, block, n_blocks), _rank_matrix(b, block, n_blocks)
    size = np.bincount(block, minlength=n_blocks).astype(float)
    m_a, m_b = np.zeros((n_blocks, n_blocks)), np.zeros((n_blocks, n_blocks))
    t_ab, t_aa, t_bb = (np.zeros((n_blocks, n_blocks, n_blocks)) for _ in range(3))
    for j in range(n_blocks):
        aj, bj = ra[block == j], rb[block == j]
        m_a[j], m_b[j] = aj.sum(axis=0), bj.sum(axis=0)
        t_ab[j], t_aa[j], t_bb[j] = aj.T @ bj, aj.T @ aj, bj.T @ bj

    def cubic(t: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.einsum("bj,bl,bjl->b", c, c, np.einsum("jlm,bm->bjl", t, c))

    out = np.empty(len(counts))
    chunk = max(1, 20_000_000 // max(1, n_blocks**2))
    for start in range(0, len(counts), chunk):
        c = counts[start : start + chunk]
        total = c @ size
        sa = np.einsum("bj,jl,bl->b", c, m_a, c)
        sb = np.einsum("bj,jl,bl->b", c, m_b, c)
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = cubic(t_ab, c) - sa * sb / total
            var = (cubic(t_aa, c) - sa * sa / total) * (cubic(t_bb, c) - sb * sb / total)
            out[start : start + chunk] = np.where(var > 0, cov / np.sqrt(np.abs(var)), np.nan)
    return out


# ---- the paired comparison ------------------------------------------------------------------


def paired_statistics(
    score: np.ndarray,
    reference_score: np.ndarray,
    label: np.ndarray,
    window: np.ndarray,
    *,
    task: str,
    threshold: float,
    counts: np.ndarray,
    seed: int = 0,
) -> dict[str, Interval]:
    """Point estimates and block-bootstrap intervals for one model against one reference.

    `score`, `reference_score`, `label` (NaN = unknown) and `window` (any sortable block label)
    are aligned per request. `counts` comes from `block_replicates(W, B, seed)` where W is the
    number of distinct windows here; with fewer than MIN_BLOCKS windows, or B == 0, the
    intervals are NaN (a block bootstrap over one or two blocks says next to nothing).
    Deltas are model minus reference.
    """
    score = np.asarray(score, dtype=float)
    reference_score = np.asarray(reference_score, dtype=float)
    label = np.asarray(label, dtype=float)
    block, n_blocks = block_index(window)
    if counts.shape[1] != n_blocks:
        raise EvaluationError(f"counts has {counts.shape[1]} windows, the rows have {n_blocks}")
    use_ci = n_blocks >= MIN_BLOCKS and len(counts) > 0
    ones = np.ones((1, n_blocks))
    out: dict[str, Interval] = {}

    def ratio_stat(name: str, values: np.ndarray, rows: np.ndarray) -> None:
        num = _block_sums(values[rows], block[rows], n_blocks)
        den = np.bincount(block[rows], minlength=n_blocks).astype(float)
        estimate = float(_ratio(num, den, ones)[0]) if rows.any() else float("nan")
        out[name] = _interval(estimate, lambda: _ratio(num, den, counts), use_ci)

    everything = np.ones(len(score), dtype=bool)
    ratio_stat("mean_delta", score - reference_score, everything)
    disagree = ((score >= threshold) != (reference_score >= threshold)).astype(float)
    ratio_stat("disagreement", disagree, everything)

    if len(score) > 1:
        rows = np.arange(len(score))
        if len(score) * n_blocks > _RANK_MATRIX_CELLS:
            keep = _RANK_MATRIX_CELLS // n_blocks
            rows = np.sort(np.random.default_rng(seed).choice(len(score), keep, replace=False))
        estimate = spearman(score, reference_score)
        out["spearman"] = _interval(
            estimate,
            lambda: _spearman_replicates(score[rows], reference_score[rows], block[rows], n_blocks, counts),
            use_ci,
        )
    else:
        out["spearman"] = Interval(float("nan"))

    labelled = ~np.isnan(label)
    if task == "classification":
        positive = label == 1
        keep = labelled
        if keep.any():
            ua, pos, neg = _mann_whitney_matrix(score[keep], positive[keep], block[keep], n_blocks)
            ub, _, _ = _mann_whitney_matrix(reference_score[keep], positive[keep], block[keep], n_blocks)
            est = float(_auc_replicates(ua - ub, pos, neg, ones)[0])
            out["auc_delta"] = _interval(est, lambda: _auc_replicates(ua - ub, pos, neg, counts), use_ci)
        else:
            out["auc_delta"] = Interval(float("nan"))
        y = label
        pa = np.clip(score, _LOG_CLIP, 1 - _LOG_CLIP)
        pb = np.clip(reference_score, _LOG_CLIP, 1 - _LOG_CLIP)
        with np.errstate(invalid="ignore"):
            loss_a = -(y * np.log(pa) + (1 - y) * np.log(1 - pa))
            loss_b = -(y * np.log(pb) + (1 - y) * np.log(1 - pb))
        ratio_stat("log_loss_delta", loss_a - loss_b, labelled)
        ratio_stat("brier_delta", (score - y) ** 2 - (reference_score - y) ** 2, labelled)
    else:
        ratio_stat("mae_delta", np.abs(score - label) - np.abs(reference_score - label), labelled)
        sq_a = _block_sums(((score - label) ** 2)[labelled], block[labelled], n_blocks)
        sq_b = _block_sums(((reference_score - label) ** 2)[labelled], block[labelled], n_blocks)
        n = np.bincount(block[labelled], minlength=n_blocks).astype(float)

        def rmse_delta(c: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.sqrt((c @ sq_a) / (c @ n)) - np.sqrt((c @ sq_b) / (c @ n))

        est = float(rmse_delta(ones)[0]) if labelled.any() else float("nan")
        out["rmse_delta"] = _interval(est, lambda: rmse_delta(counts), use_ci)
    return out


def _interval(estimate: float, replicates, use_ci: bool) -> Interval:
    if not use_ci or not np.isfinite(estimate):
        return Interval(float(estimate))
    return percentile_interval(estimate, replicates())
