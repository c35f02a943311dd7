-- purpose: a statement-by-statement migration's limits end with it (back to the session's defaults)
SELECT pg_catalog.set_config(name, reset_val, false)
FROM pg_catalog.pg_settings
WHERE name IN ('lock_timeout', 'statement_timeout')
