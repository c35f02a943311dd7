-- purpose: the sessions a forced DROP DATABASE is about to end, named before it ends them
SELECT pid, coalesce(usename, '') AS "user", coalesce(application_name, '') AS application
FROM pg_catalog.pg_stat_activity
WHERE datname = %(dbname)s AND pid <> pg_catalog.pg_backend_pid()
ORDER BY pid
