"""Loading SQL files, side by side in one run: the old scripts' ``psql -f`` against dbtool.

Starts its own PostgreSQL (the machine's binaries, default durability settings, like a real
server), generates every file it loads, and runs three scenarios:

  inserts   N single-row INSERTs into a fresh table (the seed case):
              psql -f        how the old bin/db-seed loaded (a round trip and a commit per statement)
              psql -1 -f     psql in a single transaction (still a round trip per statement)
              dbtool seed    this project, as a user runs it (process start-up included)
              one query      the whole file sent as one query string from Python: the floor, timed
                             in-process (the query alone) and as a process (start-up included,
                             like the other rows)
  dump      a pg_dump plain-format file (schema, COPY data for M rows, indexes) into a fresh
            database, with psql -f, psql -1 -f and dbtool schema-load
  memory    peak memory (maximum RSS) of dbtool loading a file of at least S MB, half INSERT
            statements and half COPY data, next to psql's on the dump scenario
  statement peak memory and time loading one statement of B MB, dbtool against psql -1 -f: an INSERT of
            many rows of constants, and one INSERT of a single value that size

Each process's time is wall-clock from start to exit; its peak memory is VmHWM, sampled from /proc.

Usage: .venv/bin/python bench/sql_load.py [--rows 100000] [--dump-rows 1000000] [--memory-mb 500]
                                          [--statement-mb 100] [--repeat 3]
                                          [--only inserts,dump,memory,statement]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from throwaway import throwaway_server

from dbtool.local.cluster import Cluster

REPO = Path(__file__).resolve().parent.parent
DBTOOL = str(REPO / ".venv" / "bin" / "dbtool")
FLOOR_PROGRAM = """
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    conn.execute(open(sys.argv[2], "rb").read())
"""
SEED_TABLE = "CREATE TABLE seed_users (id int PRIMARY KEY, handle text NOT NULL, email text NOT NULL)"
DUMP_SOURCE = """
CREATE TABLE events (
    id bigint PRIMARY KEY, user_id int NOT NULL, kind text NOT NULL, payload jsonb, created_at timestamptz NOT NULL
);
INSERT INTO events
SELECT i, i % 5000, (ARRAY['view', 'click', 'buy'])[1 + i % 3], jsonb_build_object('n', i, 'tag', 'x' || i % 97),
       '2026-01-01'::timestamptz + i * interval '1 second'
