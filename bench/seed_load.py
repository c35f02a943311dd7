"""Seed loading, side by side: the old scripts' ``psql -f`` against ``dbtool seed`` on one server.

Starts its own PostgreSQL (the machine's binaries, default durability settings, like a real
server), generates a seed of N single-row INSERTs, and times, each into a freshly created table:

  psql -f          how the old bin/db-seed loaded (one round trip and one commit per statement)
  psql -1 -f       psql in a single transaction (still one round trip per statement)
  dbtool seed      this project, as a user runs it (process start-up included)
  one query        the whole file sent as one query string from Python: the floor

Usage: .venv/bin/python bench/seed_load.py [--rows 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from dbtool.cluster import Cluster, find_bindir, free_port, service_user

REPO = Path(__file__).resolve().parent.parent
TABLE = "CREATE TABLE seed_users (id int PRIMARY KEY, handle text NOT NULL, email text NOT NULL)"


def write_seed(path: Path, rows: int) -> None:
    with path.open("w") as out:
        for i in range(rows):
            out.write(f"INSERT INTO seed_users (id, handle, email) VALUES ({i}, 'user{i}', 'user{i}@example.com');\n")


def fresh_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS seed_users")
        conn.execute(TABLE)


def timed(url: str, rows: int, run) -> float:
    fresh_table(url)
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM seed_users").fetchone()[0]
    assert count == rows, f"loaded {count} rows, expected {rows}"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dbtool-bench-"))
    work.chmod(0o755)
    cluster = Cluster(work / "data", free_port(), find_bindir(), service_user())
    cluster.init("postgres", "bench", hba=("host all all 127.0.0.1/32 trust",))
    cluster.start()
    try:
        url = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        seed = work / "seed.sql"
        write_seed(seed, args.rows)
        psql = str(cluster.bindir / "psql")
        env = {**os.environ, "CONNECTION_URL": url, "DBTOOL_PROJECT_ROOT": str(work)}
        dbtool = str(REPO / ".venv" / "bin" / "dbtool")
        quiet = {"check": True, "stdout": subprocess.DEVNULL, "env": env}
        methods = {
            "psql -f": lambda: subprocess.run([psql, "-q", "-X", "-d", url, "-f", str(seed)], **quiet),
            "psql -1 -f": lambda: subprocess.run([psql, "-q", "-X", "-1", "-d", url, "-f", str(seed)], **quiet),
            "dbtool seed": lambda: subprocess.run([dbtool, "seed", "--file", str(seed)], **quiet),
            "one query (floor)": lambda: _one_query(url, seed),
        }
        results = {name: [] for name in methods}
        for _ in range(args.repeat):
            for name, run in methods.items():  # interleaved, so drift hits every method alike
                results[name].append(timed(url, args.rows, run))
        medians = {name: statistics.median(times) for name, times in results.items()}
        ours = medians["dbtool seed"]
        print(f"{args.rows:,} single-row INSERTs, median of {args.repeat}, PostgreSQL on 127.0.0.1")
        print(f"{'method':<20}{'seconds':>10}{'vs dbtool':>12}")
        for name, seconds in medians.items():
            print(f"{name:<20}{seconds:>10.3f}{seconds / ours:>11.2f}x")
        print(
            f"dbtool is {medians['psql -f'] / ours:.1f}x faster than psql -f, "
            f"{medians['psql -1 -f'] / ours:.1f}x faster than psql -1 -f, "
            f"and takes {ours / medians['one query (floor)']:.2f}x the floor"
        )
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def _one_query(url: str, seed: Path) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(seed.read_text())


if __name__ == "__main__":
    sys.exit(main())
