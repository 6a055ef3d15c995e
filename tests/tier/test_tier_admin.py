"""Administration of tiered topics: deleting one deletes its remote objects (also after a crash
between the rename and the removal); the remote and local retention can be altered."""

from __future__ import annotations

import shutil

import pytest

import logstore
from logstore import admin
from logstore.errors import TopicError
from tests.tier.data import SCHEMA, fill


def _tiered(tmp_path, remote):
    lg = logstore.open(tmp_path / "log", remote=remote)
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, compression=None)
    fill(lg, "t", 8, 300)
    assert lg.tier().moved
    return lg


def test_deleting_a_tiered_topic_deletes_its_remote_objects(tmp_path, remote, s3):
    lg = _tiered(tmp_path, remote)
    assert s3.objects(remote)
    lg.delete_topic("t")
    assert s3.objects(remote) == {}
    assert lg.topics() == []
    lg.close()


def test_a_crash_before_the_remote_objects_went_is_finished_by_the_next_deletion(tmp_path, remote, s3, monkeypatch):
    lg = _tiered(tmp_path, remote)
    monkeypatch.setattr(admin, "_remove_remote", lambda log, tree: False)  # the store refused: tree kept
    lg.delete_topic("t")
    assert lg.topics() == [] and s3.objects(remote)  # gone from the log, objects still named by the tree
    monkeypatch.undo()
    lg.create_topic("u", SCHEMA)
    lg.delete_topic("u")  # its sweep finishes the first deletion
    assert s3.objects(remote) == {}
    assert not [p for p in (tmp_path / "log" / "topics").iterdir() if p.name.startswith(".deleted-")]
    lg.close()


def test_alter_local_retention_and_remote(tmp_path, remote, s3):
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, compression=None)
    fill(lg, "t", 8, 300)
    assert lg.config("t").remote is None
    new = lg.alter_topic("t", remote=remote, local_retention_bytes=40_000)
    assert new.remote is not None and new.local_retention_bytes == 40_000
    assert lg.tier().moved
    reopened = logstore.open(tmp_path / "log")
    assert reopened.config("t").remote == new.remote
    with pytest.raises(TopicError, match="cannot change while they are"):
        reopened.alter_topic("t", remote=remote.replace("tier", "elsewhere"))
    assert reopened.alter_topic("t", local_retention_ms=3_600_000).local_retention_ms == 3_600_000
    reopened.close()
    lg.close()
    shutil.rmtree(tmp_path / "log")
