-- purpose: forget one rolled-back migration, in the same transaction as its down section
DELETE FROM schema_migrations WHERE version = %(version)s
