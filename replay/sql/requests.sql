-- requests.sql: the requests a model could have scored, one row each, with its window.
--
-- Tables: inputs   an input topic (model_input schema): request_id, event_time. When the
--                  evaluation has no input topic, it passes the scored table instead, so the
--                  denominator becomes "requests scored by any model".
-- Params: $window  the window length (INTERVAL string), aligned on UTC as in scored.sql
SELECT
    CAST(request_id AS VARCHAR) AS request_id,
    timezone('UTC', time_bucket(
        CAST($window AS INTERVAL), timezone('UTC', CAST(min(event_time) AS TIMESTAMPTZ))
    )) AS window_start
FROM {{inputs}}
WHERE request_id IS NOT NULL
GROUP BY 1
