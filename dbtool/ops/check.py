"""``dbtool migrate check``: what the pending migrations would do to the target, before they touch it.

The pending migrations are replayed on a throwaway copy of the target's schema on the local server (``pg_dump
--schema-only`` of the target over libpq; over the RDS Data API, which has no pg_dump, ``db/schema.sql`` plus
the migrations the target has applied). Each statement runs alone, and around it the replay reads
``pg_locks`` (the locks it took, in its migration's transaction, on tables that existed before) and
``pg_class.relfilenode`` (a changed one: the statement rewrote the table). The rules of
:mod:`dbtool.migrations.hazards` add what a replay cannot see on empty tables (an index built without
CONCURRENTLY, a constraint validated under its lock, a rename the running release still reads), and a
replay that saw no rewrite clears a type change the rules could only suspect.

Without a replay (``--no-replay``) the rules run alone, against the target's own catalog, read only: what
``migrate`` checks on a protected target before it applies anything.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dbtool import queries
from dbtool.migrations.hazards import Analysis, Catalog, Comments, Finding, allows, analyse, hazard, normalise

if TYPE_CHECKING:
    from dbtool.engine.session import Session
    from dbtool.migrations.files import Migration
    from dbtool.targets.resolve import Target

SCRATCH_SUFFIX = "_dbtool_check"
# pg_locks' modes, weakest first.
LOCK_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
# The rules' hazards that a replay's rewrite confirms (and explains), or, without one, clears.
REWRITE_CAUSES = ("column-type", "volatile-default", "table-rewrite")


@dataclass
class Report:
    """The pending migrations' statements and what each would do; ``copy`` says where they were replayed."""

    target: str
    pending: list[str]
    findings: list[Finding] = field(default_factory=list)
    copy: str = ""  # empty: not replayed (the rules alone, on the target's catalog)
    versions: tuple[int, int] | None = None  # server_version_num of the target and of the copy's server

    @property
    def hazards(self) -> int:
        return sum(len(finding.hazards) for finding in self.findings)

    @property
    def unacknowledged(self) -> int:
        return sum(len(finding.unacknowledged) for finding in self.findings)


def check(target: Target, builder: Target | None) -> Report:
    """Check the target's pending migrations: replayed on ``builder``'s server, or (None) by the rules alone."""
    from dbtool.engine.session import open_session
    from dbtool.migrations.runner import Migrations

    pending = Migrations(target).plan(allow_changed=True, hazards=False)
    report = Report(target.display, [migration.display for migration in pending])
    if not pending:
        return report
    if builder is None:
        with open_session(target) as session:
            report.findings = analyse(session, pending)
        return report
    from dbtool.ops.drift import throwaway

    with open_session(target) as session:
        version = session.server_version
    with throwaway(builder, SCRATCH_SUFFIX) as scratch:
        report.copy = _copy(target, scratch)
        with open_session(scratch) as session:
            report.versions = (version, session.server_version)
            report.findings = _Replay(session).run(pending)
    return report


def _copy(target: Target, scratch: Target) -> str:
    """The target's schema into ``scratch``; how it was made, for the report."""
    if target.transport.kind == "data-api":
        from dbtool.ops.drift import build

        build(target, scratch)
        return "db/schema.sql and the applied migrations (the RDS Data API has no pg_dump)"
    from dbtool.engine.loader import load_stream
    from dbtool.engine.session import open_session
    from dbtool.migrations.schemadump import pg_dump_schema

    dump = pg_dump_schema(target).encode()
    with open_session(scratch) as session:
        load_stream(session, io.BytesIO(dump), f"pg_dump --schema-only of {target.display}")
    return f"pg_dump --schema-only of {target.display}"


