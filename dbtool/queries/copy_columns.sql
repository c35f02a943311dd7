-- purpose: a table's columns in order, each with the type COPY's input reads its values as (domains resolved to their base, no length or precision: the INSERT's assignment checks those as COPY does), whether generated, and whether that type is json or jsonb
WITH RECURSIVE columns AS (
    SELECT a.attnum, a.attname, a.atttypid AS type, a.attgenerated <> '' AS generated
    FROM pg_attribute AS a
    WHERE a.attrelid = CAST(CAST(%(table)s AS text) AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
), bases AS (
    SELECT attnum, type FROM columns
    UNION ALL
    SELECT b.attnum, t.typbasetype FROM bases AS b JOIN pg_type AS t ON t.oid = b.type WHERE t.typtype = 'd'
)
SELECT c.attname, format('%%I.%%I', n.nspname, t.typname), c.generated, t.oid IN ('json'::regtype, 'jsonb'::regtype)
FROM columns AS c
JOIN bases AS b ON b.attnum = c.attnum
JOIN pg_type AS t ON t.oid = b.type AND t.typtype <> 'd'
JOIN pg_namespace AS n ON n.oid = t.typnamespace
ORDER BY c.attnum
