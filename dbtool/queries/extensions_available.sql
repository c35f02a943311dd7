-- purpose: every version of every extension the server can install: whether it needs a superuser, whether it is trusted, what it requires, and the default version
SELECT v.name, v.version, v.superuser, v.trusted, coalesce(array_to_string(v.requires, ','), '') AS requires,
       coalesce(a.default_version, '') AS default_version
FROM pg_catalog.pg_available_extension_versions AS v
JOIN pg_catalog.pg_available_extensions AS a USING (name)
ORDER BY v.name, v.version
