"""For application code: a connection pool with JSON query helpers, and SQL templates from db/sql.

Exported lazily by dbtool/__init__.py as dbtool.pool, dbtool.connect and dbtool.sql_template.
"""
