"""The logstore CLI: each command over the library, one-line errors, examples in --help."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logstore.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def logdir(tmp_path):
    d = str(tmp_path / "log")
    assert run("create", d, "scores", "--schema", "model_score", "--partitions", "2", "--key", "request_id")[0] == 0
    return d


def _jsonl(tmp_path, n=20) -> Path:
    p = tmp_path / "in.jsonl"
    p.write_text(
        "".join(
            json.dumps(
                {
                    "request_id": f"r{i}",
                    "event_time": f"2026-11-20T00:00:{i:02d}Z",
                    "model_id": "m",
                    "model_version": "1",
                    "score": i / 20,
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    return p


def test_append_cat_describe_verify(logdir, tmp_path):
    """append JSON lines, cat them back as JSON/table/CSV, describe and verify."""
    assert run("append", logdir, "scores", str(_jsonl(tmp_path)))[0] == 0
    code, out, _ = run("cat", logdir, "scores")
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["request_id"] for r in rows) == sorted(f"r{i}" for i in range(20))
    assert rows[0]["event_time"].startswith("2026-11-20T00:00:")
    code, out, _ = run("cat", logdir, "scores", "--format", "table", "--columns", "request_id,score", "--limit", "3")
    assert "request_id" in out and "more rows" in out
    code, out, _ = run("cat", logdir, "scores", "--format", "csv", "--partitions", "0")
    assert out.splitlines()[0].startswith("request_id,")
    code, out, _ = run("describe", logdir, "scores", "--segments")
    assert "20 records" in out and ".seg" in out
    code, out, _ = run("describe", logdir, "--json")
    assert json.loads(out)["scores"]["records"] == 20
    assert run("verify", logdir)[0] == 0
    code, out, _ = run("tail", logdir, "scores", "-n", "2")
    assert len(out.splitlines()) == 4


def test_append_csv_parquet_and_avro_round_trip(logdir, tmp_path):
    """append reads CSV and Parquet; export/import round-trips through Avro and Parquet."""
    csv = tmp_path / "in.csv"
    csv.write_text("request_id,event_time,model_id,model_version,score\nc1,2026-11-20T00:00:00Z,m,1,0.5\n")
    assert run("append", logdir, "scores", str(csv))[0] == 0
    t = pa.table(
        {
            "request_id": ["p1"],
            "event_time": pa.array([0], pa.timestamp("us", tz="UTC")),
            "model_id": ["m"],
            "model_version": ["1"],
            "score": [0.25],
        }
    )
    pq.write_table(t, tmp_path / "in.parquet")
    assert run("append", logdir, "scores", str(tmp_path / "in.parquet"))[0] == 0
    assert run("export", logdir, "scores", str(tmp_path / "out.avro"), "--format", "avro")[0] == 0
    assert run("export", logdir, "scores", str(tmp_path / "out.parquet"), "--format", "parquet")[0] == 0
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 2
    assert run("import", logdir, "copy", str(tmp_path / "out.avro"))[0] == 0
    code, out, _ = run("sql", logdir, "SELECT count(*) AS n FROM copy", "--format", "json")
    assert json.loads(out) == [{"n": 2}]


def test_sql_formats_and_quoted_names(logdir, tmp_path):
    """sql over a dotted topic name, as table, CSV and JSON."""
    assert run("create", logdir, "replay.scores-x", "--schema", "model_score")[0] == 0
    assert run("append", logdir, "replay.scores-x", str(_jsonl(tmp_path, 5)))[0] == 0
    code, out, _ = run("sql", logdir, 'SELECT count(*) AS n FROM "replay.scores-x"', "--format", "csv")
    assert out.splitlines() == ["n", "5"]


def test_retention_command(tmp_path):
    """retention deletes sealed segments past the topic's limit."""
    d = str(tmp_path / "log")
    run(
        "create",
        d,
        "t",
        "--schema",
        "model_score",
        "--segment-bytes",
        "600",
        "--retention-bytes",
        "1500",
        "--compression",
        "none",
    )
    for _ in range(6):
        assert run("append", d, "t", str(_jsonl(tmp_path, 5)))[0] == 0
    code, out, _ = run("retention", d)
    assert code == 0 and "deleted" in out


def test_verify_exit_code_on_damage(logdir, tmp_path):
    """verify exits 1 and names the damaged frame."""
    run("append", logdir, "scores", str(_jsonl(tmp_path)))
    run("append", logdir, "scores", str(_jsonl(tmp_path)))
    seg = sorted(Path(logdir, "topics", "scores", "00000").glob("*.seg"))[0]
    data = bytearray(seg.read_bytes())
    data[100] ^= 0xFF
    seg.write_bytes(bytes(data))
    code, out, _ = run("verify", logdir)
    assert code == 1 and "DAMAGED" in out and str(seg) in out


