-- drift_samples.sql: the two samples behind each distribution comparison, in long form.
--
-- Tables: scored     rows shaped like scored.sql
-- Params: $champion  the champion model or NULL;  $canary  the canary model or NULL
--
-- One row per value: (kind, model, reference, window_start, side, value), where side is
-- 'reference' or 'current'. psi.sql and ks.sql compare the two sides of each
-- (kind, model, reference, window_start). Kinds:
--   vs_champion          the model's scores against the champion's, over all time
--                        (window_start NULL) and within each window
--   vs_first_window      the model's scores in a window against its own first window
--                        (reference = the model itself); for the frozen canary this is the
--                        input drift signal
--   gap_vs_first_window  the per-request gap (model score - canary score) in a window against
--                        the gap in the first window (reference = the canary): it moves when
--                        the model changes relative to the canary, and stays put when only the
--                        inputs drift
WITH s AS (
    SELECT model, window_start, request_id, score AS value FROM {{scored}}
),
champion AS (
    SELECT window_start, value FROM s WHERE model = $champion
),
challengers AS (
    SELECT DISTINCT model, window_start FROM s WHERE $champion IS NOT NULL AND model <> $champion
),
gaps AS (
    SELECT s.model, s.window_start, s.value - c.value AS value
    FROM s JOIN s AS c ON c.request_id = s.request_id AND c.model = $canary
    WHERE s.model <> $canary
),
model_windows AS (
    SELECT model, window_start, min(window_start) OVER (PARTITION BY model) AS first_window
    FROM (SELECT DISTINCT model, window_start FROM s)
),
gap_windows AS (
    SELECT model, window_start, min(window_start) OVER (PARTITION BY model) AS first_window
    FROM (SELECT DISTINCT model, window_start FROM gaps)
)
-- vs_champion, over all time
SELECT 'vs_champion' AS kind, model, CAST($champion AS VARCHAR) AS reference,
       CAST(NULL AS TIMESTAMPTZ) AS window_start, 'current' AS side, value
FROM s WHERE $champion IS NOT NULL AND model <> $champion
UNION ALL
SELECT 'vs_champion', m.model, $champion, NULL, 'reference', c.value
FROM (SELECT DISTINCT model FROM challengers) AS m CROSS JOIN champion AS c
-- vs_champion, per window
UNION ALL
SELECT 'vs_champion', model, $champion, window_start, 'current', value
FROM s WHERE $champion IS NOT NULL AND model <> $champion
UNION ALL
SELECT 'vs_champion', w.model, $champion, w.window_start, 'reference', c.value
FROM challengers AS w JOIN champion AS c USING (window_start)
-- vs_first_window
UNION ALL
SELECT 'vs_first_window', model, model, window_start, 'current', value FROM s
UNION ALL
SELECT 'vs_first_window', w.model, w.model, w.window_start, 'reference', s.value
FROM model_windows AS w JOIN s ON s.model = w.model AND s.window_start = w.first_window
-- gap_vs_first_window
UNION ALL
SELECT 'gap_vs_first_window', model, $canary, window_start, 'current', value FROM gaps
UNION ALL
SELECT 'gap_vs_first_window', w.model, $canary, w.window_start, 'reference', g.value
FROM gap_windows AS w JOIN gaps AS g ON g.model = w.model AND g.window_start = w.first_window
