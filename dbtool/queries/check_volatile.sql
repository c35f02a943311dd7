-- purpose: migrate check: which of these function names (comma-separated) are volatile
SELECT DISTINCT p.proname
FROM pg_catalog.pg_proc p
WHERE p.provolatile = 'v' AND p.proname = ANY (pg_catalog.string_to_array(%(names)s, ','))
