"""export -> import round trips: format from the extension, system columns dropped, maps as JSON
objects, every format re-imported and validated, a rejected file writing nothing."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
import logstore.interchange as interchange
import schemas
from logstore.cli import main
from logstore.interchange import export_topic, file_format, import_file
from schemas.avro import expand
from tests.schemas.avro_strategies import avro_schemas, values

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC
_counter = itertools.count()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _user(table: pa.Table) -> list[dict]:
    return table.select([c for c in table.column_names if not c.startswith("_")]).to_pylist()


@st.composite
def schema_and_records(draw):
    s = schemas.parse(draw(avro_schemas()))
    return s, draw(st.lists(values(expand(s)), min_size=0, max_size=5))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(schema_and_records())
def test_generated_records_export_import_identity(tmp_path, sr):
    """Generated records of generated schemas (every logical type, maps, fixed, nesting) survive
    export -> import into a fresh topic of the same schema in each format, system columns and all."""
    s, records = sr
    root = tmp_path / f"log{next(_counter)}"
    with logstore.open(root) as log:
        log.create_topic("t", schema=s)
        with log.writer("t") as w:
            w.append_batch(records)
        expected = _user(log.read("t"))
        for ext in ("avro", "parquet", "jsonl", "ndjson"):
            path = root.parent / f"{root.name}.{ext}"
            assert export_topic(log, "t", path) == len(records)
            log.create_topic(f"copy-{ext}", schema=s)
            assert import_file(log, f"copy-{ext}", path) == len(records)
            assert _user(log.read(f"copy-{ext}")) == expected, ext
            assert log.read(f"copy-{ext}").column("_offset").to_pylist() == list(range(len(records)))


def test_file_format_from_extension_and_refusals():
    """The extension names the format; a contradicting --format and a silent extension are refused."""
    assert [file_format(f"x{e}") for e in (".avro", ".PARQUET", ".jsonl", ".ndjson")] == [
        "avro",
        "parquet",
        "jsonl",
        "jsonl",
    ]
    assert file_format("x.dat", "jsonl") == "jsonl" and file_format("x.avro", "avro") == "avro"
    with pytest.raises(logstore.LogstoreError, match=r"--format parquet does not match .*'x.avro' \(.avro is avro\)"):
        file_format("x.avro", "parquet")
    with pytest.raises(logstore.LogstoreError, match=r"cannot tell the format of 'x.dat' from its extension .dat"):
        file_format("x.dat")
    with pytest.raises(logstore.LogstoreError, match="unknown import format 'xml'"):
        file_format("x.xml", "xml", "import")


@pytest.fixture
def metrics(tmp_path) -> str:
    """A log with topic m (schema metric: a map of tags) holding three records."""
    d = str(tmp_path / "log")
    assert run("create", d, "m", "--schema", "metric")[0] == 0
    rows = [{"name": f"n{i}", "value": i / 4, "tags": {"host": f"h{i}", "dc": "eu"}, "event_time": i} for i in range(3)]
    with logstore.open(d) as log, log.writer("m") as w:
        w.append_batch(rows)
    return d


def test_cli_export_picks_format_from_extension(metrics, tmp_path):
    """export without --format writes what the extension says: Avro, Parquet, JSON lines."""
    for name, magic in (("m.avro", b"Obj\x01"), ("m.parquet", b"PAR1"), ("m.jsonl", b"{"), ("m.ndjson", b"{")):
        code, _, err = run("export", metrics, "m", str(tmp_path / name))
        assert code == 0, err
        assert (tmp_path / name).read_bytes().startswith(magic), name
    assert "(jsonl)" in err
    assert pq.read_table(tmp_path / "m.parquet").num_rows == 3


def test_cli_export_refuses_mismatch_and_unknown_extension(metrics, tmp_path):
    """A --format the extension contradicts, or an extension naming no format, is one line, exit 2, no file."""
    code, _, err = run("export", metrics, "m", str(tmp_path / "m.avro"), "--format", "parquet")
    assert code == 2 and len(err.splitlines()) == 1
    assert "--format parquet" in err and ".avro is avro" in err
    code, _, err = run("export", metrics, "m", str(tmp_path / "m.dat"))
    assert code == 2 and len(err.splitlines()) == 1 and "cannot tell the format" in err and "--format" in err
    assert not list(tmp_path.glob("m.*"))
    assert run("export", metrics, "m", str(tmp_path / "m.dat"), "--format", "jsonl")[0] == 0
    assert len((tmp_path / "m.dat").read_text().splitlines()) == 3
    code, _, err = run("import", metrics, "m", str(tmp_path / "m.dat"))
    assert code == 2 and "cannot tell the format" in err


def test_maps_are_json_objects(metrics, tmp_path):
    """Maps come out of export and cat as JSON objects, not lists of key/value pairs."""
    assert run("export", metrics, "m", str(tmp_path / "m.jsonl"))[0] == 0
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows[1]["tags"] == {"host": "h1", "dc": "eu"}
    code, out, _ = run("cat", metrics, "m", "--limit", "1")
    assert json.loads(out)["tags"] == {"host": "h0", "dc": "eu"}
    code, out, _ = run("cat", metrics, "m", "--format", "json")
    assert json.loads(out)[2]["tags"] == {"host": "h2", "dc": "eu"}


@pytest.mark.parametrize("ext", ["avro", "parquet", "jsonl"])
def test_cli_round_trip_into_fresh_topic(metrics, tmp_path, ext):
    """export (system columns and all) -> import into a new topic of the same schema: same records."""
    path = str(tmp_path / f"m.{ext}")
    assert run("export", metrics, "m", path)[0] == 0
    assert run("create", metrics, "copy", "--schema", "metric")[0] == 0
    code, _, err = run("import", metrics, "copy", path)
    assert code == 0 and f"imported 3 records of {path} ({ext})" in err
    with logstore.open(metrics, readonly=True) as log:
        assert _user(log.read("copy")) == _user(log.read("m"))


def test_console_script_round_trip(metrics, tmp_path):
    """The installed `logstore` command: export to .ndjson, import with --format, cat the copy."""
    exe = str(ROOT / ".venv" / "bin" / "logstore")
    out = tmp_path / "m.ndjson"
    subprocess.run([exe, "export", metrics, "m", str(out)], check=True, capture_output=True, timeout=60)
    subprocess.run([exe, "create", metrics, "copy", "--schema", "metric"], check=True, capture_output=True, timeout=60)
    subprocess.run([exe, "import", metrics, "copy", str(out), "--format", "jsonl"], check=True, timeout=60)
    done = subprocess.run([exe, "cat", metrics, "copy"], check=True, capture_output=True, text=True, timeout=60)
    assert [json.loads(line)["tags"]["host"] for line in done.stdout.splitlines()] == ["h0", "h1", "h2"]


def _records(d: str, topic: str) -> int:
    with logstore.open(d, readonly=True) as log:
        return int(log.read(topic).num_rows)


def test_rejected_jsonl_writes_nothing_and_names_line_and_field(metrics, tmp_path, monkeypatch):
    """A bad record after several good batches rejects the whole file, naming its line, field and reason."""
    monkeypatch.setattr(interchange, "BATCH", 2)  # the bad record is in the third batch
    good = {"name": "x", "value": 1.0, "tags": {}, "event_time": "2026-11-20T00:00:00Z"}
    lines = [json.dumps(good)] * 4 + [""] + [json.dumps(good | {"value": "high"})]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run("import", metrics, "m", str(path))
    assert code == 2, err
    first = err.splitlines()[0]
    assert "record 4" in first and "field 'value'" in first and "line 6 of bad.jsonl" in first
    assert "expected a double" in first and "'high'" in first
    assert _records(metrics, "m") == 3


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ('{"name": "x", "value": 1, "tags": {}, "event_time": "yesterday"}', "event_time", "not an ISO-8601 time"),
        ("[1, 2]", None, "expected a JSON object, found list"),
        ('{"name": "x",', None, "not valid JSON"),
        ('{"name": "x", "value": 1, "tags": {}, "event_time": 0, "colour": "red"}', "colour", "unknown field"),
    ],
)
def test_jsonl_errors_name_the_line(metrics, tmp_path, line, field, reason):
    """Text that is not a record of the topic is refused with its line number, field and reason."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"name": "ok", "value": 1, "tags": {"a": "b"}, "event_time": 5}\n' + line + "\n")
    with logstore.open(metrics) as log, pytest.raises(logstore.RecordValidationError) as info:
        import_file(log, "m", path)
    e = info.value
    assert (e.index, e.field) == (1, field) and reason in e.reason and "line 2 of in.jsonl" in e.reason
    assert _records(metrics, "m") == 3


