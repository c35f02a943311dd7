-- purpose: whether the Data API session may make the temporary function that names a failing row of rows sent together (TEMP on the database, PL/pgSQL installed)
SELECT has_database_privilege(current_database(), 'TEMP') AND EXISTS (SELECT FROM pg_language WHERE lanname = 'plpgsql')
