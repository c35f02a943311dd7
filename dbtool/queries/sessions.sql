-- purpose: the server's sessions for `dbtool sessions`; works for non-superusers (RDS master users)
SELECT pid,
       coalesce(usename, '') AS "user",
       coalesce(datname, '') AS database,
       coalesce(host(client_addr), CASE WHEN backend_type = 'client backend' THEN 'local' ELSE '' END) AS client,
       coalesce(application_name, '') AS application,
       coalesce(state, '') AS state,
       extract(epoch FROM clock_timestamp() - state_change)::float8 AS state_seconds,
       concat_ws(':', wait_event_type, wait_event) AS wait,
       coalesce(query, '') AS query,
       coalesce(backend_type, '') AS backend_type,
       pid = pg_catalog.pg_backend_pid() AS is_self
FROM pg_catalog.pg_stat_activity
WHERE coalesce(usename, '') <> 'rdsadmin'
  -- A non-superuser sees backend_type as NULL for other users' sessions; those with a database
  -- are clients (background workers have none).
  AND (%(all)s OR backend_type = 'client backend' OR (backend_type IS NULL AND datname IS NOT NULL))
ORDER BY pid = pg_catalog.pg_backend_pid(), backend_type <> 'client backend', state_change NULLS LAST, pid
