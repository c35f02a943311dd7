-- purpose: take the migration lock if free; polled, never waited on, so no waiter holds a snapshot (see migrations.py)
SELECT pg_try_advisory_lock(%(key)s)
