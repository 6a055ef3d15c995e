-- paired.sql: each model against a reference model on the same requests.
--
-- Tables: scored      rows shaped like scored.sql
-- Params: $reference  the reference model (champion or canary), as named in scored.model
--         $threshold  the decision threshold: a disagreement is a pair on different sides of it
--                     (score >= $threshold on one side, < on the other)
--         $by_window  BOOLEAN: false gives one row per model (window_start NULL)
--
-- mean_delta is mean(score - reference score). spearman is the Pearson correlation of average
-- ranks (ties share their average rank), i.e. scipy.stats.spearmanr. Confidence intervals are
-- not here: they come from a block bootstrap over windows (replay/metrics.py).
WITH pairs AS (
    SELECT
        s.model,
        CAST($reference AS VARCHAR) AS reference,
        CASE WHEN $by_window THEN s.window_start END AS window_start,
        s.score,
        r.score AS reference_score,
        s.label
    FROM {{scored}} AS s
    JOIN {{scored}} AS r ON r.request_id = s.request_id AND r.model = $reference
    WHERE s.model <> $reference
),
ranked AS (
    SELECT
        *,
        rank() OVER (PARTITION BY model, window_start ORDER BY score)
            + (count(*) OVER (PARTITION BY model, window_start, score) - 1) / 2.0 AS score_rank,
        rank() OVER (PARTITION BY model, window_start ORDER BY reference_score)
            + (count(*) OVER (PARTITION BY model, window_start, reference_score) - 1) / 2.0
            AS reference_rank
    FROM pairs
)
SELECT
    model,
    reference,
    window_start,
    count(*) AS n_paired,
    count(label) AS n_labeled,
    avg(score - reference_score) AS mean_delta,
    avg(CASE WHEN (score >= $threshold) <> (reference_score >= $threshold) THEN 1.0 ELSE 0.0 END)
        AS disagreement,
    corr(score_rank, reference_rank) AS spearman
FROM ranked
GROUP BY model, reference, window_start
ORDER BY model, window_start
