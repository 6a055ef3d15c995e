-- outcomes.sql: the outcome of each request as known at the evaluation's cut-off.
--
-- Tables: outcomes  an outcome topic: request_id, event_time (when the outcome happened), label,
--                   reward, and the system columns _append_time, _partition, _offset.
-- Params: $cutoff   TIMESTAMPTZ. An outcome counts only if the log had it by then.
--
-- The fence is the log's append time, not the outcome's event time: event time says when the
-- outcome happened, append time says when we could have known it. Late corrections and
-- backfills carry an old event time but a new append time, so filtering on event time would
-- let them leak into an evaluation "as of" a past date. Of several outcomes for one request,
-- the latest appended by the cut-off wins (ties: higher partition, then higher offset).
SELECT
    CAST(request_id AS VARCHAR)     AS request_id,
    CAST(label AS DOUBLE)           AS label,
    CAST(reward AS DOUBLE)          AS reward,
    CAST(event_time AS TIMESTAMPTZ) AS outcome_time,
    _append_time                    AS known_at
FROM {{outcomes}}
WHERE _append_time <= CAST($cutoff AS TIMESTAMPTZ)
QUALIFY row_number() OVER (
    PARTITION BY request_id ORDER BY _append_time DESC, _partition DESC, _offset DESC
) = 1
