"""`dbtool migrate check` on 20 pending migrations over a 100-table schema, beside the replay a user would do by
hand (createdb, `pg_dump --schema-only | psql`, `psql -1 -f` each migration, dropdb), in one run.

Starts its own PostgreSQL with two databases: `prod` (100 tables of 8 columns, each with a primary key, an
index and a foreign key to the one before, 1,000 rows in each) and `cruddur` (the local target, on whose
server the throwaway copy is built). The 20 migrations mix what real ones do: new columns, indexes (some
without CONCURRENTLY), constraints NOT VALID then validated, SET NOT NULL, new tables, a type change, a rename.

The by-hand replay only tells whether the migrations apply; dbtool's also reads each statement's locks and
rewrites and applies the rules. `--no-replay` reads the target's catalog only (what `migrate prod` does before
it applies anything). Each figure is the median of --repeat runs, process start included.

Usage: .venv/bin/python bench/check.py [--tables 100] [--migrations 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from throwaway import throwaway_server

BIN = Path(sys.executable).parent


def schema(tables: int) -> str:
    parts = []
    for n in range(1, tables + 1):
        parent = f", parent int REFERENCES t{n - 1} (id)" if n > 1 else ", parent int"
        parts.append(
            f"CREATE TABLE t{n} (id int PRIMARY KEY{parent}, name varchar(50), email text, price int, "
            f"note text, created_at timestamptz DEFAULT now(), flag boolean);\n"
            f"CREATE INDEX t{n}_name ON t{n} (name);\n"
            f"INSERT INTO t{n} (id, name, email, price)\n"
            f"  SELECT g, 'n' || g, g || '@x', g FROM generate_series(1, 1000) g;"
        )
    return "\n".join(parts)


def migrations(count: int, tables: int) -> list[str]:
    kinds = [
        "ALTER TABLE t{n} ADD COLUMN bio text;\nALTER TABLE t{n} ADD COLUMN score int DEFAULT 0;",
        "CREATE INDEX t{n}_email ON t{n} (email);",
        "ALTER TABLE t{n} ADD CONSTRAINT t{n}_price CHECK (price >= 0) NOT VALID;\n"
        "ALTER TABLE t{n} VALIDATE CONSTRAINT t{n}_price;",
        "ALTER TABLE t{n} ADD CONSTRAINT t{n}_email_present CHECK (email IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE t{n} VALIDATE CONSTRAINT t{n}_email_present;\nALTER TABLE t{n} ALTER COLUMN email SET NOT NULL;",
        "CREATE TABLE extra{n} (id int PRIMARY KEY, t{n}_id int REFERENCES t{n} (id));\n"
        "CREATE INDEX extra{n}_t ON extra{n} (t{n}_id);",
        "ALTER TABLE t{n} ALTER COLUMN name TYPE varchar(100);\nALTER TABLE t{n} ALTER COLUMN price TYPE bigint;",
        "ALTER TABLE t{n} RENAME COLUMN note TO remark;",
    ]
    step = max(1, tables // count)
    return [kinds[i % len(kinds)].format(n=1 + i * step) for i in range(count)]


def timed(argv: list[str], env: dict[str, str], *, ok: tuple[int, ...] = (0,), stdin: str | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, input=stdin)
    took = time.perf_counter() - started
    if result.returncode not in ok:
        sys.exit(f"{argv[0]} failed ({result.returncode}): {result.stderr or result.stdout}")
    return took


def by_hand(cluster, env: dict[str, str], files: list[Path]) -> float:
    """What a user would script: a scratch database, the schema copied with pg_dump | psql, each migration."""
    base = f"postgresql://postgres@127.0.0.1:{cluster.port}"
    bindir = cluster.bindir
    started = time.perf_counter()
    timed([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "scratch"], env)
    dump = subprocess.run(
        [str(bindir / "pg_dump"), "--schema-only", "--no-owner", f"{base}/prod"], capture_output=True, text=True
    ).stdout
    timed([str(bindir / "psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", f"{base}/scratch"], env, stdin=dump)
    for path in files:
        timed(
            [str(bindir / "psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(path), f"{base}/scratch"], env
        )
    timed([str(bindir / "dropdb"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "scratch"], env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=100)
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with throwaway_server() as (cluster, work):
        base = f"postgresql://postgres@127.0.0.1:{cluster.port}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE prod")
            conn.execute("CREATE DATABASE cruddur")
        with psycopg.connect(f"{base}/prod", autocommit=True) as conn:
            conn.execute(schema(args.tables))
        project = work / "project"
        folder = project / "db" / "migrations"
        folder.mkdir(parents=True)
        files = []
        for index, up in enumerate(migrations(args.migrations, args.tables)):
            path = folder / f"2026010100{index:04d}_m{index}.sql"
            path.write_text(f"-- migrate:up\n{up}\n\n-- migrate:down\n")
            files.append(path)
        env = {
            **os.environ,
            "CONNECTION_URL": f"{base}/cruddur",
            "PROD_CONNECTION_URL": f"{base}/prod",
            "DBTOOL_PROJECT_ROOT": str(project),
            "PGPASSWORD": "",
        }
        check = [str(BIN / "dbtool"), "migrate", "check", "prod", "--json"]
        result = subprocess.run(check, env=env, capture_output=True, text=True)
        if result.returncode not in (0, 1):
            sys.exit(f"dbtool migrate check failed: {result.stderr}")
        report = json.loads(result.stdout)
        statements = len(report["statements"])
        locked = sum(1 for statement in report["statements"] if statement["locks"])
        print(
            f"{args.tables} tables, {args.migrations} pending migrations, {statements} statements: "
            f"{report['hazards']} hazards, {locked} statements lock an existing table"
        )
        rows = [
            ("by hand: pg_dump | psql, psql -1 -f each", [by_hand(cluster, env, files) for _ in range(args.repeat)]),
            ("dbtool migrate check prod", [timed(check, env, ok=(0, 1)) for _ in range(args.repeat)]),
            (
                "dbtool migrate check prod --no-replay",
                [timed([*check, "--no-replay"], env, ok=(0, 1)) for _ in range(args.repeat)],
            ),
        ]
        print(f"{'':44}{'median s':>10}{'vs by hand':>12}")
        hand = statistics.median(rows[0][1])
        for name, times in rows:
            median = statistics.median(times)
            print(f"{name:44}{median:10.2f}{median / hand:11.2f}x")
        print("bound asked: migrate check under 3 s")


if __name__ == "__main__":
    main()
