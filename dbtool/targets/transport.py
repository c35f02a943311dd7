"""How a target's SQL travels, as capabilities the rest of the code asks about instead of which transport it is.

Two transports exist: ``libpq`` (a network connection, psycopg) and ``data-api`` (HTTPS calls to
the RDS Data API). Code outside ``targets/`` and ``engine/`` never asks which one a target has: it
asks what the transport can do (``psql_route``, ``session_locks``, …) or looks up its ``kind`` in a
table of its own (the session opener in :mod:`dbtool.engine.session`, doctor's checks). A new
transport is a module in ``engine/`` plus one entry here and in those tables.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Transport:
    kind: str  # "libpq" or "data-api": the key of the tables that differ by transport
    identity: str  # where its server is, stable across runs: host:port, or the cluster's ARN
    session_locks: bool  # a session-level advisory lock lasts (not over the Data API's pooled calls)
    psql_route: bool  # psql, pg_dump and a psycopg pool can reach the server
    lingering_sessions: bool  # the service keeps sessions of its own on the database: DROP must force them
    templates: bool  # setup may keep template databases there (CREATE DATABASE … TEMPLATE, cheaply)


def libpq(host: str, port: str) -> Transport:
    return Transport("libpq", f"{host}:{port}", True, True, False, True)


def data_api(cluster_arn: str) -> Transport:
    return Transport("data-api", cluster_arn, False, False, True, False)
