-- purpose: dbtool's extra columns, all with defaults or nullable so dbmate's plain INSERT (version) still works
ALTER TABLE schema_migrations
    ADD COLUMN IF NOT EXISTS applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ADD COLUMN IF NOT EXISTS checksum text,
    ADD COLUMN IF NOT EXISTS name text
