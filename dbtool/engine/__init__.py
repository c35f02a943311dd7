"""The SQL engine: the splitter, the file loader, and the session interface with its transports.

Everything that runs SQL holds a session (engine/session.py), never a driver connection of its own.
"""
