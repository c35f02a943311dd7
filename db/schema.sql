-- Cruddur schema. Loaded in one transaction by ./bin/db-schema-load; safe to load again
-- (tables are dropped and re-created, the extension is created only if missing).
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";

DROP TABLE IF EXISTS public.activities;
DROP TABLE IF EXISTS public.users;

CREATE TABLE public.users (
  uuid UUID DEFAULT uuid_generate_v4() PRIMARY KEY,
  display_name text NOT NULL,
  handle text NOT NULL UNIQUE,
  email text NOT NULL,
  cognito_user_id text NOT NULL,
  created_at TIMESTAMP DEFAULT current_timestamp NOT NULL
);

CREATE TABLE public.activities (
  uuid UUID DEFAULT uuid_generate_v4() PRIMARY KEY,
  user_uuid UUID NOT NULL REFERENCES public.users (uuid) ON DELETE CASCADE,
  message text NOT NULL,
  replies_count integer DEFAULT 0,
  reposts_count integer DEFAULT 0,
  likes_count integer DEFAULT 0,
  reply_to_activity_uuid UUID REFERENCES public.activities (uuid) ON DELETE CASCADE,
  expires_at TIMESTAMP,
  created_at TIMESTAMP DEFAULT current_timestamp NOT NULL
);

CREATE INDEX activities_user_uuid_idx ON public.activities (user_uuid);
CREATE INDEX activities_created_at_idx ON public.activities (created_at DESC);
