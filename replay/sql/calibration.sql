-- calibration.sql: reliability diagram data: mean score against mean label per score bin.
--
-- Tables: scored  rows shaped like scored.sql
-- Params: $lo, $hi  the score range split into $bins equal-width bins (0 and 1 for
--                   probabilities); scores outside fall into the first or last bin
--         $bins     the number of bins
--
-- mean_label_low / mean_label_high: the Wilson score 95% interval (z = 1.959964) of the label
-- rate p = k/n of the bin (z^2 = 3.841459), for bins whose labels are all 0 or 1 (NULL otherwise):
--     (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
WITH binned AS (
    SELECT
        model, score, label,
        CAST(least(greatest(floor((score - $lo) / nullif($hi - $lo, 0) * $bins), 0), $bins - 1)
             AS INTEGER) AS bin
    FROM {{scored}}
    WHERE label IS NOT NULL AND NOT isnan(label)
),
bins AS (
    SELECT
        model,
        bin,
        count(*) AS n,
        avg(score) AS mean_score,
        avg(label) AS mean_label,
        bool_and(label IN (0, 1)) AS is_binary
    FROM binned
    GROUP BY model, bin
),
wilson AS (
    SELECT
        *,
        (mean_label + 3.841458820694124 / (2 * n)) / (1 + 3.841458820694124 / n) AS center,
        1.959963984540054 / (1 + 3.841458820694124 / n)
            * sqrt(greatest(mean_label * (1 - mean_label), 0) / n + 3.841458820694124 / (4 * n * n)) AS half
    FROM bins
)
SELECT
    model,
    bin,
    $lo + bin * ($hi - $lo) / $bins AS bin_lo,
    $lo + (bin + 1) * ($hi - $lo) / $bins AS bin_hi,
    n,
    mean_score,
    mean_label,
    CASE WHEN is_binary THEN greatest(center - half, 0.0) END AS mean_label_low,
    CASE WHEN is_binary THEN least(center + half, 1.0) END AS mean_label_high
FROM wilson
ORDER BY model, bin
