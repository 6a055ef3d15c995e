-- feature_drift.sql: population stability index of every input feature, each later window against
-- the feature's first window (the reference).
--
-- Tables: feature_values  one row per (request, feature): feature, kind ('numeric' or
--                         'categorical'), window_start, num (DOUBLE, numeric features) and cat
--                         (VARCHAR, categorical features); NULL for a missing value
-- Params: $psi_shift      flag 'shift' at or above this (conventionally 0.1)
--         $psi_alert      flag 'alert' at or above this (conventionally 0.25)
--
-- Numeric features are binned as psi.sql bins scores: by the reference window's deciles
-- (quantile_cont at 0.1 .. 0.9, duplicates removed), a value's bin being the number of edges
-- strictly below it. A categorical feature's bins are its values. A missing value (NULL, NaN, a
-- map key the row lacks) is a bin of its own, so a feature that starts to go missing drifts.
-- Each bin's share is floored at 1e-4 on either side:
--     PSI = sum over bins of (current - reference) * ln(current / reference)
-- The first window is the reference of every later one and gets no row itself.
WITH firsts AS (
    SELECT feature, min(window_start) AS first_window FROM {{feature_values}} GROUP BY feature
),
tagged AS (
    SELECT v.*, f.first_window, v.window_start = f.first_window AS is_reference
    FROM {{feature_values}} AS v JOIN firsts AS f USING (feature)
),
deciles AS (
    SELECT
        feature,
        list_sort(list_distinct(
            quantile_cont(num, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        )) AS edges
    FROM tagged
    WHERE is_reference AND kind = 'numeric' AND num IS NOT NULL AND NOT isnan(num)
    GROUP BY feature
),
edges AS (
    -- one scalar per edge (NULL past the end), as psi.sql
    SELECT
        feature,
        edges[1] AS e1, edges[2] AS e2, edges[3] AS e3, edges[4] AS e4, edges[5] AS e5,
        edges[6] AS e6, edges[7] AS e7, edges[8] AS e8, edges[9] AS e9
    FROM deciles
),
binned AS (
    SELECT
        t.feature, t.kind, t.window_start, t.first_window, t.is_reference,
        CASE
            WHEN t.kind = 'categorical' THEN coalesce('=' || t.cat, '(missing)')
            WHEN t.num IS NULL OR isnan(t.num) THEN '(missing)'
            ELSE CAST(
                coalesce((e.e1 < t.num)::INT, 0) + coalesce((e.e2 < t.num)::INT, 0)
                + coalesce((e.e3 < t.num)::INT, 0) + coalesce((e.e4 < t.num)::INT, 0)
                + coalesce((e.e5 < t.num)::INT, 0) + coalesce((e.e6 < t.num)::INT, 0)
                + coalesce((e.e7 < t.num)::INT, 0) + coalesce((e.e8 < t.num)::INT, 0)
                + coalesce((e.e9 < t.num)::INT, 0) AS VARCHAR)
        END AS bin
    FROM tagged AS t LEFT JOIN edges AS e USING (feature)
),
reference AS (
    SELECT feature, bin, count(*) AS n FROM binned WHERE is_reference GROUP BY feature, bin
),
current AS (
    SELECT feature, window_start, bin, count(*) AS n FROM binned WHERE NOT is_reference
    GROUP BY feature, window_start, bin
),
comparisons AS (
    SELECT DISTINCT feature, kind, window_start, first_window FROM binned WHERE NOT is_reference
),
bins AS (
    -- every bin a side of any comparison of the feature holds: a bin empty on both sides of one
    -- comparison adds (1e-4 - 1e-4) * ln(1) = 0 to it
    SELECT feature, bin FROM reference UNION SELECT feature, bin FROM current
),
counted AS (
    SELECT
        c.feature, c.kind, c.window_start, c.first_window, b.bin,
        coalesce(r.n, 0) AS n_reference,
        coalesce(x.n, 0) AS n_current
    FROM comparisons AS c
    JOIN bins AS b ON b.feature = c.feature
    LEFT JOIN reference AS r ON r.feature = c.feature AND r.bin = b.bin
    LEFT JOIN current AS x ON x.feature = c.feature AND x.window_start = c.window_start AND x.bin = b.bin
),
shares AS (
    SELECT
        *,
        greatest(n_reference / sum(n_reference) OVER comparison, 1e-4) AS p_reference,
        greatest(n_current / sum(n_current) OVER comparison, 1e-4) AS p_current
    FROM counted
    WINDOW comparison AS (PARTITION BY feature, window_start)
),
psi AS (
    SELECT
        feature, kind, window_start, first_window AS reference_window,
        CAST(sum(n_reference) AS BIGINT) AS n_reference,
        CAST(sum(n_current) AS BIGINT) AS n_current,
        sum(n_reference) FILTER (WHERE bin = '(missing)') AS missing_reference,
        sum(n_current) FILTER (WHERE bin = '(missing)') AS missing_current,
        sum((p_current - p_reference) * ln(p_current / p_reference)) AS psi
    FROM shares
    GROUP BY feature, kind, window_start, first_window
)
SELECT
    feature, kind, window_start, reference_window, n_reference, n_current,
    coalesce(missing_reference, 0) / n_reference AS missing_reference,
    coalesce(missing_current, 0) / n_current AS missing_current,
    psi,
    CASE WHEN psi >= $psi_alert THEN 'alert' WHEN psi >= $psi_shift THEN 'shift' ELSE 'stable' END AS psi_flag
FROM psi
ORDER BY feature, window_start
