"""`logstore sql`: where the SQL comes from, running it statement by statement, printing the results.

The SQL is the QUERY argument, the file of ``-f FILE`` (``-f -`` or a QUERY of ``-``: stdin), stdin
itself when no query is given and stdin is not a terminal, or else an interactive prompt (`repl`;
``-i`` asks for it on a pipe too). A script is split into statements by DuckDB's parser (nothing runs
if any does not parse) and they run in turn on one connection holding the topics' views (`attach`),
so a ``CREATE TEMP TABLE`` is there for the statements after it. Every statement returning rows
prints them; a command's bare ``Count``/``Success`` result is not printed (DuckDB's shell does not
either). The first error stops a script; at the prompt it is printed and the prompt goes on.

``--limit N`` is pushed into DuckDB: a result is printed from its relation with ``LIMIT N+1`` on
top (the extra row only tells whether there are more), so a scan stops once enough rows are made
and an ``ORDER BY`` becomes a top-N: two rows of a large topic never materialize the topic. Without
a limit, JSON lines stream batch by batch; the other formats hold the result.

A DuckDB error prints as one line: DuckDB's message, its further lines (candidate names, the query
line at fault) joined on and the caret line dropped, and exits 2 (LOGSTORE_DEBUG=1: the traceback).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .errors import ArgumentError
from .sql import attach, fetch_arrow, fetch_reader
from .textio import format_table, write_jsonl, write_table

if TYPE_CHECKING:
    import duckdb

    from .log import Log
    from .plan import Bound

PROG = "logstore sql"
PROMPT, MORE = "sql> ", " ..> "
FORMATS = ("table", "csv", "json", "jsonl")
HELP = """\
end a statement with ';' (or an empty line); every topic is a view named as the topic
.tables          list the views (and the tables made here)
.mode FORMAT     print results as table, csv, json or jsonl
.help            this text
.quit, .exit     leave (so does end of input, Ctrl-D)"""


class SqlError(ArgumentError):
    """A statement DuckDB refused or failed; the message is DuckDB's, on one line (`error_line`)."""


def error_line(err: BaseException) -> str:
    """DuckDB's message of `err` on one line: the first line, then the others in order ("LINE n:
    ..." quoting the query in parentheses), without blank lines and the caret line under the quote."""
    lines = [line.strip() for line in str(err).splitlines()]
    kept = [line for line in lines if line and set(line) != {"^"}]
    if not kept:
        return type(err).__name__
    rest = (f"({line})" if line.startswith("LINE ") else line for line in kept[1:])
    return " ".join([kept[0], *rest])


def read_sql(query: str | None, file: str | None, stdin: IO[str], interactive: bool = False) -> str | None:
    """The SQL to run: QUERY, the text of `file` ('-': stdin), or stdin when neither is given and
    it is not a terminal; None for the prompt (neither given, and stdin a terminal or `interactive`)."""
    if query is not None and file is not None:
        raise ArgumentError("give the SQL as QUERY or as -f FILE, not both")
    if interactive and (query is not None or file is not None):
        raise ArgumentError("-i prompts for the SQL: give no QUERY and no -f FILE with it")
    source = file if file is not None else query
    if source == "-" or (source is None and not interactive and not stdin.isatty()):
        return stdin.read()
    if file is not None:
        return Path(file).read_text(encoding="utf-8")
    return query


