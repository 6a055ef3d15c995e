-- histogram.sql: histogram of one column per model, on bins shared by all models (so the
-- histograms overlay), equal-width or, for heavy tails, log-spaced.
--
-- Tables: scored     rows shaped like scored.sql
--         column     the column to histogram (e.g. score, latency_ms)
-- Params: $bins      the number of bins
--         $upper_q   equal-width bins span [min, quantile_cont($upper_q)]; values above fall into
--                    the last bin (1.0 for the full range; 0.99 keeps latency tails from
--                    squashing it)
--         $log_ratio log-spaced bins when max / median > $log_ratio (over every model's values,
--                    the median positive; NULL or 0: never). They span [the least positive
--                    value, max], no tail folded; values <= 0 fall into the first bin
--
-- Every row carries `log_x` (the bins are log-spaced) and its model's sample `skewness`.
WITH v AS (
    SELECT model, CAST({{column}} AS DOUBLE) AS x
    FROM {{scored}}
    WHERE {{column}} IS NOT NULL AND NOT isnan(CAST({{column}} AS DOUBLE))
),
stats AS (
    SELECT
        min(x) AS lo_all,
        quantile_cont(x, $upper_q) AS q_hi,
        quantile_cont(x, 0.5) AS p50,
        max(x) AS mx,
        coalesce(min(x) FILTER (WHERE x > 0), 1.0) AS pos
    FROM v
),
bounds AS (
    SELECT
        *,
        coalesce($log_ratio > 0 AND p50 > 0 AND mx / p50 > $log_ratio, false) AS log_x
    FROM stats
),
edges AS (
    SELECT
        log_x,
        pos,
        CASE WHEN log_x THEN ln(pos) ELSE lo_all END AS lo,
        CASE WHEN log_x THEN ln(greatest(mx, pos)) ELSE q_hi END AS hi
    FROM bounds
),
skew AS (
    SELECT model, skewness(x) AS skewness FROM v GROUP BY model
),
binned AS (
    SELECT
        v.model, e.lo, e.hi, e.log_x,
        CAST(least(greatest(coalesce(floor(
            ((CASE WHEN e.log_x THEN ln(greatest(v.x, e.pos)) ELSE v.x END) - e.lo)
            / nullif(e.hi - e.lo, 0) * $bins), 0), 0), $bins - 1) AS INTEGER) AS bin
    FROM v CROSS JOIN edges AS e
)
SELECT
    b.model,
    b.bin,
    CASE WHEN b.log_x THEN exp(b.lo + b.bin * (b.hi - b.lo) / $bins)
         ELSE b.lo + b.bin * (b.hi - b.lo) / $bins END AS bin_lo,
    CASE WHEN b.log_x THEN exp(b.lo + (b.bin + 1) * (b.hi - b.lo) / $bins)
         ELSE b.lo + (b.bin + 1) * (b.hi - b.lo) / $bins END AS bin_hi,
    count(*) AS n,
    b.log_x,
    any_value(s.skewness) AS skewness
FROM binned AS b
JOIN skew AS s USING (model)
GROUP BY b.model, b.bin, b.lo, b.hi, b.log_x
ORDER BY b.model, b.bin
