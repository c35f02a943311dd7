-- purpose: does the target database exist? (create and drop say so instead of failing)
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = %(dbname)s)
