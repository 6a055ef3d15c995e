"""Tests for schemas.registry: versions on disk, idempotence, compatibility refusal, concurrency."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

import schemas
from logstore.errors import SchemaError, SchemaIncompatibleError
from schemas import Registry, SchemaVersion

REPO = pathlib.Path(__file__).resolve().parents[2]


def rec(*fields):
    return {"type": "record", "name": "R", "namespace": "t", "fields": list(fields)}


V1 = rec({"name": "id", "type": "string"})
V2 = rec({"name": "id", "type": "string"}, {"name": "n", "type": ["null", "long"], "default": None})


def test_register_writes_numbered_immutable_versions(tmp_path):
    """Versions are v00001.avsc, v00002.avsc...; ids are fingerprints; latest/get/by_id find them."""
    reg = Registry(tmp_path / "schemas")
    assert reg.versions() == [] and reg.latest() is None
    v1 = reg.register(V1)
    v2 = reg.register(V2)
    assert v1 == SchemaVersion(1, schemas.fingerprint(V1), V1)
    assert v2.version == 2 and reg.latest() == v2
    assert sorted(p.name for p in (tmp_path / "schemas").glob("*.avsc")) == ["v00001.avsc", "v00002.avsc"]
    assert json.loads((tmp_path / "schemas" / "v00002.avsc").read_text()) == V2
    assert reg.get(1) == v1 and reg.by_id(v2.id) == v2
    assert not list((tmp_path / "schemas").glob(".*.tmp"))


def test_register_is_idempotent(tmp_path):
    """Registering the same schema again (any input form) returns the existing version, writing nothing."""
    reg = Registry(tmp_path)
    v1 = reg.register(V1)
    assert reg.register(json.dumps(V1)) == v1
    assert len(list(tmp_path.glob("*.avsc"))) == 1


def test_doc_or_default_change_is_a_new_version(tmp_path):
    """A change the canonical form ignores (a default) still makes a new version, sharing the id."""
    reg = Registry(tmp_path)
    a = rec({"name": "id", "type": "string"}, {"name": "n", "type": "long"})
    b = rec({"name": "id", "type": "string"}, {"name": "n", "type": "long", "default": 0})
    va, vb = reg.register(a), reg.register(b)
    assert (va.version, vb.version) == (1, 2) and va.id == vb.id
    assert reg.by_id(va.id) == vb


def test_incompatible_schema_is_refused_with_reasons(tmp_path):
    """A breaking change raises SchemaIncompatibleError listing each reason and writes nothing."""
    reg = Registry(tmp_path)
    reg.register(V1)
    bad = rec({"name": "id", "type": "int"}, {"name": "x", "type": "long"})
    with pytest.raises(SchemaIncompatibleError) as info:
        reg.register(bad)
    assert info.value.reasons == [
        "field 'id': type changed from string to int (BACKWARD: the new schema cannot read old string values as int)",
        "field 'x' added without a default (BACKWARD: old records have no value for it)",
    ]
    assert "field 'x' added without a default" in str(info.value)
    assert len(reg.versions()) == 1
    assert reg.register(bad, mode="NONE").version == 2


def test_transitive_mode_checks_all_versions(tmp_path):
    """BACKWARD_TRANSITIVE refuses what plain BACKWARD would accept against the latest only."""
    reg = Registry(tmp_path)
    reg.register(V1)
    reg.register(rec({"name": "id", "type": "string"}, {"name": "n", "type": "long", "default": 0}))
    v3 = rec({"name": "id", "type": "string"}, {"name": "n", "type": "long"})
    with pytest.raises(SchemaIncompatibleError, match="against version 1"):
        reg.register(v3, mode="BACKWARD_TRANSITIVE")
    assert reg.register(v3, mode="BACKWARD").version == 3


def test_reload_sees_versions_from_another_registry_object(tmp_path):
    """A second Registry on the same directory sees new versions after reload()."""
    a, b = Registry(tmp_path), Registry(tmp_path)
    a.register(V1)
    assert [v.version for v in b.versions()] == [1]
    a.register(V2)
    assert len(b.versions()) == 1  # cached
    assert [v.version for v in b.reload()] == [1, 2]
    assert b.get(2).schema == V2  # get() reloads on a miss too


def test_errors_for_missing_versions_and_bad_files(tmp_path):
    """Unknown versions and ids are clear errors; a gap in version files is reported."""
    reg = Registry(tmp_path)
    with pytest.raises(SchemaError, match="no version 1"):
        reg.get(1)
    with pytest.raises(SchemaError, match="no version with id"):
        reg.by_id(123)
    with pytest.raises(SchemaError, match="unknown compatibility mode"):
        reg.register(V1, mode="LOOSE")
    (tmp_path / "v00002.avsc").write_text(json.dumps(V1))
    with pytest.raises(SchemaError, match="expected version 1"):
        Registry(tmp_path).versions()


_WORKER = """
import sys
from schemas import Registry
directory, tag = sys.argv[1], sys.argv[2]
reg = Registry(directory)
def rec(*names):
    return {"type": "record", "name": "R", "fields": [{"name": "id", "type": "string"}] +
            [{"name": n, "type": ["null", "long"], "default": None} for n in names]}
