-- coverage.sql: share of requests each model scored, overall or per window.
--
-- Tables: scored     rows shaped like scored.sql
--         requests   rows shaped like requests.sql (the denominator)
-- Params: $by_window BOOLEAN: false gives one row per model (window_start NULL)
--
-- A request belongs to the window of its input's event time; a model covers it if it has a
-- score for that request_id, whenever the score was made.
WITH requests AS (
    SELECT request_id, CASE WHEN $by_window THEN window_start END AS window_start
    FROM {{requests}}
),
totals AS (
    SELECT window_start, count(*) AS n_requests FROM requests GROUP BY window_start
),
hits AS (
    SELECT s.model, r.window_start, count(DISTINCT s.request_id) AS n_covered
    FROM {{scored}} AS s JOIN requests AS r USING (request_id)
    GROUP BY s.model, r.window_start
),
models AS (SELECT DISTINCT model FROM {{scored}})
SELECT
    m.model,
    t.window_start,
    t.n_requests,
    coalesce(h.n_covered, 0) AS n_covered,
    coalesce(h.n_covered, 0) / t.n_requests AS coverage
FROM models AS m
CROSS JOIN totals AS t
LEFT JOIN hits AS h ON h.model = m.model AND h.window_start IS NOT DISTINCT FROM t.window_start
ORDER BY m.model, t.window_start
