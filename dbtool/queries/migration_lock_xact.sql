-- purpose: take the migration lock for this transaction if free (the Data API, whose calls share pooled sessions); polled like migration_lock
SELECT pg_try_advisory_xact_lock(%(key)s)
