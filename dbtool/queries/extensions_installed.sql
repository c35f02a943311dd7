-- purpose: the extensions installed in the database and their versions, for dbtool extensions and up
SELECT extname, extversion FROM pg_catalog.pg_extension ORDER BY extname
