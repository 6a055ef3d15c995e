-- label_maturity.sql: per window, how many of its requests have an outcome known by the cut-off,
-- and the label delay over every request whose outcome is known.
--
-- Tables: scored  rows shaped like scored.sql (outcomes already fenced at the cut-off)
-- Params: $window the window length (INTERVAL string), aligned on UTC as in scored.sql
--
-- A request is counted once: its window is the earliest window any model scored it in, its time
-- the earliest score event time (a replayed score carries its input's event time). Its label
-- delay is the outcome's append time minus that time, in seconds. The delay quantiles are over
-- all windows (the same on every row). Outcomes appended after the cut-off are not seen, so the
-- delays are those of the labels known by then.
WITH req AS (
    SELECT
        request_id,
        min(window_start) AS window_start,
        min(event_time) AS event_time,
        max(outcome_known_at) AS known_at,
        bool_or(label IS NOT NULL AND NOT isnan(label)) AS labeled
    FROM {{scored}}
    GROUP BY request_id
),
delays AS (
    SELECT
        quantile_cont(epoch(known_at - event_time), [0.5, 0.9]) AS q,
        max(epoch(known_at - event_time)) AS mx
    FROM req
    WHERE labeled
)
SELECT
    r.window_start,
    timezone('UTC', timezone('UTC', r.window_start) + CAST($window AS INTERVAL)) AS window_end,
    count(*) AS n_requests,
    count(*) FILTER (WHERE r.labeled) AS n_labeled,
    count(*) FILTER (WHERE r.labeled) / count(*) AS label_rate,
    any_value(d.q[1]) AS delay_p50_s,
    any_value(d.q[2]) AS delay_p90_s,
    any_value(d.mx) AS delay_max_s
FROM req AS r
CROSS JOIN delays AS d
GROUP BY r.window_start
ORDER BY r.window_start