for i in range(5):
    reg.register(rec(f"shared{i}"))
for i in range(5):
    reg.register(rec(f"{tag}{i}"))
"""


def test_concurrent_register_from_two_processes(tmp_path):
    """Two processes registering at once produce dense versions and no duplicate schema."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(tmp_path), tag], env=env, cwd=tmp_path, stderr=subprocess.PIPE
        )
        for tag in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    versions = Registry(tmp_path).versions()
    assert [v.version for v in versions] == list(range(1, 16))
    forms = {schemas.canonical_form(v.schema) for v in versions}
    assert len(forms) == 15


# --------------------------------------------------------------------------- reading never writes
def test_reading_a_registry_creates_nothing(tmp_path):
    """Registry(), versions(), latest(), get() and reload() on a missing directory create nothing."""
    from tests.schemas.fsrecord import FsRecorder

    directory = tmp_path / "topic" / "schemas"
    with FsRecorder() as fs:
        reg = Registry(directory)
        assert reg.versions() == [] and reg.latest() is None and reg.reload() == []
        with pytest.raises(SchemaError, match="no schema registered"):
            reg.get(1)
    assert fs.mutations() == []
    assert not (tmp_path / "topic").exists()


def test_reading_leaves_stray_temp_files_to_the_next_register(tmp_path):
    """A temp file a dead register left is ignored by readers and removed by the next register."""
    reg = Registry(tmp_path)
    reg.register(V1)
    stray = tmp_path / ".v00002.avsc.999.1.tmp"
    stray.write_text("{")
    assert len(Registry(tmp_path).versions()) == 1 and stray.exists()
    reg.register(V2)
    assert not stray.exists()


def test_register_creates_the_directory_and_files_durably_in_order(tmp_path):
    """The first register creates the directory (fsynced into its parent, as is each new parent),
    then the version file and its fingerprint record, each temp-fsync-rename-fsync; only os calls."""
    from tests.schemas.fsrecord import FsRecorder

    directory = tmp_path / "topic" / "schemas"
    with FsRecorder() as fs:
        Registry(directory).register(V1)
    fs.assert_no_builtin_writes()
    fs.assert_new_dir_durable(tmp_path / "topic")
    fs.assert_new_dir_durable(directory)
    fs.assert_replaced_durably(directory / "v00001.avsc")
    fs.assert_replaced_durably(directory / "v00001.fingerprint")
    renamed = [op[2] for op in fs.ops if op[0] in ("replace", "rename")]
    assert renamed == [str(directory / "v00001.avsc"), str(directory / "v00001.fingerprint")]
    record = json.loads((directory / "v00001.fingerprint").read_text())
    assert record["version"] == 1 and record["id"] == f"{schemas.fingerprint(V1):#018x}"
    assert len(record["sha256"]) == 64


