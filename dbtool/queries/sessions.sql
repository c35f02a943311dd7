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
       backend_type,
       pid = pg_catalog.pg_backend_pid() AS is_self
FROM pg_catalog.pg_stat_activity
WHERE coalesce(usename, '') <> 'rdsadmin'
  AND (%(all)s OR backend_type = 'client backend')
ORDER BY pid = pg_catalog.pg_backend_pid(), backend_type <> 'client backend', state_change NULLS LAST, pid
