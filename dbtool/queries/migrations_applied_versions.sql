-- purpose: applied versions of a table dbtool has not extended yet (made by dbmate, read before any write)
SELECT version, NULL::timestamptz, NULL::text, NULL::text FROM schema_migrations ORDER BY version
