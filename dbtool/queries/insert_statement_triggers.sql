-- purpose: whether a table has statement-level INSERT triggers, which fire once per statement (so single-row INSERTs must not be combined)
SELECT EXISTS (
    SELECT FROM pg_trigger
    WHERE tgrelid = to_regclass(%(table)s) AND NOT tgisinternal AND tgtype & 1 = 0 AND tgtype & 4 <> 0
)
