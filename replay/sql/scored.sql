-- scored.sql: one row per (model, request): the score, its latency, its window and its outcome.
--
-- Tables: raw_scores  rows shaped like scores.sql (one or more score topics appended together)
--         outcomes    rows shaped like outcomes.sql (already fenced at the cut-off)
-- Params: $window     the window length, an INTERVAL string such as '1 day' or '6 hours'
--
-- * A score row with a NULL or NaN score counts as "not scored".
-- * If a model scored one request more than once in one topic (retries, re-runs), the last
--   appended score is kept.
-- * `model` is the model_id, or `model_id@source` when the same model_id appears in more than
--   one score topic (e.g. the production champion and its replay), so they stay apart.
-- * Windows are aligned on UTC, by the score's event time (a replayed score carries the event
--   time of the input it scored).
WITH latest AS (
    SELECT *
    FROM {{raw_scores}}
    WHERE score IS NOT NULL AND NOT isnan(score) AND request_id IS NOT NULL
    QUALIFY row_number() OVER (
        PARTITION BY source, model_id, request_id
        ORDER BY _append_time DESC, _partition DESC, _offset DESC
    ) = 1
),
sources_per_model AS (
    SELECT model_id, count(DISTINCT source) AS n_sources FROM latest GROUP BY model_id
)
SELECT
    CASE WHEN m.n_sources > 1 THEN l.model_id || '@' || l.source ELSE l.model_id END AS model,
    l.source,
    l.model_id,
    l.model_version,
    l.request_id,
    l.event_time,
    timezone('UTC', time_bucket(CAST($window AS INTERVAL), timezone('UTC', l.event_time)))
        AS window_start,
    l.score,
    l.latency_ms,
    o.label,
    o.reward,
    o.known_at AS outcome_known_at
FROM latest AS l
JOIN sources_per_model AS m USING (model_id)
LEFT JOIN {{outcomes}} AS o USING (request_id)
