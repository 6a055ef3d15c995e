-- score_counts.sql: labelled rows per (model, distinct score): how many are positive and how
-- many negative, highest score first. Cumulative sums of these counts are the ROC and
-- precision-recall curves at every threshold (replay.evaluation.curves).
--
-- Tables: scored  rows shaped like scored.sql (label NULL = no outcome known by the cut-off)
-- Params: none
--
-- A row predicts positive when score >= threshold, as in classification.sql, so the curve point
-- of a distinct score counts every row scored at or above it; tied rows move together.
SELECT
    model,
    score,
    count(*) FILTER (WHERE label = 1) AS n_positive,
    count(*) FILTER (WHERE label <> 1) AS n_negative
FROM {{scored}}
WHERE label IS NOT NULL AND NOT isnan(label)
GROUP BY model, score
ORDER BY model, score DESC
