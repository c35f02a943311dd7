-- purpose: where schema_migrations is (for a qualified INSERT) and whether it has dbtool's columns; no row: no table
SELECT n.nspname, c.relname,
       (SELECT count(*) FROM pg_catalog.pg_attribute
        WHERE attrelid = c.oid AND NOT attisdropped AND attname IN ('applied_at', 'checksum', 'name')) = 3
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass('schema_migrations')
