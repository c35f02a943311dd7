-- purpose: migrate check: the relation locks this session holds (in the migration's transaction)
SELECT l.relation::bigint, l.mode
FROM pg_catalog.pg_locks l
WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND l.relation IS NOT NULL