class Session:
    """One connection with a view per topic; runs scripts and prints each result to `out`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fmt: str, limit: int | None, out: IO[str]) -> None:
        if fmt not in FORMATS:
            raise ArgumentError(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
        if limit is not None and limit < 0:
            raise ArgumentError(f"--limit {limit}: must be 0 or more")
        self.con, self.fmt, self.limit, self.out = con, fmt, limit, out

    def run(self, sql: str) -> int:
        """Run the statements of `sql` in order, printing what each returns; returns how many ran.
        Raises `SqlError` (DuckDB's, with the statement's number when there are several) at the
        first failure, KeyboardInterrupt when DuckDB was interrupted."""
        import duckdb

        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as err:
            raise SqlError(error_line(err)) from err
        for k, st in enumerate(statements):
            try:
                rel = self.con.sql(_statement_text(st.query))
                if rel is not None and _prints(st, rel):
                    self.show(rel, explain=st.type.name == "EXPLAIN")
            except duckdb.InterruptException as err:
                raise KeyboardInterrupt from err
            except duckdb.Error as err:
                where = f" (statement {k + 1} of {len(statements)})" if len(statements) > 1 else ""
                raise SqlError(error_line(err) + where) from err
        return len(statements)

    def show(self, rel: duckdb.DuckDBPyRelation, explain: bool = False) -> None:
        """Print `rel`'s rows in the session's format: at most `limit` of them, computed by DuckDB."""
        if self.limit is None and self.fmt == "jsonl":
            write_jsonl(fetch_reader(rel), self.out)
            return
        table = fetch_arrow(rel if self.limit is None else rel.limit(self.limit + 1))
        more = self.limit is not None and table.num_rows > self.limit
        if more:
            table = table.slice(0, self.limit)
        if explain and self.fmt == "table" and table.num_columns == 2:
            for plan in table.column(1).to_pylist():  # a plan is a drawing: print it as it is
                self.out.write(f"{plan}\n")
        elif more and self.fmt == "table":
            body = format_table(table).rpartition("\n")[0]  # the "(n rows)" footer replaced
            self.out.write(f"{body}\n... more rows (--limit {self.limit})\n({table.num_rows} rows shown)\n")
        else:
            write_table(table, self.fmt, self.out)
        self.out.flush()


def _statement_text(query: str) -> str:
    """`query` (one statement) without its trailing comments and semicolons: DuckDB runs a derived
    relation (``.limit``) as a subquery of the text, where ``SELECT 1; -- note`` does not parse."""
    import duckdb

    cut = len(query)
    for offset, kind in reversed(duckdb.tokenize(query)):
        if kind != duckdb.token_type.comment and not query.startswith(";", offset):
            break
        cut = offset
    return query[:cut].rstrip()


def _prints(statement: duckdb.Statement, rel: duckdb.DuckDBPyRelation) -> bool:
    """Whether a statement's result is rows to print: not a command's bare count or success flag
    (an ``INSERT ... RETURNING`` does print)."""
    expected = {t.name for t in statement.expected_result_type}
    return expected == {"QUERY_RESULT"} or rel.columns not in (["Count"], ["Success"])


def _dot(session: Session, command: str, err: IO[str]) -> bool:
    """Run a dot command of the prompt; False for `.quit`/`.exit`."""
    name, _, arg = command.partition(" ")
    arg = arg.strip()
    if name in (".quit", ".exit"):
        return False
    if name == ".help":
        err.write(HELP + "\n")
    elif name == ".tables":
        session.run("SHOW TABLES")
    elif name == ".mode" and arg in FORMATS:
        session.fmt = arg
    elif name == ".mode":
        raise ArgumentError(f".mode {arg!r}: use one of {', '.join(FORMATS)}")
    else:
        raise ArgumentError(f"unknown command {name!r}: .help lists them")
    return True


def repl(session: Session, read: Callable[[str], str | None], err: IO[str]) -> int:
    """Read statements with `read(prompt)` (None at end of input) until `.quit` or the end, and run
    each: a statement ends at a line ending in ';', at an empty line or at the end of input. An error
    is printed and the prompt goes on; Ctrl-C drops the statement being typed. Returns 0."""
    pending: list[str] = []
    while True:
        try:
            line = read(MORE if pending else PROMPT)
            if line is None:
                if any(p.strip() for p in pending):
                    session.run("\n".join(pending))
                return 0
            text = line.strip()
            if not pending and text.startswith("."):
                if not _dot(session, text, err):
                    return 0
                continue
            if text:
                pending.append(line)
            if pending and (not text or text.endswith(";")):
                sql, pending = "\n".join(pending), []
                session.run(sql)
        except KeyboardInterrupt:
            pending = []
            err.write("^C\n")
        except ArgumentError as e:  # SqlError included
            err.write(f"{PROG}: error: {e}\n")


def _reader(stdin: IO[str], stdout: IO[str], err: IO[str]) -> Callable[[str], str | None]:
    """`read(prompt)` for the prompt: `input()` with line editing when both ends are a terminal,
    else the prompt on `err` (stdout stays the results) and a line of `stdin`."""
    if stdin.isatty() and stdout.isatty():
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass

        def read_tty(prompt: str) -> str | None:
            try:
                return input(prompt)
            except EOFError:
                return None

        return read_tty

    def read_pipe(prompt: str) -> str | None:
        err.write(prompt)
        err.flush()
        line = stdin.readline()
        return line.rstrip("\n") if line else None

    return read_pipe


def run_sql(
    log: Log,
    query: str | None,
    *,
    file: str | None = None,
    interactive: bool = False,
    start: Bound = None,
    end: Bound = None,
    fmt: str = "table",
    limit: int | None = None,
    stdin: IO[str],
    stdout: IO[str],
    stderr: IO[str],
) -> int:
    """The `logstore sql` command over `log`'s views (restricted to [start, end)): the SQL from
    `read_sql`, or the prompt. Returns the exit status: 0, or 2 after printing a DuckDB error."""
    sql = read_sql(query, file, stdin, interactive)
    if sql is not None and not sql.strip():
        raise ArgumentError("no SQL given: pass QUERY, -f FILE or SQL on stdin (a terminal gets a prompt)")
    con = attach(log, None, start=start, end=end)
    try:
        session = Session(con, fmt, limit, stdout)
        if sql is None:
            stderr.write(f"{PROG}: views {', '.join(log.topics()) or '(none)'}; .help for help, .quit to leave\n")
            return repl(session, _reader(stdin, stdout, stderr), stderr)
        try:
            if session.run(sql) == 0:
                raise ArgumentError("no SQL statement in the input (only comments or ';')")
        except SqlError as err:
            if os.environ.get("LOGSTORE_DEBUG"):
                raise
            stderr.write(f"{PROG}: error: {err}\n")
            return 2
        return 0
    finally:
        con.close()
