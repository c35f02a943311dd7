"""The project's own PostgreSQL: a cluster in .dbtool/, started on demand when no local URL is configured.

It knows nothing of targets; targets asks it for a URL.
"""
