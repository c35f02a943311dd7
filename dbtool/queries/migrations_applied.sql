-- purpose: applied migrations in the order they were applied (version breaks ties, e.g. rows added by dbmate)
SELECT version, applied_at, checksum, name FROM schema_migrations ORDER BY applied_at, version
