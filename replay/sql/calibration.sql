-- calibration.sql: reliability diagram data: mean score against mean label per score bin.
--
-- Tables: scored  rows shaped like scored.sql
-- Params: $lo, $hi  the score range split into $bins equal-width bins (0 and 1 for
--                   probabilities); scores outside fall into the first or last bin
--         $bins     the number of bins
SELECT
    model,
    bin,
    $lo + bin * ($hi - $lo) / $bins AS bin_lo,
    $lo + (bin + 1) * ($hi - $lo) / $bins AS bin_hi,
    count(*) AS n,
    avg(score) AS mean_score,
    avg(label) AS mean_label
FROM (
    SELECT
        model, score, label,
        CAST(least(greatest(floor((score - $lo) / nullif($hi - $lo, 0) * $bins), 0), $bins - 1)
             AS INTEGER) AS bin
    FROM {{scored}}
    WHERE label IS NOT NULL AND NOT isnan(label)
)
GROUP BY model, bin
ORDER BY model, bin