# --------------------------------------------------------------------------- version files checked
def test_version_file_swapped_by_hand_is_refused(tmp_path):
    """A different schema put in v00001.avsc is refused, naming the file and both fingerprints,
    even when it differs only in a logical type (which the Avro id ignores)."""
    reg = Registry(tmp_path)
    reg.register(rec({"name": "id", "type": "string"}, {"name": "t", "type": "long"}))
    reg.register(
        rec(
            {"name": "id", "type": "string"},
            {"name": "t", "type": "long"},
            {"name": "n", "type": ["null", "long"], "default": None},
        )
    )
    recorded = json.loads((tmp_path / "v00001.fingerprint").read_text())["sha256"]
    swapped = rec(
        {"name": "id", "type": "string"}, {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}}
    )
    assert schemas.fingerprint(swapped) == reg.get(1).id  # same Avro id: the id alone cannot tell
    (tmp_path / "v00001.avsc").write_text(json.dumps(swapped, indent=2))
    for load in (Registry(tmp_path).versions, reg.reload):
        with pytest.raises(SchemaError) as info:
            load()
        msg = str(info.value)
        assert str(tmp_path / "v00001.avsc") in msg and recorded in msg
        assert schemas.registry._digest(schemas.avro.full_form(swapped)) in msg


def test_reformatting_a_version_file_is_not_a_change(tmp_path):
    """Whitespace and key order do not change a version: the fingerprint is over the full form."""
    reg = Registry(tmp_path)
    v1 = reg.register(V1)
    (tmp_path / "v00001.avsc").write_text(json.dumps(dict(reversed(list(V1.items())))))
    assert Registry(tmp_path).versions() == [v1]


def test_registry_without_fingerprint_records_loads_and_is_recorded_by_the_next_register(tmp_path):
    """An older registry (only vNNNNN.avsc) loads unchecked, reading writes nothing, and the next
    register records every version as it is, so later swaps are caught."""
    (tmp_path / "v00001.avsc").write_text(json.dumps(V1, indent=2) + "\n")
    (tmp_path / "v00002.avsc").write_text(json.dumps(V2, indent=2) + "\n")
    reg = Registry(tmp_path)
    assert [v.schema for v in reg.versions()] == [V1, V2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v00001.avsc", "v00002.avsc"]
    v3 = rec(
        {"name": "id", "type": "string"},
        {"name": "n", "type": ["null", "long"], "default": None},
        {"name": "m", "type": ["null", "string"], "default": None},
    )
    assert reg.register(v3).version == 3
    assert sorted(p.name for p in tmp_path.glob("*.fingerprint")) == [
        "v00001.fingerprint",
        "v00002.fingerprint",
        "v00003.fingerprint",
    ]
    (tmp_path / "v00001.avsc").write_text(json.dumps(rec({"name": "id", "type": "bytes"})))
    with pytest.raises(SchemaError, match="v00001.avsc is not the schema registered as version 1"):
        Registry(tmp_path).versions()


@pytest.mark.parametrize(
    "record, what",
    [
        ("{", "not JSON"),
        (json.dumps({"format": 1, "version": 1, "sha256": "abc"}), "'sha256'"),
        (json.dumps({"format": 1, "version": 2, "sha256": "0" * 64}), "'version'"),
    ],
)
def test_damaged_fingerprint_record_is_refused(tmp_path, record, what):
    """A fingerprint record that does not parse or names another version is reported, by name."""
    Registry(tmp_path).register(V1)
    (tmp_path / "v00001.fingerprint").write_text(record)
    with pytest.raises(SchemaError) as info:
        Registry(tmp_path).versions()
    assert str(tmp_path / "v00001.fingerprint") in str(info.value) and what in str(info.value)


def test_deleted_latest_version_file_is_refused(tmp_path):
    """A fingerprint record whose version file is gone means a version was deleted: refused."""
    reg = Registry(tmp_path)
    reg.register(V1)
    reg.register(V2)
    (tmp_path / "v00002.avsc").unlink()
    with pytest.raises(SchemaError, match="v00002.avsc is missing"):
        Registry(tmp_path).versions()


def test_swapped_version_file_is_refused_by_the_log(tmp_path):
    """Through the log: a topic whose version file was swapped cannot be read or written."""
    import logstore

    lg = logstore.open(tmp_path / "log")
    lg.create_topic("t", schema=V1, event_time_field=None)
    path = tmp_path / "log" / "topics" / "t" / "schemas" / "v00001.avsc"
    path.write_text(json.dumps(rec({"name": "id", "type": "bytes"})))
    with pytest.raises(SchemaError, match="v00001.avsc is not the schema registered"):
        logstore.open(tmp_path / "log").schema("t")