class _Replay:
    """Runs the migrations statement by statement on the copy, watching locks and relfilenodes."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.analysis = Analysis(Catalog(session))
        self.before = self._relations()  # oid: (shown name, relfilenode) of the tables that existed before
        self.nodes = self.before  # the relfilenodes as the latest statement left them
        self.analysis.catalog.tables()  # read now: "existed before" means before the first migration
        self.findings: list[Finding] = []
        self.held: set[tuple[int, str]] = set()  # locks the current migration's transaction holds

    def run(self, migrations: list[Migration]) -> list[Finding]:
        from dbtool.engine.loader import run_sql
        from dbtool.engine.split import Scanner

        for migration in migrations:
            self.held = set()
            section = migration.up
            run_sql(
                self.session,
                Scanner(io.BytesIO(section.sql)),
                migration.display,
                transaction=section.transaction,
                commit=False,
                watch=self._watch(migration),
            )
            if self.session.in_transaction:
                self.session.commit()
        return self.findings

    def _watch(self, migration: Migration) -> Callable[[bytes, int, Callable[[], None]], None]:
        comments = Comments(migration.up.sql)

        def watch(sql: bytes, line: int, run: Callable[[], None]) -> None:
            text = sql.decode("utf-8", "replace")
            finding = Finding(migration.display, line, text, self.analysis.statement(text))
            finding.allows = allows(comments.before(line, text), finding.where)
            run()
            locks = self._locks()
            new = [(oid, mode) for oid, mode in locks if oid in self.before and _stronger(mode, oid, self.held)]
            finding.locks = _strongest((self.before[oid][0], mode) for oid, mode in new)
            self.held |= locks
            nodes, self.nodes = self.nodes, self._relations()
            finding.rewrites = [
                self.before[oid][0]
                for oid, (_, node) in nodes.items()
                if oid in self.before and oid in self.nodes and self.nodes[oid][1] != node
            ]
            _merge(finding)
            finding.acknowledge()
            self.findings.append(finding)

        return watch

    def _relations(self) -> dict[int, tuple[str, int]]:
        rows = self.session.execute(queries.get("check_relations")).rows
        return {int(oid): (name, int(node)) for oid, name, node in rows}

    def _locks(self) -> set[tuple[int, str]]:
        return {(int(oid), mode) for oid, mode in self.session.execute(queries.get("check_locks")).rows}


def _strongest(locks: Any) -> list[tuple[str, str]]:
    """One lock per table, its strongest, as ``ACCESS EXCLUSIVE``."""
    strongest: dict[str, str] = {}
    for table, mode in locks:
        if table not in strongest or LOCK_MODES.index(mode) > LOCK_MODES.index(strongest[table]):
            strongest[table] = mode
    return sorted((table, _mode(mode)) for table, mode in strongest.items())


def _stronger(mode: str, oid: int, held: set[tuple[int, str]]) -> bool:
    """Whether ``mode`` on ``oid`` is stronger than any lock the transaction held on it already."""
    return all(LOCK_MODES.index(mode) > LOCK_MODES.index(other) for table, other in held if table == oid)


def _mode(mode: str) -> str:
    return " ".join(re.findall(r"[A-Z][a-z]+", mode.removesuffix("Lock"))).upper()


def _merge(finding: Finding) -> None:
    """The replay's evidence with the rules': a rewrite the rules did not explain becomes ``table-rewrite``; a
    type change or default the rules suspected, where the replay saw no rewrite, goes."""
    rewritten = set(finding.rewrites)
    kept = [h for h in finding.hazards if h.name not in REWRITE_CAUSES or h.table in rewritten]
    explained = {h.table for h in kept if h.name in REWRITE_CAUSES}
    what = " ".join(normalise(finding.sql).split(" ")[:2]).upper()
    kept += [hazard("table-rewrite", table, what=what) for table in finding.rewrites if table not in explained]
    finding.hazards = kept


# -- how a report reads ----------------------------------------------------------------------------------------


def lines(report: Report) -> list[str]:
    """The report for a terminal: each statement that locks an existing table or has a hazard, then a summary."""
    out: list[str] = []
    for finding in report.findings:
        if not (finding.locks or finding.hazards):
            continue
        out.append(f"{finding.where}: {_statement(finding.sql)}")
        out += [f"  locks {table} {mode}" for table, mode in finding.locks]
        for found in finding.hazards:
            if found.allowed is not None:
                out.append(f"  allowed {found.name}: {found.allowed}")
                continue
            out += [f"  hazard {found.name}: {found.reason}", f"    safe: {found.safe}"]
    out.append(summary(report))
    return out


def summary(report: Report) -> str:
    if not report.pending:
        return f"nothing pending on {report.target}"
    count = len(report.pending)
    hazards = report.hazards
    found = f"{hazards} hazard{'s' * (hazards != 1)}"
    if hazards:
        found += f" ({hazards - report.unacknowledged} acknowledged)"
    how = f"replayed on a copy ({report.copy})" if report.copy else "by the rules alone, on the target's catalog"
    if report.versions is not None and report.versions[0] // 10000 != report.versions[1] // 10000:
        target, copy = (version // 10000 for version in report.versions)
        how += f"; note: the copy ran on PostgreSQL {copy}, the target runs {target} (a lock or a rewrite may differ)"
    return f"{count} pending migration{'s' * (count != 1)} on {report.target}: {found}; {how}"


def as_json(report: Report) -> dict[str, Any]:
    return {
        "target": report.target,
        "pending": report.pending,
        "replayed": bool(report.copy),
        "copy": report.copy or None,
        "server_versions": (
            {"target": report.versions[0], "copy": report.versions[1]} if report.versions is not None else None
        ),
        "hazards": report.hazards,
        "unacknowledged": report.unacknowledged,
        "statements": [
            {
                "file": finding.file,
                "line": finding.line,
                "sql": _statement(finding.sql),
                "locks": [{"table": table, "mode": mode} for table, mode in finding.locks],
                "rewrites": finding.rewrites,
                "hazards": [
                    {"name": h.name, "table": h.table, "reason": h.reason, "safe": h.safe, "allowed": h.allowed}
                    for h in finding.hazards
                ],
            }
            for finding in report.findings
        ],
    }


def _statement(sql: str, width: int = 100) -> str:
    """The statement on one line, its comments gone, cut to ``width``."""
    from dbtool.engine.split import first_token

    data = sql.encode()
    text = " ".join(data[first_token(data, 0) :].decode("utf-8", "replace").split()).rstrip(";")
    return text if len(text) <= width else text[: width - 1] + "…"
