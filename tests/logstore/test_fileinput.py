"""`append` and `import` of files: CSV cells per field type, streaming in bounded memory, a rejected
file writing nothing, an interrupted one saying what it committed and continuing with --skip."""

from __future__ import annotations

import contextlib
import io
import json
import resource
import subprocess
import sys
import textwrap

import pytest

import logstore
import logstore.csvinput as csvinput
import logstore.interchange as interchange
from logstore.cli import main
from logstore.errors import LogIOError
from logstore.writer import Writer

SCHEMA = {
    "type": "record",
    "name": "row",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "x", "type": ["null", "double"], "default": None},
        {"name": "ok", "type": "boolean", "default": False},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "t", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}], "default": None},
        {"name": "tags", "type": {"type": "map", "values": "long"}, "default": {}},
        {"name": "raw", "type": ["null", "bytes"], "default": None},
    ],
}


def run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if stdin is None:
            code = main(list(argv))
        else:
            real = sys.stdin
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
            try:
                code = main(list(argv))
            finally:
                sys.stdin = real
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def logdir(tmp_path) -> str:
    d = str(tmp_path / "log")
    with logstore.open(d) as log:
        log.create_topic("rows", SCHEMA, partitions=2, key_field="id", event_time_field=None)
    return d


def _rows(d: str) -> list[dict]:
    with logstore.open(d, readonly=True) as log:
        t = log.read("rows")
    return sorted(t.drop_columns(["_partition", "_offset", "_append_time"]).to_pylist(), key=lambda r: r["id"])


def test_csv_cells_read_per_field_type(logdir, tmp_path):
    p = tmp_path / "in.csv"
    p.write_text(
        textwrap.dedent(
            """\
            id,n,x,ok,note,t,tags,raw
            a,1,1.5,true,"with, comma",2026-01-01T00:00:00Z,"{""k"": 2}",aGk=
            b,-2,,no,,,{},
            c,3,nan,1,"two
            lines",2026-01-01T12:00:00+02:00,"[[""z"", 1]]",
            """
        )
    )
    assert run("append", logdir, "rows", str(p))[0] == 0
    a, b, c = _rows(logdir)
    assert a["n"] == 1 and a["x"] == 1.5 and a["ok"] is True and a["note"] == "with, comma"
    assert a["t"].isoformat() == "2026-01-01T00:00:00+00:00" and a["tags"] == [("k", 2)] and a["raw"] == b"hi"
    assert b["x"] is None and b["ok"] is False and b["note"] is None and b["t"] is None and b["raw"] is None
    assert c["note"] == "two\nlines" and c["t"].isoformat() == "2026-01-01T10:00:00+00:00" and c["x"] != c["x"]
    assert c["tags"] == [("z", 1)]


def test_csv_delimiter_and_missing_columns_take_defaults(logdir, tmp_path):
    p = tmp_path / "in.tsv"
    p.write_text("id\tn\nq\t7\nr\t8\n")
    code, _, err = run("append", logdir, "rows", str(p), "--format", "csv", "--delimiter", "\\t")
    assert code == 0, err
    assert [(r["id"], r["n"], r["ok"], r["tags"]) for r in _rows(logdir)] == [("q", 7, False, []), ("r", 8, False, [])]
    code, _, err = run("append", logdir, "rows", str(p), "--format", "csv", "--delimiter", "::")
    assert code == 2 and "one character" in err


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ("b,1.5,,true,,,{},", "n", "'1.5' is not an integer"),
        ("b,2,abc,true,,,{},", "x", "'abc' is not a number"),
        ("b,2,,maybe,,,{},", "ok", "'maybe' is not a boolean"),
        ("b,2,,true,,yesterday,{},", "t", "'yesterday' is not an ISO-8601 time"),
        ("b,2,,true,,,{oops,", "tags", "is not JSON"),
        ("b,2,,true,,,{},%%", "raw", "is not base64"),
        ("b,,,true,,,{},", "n", "empty cell, but the field is not nullable"),
        ("b,2,,,,,{},", "ok", "empty cell, but the field is not nullable"),
        ('b,2,,true,,,"{""k"": ""v""}",', "tags['k']", "expected a long"),
    ],
)
def test_csv_errors_name_row_and_field_and_write_nothing(logdir, tmp_path, line, field, reason):
    p = tmp_path / "bad.csv"
    p.write_text("id,n,x,ok,note,t,tags,raw\na,1,,true,,,{},\n" + line + "\n")
    code, _, err = run("append", logdir, "rows", str(p))
    assert code == 2
    assert f"field {field!r}" in err and "record 1" in err and "row 2 of bad.csv" in err
    assert reason in err
    assert _rows(logdir) == []


