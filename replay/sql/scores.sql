-- scores.sql: one score topic (model_score schema), normalized for evaluation.
--
-- Tables: topic   a score topic (production or replay output): request_id, event_time, model_id,
--                 model_version, score, latency_ms and the system columns _append_time,
--                 _partition, _offset. Other columns are ignored.
-- Params: $source the topic's name, kept as the `source` column.
--
-- The evaluation runs this once per score topic and appends the results into one table,
-- which is the "UNION ALL BY NAME of the common columns" of several score topics.
SELECT
    CAST($source AS VARCHAR)        AS source,
    CAST(request_id AS VARCHAR)     AS request_id,
    CAST(event_time AS TIMESTAMPTZ) AS event_time,
    CAST(model_id AS VARCHAR)       AS model_id,
    CAST(model_version AS VARCHAR)  AS model_version,
    CAST(score AS DOUBLE)           AS score,
    CAST(latency_ms AS DOUBLE)      AS latency_ms,
    _append_time,
    _partition,
    _offset
FROM {{topic}}
