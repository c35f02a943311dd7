-- purpose: before setup keeps a copy of a database: what CREATE DATABASE … TEMPLATE would not carry over, and its size
SELECT concat_ws(', ',
    CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_db_role_setting AS s WHERE s.setdatabase = d.oid)
        THEN 'settings (ALTER DATABASE … SET)' END,
    CASE WHEN d.datacl IS NOT NULL THEN 'privileges (GRANT … ON DATABASE)' END,
    CASE WHEN pg_catalog.shobj_description(d.oid, 'pg_database') IS NOT NULL THEN 'a comment' END,
    CASE WHEN d.datdba <> (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user)
        THEN 'another owner' END,
    CASE WHEN d.datconnlimit <> -1 THEN 'a connection limit' END
) AS uncopied, pg_catalog.pg_database_size(d.oid) AS bytes
FROM pg_catalog.pg_database AS d
WHERE d.datname = %(dbname)s
