-- purpose: a migration's lock_timeout or statement_timeout, for its transaction (local) or its session
SELECT pg_catalog.set_config(%(name)s, %(value)s, %(local)s)
