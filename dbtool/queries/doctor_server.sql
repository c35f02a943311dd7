-- purpose: doctor's server facts: version, whether it is a read-only replica, and this session's TLS
SELECT current_setting('server_version') AS version,
       pg_catalog.pg_is_in_recovery() AS in_recovery,
       coalesce(ssl.ssl, false) AS ssl,
       ssl.version AS ssl_version
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_stat_ssl AS ssl ON ssl.pid = pg_catalog.pg_backend_pid()
