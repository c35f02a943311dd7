-- purpose: whether the Data API session may create its temporary functions, which name a failing row of a COPY or of INSERTs sent together (TEMP on the database, PL/pgSQL installed)
SELECT has_database_privilege(current_database(), 'TEMP') AND EXISTS (SELECT FROM pg_language WHERE lanname = 'plpgsql')
