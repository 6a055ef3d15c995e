-- paired_rows.sql: request-by-request pairs of each model with a reference model.
--
-- Tables: scored      rows shaped like scored.sql
-- Params: $reference  the reference model (champion or canary), as named in scored.model
--
-- Only requests scored by both count, so differences come from the models, not the traffic.
SELECT
    s.model,
    CAST($reference AS VARCHAR) AS reference,
    s.window_start,
    s.request_id,
    s.score,
    r.score AS reference_score,
    s.label
FROM {{scored}} AS s
JOIN {{scored}} AS r ON r.request_id = s.request_id AND r.model = $reference
WHERE s.model <> $reference
ORDER BY s.model, s.window_start, s.request_id
