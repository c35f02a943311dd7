-- purpose: take an advisory lock for this transaction if it is free (polled, never waited on): migrations over the Data API, up's schema and extension steps
SELECT pg_try_advisory_xact_lock(%(key)s)
