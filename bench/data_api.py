"""Loading through the RDS Data API, side by side in one run: the naive loop against dbtool, counting calls.

A Data API call costs tens of milliseconds in AWS, so the number of calls is this transport's speed.
Starts its own PostgreSQL and the test-only Data API server over it (``tests/dataapi_server.py``,
the Data API's wire protocol on 127.0.0.1), generates every file it loads, and runs:

  inserts  N single-row INSERTs (a seed):
             naive loop    one ExecuteStatement per statement, no transaction, as hand-written Lambdas do
             dbtool seed   this project (process start-up included), one transaction
  dump     a pg_dump of M rows of about 100 bytes with COPY data:
             naive loop    cannot send COPY at all (the Data API has no COPY); timed on the same rows as
                           ``pg_dump --inserts`` for the first K statements, its whole run projected
             dbtool        schema-load of the COPY dump, one transaction

Both loads of each scenario must leave identical rows (checked by an md5 over the table). Wall times
are over loopback, where a call costs about a millisecond, not AWS's tens: the call counts carry over.

Usage: .venv/bin/python bench/data_api.py [--rows 100000] [--dump-rows 1000000] [--naive-sample 20000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql
from throwaway import throwaway_server

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.dataapi_server import DataApiServer  # noqa: E402 - the test server lives with the tests

DBTOOL = str(REPO / ".venv" / "bin" / "dbtool")
CLUSTER_ARN = "arn:aws:rds:us-east-1:123456789012:cluster:bench-aurora"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-AbCdEf"
TABLE = "CREATE TABLE seed_users (id int PRIMARY KEY, handle text NOT NULL, email text NOT NULL);\n"
DUMP_SOURCE = """
CREATE TABLE events (id bigint PRIMARY KEY, user_id int NOT NULL, kind text NOT NULL, payload jsonb,
                     created_at timestamptz NOT NULL);
INSERT INTO events
SELECT i, i % 5000, (ARRAY['view', 'click', 'buy'])[1 + i % 3], jsonb_build_object('n', i, 'tag', 'x' || i % 97),
       '2026-01-01'::timestamptz + i * interval '1 second'
FROM generate_series(1, %(rows)s) AS i;
"""
CHECKSUM = "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t.id)) FROM {} AS t"


class Bench:
    def __init__(self, port: int, work: Path, server: DataApiServer) -> None:
        self.port, self.work, self.server = port, work, server

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def fresh(self, dbname: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        self.server.forget_connections()

    def checksum(self, dbname: str, table: str) -> tuple[int, str]:
        with psycopg.connect(self.url(dbname)) as conn:
            return conn.execute(sql.SQL(CHECKSUM).format(sql.Identifier(table))).fetchone()  # type: ignore[return-value]

    def dbtool(self, dbname: str, *args: str) -> tuple[float, int]:
        """Seconds and Data API calls of one dbtool process against ``dbname`` through the Data API."""
        env = {
            **os.environ,
            "PROD_DATA_API_CLUSTER_ARN": CLUSTER_ARN,
            "PROD_DB_SECRET_ID": SECRET_ARN,
            "PROD_DB_NAME": dbname,
            "AWS_ENDPOINT_URL_RDS_DATA": self.server.endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "DBTOOL_PROJECT_ROOT": str(self.work),
        }
        self.server.reset_counts()
        started = time.perf_counter()
        subprocess.run([DBTOOL, *args, "prod", "--yes"], env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started, self.server.calls.total

    def naive(self, dbname: str, statements: list[str]) -> tuple[float, int]:
        """The hand-written loader: one ExecuteStatement per statement, each on its own (no transaction)."""
        import boto3

        client = boto3.client(
            "rds-data",
            endpoint_url=self.server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        self.server.reset_counts()
        started = time.perf_counter()
        for statement in statements:
            client.execute_statement(resourceArn=CLUSTER_ARN, secretArn=SECRET_ARN, database=dbname, sql=statement)
        return time.perf_counter() - started, self.server.calls.total


def row(name: str, seconds: float, calls: int, ours: int, note: str = "") -> None:
    print(f"{name:<34}{seconds:>10.2f}{calls:>12,}{calls / ours:>12.1f}x  {note}".rstrip())


def header(title: str) -> None:
    print(f"\n{title}")
    print(f"{'method':<34}{'seconds':>10}{'calls':>12}{'vs dbtool':>13}")


def inserts(bench: Bench, rows: int) -> None:
    statements = [
        f"INSERT INTO seed_users (id, handle, email) VALUES ({i}, 'user{i}', 'user{i}@example.com');"
        for i in range(1, rows + 1)
    ]
    (bench.work / "db").mkdir(exist_ok=True)
    (bench.work / "db" / "seed.sql").write_text(TABLE + "\n".join(statements) + "\n")
    bench.fresh("naive")
    naive_seconds, naive_calls = bench.naive("naive", [TABLE.strip(), *statements])
    bench.fresh("ours")
    seconds, calls = bench.dbtool("ours", "seed")
    assert bench.checksum("naive", "seed_users") == bench.checksum("ours", "seed_users"), "rows differ"
    header(f"{rows:,} single-row INSERTs through the Data API (rows identical)")
    row("naive loop (one call per statement)", naive_seconds, naive_calls, calls)
    row("dbtool seed prod", seconds, calls, calls)


def dump(bench: Bench, rows: int, sample: int) -> None:
    bench.fresh("source")
    with psycopg.connect(bench.url("source"), autocommit=True) as conn:
        conn.execute(DUMP_SOURCE.replace("%(rows)s", str(rows)))
    pg_dump = ["pg_dump", "--no-owner", "--no-privileges", "--dbname", bench.url("source")]
    path = bench.work / "dump.sql"
    with path.open("w") as out:
        subprocess.run(pg_dump, stdout=out, check=True)
    size = path.stat().st_size / 1e6
    bench.fresh("ours")
    seconds, calls = bench.dbtool("ours", "schema-load", "--file", str(path))
    assert bench.checksum("source", "events") == bench.checksum("ours", "events"), "rows differ"
    inserts_dump = subprocess.run([*pg_dump, "--inserts", "--data-only"], capture_output=True, text=True, check=True)
    statements = [line for line in inserts_dump.stdout.splitlines() if line.startswith("INSERT INTO")]
    bench.fresh("naive")
    with psycopg.connect(bench.url("naive"), autocommit=True) as conn:
        conn.execute(DUMP_SOURCE.split("INSERT INTO")[0])
    naive_seconds, naive_calls = bench.naive("naive", statements[:sample])
    projected = naive_seconds * len(statements) / naive_calls
    header(f"pg_dump of {rows:,} rows with COPY data ({size:.0f} MB) through the Data API")
    row("naive loop (refuses COPY; --inserts)", projected, len(statements), calls, f"projected from {sample:,}")
    row("dbtool schema-load prod", seconds, calls, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dump-rows", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=20_000)
    args = parser.parse_args()
    with throwaway_server() as (cluster, work):
        server = DataApiServer(
            {CLUSTER_ARN: f"127.0.0.1:{cluster.port}"}, lambda arn: {"username": "postgres", "password": "bench"}
        )
        try:
            bench = Bench(cluster.port, work, server)
            inserts(bench, args.rows)
            dump(bench, args.dump_rows, args.naive_sample)
        finally:
            server.close()


if __name__ == "__main__":
    main()
