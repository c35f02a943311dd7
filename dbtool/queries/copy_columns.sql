-- purpose: a table's columns in order with their types and whether generated, to send COPY data through the Data API as INSERTs
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '' AS generated
FROM pg_attribute AS a
WHERE a.attrelid = CAST(CAST(%(table)s AS text) AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
