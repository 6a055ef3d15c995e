-- volume.sql: how much each model scored, where from, which versions, and how much is labelled.
--
-- Tables: scored     rows shaped like scored.sql
-- Params: $by_window BOOLEAN: false gives one row per model (window_start NULL)
SELECT
    model,
    CASE WHEN $by_window THEN window_start END AS window_start,
    string_agg(DISTINCT source, ', ' ORDER BY source) AS sources,
    string_agg(DISTINCT model_version, ', ' ORDER BY model_version) AS versions,
    count(*) AS n,
    count(label) AS n_labeled,
    min(event_time) AS first_event,
    max(event_time) AS last_event
FROM {{scored}}
GROUP BY ALL
ORDER BY ALL
