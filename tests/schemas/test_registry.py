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
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path), tag], env=env, cwd=tmp_path,
                              stderr=subprocess.PIPE) for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    versions = Registry(tmp_path).versions()
    assert [v.version for v in versions] == list(range(1, 16))
    forms = {schemas.canonical_form(v.schema) for v in versions}
    assert len(forms) == 15
