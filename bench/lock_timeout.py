"""A migration on a busy table, side by side in one run: without a lock_timeout (what `psql -f` or a plain
`dbtool migrate` on a local target does) and with dbtool's (2 s on protected targets; retried with backoff).

Starts its own PostgreSQL. A table takes a steady stream of short transactions (--workers sessions, each
updating a random row in a loop), and one long transaction holds a row lock on it for --hold seconds. Then
`dbtool migrate` applies one migration that adds a column: its ALTER TABLE needs an ACCESS EXCLUSIVE lock,
so it waits behind the long transaction, and every short transaction that arrives after it queues behind
it. Reported for each run: the short transactions' latency (p50, p99, max) while the migration runs, how
long the migration took, and its retries.

With no lock_timeout, p99 grows to about the long transaction's remaining time; with one, no short
transaction waits much longer than the lock_timeout, and the migration applies once the long transaction
ends, after retries.

Usage: .venv/bin/python bench/lock_timeout.py [--hold 6] [--lock-timeout 0.5] [--workers 4]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from throwaway import throwaway_server

BIN = Path(sys.executable).parent
MIGRATION = (
    "-- migrate:up\nALTER TABLE busy ADD COLUMN note text;\n\n-- migrate:down\nALTER TABLE busy DROP COLUMN note;\n"
)


def one_run(url: str, project: Path, args: argparse.Namespace, lock_timeout: float | None) -> dict[str, float]:
    admin = url.replace("/cruddur", "/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS cruddur WITH (FORCE)")
        conn.execute("CREATE DATABASE cruddur")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE busy (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO busy (id) SELECT generate_series(1, 1000)")
    stop = threading.Event()
    latencies: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute("UPDATE busy SET n = n + 1 WHERE id = %s", (random.randint(2, 1000),))
                with lock:
                    latencies.append(time.perf_counter() - started)
                time.sleep(0.005)

    threads = [threading.Thread(target=worker) for _ in range(args.workers)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    holder = psycopg.connect(url)
    holder.execute("UPDATE busy SET n = n + 1 WHERE id = 1")  # the long transaction's row lock
    threading.Timer(args.hold, holder.rollback).start()
    with lock:
        latencies.clear()  # measure from here: while the migration runs
    env = {**os.environ, "CONNECTION_URL": url, "DBTOOL_PROJECT_ROOT": str(project)}
    argv = [str(BIN / "dbtool"), "migrate", "--lock-retries", "20"]
    if lock_timeout is not None:
        argv += ["--lock-timeout", str(lock_timeout)]
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join()
    holder.close()
    if result.returncode != 0:
        sys.exit(f"dbtool migrate failed: {result.stderr}")
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[int(len(ordered) * 0.99) - 1],
        "max": ordered[-1],
        "migration": took,
        "retries": result.stderr.count("lock timeout after"),
        "transactions": len(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hold", type=float, default=6.0, help="seconds the long transaction holds its lock")
    parser.add_argument("--lock-timeout", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with throwaway_server() as (cluster, work):
        url = f"postgresql://postgres@127.0.0.1:{cluster.port}/cruddur"
        project = work / "project"
        (project / "db" / "migrations").mkdir(parents=True)
        (project / "db" / "migrations" / "20260101000000_add_note.sql").write_text(MIGRATION)
        print(f"{args.workers} sessions of short UPDATEs; a long transaction holds a row lock for {args.hold:g} s")
        rows = [
            ("no lock_timeout", one_run(url, project, args, None)),
            (f"lock_timeout {args.lock_timeout:g} s", one_run(url, project, args, args.lock_timeout)),
        ]
        print(f"{'':22}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'migration s':>13}{'retries':>9}{'txns':>7}")
        for name, row in rows:
            print(
                f"{name:22}{row['p50'] * 1000:9.1f}{row['p99'] * 1000:9.0f}{row['max'] * 1000:9.0f}"
                f"{row['migration']:13.2f}{row['retries']:9d}{row['transactions']:7d}"
            )
        ratio = rows[0][1]["p99"] / rows[1][1]["p99"]
        print(
            f"p99 without / with: {ratio:.1f}x; bound asked: p99 < lock_timeout + 50 ms = "
            f"{(args.lock_timeout + 0.05) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
