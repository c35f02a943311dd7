"""Migrations in dbmate's format: the files, the runner that applies and rolls them back, and the schema dump.

The runner reaches the database only through an engine session.
"""
