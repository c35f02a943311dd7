-- Development data, loaded in one transaction by ./bin/db-seed (and by ./bin/db-setup, after the schema
-- and the migrations).

-- INSERT INTO public.users (handle) VALUES ('ada'), ('grace');
