-- The database's schema, loaded in one transaction by ./bin/db-schema-load (and by ./bin/db-setup).
-- Keep it loadable twice: drop and re-create, or use IF NOT EXISTS.

-- CREATE TABLE public.users (
--   uuid uuid DEFAULT gen_random_uuid() PRIMARY KEY,
--   handle text NOT NULL UNIQUE,
--   created_at timestamptz NOT NULL DEFAULT now()
-- );
