-- latency.sql: latency percentiles (milliseconds) where the score records one.
--
-- Tables: scored     rows shaped like scored.sql
-- Params: $by_window BOOLEAN: false gives one row per model (window_start NULL)
--
-- quantile_cont interpolates linearly between order statistics (numpy's default method).
SELECT
    model,
    CASE WHEN $by_window THEN window_start END AS window_start,
    count(latency_ms) AS latency_n,
    quantile_cont(latency_ms, 0.50) AS latency_p50,
    quantile_cont(latency_ms, 0.95) AS latency_p95,
    quantile_cont(latency_ms, 0.99) AS latency_p99
FROM {{scored}}
WHERE latency_ms IS NULL OR NOT isnan(latency_ms)
GROUP BY ALL
ORDER BY ALL
