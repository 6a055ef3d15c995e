-- classification.sql: quality of probability scores against 0/1 labels.
--
-- Tables: scored     rows shaped like scored.sql (label NULL = no outcome known by the cut-off)
-- Params: $threshold a score >= $threshold predicts the positive class
--         $by_window BOOLEAN: false gives one row per model (window_start NULL)
--
-- AUC is the Mann-Whitney rank sum: (sum of positive ranks - P(P+1)/2) / (P*N), where tied
-- scores share their average rank, so a tie between a positive and a negative counts one half
-- (the same value as sklearn.metrics.roc_auc_score). NULL when a class is missing.
-- Log loss clips the score to [1e-15, 1 - 1e-15]; Brier uses the score as given.
-- Precision is NULL when nothing is predicted positive; recall when there are no positives.
WITH labelled AS (
    SELECT
        model,
        CASE WHEN $by_window THEN window_start END AS window_start,
        score,
        label,
        greatest(least(score, 1 - 1e-15), 1e-15) AS p,
        score >= $threshold AS predicted,
        label = 1 AS actual
    FROM {{scored}}
    WHERE label IS NOT NULL AND NOT isnan(label)
),
ranked AS (
    SELECT
        *,
        rank() OVER (PARTITION BY model, window_start ORDER BY score)
            + (count(*) OVER (PARTITION BY model, window_start, score) - 1) / 2.0 AS score_rank
    FROM labelled
),
sums AS (
    SELECT
        model,
        window_start,
        count(*) AS n_labeled,
        count(*) FILTER (WHERE actual) AS n_positive,
        count(*) FILTER (WHERE NOT actual) AS n_negative,
        sum(score_rank) FILTER (WHERE actual) AS positive_rank_sum,
        -avg(label * ln(p) + (1 - label) * ln(1 - p)) AS log_loss,
        avg((score - label) ^ 2) AS brier,
        avg(CASE WHEN predicted = actual THEN 1.0 ELSE 0.0 END) AS accuracy,
        count(*) FILTER (WHERE predicted AND actual) AS true_positive,
        count(*) FILTER (WHERE predicted) AS predicted_positive
    FROM ranked
    GROUP BY model, window_start
)
SELECT
    model,
    window_start,
    n_labeled,
    n_positive,
    n_positive / n_labeled AS base_rate,
    (positive_rank_sum - n_positive * (n_positive + 1) / 2.0)
        / nullif(n_positive * n_negative, 0) AS auc,
    log_loss,
    brier,
    accuracy,
    true_positive / nullif(predicted_positive, 0) AS precision,
    true_positive / nullif(n_positive, 0) AS recall
FROM sums
ORDER BY model, window_start