def test_csv_unknown_column_refused(logdir, tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("id,n,colour\na,1,red\n")
    code, _, err = run("import", logdir, "rows", str(p))
    assert code == 2 and "['colour'] are not fields of topic 'rows'" in err


def test_append_from_stdin_is_spooled_and_checked_whole(logdir):
    lines = "".join(json.dumps({"id": f"s{i}", "n": i}) + "\n" for i in range(50))
    assert run("append", logdir, "rows", stdin=lines)[0] == 0
    assert len(_rows(logdir)) == 50
    code, _, err = run("append", logdir, "rows", "-", stdin=lines + '{"id": "bad", "n": "x"}\n')
    assert code == 2 and "line 51" in err and "field 'n'" in err
    assert len(_rows(logdir)) == 50  # nothing of the rejected input


def test_append_never_creates_a_topic(logdir, tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"id": "a", "n": 1}\n')
    code, _, err = run("append", logdir, "nope", str(p))
    assert code == 2 and "nope" in err
    with logstore.open(logdir, readonly=True) as log:
        assert log.topics() == ["rows"]


def _failing_after(monkeypatch, calls: int) -> None:
    real = Writer.append_batch
    seen = {"n": 0}

    def append_batch(self, *args, **kwargs):
        seen["n"] += 1
        if seen["n"] > calls:
            raise LogIOError("write to segment: No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Writer, "append_batch", append_batch)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_interrupted_import_says_what_is_in_and_skip_continues_without_duplicates(logdir, tmp_path, monkeypatch, fmt):
    records = [{"id": f"r{i:03d}", "n": i} for i in range(95)]
    p = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        p.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "csv":
        p.write_text("id,n\n" + "".join(f"{r['id']},{r['n']}\n" for r in records))
        monkeypatch.setattr(csvinput, "BLOCK_BYTES", 64)  # several blocks
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), p)
    monkeypatch.setattr(interchange, "BATCH", 20)
    _failing_after(monkeypatch, 2)
    code, _, err = run("import", logdir, "rows", str(p))
    assert code == 2
    done = len(_rows(logdir))
    assert 0 < done < 95
    assert f"the first {done} of the 95 records of in.{fmt} are committed to 'rows'" in err
    assert f"continue with: logstore import {logdir} rows {p} --skip {done}" in err
    monkeypatch.undo()
    code, _, err = run("import", logdir, "rows", str(p), "--skip", str(done))
    assert code == 0, err
    assert _rows(logdir) == [
        {**r, "x": None, "ok": False, "note": None, "t": None, "tags": [], "raw": None} for r in records
    ]
    code, _, err = run("import", logdir, "rows", str(p), "--skip", "96")
    assert code == 2 and "holds only 95 records" in err


def test_failure_before_any_commit_is_the_plain_error(logdir, tmp_path, monkeypatch):
    p = tmp_path / "in.jsonl"
    p.write_text('{"id": "a", "n": 1}\n')
    _failing_after(monkeypatch, 0)
    code, _, err = run("append", logdir, "rows", str(p))
    assert code == 2 and "No space left" in err and "committed" not in err


@pytest.mark.slow
def test_append_memory_stays_bounded(tmp_path):
    """A ~60 MB JSON-lines file appends with a peak far below the file's size in Python objects."""
    d = tmp_path / "log"
    with logstore.open(d) as log:
        log.create_topic("rows", SCHEMA, event_time_field=None)
    p = tmp_path / "big.jsonl"
    row = {"note": "x" * 180, "tags": {"a": 1, "b": 2}, "x": 0.25, "ok": True}
    with open(p, "w") as f:
        for i in range(200_000):
            f.write(json.dumps({"id": f"id-{i:09d}", "n": i, **row}) + "\n")
    size_mb = p.stat().st_size / 2**20
    assert size_mb > 50
    code = (
        "import resource, sys; from logstore.cli import main; rc = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "append", str(d), "rows", str(p), "--durability", "flush"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.split()[-1]) / 1024  # ru_maxrss is KiB on Linux
    baseline = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, logstore.cli, logstore.interchange, schemas.conform, pyarrow.parquet;"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    base_mb = int(baseline.stdout.split()[-1]) / 1024
    assert peak_mb - base_mb < 200, (peak_mb, base_mb, size_mb)  # the whole file as dicts is ~700 MB
    with logstore.open(d, readonly=True) as log:
        assert sum(log.end_offsets("rows").values()) == 200_000
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_csv_union_cells_are_json_or_text_for_a_string_branch(tmp_path):
    d = tmp_path / "log"
    schema = {
        "type": "record",
        "name": "u",
        "fields": [{"name": "id", "type": "string"}, {"name": "v", "type": ["null", "string", "long"]}],
    }
    with logstore.open(d) as log:
        log.create_topic("u", schema=schema, event_time_field=None)
    p = tmp_path / "u.csv"
    p.write_text('id,v\na,hello\nb,12\nc,\nd,"""12"""\n')
    assert run("append", str(d), "u", str(p))[0] == 0
    with logstore.open(d, readonly=True) as log:
        assert log.read("u", columns=["id", "v"]).to_pylist() == [
            {"id": "a", "v": "hello"},
            {"id": "b", "v": 12},
            {"id": "c", "v": None},
            {"id": "d", "v": "12"},
        ]
