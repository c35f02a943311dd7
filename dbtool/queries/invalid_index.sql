-- purpose: the INVALID index a failed CREATE INDEX CONCURRENTLY left, by its name (any schema)
SELECT n.nspname, c.relname, c.oid::pg_catalog.regclass::text
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND c.relname = %(name)s
