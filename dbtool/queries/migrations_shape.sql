-- purpose: does schema_migrations exist, and does it have dbtool's columns yet? (ALTER only when needed)
SELECT to_regclass('schema_migrations') IS NOT NULL,
       (SELECT count(*) FROM pg_catalog.pg_attribute
        WHERE attrelid = to_regclass('schema_migrations') AND NOT attisdropped
          AND attname IN ('applied_at', 'checksum', 'name')) = 3
