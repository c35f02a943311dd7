-- purpose: the connected user and the databases setup keeps as templates (named in their comments), newest first
SELECT current_user AS "user", d.datname, s.description, pg_catalog.pg_database_size(d.oid) AS bytes
FROM (SELECT 1) AS one
LEFT JOIN (
    pg_catalog.pg_database AS d
    JOIN pg_catalog.pg_shdescription AS s
        ON s.objoid = d.oid AND s.classoid = 'pg_catalog.pg_database'::regclass
        AND s.description LIKE 'dbtool template %'
) ON true
ORDER BY d.oid DESC
