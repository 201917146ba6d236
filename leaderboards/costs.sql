-- title: Cost and time
-- description: API spend, training and generation time and tokens per candidate.
-- layout: table
-- order: 40
SELECT name AS candidate, kind, cost_usd, train_seconds, gen_seconds, tokens_seen, status
FROM candidates
WHERE run_id = $run_id
ORDER BY coalesce(cost_usd, 0), name
