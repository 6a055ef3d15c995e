-- histogram.sql: equal-width histogram of one column per model, on a range shared by all models
-- (so the histograms overlay).
--
-- Tables: scored   rows shaped like scored.sql
--         column   the column to histogram (e.g. score, latency_ms)
-- Params: $bins    the number of bins
--         $upper_q the range is [min, quantile_cont($upper_q)]; values above fall into the
--                  last bin (1.0 for the full range; 0.99 keeps latency tails from squashing it)
WITH v AS (
    SELECT model, CAST({{column}} AS DOUBLE) AS x
    FROM {{scored}}
    WHERE {{column}} IS NOT NULL AND NOT isnan(CAST({{column}} AS DOUBLE))
),
bounds AS (
    SELECT min(x) AS lo, quantile_cont(x, $upper_q) AS hi FROM v
)
SELECT
    model,
    bin,
    lo + bin * (hi - lo) / $bins AS bin_lo,
    lo + (bin + 1) * (hi - lo) / $bins AS bin_hi,
    count(*) AS n
FROM (
    SELECT
        v.model, b.lo, b.hi,
        CAST(least(greatest(coalesce(floor((v.x - b.lo) / nullif(b.hi - b.lo, 0) * $bins), 0), 0),
                   $bins - 1) AS INTEGER) AS bin
    FROM v CROSS JOIN bounds AS b
)
GROUP BY model, bin, lo, hi
ORDER BY model, bin
