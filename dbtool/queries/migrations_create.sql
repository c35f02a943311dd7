-- purpose: dbmate's own migrations table, exactly as dbmate creates it, so either tool can read the other's
CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) PRIMARY KEY)
