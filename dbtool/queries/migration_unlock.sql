-- purpose: release the migration lock at the end of a run
SELECT pg_advisory_unlock(%(key)s)