FROM generate_series(1, %(rows)s) AS i;
CREATE INDEX events_user ON events (user_id, created_at);
"""


@dataclass(frozen=True)
class Measure:
    seconds: float
    max_rss_mb: float


def child(argv: list[str], env: dict[str, str]) -> Measure:
    """Run a process to completion: its wall time and its peak memory.

    Peak memory is the largest VmHWM read from /proc while it runs, sampled every few
    milliseconds: wait4()'s ru_maxrss would count this benchmark's own memory too, which a child
    inherits at fork and keeps as a floor through exec.
    """
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{argv[0]} exited with {process.returncode}")
    return Measure(elapsed, peak / 1024)


class Bench:
    def __init__(self, cluster: Cluster, work: Path, repeat: int) -> None:
        self.cluster, self.work, self.repeat = cluster, work, repeat
        self.psql = str(cluster.bindir / "psql")

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.cluster.port}/{dbname}"

    def env(self, dbname: str) -> dict[str, str]:
        # Python's default (compiled modules cached): PYTHONDONTWRITEBYTECODE would make an editable install's
        # own modules compile at every start.
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        return {**env, "CONNECTION_URL": self.url(dbname), "DBTOOL_PROJECT_ROOT": str(self.work)}

    def psql_load(self, dbname: str, path: Path, *flags: str) -> Measure:
        return child([self.psql, "-q", "-X", *flags, "-d", self.url(dbname), "-f", str(path)], self.env(dbname))

    def fresh_database(self, dbname: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            conn.execute("CHECKPOINT")  # each run starts with no earlier run's writes still to flush

    def count(self, dbname: str, table: str) -> int:
        with psycopg.connect(self.url(dbname)) as conn:
            return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]

    def compare(
        self, methods: dict[str, Callable[[], Measure]], prepare: Callable[[], None], check: Callable[[], None]
    ) -> dict[str, Measure]:
        """Median time (and peak memory) of each method; runs are interleaved so drift hits all alike.

        The order rotates each round, so that no method always follows the same one (a load leaves
        WAL behind whose checkpoint lands on the next run).
        """
        runs: dict[str, list[Measure]] = {name: [] for name in methods}
        names = list(methods)
        for round_number in range(self.repeat):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                prepare()
                runs[name].append(methods[name]())
                check()
        return {
            name: Measure(statistics.median(m.seconds for m in measures), max(m.max_rss_mb for m in measures))
            for name, measures in runs.items()
        }


def table(title: str, results: dict[str, Measure], ours: str) -> None:
    print(f"\n{title}")
    print(f"{'method':<22}{'seconds':>10}{'vs dbtool':>12}{'max RSS MB':>13}")
    for name, measure in results.items():
        ratio = measure.seconds / results[ours].seconds
        rss = f"{measure.max_rss_mb:>13.0f}" if measure.max_rss_mb else f"{'-':>13}"
        print(f"{name:<22}{measure.seconds:>10.3f}{ratio:>11.2f}x{rss}")


def inserts(bench: Bench, rows: int) -> None:
    path = bench.work / "seed.sql"
    with path.open("w") as out:
        for i in range(rows):
            out.write(f"INSERT INTO seed_users (id, handle, email) VALUES ({i}, 'user{i}', 'user{i}@example.com');\n")

    def prepare() -> None:
        with psycopg.connect(bench.url("bench"), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS seed_users")
            conn.execute(SEED_TABLE)

    def floor() -> Measure:
        started = time.perf_counter()
        with psycopg.connect(bench.url("bench")) as conn:
            conn.execute(path.read_text())
        return Measure(time.perf_counter() - started, 0)

    def check() -> None:
        assert bench.count("bench", "seed_users") == rows

    bench.fresh_database("bench")
    results = bench.compare(
        {
            "psql -f": lambda: bench.psql_load("bench", path),
            "psql -1 -f": lambda: bench.psql_load("bench", path, "-1"),
            "dbtool seed": lambda: child([DBTOOL, "seed", "--file", str(path)], bench.env("bench")),
            "one query (floor)": floor,
            "one query, process": lambda: child(
                [sys.executable, "-c", FLOOR_PROGRAM, bench.url("bench"), str(path)], bench.env("bench")
            ),
        },
        prepare,
        check,
    )
    table(f"{rows:,} single-row INSERTs ({path.stat().st_size / 1e6:.1f} MB), median of {bench.repeat}", results,
          "dbtool seed")  # fmt: skip
    ours = results["dbtool seed"].seconds
    print(
        f"dbtool: {results['psql -f'].seconds / ours:.1f}x faster than psql -f, "
        f"{results['psql -1 -f'].seconds / ours:.1f}x faster than psql -1 -f, "
        f"{ours / results['one query (floor)'].seconds:.2f}x the in-process floor, "
        f"{ours / results['one query, process'].seconds:.2f}x the floor as a process"
    )


def dump(bench: Bench, rows: int) -> None:
    bench.fresh_database("bench_source")
    with psycopg.connect(bench.url("bench_source"), autocommit=True) as conn:
        conn.execute(DUMP_SOURCE.replace("%(rows)s", str(int(rows))))
    path = bench.work / "dump.sql"
    with path.open("wb") as out:
        pg_dump = str(bench.cluster.bindir / "pg_dump")
        subprocess.run([pg_dump, "--no-owner", "-d", bench.url("bench_source")], stdout=out, check=True)

    def checked(load: Callable[[], Measure]) -> Callable[[], Measure]:
        def run() -> Measure:
            measure = load()
            assert bench.count("bench_target", "events") == rows
            return measure

        return run

    results = bench.compare(
        {
            "psql -f": checked(lambda: bench.psql_load("bench_target", path)),
            "psql -1 -f": checked(lambda: bench.psql_load("bench_target", path, "-1")),
            "dbtool schema-load": checked(
                lambda: child([DBTOOL, "schema-load", "--file", str(path)], bench.env("bench_target"))
            ),
            # What a Python program pays before it can send anything: the interpreter and psycopg's import.
            "python + import psycopg": lambda: child([sys.executable, "-c", "import psycopg"], bench.env("bench")),
        },
        lambda: bench.fresh_database("bench_target"),
        lambda: None,
    )
    size = path.stat().st_size / 1e6
    table(f"pg_dump of {rows:,} rows with COPY data ({size:.0f} MB), median of {bench.repeat}", results,
          "dbtool schema-load")  # fmt: skip
    ours, psql = results["dbtool schema-load"].seconds, results["psql -1 -f"].seconds
    start = results["python + import psycopg"].seconds
    print(
        f"dbtool: {psql / ours:.2f}x the speed of psql -1 -f; without Python's start and psycopg's import "
        f"({start:.2f} s): {psql / (ours - start):.2f}x"
    )


def memory(bench: Bench, megabytes: int) -> None:
    path = bench.work / "big.sql"
    half = megabytes * 1_000_000 // 2
    with path.open("w") as out:
        out.write("CREATE TABLE big (id bigint, note text);\n")
        written = i = 0
        while written < half:
            line = f"INSERT INTO big VALUES ({i}, 'statement {i} padded with some text to look like real data');\n"
            written += out.write(line)
            i += 1
        out.write("COPY big (id, note) FROM stdin;\n")
        while written < 2 * half:
            written += out.write(f"{i}\tcopied row {i} padded with some text to look like real data\n")
            i += 1
        out.write("\\.\n")
    bench.fresh_database("bench_big")
    measure = child([DBTOOL, "schema-load", "--file", str(path)], bench.env("bench_big"))
    assert bench.count("bench_big", "big") == i
    size = path.stat().st_size / 1e6
    print(f"\npeak memory loading a {size:.0f} MB file ({i:,} rows, half INSERTs, half COPY)")
    print(f"dbtool schema-load: {measure.max_rss_mb:.0f} MB max RSS, {measure.seconds:.1f} s")
    path.unlink()


def statement(bench: Bench, megabytes: int) -> None:
    size = megabytes * 1_000_000
    rows = bench.work / "rows.sql"
    with rows.open("w") as out:
        out.write("CREATE TABLE big (n int, s text);\nINSERT INTO big VALUES\n")
        written = n = 0
        while written < size:
            written += out.write(f"{',' if n else ''}\n({n}, 'row {n} padded with some text to look like real data')")
            n += 1
        out.write(";\n")
    value = bench.work / "value.sql"
    value.write_text("CREATE TABLE big (n int, s text);\nINSERT INTO big VALUES (1, '" + "x" * size + "');\n")
    print(f"\none statement of {megabytes} MB, peak memory (max RSS) and time, median of {bench.repeat}")
    print(f"{'statement':<34}{'psql -1 -f MB':>14}{'dbtool MB':>11}{'psql s':>9}{'dbtool s':>10}")
    for name, path in (("INSERT of many rows of constants", rows), ("INSERT of one value", value)):
        found: dict[str, list[Measure]] = {"psql": [], "dbtool": []}
        for _ in range(bench.repeat):
            bench.fresh_database("bench_statement")
            found["psql"].append(bench.psql_load("bench_statement", path, "-1"))
            bench.fresh_database("bench_statement")
            found["dbtool"].append(child([DBTOOL, "schema-load", "--file", str(path)], bench.env("bench_statement")))
        psql, ours = (statistics.median(m.max_rss_mb for m in found[k]) for k in ("psql", "dbtool"))
        psql_s, ours_s = (statistics.median(m.seconds for m in found[k]) for k in ("psql", "dbtool"))
        print(f"{name:<34}{psql:>14.0f}{ours:>11.0f}{psql_s:>9.2f}{ours_s:>10.2f}")
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dump-rows", type=int, default=1_000_000)
    parser.add_argument("--memory-mb", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--statement-mb", type=int, default=100)
    parser.add_argument("--only", default="inserts,dump,memory,statement")
    args = parser.parse_args()
    chosen = set(args.only.split(","))

    with throwaway_server() as (cluster, work):
        bench = Bench(cluster, work, args.repeat)
        if "inserts" in chosen:
            inserts(bench, args.rows)
        if "dump" in chosen:
            dump(bench, args.dump_rows)
        if "memory" in chosen:
            memory(bench, args.memory_mb)
        if "statement" in chosen:
            statement(bench, args.statement_mb)


if __name__ == "__main__":
    sys.exit(main())
