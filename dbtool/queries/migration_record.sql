-- purpose: record one applied migration, in the same transaction as the migration itself
INSERT INTO schema_migrations (version, checksum, name) VALUES (%(version)s, %(checksum)s, %(name)s)
