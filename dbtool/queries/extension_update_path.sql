-- purpose: the chain of update scripts from an installed extension version to another, NULL when there is none
SELECT path FROM pg_catalog.pg_extension_update_paths(%(name)s) WHERE source = %(source)s AND target = %(target)s
