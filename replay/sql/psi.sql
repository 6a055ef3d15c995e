-- psi.sql: population stability index between the two sides of each comparison.
--
-- Tables: samples     rows shaped like drift_samples.sql
-- Params: $psi_shift  flag 'shift' at or above this (conventionally 0.1)
--         $psi_alert  flag 'alert' at or above this (conventionally 0.25)
--
-- Bins come from the reference side: its deciles (quantile_cont at 0.1 .. 0.9, duplicates
-- removed when scores tie), giving up to 10 bins (-inf, q1], (q1, q2], ..., (q9, +inf).
-- A value's bin is the number of edges strictly below it. Each bin's share is floored at 1e-4
-- so an empty bin gives a large but finite term:
--     PSI = sum over bins of (current - reference) * ln(current / reference)
WITH deciles AS (
    SELECT
        kind, model, reference, window_start,
        list_sort(list_distinct(
            quantile_cont(value, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        )) AS edges
    FROM {{samples}}
    WHERE side = 'reference'
    GROUP BY kind, model, reference, window_start
),
edges AS (
    -- one scalar per edge (NULL past the end): comparing scalars row by row is ~15x faster
    -- than indexing a list per row
    SELECT
        kind, model, reference, window_start,
        edges[1] AS e1, edges[2] AS e2, edges[3] AS e3, edges[4] AS e4, edges[5] AS e5,
        edges[6] AS e6, edges[7] AS e7, edges[8] AS e8, edges[9] AS e9
    FROM deciles
),
binned AS (
    SELECT
        s.kind, s.model, s.reference, s.window_start, s.side,
        -- the number of edges strictly below the value (a NULL edge counts 0)
        coalesce((e.e1 < s.value)::INT, 0) + coalesce((e.e2 < s.value)::INT, 0)
        + coalesce((e.e3 < s.value)::INT, 0) + coalesce((e.e4 < s.value)::INT, 0)
        + coalesce((e.e5 < s.value)::INT, 0) + coalesce((e.e6 < s.value)::INT, 0)
        + coalesce((e.e7 < s.value)::INT, 0) + coalesce((e.e8 < s.value)::INT, 0)
        + coalesce((e.e9 < s.value)::INT, 0) AS bin
    FROM {{samples}} AS s
    JOIN edges AS e
      ON e.kind = s.kind AND e.model = s.model AND e.reference = s.reference
     AND e.window_start IS NOT DISTINCT FROM s.window_start
),
counts AS (
    SELECT
        kind, model, reference, window_start, bin,
        count(*) FILTER (WHERE side = 'reference') AS n_reference,
        count(*) FILTER (WHERE side = 'current') AS n_current
    FROM binned
    GROUP BY kind, model, reference, window_start, bin
),
shares AS (
    SELECT
        *,
        greatest(n_reference / sum(n_reference) OVER comparison, 1e-4) AS p_reference,
        greatest(n_current / sum(n_current) OVER comparison, 1e-4) AS p_current
    FROM counts
    WINDOW comparison AS (PARTITION BY kind, model, reference, window_start)
)
SELECT
    kind, model, reference, window_start,
    CAST(sum(n_reference) AS BIGINT) AS n_reference,
    CAST(sum(n_current) AS BIGINT) AS n_current,
    sum((p_current - p_reference) * ln(p_current / p_reference)) AS psi,
    CASE
        WHEN sum((p_current - p_reference) * ln(p_current / p_reference)) >= $psi_alert THEN 'alert'
        WHEN sum((p_current - p_reference) * ln(p_current / p_reference)) >= $psi_shift THEN 'shift'
        ELSE 'stable'
    END AS psi_flag
FROM shares
GROUP BY kind, model, reference, window_start
HAVING sum(n_current) > 0
ORDER BY kind, model, reference, window_start NULLS FIRST
