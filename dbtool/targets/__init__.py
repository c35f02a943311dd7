"""Targets: which server and database a name means, the project and its configuration, production credentials.

Everything about where a connection goes is decided here, once; psql and pg_dump get the target from here too.
"""