def test_nested_jsonl_values_are_decoded_with_their_path(tmp_path):
    """Times, bytes and decimals inside arrays, maps and records are decoded; a bad one names its path."""
    s = {
        "type": "record",
        "name": "N",
        "fields": [
            {"name": "at", "type": {"type": "array", "items": {"type": "long", "logicalType": "timestamp-micros"}}},
            {"name": "blobs", "type": {"type": "map", "values": "bytes"}},
            {
                "name": "r",
                "type": {
                    "type": "record",
                    "name": "R",
                    "fields": [
                        {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}}
                    ],
                },
            },
        ],
    }
    good = {"at": ["2026-01-01T00:00:00Z"], "blobs": {"k": "AAE="}, "r": {"d": "12.50"}}
    with logstore.open(tmp_path / "log") as log:
        log.create_topic("n", schema=s)
        for bad, path, reason in [
            (good | {"at": ["2026-01-01", "soon"]}, "at[1]", "'soon' is not an ISO-8601 time"),
            (good | {"blobs": {"k": "%%"}}, "blobs['k']", "'%%' is not base64"),
            (good | {"r": {"d": "lots"}}, "r.d", "'lots' is not a decimal number"),
        ]:
            (tmp_path / "n.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
            with pytest.raises(logstore.RecordValidationError) as info:
                import_file(log, "n", tmp_path / "n.jsonl")
            assert info.value.field == path and reason in info.value.reason
        (tmp_path / "n.jsonl").write_text(json.dumps(good) + "\n")
        assert import_file(log, "n", tmp_path / "n.jsonl") == 1
        row = log.read("n").to_pylist()[0]
    assert row["at"] == [dt.datetime(2026, 1, 1, tzinfo=UTC)]
    assert row["blobs"] == [("k", b"\x00\x01")] and str(row["r"]["d"]) == "12.50"


def test_rejected_parquet_writes_nothing_and_names_row_and_field(metrics, tmp_path, monkeypatch):
    """Parquet is validated like append: a null in a required field or an unknown column rejects it all."""
    monkeypatch.setattr(interchange, "BATCH", 2)
    t = pa.table(
        {
            "name": ["a", "b", "c", None],
            "value": [1.0, 2.0, 3.0, 4.0],
            "tags": pa.array([[], [], [], []], pa.map_(pa.string(), pa.string())),
            "event_time": pa.array([0, 1, 2, 3], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(t, tmp_path / "bad.parquet")
    code, _, err = run("import", metrics, "m", str(tmp_path / "bad.parquet"))
    assert code == 2 and "record 3" in err and "field 'name'" in err and "row 3 of bad.parquet" in err
    pq.write_table(t.slice(0, 3).append_column("colour", pa.array(["r", "g", "b"])), tmp_path / "extra.parquet")
    code, _, err = run("import", metrics, "m", str(tmp_path / "extra.parquet"))
    assert code == 2 and "unknown column 'colour'" in err and "in extra.parquet" in err
    assert _records(metrics, "m") == 3
    pq.write_table(t.slice(0, 3), tmp_path / "good.parquet")
    assert run("import", metrics, "m", str(tmp_path / "good.parquet"))[0] == 0
    assert _records(metrics, "m") == 6


def test_damaged_avro_creates_no_topic(metrics, tmp_path, monkeypatch):
    """An Avro file whose later blocks are damaged is refused as a user error before the topic is created."""
    monkeypatch.setattr(interchange, "BATCH", 1)
    with logstore.open(metrics) as log, log.writer("m") as w:
        w.append_batch([{"name": "n" * 200 + str(i), "value": 0.0, "tags": {}, "event_time": i} for i in range(2000)])
    assert run("export", metrics, "m", str(tmp_path / "m.avro"))[0] == 0
    data = (tmp_path / "m.avro").read_bytes()
    (tmp_path / "cut.avro").write_bytes(data[: len(data) * 2 // 3])
    code, _, err = run("import", metrics, "fresh", str(tmp_path / "cut.avro"))
    assert code == 2 and "Avro data after record" in err and "cannot be read" in err
    with logstore.open(metrics, readonly=True) as log:
        assert "fresh" not in log.topics()


def test_parquet_and_jsonl_need_the_topic(metrics, tmp_path):
    """Parquet and JSON lines carry no Avro schema: importing into a missing topic is refused with a hint."""
    assert run("export", metrics, "m", str(tmp_path / "m.jsonl"))[0] == 0
    code, _, err = run("import", metrics, "nosuch", str(tmp_path / "m.jsonl"))
    assert code == 2 and "nosuch" in err and "logstore create" in err


def test_csv_is_an_import_format_not_an_export_one():
    assert file_format("x.csv", verb="import") == "csv"
    with pytest.raises(logstore.LogstoreError, match="unknown export format 'csv'"):
        file_format("x.csv", "csv", "export")
    with pytest.raises(logstore.LogstoreError, match="cannot tell the format of 'x.csv'"):
        file_format("x.csv", verb="export")


def test_parquet_export_of_a_null_record_holding_an_enum(tmp_path):
    """A nested enum under a null record (its dictionary empty) exports to Parquet and back."""
    schema = {
        "type": "record",
        "name": "Top",
        "fields": [
            {
                "name": "f0",
                "type": [
                    "null",
                    {
                        "type": "record",
                        "name": "Rec1",
                        "fields": [
                            {"name": "f0", "type": {"type": "enum", "name": "Enum2", "symbols": ["A"]}},
                            {"name": "f1", "type": "boolean"},
                        ],
                    },
                ],
            }
        ],
    }
    with logstore.open(tmp_path / "log") as log:
        log.create_topic("t", schema=schema)
        with log.writer("t", linger_ms=None) as w:
            w.append_batch([{"f0": None}, {"f0": {"f0": "A", "f1": True}}])
        export_topic(log, "t", tmp_path / "t.parquet")
        log.create_topic("copy", schema=schema)
        assert import_file(log, "copy", tmp_path / "t.parquet") == 2
        assert _user(log.read("copy")) == [{"f0": None}, {"f0": {"f0": "A", "f1": True}}]
