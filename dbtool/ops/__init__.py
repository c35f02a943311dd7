"""Operations on a target: create and drop its database, list its sessions, diagnose and wait for its server.

Each returns values or raises DbtoolError; the CLI reports.
"""
