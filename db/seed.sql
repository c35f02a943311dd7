-- Cruddur seed data. Loaded in one transaction by ./bin/db-seed; loading it twice adds nothing twice.
INSERT INTO public.users (display_name, handle, email, cognito_user_id)
VALUES
  ('Andrew Brown', 'andrewbrown', 'andrew@exampro.co', 'MOCK'),
  ('Andrew Bayko', 'bayko', 'bayko@exampro.co', 'MOCK'),
  ('Londo Mollari', 'londo', 'lmollari@centari.com', 'MOCK')
ON CONFLICT (handle) DO NOTHING;

INSERT INTO public.activities (user_uuid, message, expires_at)
SELECT users.uuid, seed.message, current_timestamp + interval '10 day'
FROM (VALUES
  ('andrewbrown', 'This was imported as seed data!'),
  ('bayko', 'I am the other Andrew; this one''s mine.'),
  ('londo', 'Who do you serve, and who do you trust?')
) AS seed (handle, message)
JOIN public.users ON users.handle = seed.handle
WHERE NOT EXISTS (
  SELECT 1 FROM public.activities a WHERE a.user_uuid = users.uuid AND a.message = seed.message
);
