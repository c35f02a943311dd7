-- purpose: end the sessions left on a database that only dbtool knows by its name, before renaming it
SELECT pg_catalog.pg_terminate_backend(pid)
FROM pg_catalog.pg_stat_activity
WHERE datname = %(dbname)s AND pid <> pg_catalog.pg_backend_pid()
