"""Tests for schemas.avrofile, and the property that Avro -> Arrow -> Avro file loses nothing."""

from __future__ import annotations

import fastavro
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from logstore.errors import SchemaError
from schemas import avrofile
from schemas.avro import expand
from tests.schemas.avro_strategies import avro_schemas, normalize, values


@st.composite
def schema_and_records(draw):
    s = schemas.parse(draw(avro_schemas()))
    records = draw(st.lists(values(expand(s)), max_size=5))
    return s, records


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(schema_and_records())
def test_generated_records_survive_arrow_and_an_avro_file(tmp_path, sr):
    """conform -> avrofile.write: fastavro reads the same records, avrofile.read the same Arrow data."""
    s, records = sr
    arrow = schemas.to_arrow(s)
    batch = schemas.conform(records, s, arrow)
    assert batch.num_rows == len(records)
    path = tmp_path / "data.avro"
    half = len(records) // 2
    assert avrofile.write(path, s, [batch.slice(0, half), pa.Table.from_batches([batch.slice(half)])]) == len(records)
    with open(path, "rb") as fh:
        assert [normalize(r) for r in fastavro.reader(fh)] == normalize(records)
    schema_back, table = avrofile.read(path)
    assert schemas.canonical_form(schema_back) == schemas.canonical_form(s)
    assert table.schema.equals(schemas.to_arrow(schema_back), check_metadata=True)
    assert table.to_pylist() == batch.to_pylist()
    assert schemas.from_arrow(arrow) is not None


@pytest.mark.parametrize("codec", ["null", "deflate", "zstandard"])
def test_codecs(tmp_path, codec):
    """Files written with each codec read back; zstandard is the default."""
    s = schemas.load("metric")
    rows = [{"name": "m", "value": 1.0, "tags": {"host": "a"}, "event_time": 5}]
    b = schemas.conform(rows, s, schemas.to_arrow(s))
    avrofile.write(tmp_path / "m.avro", s, [b], codec=codec)
    with open(tmp_path / "m.avro", "rb") as fh:
        reader = fastavro.reader(fh)
        assert reader.codec == codec
        assert [r["tags"] for r in reader] == [{"host": "a"}]
    assert avrofile.read(tmp_path / "m.avro")[1].equals(pa.Table.from_batches([b]))


def test_iter_batches_and_empty_files(tmp_path):
    """iter_batches splits large files; an empty file reads as an empty table."""
    s = schemas.load("metric")
    rows = [{"name": f"m{i}", "value": float(i), "tags": {}, "event_time": i} for i in range(10)]
    b = schemas.conform(rows, s, schemas.to_arrow(s))
    avrofile.write(tmp_path / "m.avro", s, [b])
    assert [x.num_rows for _, x in avrofile.iter_batches(tmp_path / "m.avro", batch_size=4)] == [4, 4, 2]
    avrofile.write(tmp_path / "e.avro", s, [])
    assert avrofile.read(tmp_path / "e.avro")[1].num_rows == 0


def test_bad_files_and_codecs(tmp_path):
    """A file that is not Avro and an unknown codec are clear errors; nothing half-written stays."""
    (tmp_path / "x.avro").write_bytes(b"not avro at all")
    with pytest.raises(SchemaError, match="not a readable Avro container file"):
        avrofile.read(tmp_path / "x.avro")
    with pytest.raises(SchemaError, match="unknown Avro codec"):
        avrofile.write(tmp_path / "y.avro", schemas.load("metric"), [], codec="gzip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.avro"]


def test_write_goes_through_os_calls_and_is_durable(tmp_path):
    """An Avro file is written with os.open/os.write only (no builtin open), to a temp file fsynced
    before its rename, the directory fsynced after; a file over the buffer size reads back whole."""
    from tests.schemas.fsrecord import FsRecorder

    s = schemas.load("metric")
    rows = [{"name": f"m{i}" * 50, "value": float(i), "tags": {}, "event_time": i} for i in range(20_000)]
    b = schemas.conform(rows, s, schemas.to_arrow(s))
    with FsRecorder() as fs:
        avrofile.write(tmp_path / "m.avro", s, [b], codec="null")
    fs.assert_no_builtin_writes()
    fs.assert_replaced_durably(tmp_path / "m.avro")
    assert (tmp_path / "m.avro").stat().st_size > avrofile._FdWriter.LIMIT
    assert avrofile.read(tmp_path / "m.avro")[1].to_pylist() == b.to_pylist()
