"""What a migration would do to a live database, read from its statements and the database's catalog.

A statement is a hazard when it touches a table that existed before the pending migrations (one they create
is empty and unread) in a way that blocks its readers or writers for longer than a moment, or breaks the
release still running beside it:

* ``index-not-concurrent``: ``CREATE INDEX`` without ``CONCURRENTLY`` blocks writes while it builds;
* ``constraint-not-valid``: a CHECK or FOREIGN KEY added without ``NOT VALID`` checks every row under its lock;
* ``constraint-builds-index``: ``ADD UNIQUE`` / ``PRIMARY KEY`` without ``USING INDEX`` builds its index under
  an ACCESS EXCLUSIVE lock;
* ``set-not-null``: ``SET NOT NULL`` scans the table under an ACCESS EXCLUSIVE lock, unless a validated
  ``CHECK (column IS NOT NULL)`` already proves it;
* ``volatile-default``: a column added with a volatile default (``gen_random_uuid()``, a serial) rewrites the
  table;
* ``column-type``: a type change rewrites the table and its indexes, unless the types are binary compatible;
* ``table-rewrite``: anything else that rewrites it (seen by the replay of ``migrate check``, which compares
  ``pg_class.relfilenode``, or named: ``SET LOGGED``, a stored generated column);
* ``rename`` and ``drop``: the release still running reads the old name.

A ``-- dbtool:allow NAME: reason`` comment in the lines before a statement accepts that hazard for it; the
reason is required. :func:`analyse` reads statements only; what exists comes from a :class:`Catalog`, asked
through the session (either transport) and only for tables the statements name.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from dbtool import queries
from dbtool.migrations.files import Migration, MigrationError

if TYPE_CHECKING:
    from dbtool.engine.session import Session

# name: (why it matters on a live database, the safe alternative)
HAZARDS = {
    "index-not-concurrent": (
        "CREATE INDEX on {table} blocks its writes (SHARE lock) until the index is built",
        "CREATE INDEX CONCURRENTLY, in a migration whose up section is marked 'transaction:false'",
    ),
    "constraint-not-valid": (
        "adding {what} to {table} checks every row while holding a lock that blocks its writes",
        "add it NOT VALID, then VALIDATE CONSTRAINT in a later migration (which lets writes through)",
    ),
    "constraint-builds-index": (
        "adding {what} to {table} builds its index under an ACCESS EXCLUSIVE lock (no reads, no writes)",
        "CREATE UNIQUE INDEX CONCURRENTLY first (transaction:false), then ADD CONSTRAINT … USING INDEX",
    ),
    "set-not-null": (
        "SET NOT NULL on {table}.{column} scans the whole table under an ACCESS EXCLUSIVE lock",
        "ADD CONSTRAINT … CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL "
        "(which then skips the scan)",
    ),
    "volatile-default": (
        "adding {table}.{column} with the volatile default {what} rewrites the table under an ACCESS EXCLUSIVE lock",
        "add the column without a default (or with a constant one), backfill it in batches, then set the default",
    ),
    "column-type": (
        "changing the type of {table}.{column} rewrites the table and its indexes under an ACCESS EXCLUSIVE lock",
        "add a column of the new type, backfill it in batches and move reads to it (expand, then contract)",
    ),
    "table-rewrite": (
        "{what} rewrites {table} under an ACCESS EXCLUSIVE lock (no reads, no writes until it is done)",
        "make the change without a rewrite (a new column or table, backfilled in batches)",
    ),
    "rename": (
        "renaming {what} breaks the release still running, which reads the old name until it is replaced",
        "add the new one, write both, move reads, and drop the old one in a later release (expand, then contract)",
    ),
    "drop": (
        "dropping {what} breaks the release still running if it reads it",
        "stop reading it in one release and drop it in the next; then acknowledge: -- dbtool:allow drop: <why>",
    ),
}
ALLOW = re.compile(r"--\s*dbtool:allow\b[ \t]*(?P<name>[\w-]*)[ \t]*(?::[ \t]*(?P<reason>[^\n]*))?")

# -- a statement, normalised: comments gone, strings '' and $$, unquoted words lower case, one space between -------

_LEXEME = re.compile(
    r"""(?P<space>(?:\s+|--[^\n]*|/\*.*?\*/)+)
      |(?P<estring>(?<![\w$])[eE]'(?:[^'\\]|''|\\.)*')
      |(?P<string>'(?:[^']|'')*')
      |(?P<dollar>\$(?P<tag>[A-Za-z_][\w]*)?\$.*?\$(?P=tag)\$)
      |(?P<quoted>"(?:[^"]|"")*")
      |(?P<word>[A-Za-z_\x80-\uffff][\w$\x80-\uffff]*)
      |(?P<other>.)""",
    re.S | re.X,
)
NAME = r'(?:"(?:[^"]|"")+"|[a-z_\x80-\uffff][\w$\x80-\uffff]*)'
QNAME = rf"{NAME}(?: ?\. ?{NAME})?"
_CREATE_TABLE = re.compile(
    rf"^create (?:(?:global |local )?(?:temporary|temp) |unlogged )?table (?:if not exists )?(?P<table>{QNAME})"
)
_CREATE_INDEX = re.compile(
    rf"^create (?:unique )?index (?P<concurrently>concurrently )?(?:if not exists )?(?:{NAME} )?on (?:only )?"
    rf"(?P<table>{QNAME})"
)
_ALTER_TABLE = re.compile(rf"^alter table (?:if exists )?(?:only )?(?P<table>{QNAME}) (?P<actions>.*)$")
_DROP_TABLE = re.compile(rf"^drop table (?:if exists )?(?P<tables>{QNAME}(?: ?, ?{QNAME})*)")
_ADD_CONSTRAINT = re.compile(
    rf"^add (?:constraint (?P<name>{NAME}) )?(?P<kind>foreign key|check|unique|primary key|exclude)\b"
)
_ADD_COLUMN = re.compile(rf"^add (?:column )?(?:if not exists )?(?P<column>{NAME}) (?P<definition>.*)$")
_ALTER_TYPE = re.compile(rf"^alter (?:column )?(?P<column>{NAME}) (?:set data )?type (?P<type>.*?)(?: using .*)?$")
_SET_NOT_NULL = re.compile(rf"^alter (?:column )?(?P<column>{NAME}) set not null$")
_DROP_COLUMN = re.compile(rf"^drop (?:column )?(?:if exists )?(?P<column>{NAME})(?: cascade| restrict)?$")
_RENAME_COLUMN = re.compile(rf"^rename (?:column )?(?P<column>{NAME}) to (?P<new>{NAME})$")
_RENAME_TABLE = re.compile(rf"^rename to (?P<new>{NAME})$")
_VALIDATE = re.compile(rf"^validate constraint (?P<name>{NAME})$")
_REWRITING_ACTION = re.compile(r"^set (?:logged|unlogged|tablespace\b)")
_NOT_NULL_CHECK = re.compile(rf"^check ?\(\(?(?P<column>{NAME}) is not null\)?\)")
_DEFAULT = re.compile(
    r"\bdefault (?P<expression>.*?)(?= not null| null| constraint | check\b| references | unique\b|"
    r" primary key| generated | collate |$)"
)
_DO_BODY = re.compile(r"(?is)\s*do\s+(?:language\s+\w+\s+)?\$(?P<tag>\w*)\$(?P<body>.*)\$(?P=tag)\$")
_DDL_START = re.compile(r"(?:^|(?<= ))(?:create|alter|drop) (?:table|(?:unique )?index)\b")
_FUNCTION_CALL = re.compile(rf"(?P<name>{NAME}) ?\(")
_SERIAL = re.compile(r"^(?:small|big)?serial(?:2|4|8)?\b")
_STORED_GENERATED = re.compile(r"\bgenerated always as ?\(.*\) stored\b")
_CONSTRAINT_WORDS = ("constraint", "foreign", "check", "unique", "primary", "exclude")
_CONSTRAINT_KIND = {
    "foreign key": "a FOREIGN KEY",
    "check": "a CHECK constraint",
    "unique": "a UNIQUE constraint",
    "primary key": "a PRIMARY KEY",
    "exclude": "an EXCLUDE constraint",
}
# Widening a text type is binary compatible: no rewrite, no scan.
_TEXT_TYPE = re.compile(r"^(?:text|(?:character varying|varchar)(?: ?\( ?(?P<length>\d+) ?\))?)$")


def normalise(sql: str) -> str:
    """The statement as the rules read it: ``ALTER  TABLE "Users" -- x`` becomes ``alter table "Users"``."""
    parts: list[str] = []
    for lexeme in _LEXEME.finditer(sql):
        kind = lexeme.lastgroup
        if kind == "space":
            parts.append(" ")
        elif kind in ("estring", "string"):
            parts.append("''")
        elif kind == "dollar":
            parts.append("$$")
        elif kind in ("word", "other"):
            parts.append(lexeme.group().lower())
        else:
            parts.append(lexeme.group())
    text = " ".join("".join(parts).split())
    text = re.sub(r" ?\. ?", ".", text)
    text = re.sub(r" ?, ?", ", ", re.sub(r"\( ", "(", re.sub(r" \)", ")", text)))
    return text.rstrip(" ;")


def unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def split_name(qualified: str) -> tuple[str | None, str]:
    """``schema.table`` as (schema, table); (None, table) when unqualified."""
    found = re.fullmatch(rf"(?:(?P<schema>{NAME}) ?\. ?)?(?P<name>{NAME})", qualified)
    if found is None:  # pragma: no cover - callers pass what QNAME matched
        return None, qualified
    return (unquote(found["schema"]) if found["schema"] else None), unquote(found["name"])


def top_level(text: str, separator: str = ",") -> list[str]:
    """``text`` split at ``separator`` outside parentheses (an ALTER TABLE's actions)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


# -- findings -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hazard:
    """One hazard of one statement: ``allowed`` is the acknowledgement's reason, None when unacknowledged."""

    name: str
    table: str
    reason: str
    safe: str
    allowed: str | None = None


@dataclass
class Finding:
    """One statement of a pending migration and what it would do; ``locks`` and ``rewrites`` come from a replay."""

    file: str
    line: int
    sql: str
    hazards: list[Hazard] = field(default_factory=list)
    locks: list[tuple[str, str]] = field(default_factory=list)  # (table, lock mode) on tables that existed before
    rewrites: list[str] = field(default_factory=list)
    allows: dict[str, str] = field(default_factory=dict)  # hazard name: reason, from the comments before it

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def unacknowledged(self) -> list[Hazard]:
        return [hazard for hazard in self.hazards if hazard.allowed is None]

    def acknowledge(self) -> None:
        self.hazards = [replace(h, allowed=self.allows.get(h.name)) for h in self.hazards]


def hazard(name: str, table: str, **words: str) -> Hazard:
    reason, safe = HAZARDS[name]
    return Hazard(name, table, reason.format(table=table, **words), safe.format(table=table, **words))


class Catalog:
    """What the database holds, asked through a session as the rules need it (each answer kept)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._tables: dict[tuple[str, str], bool] | None = None
        self._types: dict[tuple[str, str, str], str | None] = {}
        self._volatile: dict[str, bool] = {}
        self._checks: dict[tuple[str, str], set[str]] = {}

    def tables(self) -> dict[tuple[str, str], bool]:
        """Every table, as (schema, name): whether it is visible on the search path."""
        if self._tables is None:
            rows = self.session.execute(queries.get("check_tables")).rows
            self._tables = {(schema, name): bool(visible) for schema, name, visible in rows}
        return self._tables

    def find(self, schema: str | None, name: str) -> tuple[str, str] | None:
        tables = self.tables()
        if schema is not None:
            return (schema, name) if (schema, name) in tables else None
        return next((key for key, visible in tables.items() if key[1] == name and visible), None)

    def column_type(self, table: tuple[str, str], column: str) -> str | None:
        key = (*table, column)
        if key not in self._types:
            row = self.session.execute(
                queries.get("check_column_type"), {"schema": table[0], "table": table[1], "column": column}
            ).one()
            self._types[key] = row[0] if row is not None else None
        return self._types[key]

    def not_null_checks(self, table: tuple[str, str]) -> set[str]:
        """Columns a validated ``CHECK (column IS NOT NULL)`` covers."""
        if table not in self._checks:
            rows = self.session.execute(queries.get("check_not_null"), {"schema": table[0], "table": table[1]})
            found = (_NOT_NULL_CHECK.match(normalise(definition)) for (definition,) in rows)
            self._checks[table] = {unquote(match["column"]) for match in found if match is not None}
        return self._checks[table]

    def volatile(self, names: list[str]) -> list[str]:
        """Those of the functions ``names`` that are volatile (any overload)."""
        unknown = [name for name in names if name not in self._volatile]
        if unknown:
            rows = self.session.execute(queries.get("check_volatile"), {"names": ",".join(unknown)}).rows
            volatile = {name for (name,) in rows}
            self._volatile.update({name: name in volatile for name in unknown})
        return [name for name in names if self._volatile[name]]


@dataclass
class _State:
    """What the pending migrations did so far, as the rules track it without running them."""

    created: set[tuple[str | None, str]] = field(default_factory=set)
    not_null: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # proved by a check validated here
    pending_checks: dict[tuple[tuple[str, str], str], str] = field(default_factory=dict)  # (table, check): column


class Analysis:
    """The rules, over the statements of the pending migrations in order."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.state = _State()

    def statement(self, sql: str) -> list[Hazard]:
        body = _DO_BODY.match(sql)
        if body is not None:  # the DDL a DO block runs (idempotent migrations wrap it in IF NOT EXISTS … THEN)
            return [found for part in _embedded(body["body"]) for found in self._one(part)]
        return self._one(normalise(sql))

    def _one(self, text: str) -> list[Hazard]:
        if (found := _CREATE_TABLE.match(text)) is not None:
            self.state.created.add(split_name(found["table"]))
            return []
        if (found := _CREATE_INDEX.match(text)) is not None:
            table = self._existing(found["table"])
            if table is not None and not found["concurrently"]:
                return [hazard("index-not-concurrent", _shown(table))]
            return []
        if (found := _DROP_TABLE.match(text)) is not None:
            names = [self._existing(name.strip()) for name in found["tables"].split(",")]
            return [hazard("drop", _shown(t), what=f"table {_shown(t)}") for t in names if t is not None]
        if (found := _ALTER_TABLE.match(text)) is not None:
            table = self._existing(found["table"])
            if table is None:
                return []
            return [found for action in top_level(found["actions"]) for found in self._action(table, action)]
        return []

    def _existing(self, qualified: str) -> tuple[str, str] | None:
        """The table, when it existed before the pending migrations (and they did not create it)."""
        schema, name = split_name(qualified)
        if (schema, name) in self.state.created or (None, name) in self.state.created:
            return None
        return self.catalog.find(schema, name)

    def _action(self, table: tuple[str, str], action: str) -> list[Hazard]:
        shown = _shown(table)
        if (found := _ADD_CONSTRAINT.match(action)) is not None:
            return self._constraint(table, found, action)
        if (found := _ADD_COLUMN.match(action)) is not None and found["column"] not in _CONSTRAINT_WORDS:
            return self._column(table, unquote(found["column"]), found["definition"])
        if (found := _ALTER_TYPE.match(action)) is not None:
            column = unquote(found["column"])
            if _widens(self.catalog.column_type(table, column), found["type"]):
                return []
            return [hazard("column-type", shown, column=column)]
        if (found := _SET_NOT_NULL.match(action)) is not None:
            column = unquote(found["column"])
            proved = self.catalog.not_null_checks(table) | self.state.not_null.get(table, set())
            return [] if column in proved else [hazard("set-not-null", shown, column=column)]
        if (found := _VALIDATE.match(action)) is not None:
            column = self.state.pending_checks.get((table, unquote(found["name"])))
            if column is not None:
                self.state.not_null.setdefault(table, set()).add(column)
            return []
        if (found := _DROP_COLUMN.match(action)) is not None:
            return [hazard("drop", shown, what=f"column {shown}.{unquote(found['column'])}")]
        if (found := _RENAME_COLUMN.match(action)) is not None:
            return [hazard("rename", shown, what=f"column {shown}.{unquote(found['column'])}")]
        if (found := _RENAME_TABLE.match(action)) is not None:
            return [hazard("rename", shown, what=f"table {shown}")]
        if _REWRITING_ACTION.match(action):
            return [hazard("table-rewrite", shown, what=action.upper())]
        return []

    def _constraint(self, table: tuple[str, str], found: re.Match[str], action: str) -> list[Hazard]:
        kind, what = found["kind"], _CONSTRAINT_KIND[found["kind"]]
        if kind in ("unique", "primary key", "exclude"):
            if " using index " in f" {action} ":
                return []
            return [hazard("constraint-builds-index", _shown(table), what=what)]
        check = _NOT_NULL_CHECK.match(action[len(found.group()) - len(kind) :]) if kind == "check" else None
        if " not valid" in f" {action}":
            if check is not None and found["name"]:
                self.state.pending_checks[(table, unquote(found["name"]))] = unquote(check["column"])
            return []
        if check is not None:
            self.state.not_null.setdefault(table, set()).add(unquote(check["column"]))
        return [hazard("constraint-not-valid", _shown(table), what=what)]

    def _column(self, table: tuple[str, str], column: str, definition: str) -> list[Hazard]:
        shown = _shown(table)
        if _STORED_GENERATED.search(definition):
            return [hazard("table-rewrite", shown, what=f"adding the stored generated column {column}")]
        if _SERIAL.match(definition):
            return [hazard("volatile-default", shown, column=column, what=definition.split(" ")[0])]
        found = _DEFAULT.search(definition)
        hazards = []
        if found is not None:
            calls = [unquote(call["name"]) for call in _FUNCTION_CALL.finditer(found["expression"])]
            volatile = self.catalog.volatile(sorted(set(calls))) if calls else []
            if volatile:
                hazards.append(hazard("volatile-default", shown, column=column, what=f"{volatile[0]}()"))
        if re.search(r"\b(?:primary key|unique)\b", definition):
            hazards.append(hazard("constraint-builds-index", shown, what=f"column {column} as a key"))
        return hazards  # REFERENCES is none: a new column is all NULL, its foreign key has nothing to check


def _embedded(body: str) -> list[str]:
    """The DDL statements in a DO block's PL/pgSQL, normalised: each ``;``-separated part from its first
    CREATE, ALTER or DROP (past ``BEGIN``, ``IF … THEN``, ``EXCEPTION WHEN … THEN``); dynamic SQL stays unseen."""
    parts = []
    for part in top_level(normalise(body), ";"):
        found = _DDL_START.search(part)
        if found is not None:
            parts.append(part[found.start() :])
    return parts


def _shown(table: tuple[str, str]) -> str:
    schema, name = table
    return name if schema == "public" else f"{schema}.{name}"


def _widens(old: str | None, new: str) -> bool:
    """A change from text type ``old`` to ``new`` that needs no rewrite: to text, or a varchar no shorter."""
    if old is None:
        return False
    before, after = _TEXT_TYPE.match(old), _TEXT_TYPE.match(new.strip())
    if before is None or after is None:
        return False
    if after["length"] is None:
        return True
    return before["length"] is not None and int(after["length"]) >= int(before["length"]) and "char" in old


def allows(sql: str, where: str) -> dict[str, str]:
    """The ``-- dbtool:allow NAME: reason`` comments in a statement's text (they come before it)."""
    found: dict[str, str] = {}
    for match in ALLOW.finditer(sql):
        name, reason = match["name"], (match["reason"] or "").strip()
        if name not in HAZARDS:
            known = ", ".join(HAZARDS)
            raise MigrationError(f"{where}: unknown hazard {name or '(none)'!r} in dbtool:allow", f"one of: {known}")
        if not reason:
            raise MigrationError(
                f"{where}: 'dbtool:allow {name}' gives no reason",
                f"say why it is safe here: -- dbtool:allow {name}: the table is empty",
            )
        found[name] = reason
    return found


class Comments:
    """A section's lines, handed out statement by statement: the lines since the previous statement (where its
    ``-- dbtool:allow`` comments are) and the statement's own."""

    def __init__(self, sql: bytes) -> None:
        self.lines = sql.decode("utf-8", "replace").splitlines()
        self.done = 0  # lines handed out so far

    def before(self, line: int, statement: str) -> str:
        """The text from the end of the previous statement to the end of this one, whose first word is on ``line``."""
        from dbtool.engine.split import first_token

        data = statement.encode()
        end = max(self.done, line + data[first_token(data, 0) :].rstrip().count(b"\n"))
        text = "\n".join(self.lines[self.done : end])
        self.done = end
        return text


def statements(migration: Migration) -> Iterator[tuple[str, int, str]]:
    """The up section's statements: the text, the file line of its first word, and its lines with the comments
    before it."""
    from dbtool.engine.split import Run, Scanner, first_token

    comments = Comments(migration.up.sql)
    for item in Scanner(io.BytesIO(migration.up.sql)):
        if isinstance(item, Run):
            for start, end in item.bounds:
                text = item.sql[start:end].decode("utf-8", "replace")
                line = item.locate(first_token(item.sql, start))[0]
                yield text, line, comments.before(line, text)


def analyse(session: Session, migrations: list[Migration]) -> list[Finding]:
    """Each statement of the pending ``migrations`` with its hazards, acknowledged where a comment says so; the
    database is only read."""
    analysis = Analysis(Catalog(session))
    findings = []
    for migration in migrations:
        for sql, line, around in statements(migration):
            finding = Finding(migration.display, line, sql, analysis.statement(sql))
            finding.allows = allows(around, finding.where)
            finding.acknowledge()
            findings.append(finding)
    return findings


def refusal(findings: list[Finding]) -> MigrationError | None:
    """The error that stops ``migrate`` on a protected target: the first unacknowledged hazard, and how many."""
    open_ = [(finding, hazard) for finding in findings for hazard in finding.unacknowledged]
    if not open_:
        return None
    finding, first = open_[0]
    more = f" (and {len(open_) - 1} more)" if len(open_) > 1 else ""
    return HazardRefused(
        f"{finding.where}: {first.name}: {first.reason}{more}",
        f"nothing was applied; {first.safe}; or, if it is safe here, acknowledge it in the migration: "
        f"-- dbtool:allow {first.name}: <why> (dbtool migrate check lists them all)",
    )


class HazardRefused(MigrationError):
    """A pending migration has a hazard nobody acknowledged, on a target where that stops it."""
