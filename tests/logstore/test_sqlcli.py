"""`logstore sql`: where the SQL comes from, statements in turn, one-line errors, limits, formats, the prompt."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sys

import duckdb
import pytest

import logstore
from logstore import sqlcli
from logstore.cli import main
from logstore.errors import ArgumentError
from logstore.sqlcli import HELP, MORE, PROMPT, Session, SqlError, error_line, read_sql, repl, run_sql
from tests.conftest import SCORE_SCHEMA, StepClock, score_rows

N, BATCH = 3_000, 300  # 10 batches, one append time each: T0, T0+1s, ...


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*argv: str, stdin: str | io.StringIO = "") -> tuple[int, str, str]:
    """`logstore ARGV` with `stdin` (a pipe unless a `Tty`): (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    src = stdin if isinstance(stdin, io.StringIO) else io.StringIO(stdin)
    old, sys.stdin = sys.stdin, src
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["sql", *argv])
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A log with topic `scores`: N records over 3 partitions, appended at T0 + (i // BATCH) seconds."""
    d = tmp_path_factory.mktemp("sqlcli") / "log"
    log = logstore.open(d)
    log.create_topic("scores", schema=SCORE_SCHEMA, partitions=3, key_field="request_id")
    with log.writer("scores", clock=StepClock(), linger_ms=None) as w:
        for b in range(N // BATCH):
            w.append_batch(score_rows(BATCH, start=b * BATCH))
    rows = log.read("scores").to_pylist()
    log.close()
    return str(d), rows


@pytest.fixture
def logdir(written):
    return written[0]


@pytest.fixture
def session():
    con = duckdb.connect()
    yield Session(con, "csv", None, io.StringIO())
    con.close()


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# --- where the SQL comes from


def test_query_file_and_stdin(logdir, tmp_path):
    """QUERY, -f FILE, -f -, QUERY '-' and a piped stdin without a query all give the SQL."""
    q = "SELECT count(*) AS n FROM scores"
    script = tmp_path / "q.sql"
    script.write_text(q + ";\n")
    for argv, stdin in [((q,), ""), (("-f", str(script)), ""), (("-f", "-"), q), (("-",), q), ((), q)]:
        code, out, err = run(logdir, *argv, "--format", "csv", stdin=stdin)
        assert (code, csv_rows(out), err) == (0, [["n"], [str(N)]], ""), argv


def test_refused_sources(logdir, tmp_path):
    """QUERY with -f, -i with either, empty SQL, comments only, a missing file: one error line, exit 2."""
    script = tmp_path / "q.sql"
    script.write_text("SELECT 1")
    cases = [
        (("SELECT 1", "-f", str(script)), "", "not both"),
        (("SELECT 1", "-i"), "", "-i prompts for the SQL"),
        (("   \n",), "", "no SQL given"),
        ((), "  \n", "no SQL given"),
        (("-- nothing here\n;\n/* nor here */",), "", "no SQL statement in the input"),
        (("-f", str(tmp_path / "missing.sql")), "", "missing.sql"),
    ]
    for argv, stdin, said in cases:
        code, out, err = run(logdir, *argv, stdin=stdin)
        assert (code, out) == (2, ""), argv
        assert re.match(r"logstore( sql)?: error: ", err) and said in err and err.count("\n") == 1, (argv, err)


def test_read_sql_directly(tmp_path):
    """read_sql: None (the prompt) for a terminal or -i; a pipe is read; the file is read as UTF-8."""
    assert read_sql(None, None, Tty("SELECT 1")) is None
    assert read_sql(None, None, io.StringIO("SELECT 1"), interactive=True) is None
    assert read_sql(None, None, io.StringIO("SELECT 2")) == "SELECT 2"
    assert read_sql("SELECT 3", None, io.StringIO("SELECT 2")) == "SELECT 3"
    (tmp_path / "q.sql").write_text("SELECT 'é'", encoding="utf-8")
    assert read_sql(None, str(tmp_path / "q.sql"), Tty()) == "SELECT 'é'"
    assert read_sql(None, "-", Tty("SELECT 4")) == "SELECT 4"


# --- statements in turn


def test_script_runs_in_order_on_one_connection(logdir):
    """A temp table made by one statement is there for the next; commands print nothing; RETURNING prints."""
    script = """
        CREATE TEMP TABLE top AS SELECT request_id, score FROM scores ORDER BY score DESC, request_id LIMIT 3;
        SET threads = 1;
        INSERT INTO top VALUES ('x', 2.0);
        INSERT INTO top VALUES ('y', 3.0) RETURNING request_id;
        DELETE FROM top WHERE request_id = 'x';
        SELECT count(*) AS n FROM top;
    """
    code, out, err = run(logdir, "--format", "jsonl", stdin=script)
    assert (code, err) == (0, "")
    assert [json.loads(line) for line in out.splitlines()] == [{"request_id": "y"}, {"n": 4}]


def test_select_of_a_column_named_count_prints(session):
    """Only a command's bare Count/Success result is dropped, not a query's column of that name."""
    assert session.run('SELECT 5 AS "Count"; SELECT true AS "Success"') == 2
    assert session.out.getvalue().splitlines() == ["Count", "5", "Success", "True"]


def test_trailing_comment_after_semicolon(logdir):
    """`SELECT ...; -- note` runs, with and without --limit (a limited relation wraps the text)."""
    for extra in ((), ("--limit", "5")):
        code, out, err = run(logdir, "SELECT 7 AS a; -- note\n/* and another */", "--format", "csv", *extra)
        assert (code, csv_rows(out), err) == (0, [["a"], ["7"]], ""), extra


def test_explain_prints_the_plan_drawing(logdir):
    """EXPLAIN in table format prints the plan itself, not a table of it."""
    code, out, _ = run(logdir, "EXPLAIN SELECT model_id FROM scores")
    assert code == 0 and "explain_value" not in out and "Scan" in out and "(1 rows)" not in out


# --- errors


def test_error_is_one_line_exit_2(logdir):
    """A DuckDB error: one stderr line naming the statement; what ran before printed, nothing after."""
    script = "SELECT 1 AS a;\nSELECT nope FROM scores;\nSELECT 3 AS c;"
    code, out, err = run(logdir, "--format", "csv", stdin=script)
    assert (code, csv_rows(out)) == (2, [["a"], ["1"]])
    assert err.startswith("logstore sql: error:") and err.count("\n") == 1
    assert "nope" in err and "(statement 2 of 3)" in err and "^" not in err
    code, _, err = run(logdir, "SELECT nope FROM scores")
    assert code == 2 and err.count("\n") == 1 and "statement" not in err


def test_parse_error_runs_nothing(logdir, session):
    """A script with a statement that does not parse runs none of them."""
    code, out, err = run(logdir, "SELECT 42 AS a; SELEC 2")
    assert (code, out) == (2, "") and err.startswith("logstore sql: error:") and err.count("\n") == 1
    with pytest.raises(SqlError):
        session.run("CREATE TEMP TABLE made AS SELECT 1 AS a; SELEC 2")
    with pytest.raises(duckdb.CatalogException):
        session.con.sql("SELECT * FROM made").fetchall()


def test_debug_raises(logdir, monkeypatch):
    """LOGSTORE_DEBUG=1: the error is raised, DuckDB's as its cause."""
    monkeypatch.setenv("LOGSTORE_DEBUG", "1")
    with pytest.raises(SqlError) as info:
        run(logdir, "SELECT nope FROM scores")
    assert isinstance(info.value.__cause__, duckdb.Error)


def test_error_line():
    """DuckDB's message on one line: further lines joined, LINE quoted in parentheses, caret dropped."""
    con = duckdb.connect()
    con.sql("CREATE TABLE t (alpha INT)")
    with pytest.raises(duckdb.Error) as info:
        con.sql("SELECT alpah FROM t")
    first, *rest = str(info.value).splitlines()
    assert rest and error_line(info.value) == " ".join([first, *rest]) and "alpha" in rest[-1]
    with pytest.raises(duckdb.Error) as info:
        con.sql("SELECT *\nFROM t WHERE")
    assert "^" in str(info.value)
    line = error_line(info.value)
    assert "\n" not in line and "^" not in line and line.endswith("(LINE 2: FROM t WHERE)")
    assert error_line(ValueError("first\n\n  second\n   ^^^\nLINE 2: x")) == "first second (LINE 2: x)"
    assert error_line(RuntimeError("")) == "RuntimeError"


def test_interrupt_becomes_keyboard_interrupt():
    """DuckDB interrupted: KeyboardInterrupt (the CLI exits 130 on it)."""

    class Interrupted:
        def sql(self, query: str) -> None:
            raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")

    with pytest.raises(KeyboardInterrupt):
        Session(Interrupted(), "csv", None, io.StringIO()).run("SELECT 1")  # type: ignore[arg-type]


# --- limits


def test_limit_table_note(logdir):
    """--limit N: N rows and a note in table format when there are more; no note when there are not."""
    code, out, _ = run(logdir, "SELECT request_id FROM scores ORDER BY request_id", "--limit", "3")
    lines = out.splitlines()
    assert code == 0 and lines[0].strip() == "request_id" and len(lines) == 2 + 3 + 2
    assert lines[-2:] == ["... more rows (--limit 3)", "(3 rows shown)"]
    code, out, _ = run(logdir, "SELECT * FROM range(3)", "--limit", "3")
    assert "more rows" not in out and out.splitlines()[-1] == "(3 rows)"


def test_limit_other_formats(logdir):
    """csv/json/jsonl print exactly N rows and no note; --limit 0 prints none; a negative is refused."""
    q = "SELECT request_id FROM scores"
    _, out, _ = run(logdir, q, "--limit", "4", "--format", "csv")
    assert len(csv_rows(out)) == 1 + 4
    _, out, _ = run(logdir, q, "--limit", "4", "--format", "json")
    assert len(json.loads(out)) == 4
    _, out, _ = run(logdir, q, "--limit", "4", "--format", "jsonl")
    assert len([json.loads(line) for line in out.splitlines()]) == 4
    assert csv_rows(run(logdir, q, "--limit", "0", "--format", "csv")[1]) == [["request_id"]]
    assert json.loads(run(logdir, q, "--limit", "0", "--format", "json")[1]) == []
    assert run(logdir, q, "--limit", "0", "--format", "jsonl")[1] == ""
    _, out, _ = run(logdir, q, "--limit", "0")
    assert out.splitlines()[-2:] == ["... more rows (--limit 0)", "(0 rows shown)"]
    code, out, err = run(logdir, q, "--limit", "-1")
    assert (code, out) == (2, "") and "--limit -1: must be 0 or more" in err


def test_limit_is_pushed_into_duckdb(written, monkeypatch):
    """The relation printed carries LIMIT N+1: an ORDER BY becomes DuckDB's top-N, with the right rows."""
    logdir, rows = written
    seen = []
    real = sqlcli.fetch_arrow

    def spy(rel):
        seen.append(rel.explain())
        return real(rel)

    monkeypatch.setattr(sqlcli, "fetch_arrow", spy)
    code, out, _ = run(
        logdir, "SELECT * FROM scores ORDER BY score DESC, request_id", "--limit", "2", "--format", "json"
    )
    want = sorted(rows, key=lambda r: (-r["score"], r["request_id"]))[:2]
    assert code == 0 and [r["request_id"] for r in json.loads(out)] == [r["request_id"] for r in want]
    assert len(seen) == 1 and "Top N" in seen[0] and "Top: 3" in seen[0]
    seen.clear()
    assert run(logdir, "SELECT * FROM scores", "--limit", "2", "--format", "csv")[0] == 0
    assert len(seen) == 1 and "Limit: 3" in seen[0]


# --- formats


def test_formats_parse(written):
    """table, csv, json and jsonl print the same rows, each parseable."""
    logdir, rows = written
    q = "SELECT request_id, score FROM scores WHERE model_id = 'm1' ORDER BY request_id"
    want = sorted((r["request_id"], r["score"]) for r in rows if r["model_id"] == "m1")
    _, out, _ = run(logdir, q, "--format", "csv")
    got = csv_rows(out)
    assert got[0] == ["request_id", "score"] and [(a, float(b)) for a, b in got[1:]] == want
    _, out, _ = run(logdir, q, "--format", "json")
    assert [(r["request_id"], r["score"]) for r in json.loads(out)] == want
    _, out, _ = run(logdir, q, "--format", "jsonl")
    assert [tuple(json.loads(line).values()) for line in out.splitlines()] == want
    _, out, _ = run(logdir, q, "--format", "table")
    lines = out.splitlines()
    assert lines[0].split() == ["request_id", "score"] and set(lines[1]) <= {"-", " "}
    cells = [line.split() for line in lines[2:-1]]
    assert [c[0] for c in cells] == [w[0] for w in want]
    assert [float(c[1]) for c in cells] == pytest.approx([w[1] for w in want], rel=1e-5)
    assert lines[-1] == f"({len(want)} rows)"
    with pytest.raises(ArgumentError, match="unknown format"):
        Session(duckdb.connect(), "xml", None, io.StringIO())


def test_jsonl_streams_batches(written, monkeypatch):
    """jsonl without a limit streams the result through fetch_reader, never holding it whole."""
    logdir, rows = written
    batches = []
    real = sqlcli.fetch_reader

    def small(rel):
        reader = real(rel, batch_rows=500)
        for b in reader:
            batches.append(b.num_rows)
            yield b

    def whole(rel):
        raise AssertionError("held whole")

    monkeypatch.setattr(sqlcli, "fetch_reader", small)
    monkeypatch.setattr(sqlcli, "fetch_arrow", whole)
    code, out, _ = run(logdir, "SELECT request_id, _partition FROM scores", "--format", "jsonl")
    got = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(got) == N == sum(batches) and len(batches) >= N // 500 and max(batches) <= 500
    assert sorted(r["request_id"] for r in got) == sorted(r["request_id"] for r in rows)
    assert {r["_partition"] for r in got} == {0, 1, 2}


# --- the prompt


def test_prompt_on_a_pipe(logdir):
    """-i on a pipe: ';' or an empty line ends a statement, multi-line ones, dot commands, errors go on."""
    script = "\n".join(
        [
            "SELECT 1 AS a;",
            "SELECT 2",
            "  AS b",
            "",
            ".mode csv",
            "SELECT 3 AS c;",
            ".tables",
            ".bogus",
            ".mode xml",
            "SELECT nope;",
            ".help",
            "SELECT",
            "4 AS d",
        ]
    )
    code, out, err = run(logdir, "-i", stdin=script)
    assert code == 0
    assert out.count("(1 rows)") == 2 and out.splitlines()[0].strip() == "a" and "2" in out.splitlines()
    assert out.splitlines()[-6:] == ["c", "3", "name", "scores", "d", "4"]  # the pending SELECT ran at the end
    assert PROMPT not in out and MORE not in out and err.count(PROMPT) >= 10 and MORE in err
    assert "logstore sql: views scores;" in err and HELP in err
    assert "logstore sql: error: unknown command '.bogus'" in err and "logstore sql: error: .mode 'xml'" in err
    assert err.count("logstore sql: error:") == 3 and "nope" in err


def test_prompt_quit_and_exit(logdir):
    """.quit (and .exit) leave at once: what follows is not run."""
    for word in (".quit", ".exit"):
        code, out, _ = run(logdir, "-i", "--format", "csv", stdin=f"SELECT 1 AS a;\n{word}\nSELECT 2 AS b;\n")
        assert (code, csv_rows(out)) == (0, [["a"], ["1"]])


def test_prompt_on_a_terminal(logdir, monkeypatch):
    """With a terminal on both ends the prompt reads with input(); end of input (Ctrl-D) leaves."""
    lines = iter(["SELECT 5 AS e;"])
    prompts = []

    def fake_input(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    out, err = Tty(), io.StringIO()
    with logstore.open(logdir, readonly=True) as log:
        code = run_sql(log, None, fmt="csv", stdin=Tty(), stdout=out, stderr=err)
    assert (code, csv_rows(out.getvalue()), prompts) == (0, [["e"], ["5"]], [PROMPT, PROMPT])


def test_repl_ctrl_c_drops_the_statement(session):
    """Ctrl-C while a statement is typed drops it; the prompt goes on."""
    script: list[str | BaseException] = ["SELECT 1 AS a", KeyboardInterrupt(), "SELECT 2 AS b;"]

    def read(prompt: str) -> str | None:
        if not script:
            return None
        item = script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    err = io.StringIO()
    assert repl(session, read, err) == 0
    assert csv_rows(session.out.getvalue()) == [["b"], ["2"]] and err.getvalue() == "^C\n"


# --- ranges


def test_start_end_restrict_the_views(written):
    """--start/--end as append times, offsets and per-partition offsets restrict every view."""
    logdir, rows = written
    q = "SELECT count(*) AS n, min(_append_time) AS lo, max(_append_time) AS hi FROM scores"
    times = ("--start", "2026-11-01T00:00:02Z", "--end", "2026-11-01T00:00:05Z")
    code, out, _ = run(logdir, q, *times, "--format", "json")
    got = json.loads(out)[0]
    assert code == 0 and got["n"] == 3 * BATCH
    assert got["lo"].startswith("2026-11-01T00:00:02") and got["hi"].startswith("2026-11-01T00:00:04")
    q = "SELECT _partition, min(_offset), count(*) FROM scores GROUP BY 1 ORDER BY 1"
    code, out, _ = run(logdir, q, "--start", "100", "--end", "150", "--format", "csv")
    assert code == 0 and csv_rows(out)[1:] == [[str(p), "100", "50"] for p in range(3)]
    sizes = [sum(r["_partition"] == p for r in rows) for p in range(3)]
    code, out, _ = run(logdir, q, "--start", "0:10,1:0", "--end", "2:5", "--format", "csv")
    assert csv_rows(out)[1:] == [["0", "10", str(sizes[0] - 10)], ["1", "0", str(sizes[1])], ["2", "0", "5"]]
