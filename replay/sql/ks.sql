-- ks.sql: Kolmogorov-Smirnov statistic and Wasserstein-1 distance between the two sides of each
-- comparison, both read off the two empirical CDFs.
--
-- Tables: samples  rows shaped like drift_samples.sql
--
-- With F_ref and F_cur evaluated at every distinct value x_1 < x_2 < ... of either side:
--     ks          = max_k |F_ref(x_k) - F_cur(x_k)|
--     wasserstein = sum_k (x_{k+1} - x_k) * |F_ref(x_k) - F_cur(x_k)|
-- (scipy.stats.ks_2samp(...).statistic and scipy.stats.wasserstein_distance).
WITH per_value AS (
    SELECT
        kind, model, reference, window_start, value,
        count(*) FILTER (WHERE side = 'reference') AS c_reference,
        count(*) FILTER (WHERE side = 'current') AS c_current
    FROM {{samples}}
    GROUP BY kind, model, reference, window_start, value
),
ecdf AS (
    SELECT
        kind, model, reference, window_start,
        sum(c_reference) OVER upto / sum(c_reference) OVER comparison AS f_reference,
        sum(c_current) OVER upto / sum(c_current) OVER comparison AS f_current,
        lead(value) OVER upto - value AS gap
    FROM per_value
    WINDOW comparison AS (PARTITION BY kind, model, reference, window_start),
           upto AS (PARTITION BY kind, model, reference, window_start ORDER BY value
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT
    kind, model, reference, window_start,
    max(abs(f_reference - f_current)) AS ks,
    sum(coalesce(gap, 0) * abs(f_reference - f_current)) AS wasserstein
FROM ecdf
GROUP BY kind, model, reference, window_start
ORDER BY kind, model, reference, window_start NULLS FIRST