def test_verify_notes_a_torn_tail_and_recover_removes_it(logdir, tmp_path):
    """A torn tail is a note of verify (exit 0), not damage; `logstore recover` truncates it and
    says so; verify then has nothing to note."""
    run("append", logdir, "scores", str(_jsonl(tmp_path)))
    seg = sorted(Path(logdir, "topics", "scores", "00000").glob("*.seg"))[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"LSF1" + b"\x07" * 40)
    code, out, _ = run("verify", logdir)
    assert code == 0 and "note:" in out and "44 bytes past the committed end" in out
    code, out, _ = run("recover", logdir)
    assert code == 0 and "44 bytes of torn tail truncated" in out and seg.stat().st_size == size
    code, out, _ = run("verify", logdir)
    assert code == 0 and "note:" not in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["cat", "{d}", "nope"], "does not exist"),
        (["create", "{d}", "a/b", "--schema", "model_score"], "path separator"),
        (["create", "{d}", "x", "--schema", "no_such_schema"], "no_such_schema"),
        (["cat", "{d}", "scores", "--start", "yesterday"], "not an offset"),
    ],
)
def test_user_mistakes_are_one_line(logdir, argv, needle):
    """A user mistake prints one line to stderr (no traceback) and exits non-zero."""
    code, out, err = run(*[a.format(d=logdir) for a in argv])
    assert code != 0
    assert needle in err and "Traceback" not in err
    assert err.startswith("logstore: error:")


def test_bad_record_names_line_field(logdir, tmp_path):
    """A bad record in appended JSON names the record and field; nothing is written."""
    p = tmp_path / "bad.jsonl"
    p.write_text(
        _jsonl(tmp_path, 3).read_text()
        + json.dumps(
            {
                "request_id": "z",
                "event_time": "2026-01-01T00:00:00Z",
                "model_id": "m",
                "model_version": "1",
                "score": "x",
            }
        )
        + "\n"
    )
    code, _, err = run("append", logdir, "scores", str(p))
    assert code == 2 and "record 3" in err and "score" in err
    assert json.loads(run("describe", logdir, "scores", "--json")[1])["records"] == 0


def test_console_script_no_traceback(tmp_path):
    """The installed entry point prints a one-line error for a missing topic."""
    proc = subprocess.run(
        [sys.executable, "-m", "logstore.cli", "cat", str(tmp_path / "log"), "nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and proc.stderr.count("\n") <= 2


def test_every_command_help_has_an_example():
    """Each subcommand's --help ends with an example."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) >= {
        "create",
        "topics",
        "describe",
        "append",
        "cat",
        "tail",
        "verify",
        "retention",
        "sql",
        "export",
        "import",
    }
    for name, p in sub.choices.items():
        assert "example:" in p.format_help() and f"logstore {name}" in p.format_help()


def test_cli_reference_is_current():
    """docs/cli.md matches what the commands' --help says now."""
    from logstore.clidoc import main as render

    assert (ROOT / "docs" / "cli.md").read_text() == render()


@pytest.mark.parametrize(
    "raised, code, said",
    [
        (ValueError("bad bound\nbecause of this"), 2, "prog: error: bad bound (hint)\nprog:   because of this\n"),
        (KeyboardInterrupt(), 130, ""),
        (KeyboardInterrupt("interrupted: `prog resume` ends it"), 130, "prog: interrupted: `prog resume` ends it\n"),
        (BrokenPipeError(), 0, ""),
        (RuntimeError("boom"), 70, "prog: error: boom (RuntimeError; set LOGSTORE_DEBUG=1 for the traceback)\n"),
    ],
)
def test_cli_runner_exit_codes_and_messages(monkeypatch, raised, code, said):
    """Every command runs through logstore.cli.run: a user mistake is one line (plus its reasons)
    and exit 2, Ctrl-C 130 (with what the interrupt says), a closed pipe 0; LOGSTORE_DEBUG=1
    shows the traceback instead of the one line."""
    import argparse

    from logstore.cli import run as run_cli

    def command(args):
        raise raised

    parser = argparse.ArgumentParser(prog="prog")
    parser.set_defaults(func=command)
    err = io.StringIO()
    monkeypatch.delenv("LOGSTORE_DEBUG", raising=False)
    with contextlib.redirect_stderr(err):
        assert run_cli("prog", parser, [], lambda e: " (hint)") == code
    assert err.getvalue() == said
    if code == 2:
        monkeypatch.setenv("LOGSTORE_DEBUG", "1")
        with pytest.raises(ValueError, match="bad bound"):
            run_cli("prog", parser, [], lambda e: "")
