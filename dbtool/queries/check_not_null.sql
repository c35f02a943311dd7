-- purpose: migrate check: a table's validated CHECK constraints (one proving a column NOT NULL lets SET NOT NULL skip its scan)
SELECT pg_catalog.pg_get_constraintdef(k.oid)
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND k.contype = 'c' AND k.convalidated
