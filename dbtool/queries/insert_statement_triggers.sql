-- purpose: whether a table has INSERT triggers that see a whole statement (statement-level, or with a transition table), so its single-row INSERTs must not be combined
SELECT EXISTS (
    SELECT FROM pg_trigger
    WHERE tgrelid = to_regclass(%(table)s) AND NOT tgisinternal AND tgtype & 4 <> 0 AND (tgtype & 1 = 0 OR tgnewtable IS NOT NULL)
)
