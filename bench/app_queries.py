"""Application queries, side by side in one run: the backend's old ``lib/db.py`` against ``dbtool.Db``.

Starts its own PostgreSQL, loads the Cruddur schema with --users users and 10 activities each, and
times each helper N times through both, interleaved in rounds so drift hits both alike:

  old lib/db.py   the bootcamp's helpers as written (psycopg_pool with its defaults, the same JSON
                  wrappers, a transaction per call: BEGIN, the query, COMMIT), minus their print()s
  dbtool.Db       this project (autocommit: the query alone, one round trip)

Prints the median microseconds per call and the ratio. Loopback has a round trip of tens of
microseconds; to RDS it is about a millisecond, where the two extra round trips per call matter more.

Usage: .venv/bin/python bench/app_queries.py [--users 50] [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from throwaway import throwaway_server

import dbtool

REPO = Path(__file__).resolve().parent.parent
HOME = """
SELECT activities.uuid, users.display_name, users.handle, activities.message, activities.replies_count,
       activities.reposts_count, activities.likes_count, activities.reply_to_activity_uuid,
       activities.expires_at, activities.created_at
FROM public.activities
LEFT JOIN public.users ON users.uuid = activities.user_uuid
ORDER BY activities.created_at DESC
LIMIT 20
"""
SHOW = "SELECT handle, display_name FROM public.users WHERE handle = %(handle)s"
COUNT = "SELECT count(*) FROM public.activities WHERE user_uuid = (SELECT uuid FROM users WHERE handle = %(handle)s)"
LIKE = "UPDATE public.activities SET likes_count = likes_count + 1 WHERE uuid = %(uuid)s RETURNING likes_count"
MORE_USERS = """
INSERT INTO public.users (display_name, handle, email, cognito_user_id)
SELECT 'User ' || i, 'user' || i, 'user' || i || '@example.com', 'MOCK' FROM generate_series(1, %(users)s) AS i
"""
MORE_ACTIVITIES = """
INSERT INTO public.activities (user_uuid, message, expires_at)
SELECT uuid, 'message ' || n, now() + interval '10 days' FROM public.users, generate_series(1, 10) AS n
"""


class OldDb:
    """The bootcamp's ``lib/db.py`` query helpers, as written (without their prints)."""

    def __init__(self, url: str) -> None:
        self.pool = ConnectionPool(url, open=True)

    def query_commit(self, sql: str, params: dict[str, Any]) -> Any:
        import re

        is_returning_id = re.search(r"\bRETURNING\b", sql)
        with self.pool.connection() as conn:
            cur = conn.cursor()
            cur.execute(sql, params)
            returning_id = cur.fetchone()[0] if is_returning_id else None
            conn.commit()
            return returning_id

    def query_array_json(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        wrapped = (
            "(SELECT COALESCE(array_to_json(array_agg(row_to_json(array_row))),'[]'::json) FROM (\n"
            f"{sql}\n) array_row);"
        )
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(wrapped, params or {})
            return cur.fetchone()[0]

    def query_object_json(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        wrapped = f"(SELECT COALESCE(row_to_json(object_row),'{{}}'::json) FROM (\n{sql}\n) object_row);"
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(wrapped, params or {})
            return cur.fetchone()[0]

    def query_value(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(sql, params or {})
            return cur.fetchone()[0]


def per_call(function: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with throwaway_server() as (cluster, work):
        url = f"postgresql://postgres@127.0.0.1:{cluster.port}/cruddur"
        old = new = None
        try:
            with psycopg.connect(url.replace("/cruddur", "/postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE cruddur")
            with psycopg.connect(url) as conn:
                conn.execute((REPO / "db" / "schema.sql").read_text())
                conn.execute((REPO / "db" / "seed.sql").read_text())
                conn.execute(MORE_USERS, {"users": args.users})
                conn.execute(MORE_ACTIVITIES)
                activity = conn.execute("SELECT uuid FROM activities LIMIT 1").fetchone()[0]
            old = OldDb(url)
            old.pool.wait()
            new = dbtool.pool(url_target(url, work)).open()
            helpers = {
                "query_array_json (20 rows)": lambda db: db.query_array_json(HOME),
                "query_object_json": lambda db: db.query_object_json(SHOW, {"handle": "user7"}),
                "query_value": lambda db: db.query_value(COUNT, {"handle": "user7"}),
                "query_commit (RETURNING)": lambda db: db.query_commit(LIKE, {"uuid": activity}),
            }
            for name, helper in list(helpers.items())[:3]:  # the same answers, before anything is timed
                assert helper(old) == helper(new), name
            print(f"\n{'helper':<28}{'old lib/db.py µs':>18}{'dbtool µs':>12}{'old / dbtool':>14}")
            for name, helper in helpers.items():
                timings: dict[str, list[float]] = {"old": [], "new": []}
                for _ in range(args.rounds):
                    timings["old"].append(per_call(lambda h=helper: h(old), args.calls))
                    timings["new"].append(per_call(lambda h=helper: h(new), args.calls))
                before, after = statistics.median(timings["old"]), statistics.median(timings["new"])
                print(f"{name:<28}{before:>18.0f}{after:>12.0f}{before / after:>13.2f}x")
        finally:
            if new is not None:
                new.close()
            if old is not None:
                old.pool.close()


def url_target(url: str, work: Path) -> Any:
    """A dbtool target for ``url``, resolved as an application would with CONNECTION_URL set."""
    from dbtool.targets.project import Config
    from dbtool.targets.resolve import resolve_target

    return resolve_target("local", config=Config(work, {"CONNECTION_URL": url}))


if __name__ == "__main__":
    sys.exit(main())
