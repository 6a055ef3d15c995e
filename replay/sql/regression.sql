-- regression.sql: quality of numeric predictions against numeric labels.
--
-- Tables: scored     rows shaped like scored.sql (label NULL = no outcome known by the cut-off)
-- Params: $by_window BOOLEAN: false gives one row per model (window_start NULL)
--
-- bias is mean(score - label): positive means the model over-predicts.
SELECT
    model,
    CASE WHEN $by_window THEN window_start END AS window_start,
    count(*) AS n_labeled,
    avg(abs(score - label)) AS mae,
    sqrt(avg((score - label) ^ 2)) AS rmse,
    avg(score - label) AS bias
FROM {{scored}}
WHERE label IS NOT NULL AND NOT isnan(label)
GROUP BY ALL
ORDER BY ALL
