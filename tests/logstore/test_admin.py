"""Administration: topics and groups listed with sizes and lag, settings altered, topics and groups
deleted crash-safely (refused while a writer holds a partition), and the CLI over it."""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore import admin
from logstore.cli import main
from logstore.errors import (
    ArgumentError,
    ConsumerError,
    InvalidNameError,
    LogIOError,
    TopicError,
    TopicNotFoundError,
)
from tests.conftest import SCORE_SCHEMA, StepClock, score_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def log(tmp_path):
    """Topics t (2 partitions, 40 records, retention 7d) and u (empty), written by a Log closed
    since: the one given holds no descriptor a deletion elsewhere would leave dangling."""
    with logstore.open(tmp_path / "log") as lg:
        lg.create_topic("t", SCORE_SCHEMA, partitions=2, key_field="request_id", retention_ms=7 * 86_400_000)
        with lg.writer("t", clock=StepClock(), linger_ms=None) as w:
            w.append_batch(score_rows(30))
            w.append_batch(score_rows(10, 30))
        lg.create_topic("u", SCORE_SCHEMA)
    lg = logstore.open(tmp_path / "log")
    yield lg
    lg.close()


def _hold(part, *, until: threading.Event) -> threading.Thread:
    """A thread holding `part`'s write lock until `until` is set (started, lock taken)."""
    taken = threading.Event()

    def hold() -> None:
        with part.exclusive():
            taken.set()
            until.wait(10)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert taken.wait(10)
    return t


def _hidden(log) -> list[str]:
    return sorted(n for n in os.listdir(log.path / "topics") if n.startswith(".deleted-"))


# --- listing ---------------------------------------------------------------------------------
def test_topic_summaries_give_sizes_settings_and_append_times(log):
    by_name = {s["topic"]: s for s in admin.topic_summaries(log)}
    t, u = by_name["t"], by_name["u"]
    described = log.describe("t")
    assert (t["partitions"], t["records"], t["bytes"]) == (2, 40, described["bytes"]) and t["bytes"] > 0
    assert t["schema_versions"] == [1] and t["retention_ms"] == 7 * 86_400_000 and t["retention_bytes"] is None
    assert t["compression"] == "zstd" and t["key_field"] == "request_id"
    # StepClock: the first batch at T0, the second a second later, in whichever partitions
    assert t["first_append_time"].startswith("2026-11-01T00:00:00") and t["last_append_time"].startswith(
        "2026-11-01T00:00:01"
    )
    assert (u["records"], u["bytes"], u["first_append_time"], u["last_append_time"]) == (0, 0, None, None)


def test_groups_report_lag_as_end_minus_committed(log):
    ends = log.end_offsets("t")
    c = log.consumer("t", "g1")
    c.commit({0: 3, 1: ends[1]})
    log.consumer("t", "g2", partitions=[1]).commit({1: 1})
    log.consumer("u", "g2").commit({0: 0})
    found = {g["group"]: g for g in admin.groups(log)}
    (t1,) = found["g1"]["topics"]
    assert t1["topic"] == "t" and t1["error"] is None
    assert [(p["partition"], p["committed"], p["end"], p["lag"]) for p in t1["partitions"]] == [
        (0, 3, ends[0], ends[0] - 3),
        (1, ends[1], ends[1], 0),
    ]
    assert found["g1"]["lag"] == ends[0] - 3
    t2 = {e["topic"]: e for e in found["g2"]["topics"]}
    assert [(p["committed"], p["lag"]) for p in t2["t"]["partitions"]] == [(None, None), (1, ends[1] - 1)]
    assert t2["u"]["partitions"] == [{"partition": 0, "committed": 0, "end": 0, "lag": 0}]
    # a damaged cursor is reported, not trusted
    (log.path / "groups" / "g1" / "t.json").write_text("{not json")
    (bad,) = next(g for g in admin.groups(log) if g["group"] == "g1")["topics"]
    assert bad["partitions"] == [] and "damaged" in bad["error"]


# --- deleting ----------------------------------------------------------------------------------
def test_delete_is_refused_while_another_thread_holds_a_partition(log):
    release = threading.Event()
    holder = _hold(log.topic("t").partition(1), until=release)
    try:
        with pytest.raises(admin.TopicBusyError, match="partition 1 is held by this process"):
            log.delete_topic("t")
    finally:
        release.set()
        holder.join(10)
    assert log.topics() == ["t", "u"] and log.read("t").num_rows == 40 and _hidden(log) == []
    assert log.delete_topic("t").records == 40 and log.topics() == ["u"]


def test_delete_is_refused_while_another_process_holds_a_partition(log):
    code = (
        "import sys, logstore\n"
        "lg = logstore.open(sys.argv[1])\n"
        "with lg.topic('t').partition(0).exclusive():\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(log.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(admin.TopicBusyError, match=f"partition 0 is held by pid {child.pid}") as err:
            admin.delete_topic(log, "t")
        assert "\n" not in str(err.value) and "nothing was deleted" in str(err.value)
        assert log.topics() == ["t", "u"]
    finally:
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.close()
        child.wait(20)
    admin.delete_topic(log, "t")
    assert log.topics() == ["u"]


def test_delete_then_create_again_under_the_same_name(log):
    log.consumer("t", "g").commit({0: 2})
    w = log.writer("t", linger_ms=None)  # between commits: does not stop the deletion
    w.append_batch(score_rows(5, 100))
    done = log.delete_topic("t")
    assert (done.topic, done.records, done.groups) == ("t", 45, ("g",))
    assert log.topics() == ["u"] and not (log.path / "topics" / "t").exists() and _hidden(log) == []
    assert not (log.path / "groups" / "g" / "t.json").exists()
    assert not (log.path / "groups" / "g" / ".t.json.lock").exists()
    with pytest.raises(LogIOError, match="deleted or replaced"):  # the old writer writes nothing
        w.append_batch(score_rows(5, 200))
    assert not (log.path / "topics" / "t").exists()
    with pytest.raises(TopicNotFoundError):
        log.read("t")
    log.create_topic("t", SCORE_SCHEMA)  # one partition now
    with log.writer("t", linger_ms=None) as w2:
        w2.append_batch(score_rows(3))
    assert log.read("t")["request_id"].to_pylist() == ["r0", "r1", "r2"]
    assert logstore.open(log.path).read("t").num_rows == 3
    assert log.consumer("t", "g").committed() == {}


def test_writers_and_logs_of_a_deleted_topic_close_cleanly(log):
    """A writer (and its Log) that committed to a topic another Log deleted close without error
    and write nothing: the descriptors are released, the deleted topic stays deleted."""
    other = logstore.open(log.path)
    w = other.writer("t", linger_ms=None)
    w.append_batch(score_rows(5, 300))  # holds the tail descriptors of the partitions it wrote
    log.delete_topic("t")
    w.close()
    other.close()
    assert log.topics() == ["u"] and not (log.path / "topics" / "t").exists()


def test_a_crash_after_the_rename_leaves_no_topic_and_the_next_delete_cleans_up(log):
    log.consumer("t", "old").commit({0: 1})
    with admin._config_lock(log, "t"):
        hidden = admin.retire_topic(log, "t")  # the commit point only: a crash right after it
    assert hidden.exists() and _hidden(log) == [hidden.name]
    again = logstore.open(log.path, readonly=True)
    assert again.topics() == ["u"] and "t" not in again.describe()
    # the name is free at once; a group of the new topic keeps the cursor written after the deletion
    log.create_topic("t", SCORE_SCHEMA)
    log.consumer("t", "new").commit({0: 0})
    assert (log.path / "groups" / "old" / "t.json").exists()
    assert admin.sweep(log) == [hidden]
    assert _hidden(log) == [] and not (log.path / "groups" / "old" / "t.json").exists()
    assert log.consumer("t", "new").committed() == {0: 0} and log.topics() == ["t", "u"]


def test_a_removal_that_fails_is_finished_by_the_next_deletion(log, monkeypatch):
    def broken(path, *a, **k):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(shutil, "rmtree", broken)
    log.delete_topic("t")  # passed its commit point: deleted, the tree left behind
    assert log.topics() == ["u"] and len(_hidden(log)) == 1
    assert logstore.open(log.path).topics() == ["u"]
    monkeypatch.undo()
    log.delete_topic("u")
    assert _hidden(log) == [] and log.topics() == []


def test_delete_refuses_names_outside_the_log_missing_topics_and_read_only_logs(log, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "topic.json").write_text("{}")
    for bad in ("../outside", "..", "/tmp", ".deleted-1-1-t", "a/b"):
        with pytest.raises(InvalidNameError):
            log.delete_topic(bad)
    assert (outside / "topic.json").exists()
    with pytest.raises(TopicNotFoundError):
        log.delete_topic("nope")
    with pytest.raises(TopicError, match="read-only"):
        logstore.open(log.path, readonly=True).delete_topic("t")
    assert log.topics() == ["t", "u"]


def test_a_topic_with_damaged_settings_can_be_deleted(log):
    (log.path / "topics" / "t" / "topic.json").write_text("{broken")
    done = admin.delete_topic(logstore.open(log.path), "t")
    assert done.records is None and not (log.path / "topics" / "t").exists()


def test_delete_group(log):
    log.consumer("t", "g").commit({0: 1})
    log.consumer("u", "g").commit({0: 0})
    lock = log.path / "groups" / "g" / ".t.json.lock"
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a consumer committing right now
    try:
        with pytest.raises(admin.TopicBusyError, match="topic 't'"):
            admin.delete_group(log, "g")
    finally:
        os.close(fd)
    assert admin.group_names(log) == ["g"]
    assert admin.delete_group(log, "g") == admin.DeletedGroup("g", ("t", "u"))
    assert admin.groups(log) == [] and os.listdir(log.path / "groups") == []
    with pytest.raises(ConsumerError, match="no consumer group 'g'"):
        admin.delete_group(log, "g")
    with pytest.raises(InvalidNameError):
        admin.delete_group(log, "../log")


# --- altering ----------------------------------------------------------------------------------
def test_alter_persists_across_reopen_and_keeps_the_other_settings(log):
    before = log.config("t")
    stale = logstore.open(log.path)
    assert stale.config("t") == before
    old, new = admin.alter_topic(log, "t", retention_ms=3_600_000, compression="lz4", retention_bytes=None)
    assert old == before and (new.retention_ms, new.compression) == (3_600_000, "lz4")
    assert log.config("t") == new  # the altering Log reads the new settings at once
    assert stale.config("t") == before  # another Log keeps what it read until reopened
    again = logstore.open(log.path)
    assert again.config("t") == new and (new.partitions, new.key_field) == (before.partitions, before.key_field)
    assert log.alter_topic("t", segment_ms=60_000, compatibility="FULL").segment_ms == 60_000
    assert logstore.open(log.path).config("t").compatibility == "FULL"


def test_two_concurrent_alters_of_different_settings_keep_both(log, monkeypatch):
    real = admin.load_config

    def slow(*a, **k):  # widen the read-modify-write window: without the lock one change is lost
        cfg = real(*a, **k)
        time.sleep(0.01)
        return cfg

    monkeypatch.setattr(admin, "load_config", slow)
    errors: list[BaseException] = []

    def alter(key: str) -> None:
        try:
            for i in range(1, 11):
                admin.alter_topic(logstore.open(log.path), "t", **{key: i * 1000})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=alter, args=(k,)) for k in ("retention_ms", "retention_bytes")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    cfg = logstore.open(log.path).config("t")
    assert (cfg.retention_ms, cfg.retention_bytes) == (10_000, 10_000)


@pytest.mark.parametrize(
    "settings, error, said",
    [
        ({"partitions": 4}, TopicError, "partitions cannot be changed: a keyed record's partition"),
        ({"key_field": "model_id"}, TopicError, "key_field cannot be changed"),
        ({"event_time_field": None}, TopicError, "event_time_field cannot be changed"),
        ({"colour": "red"}, ArgumentError, "unknown topic setting 'colour'"),
        ({}, ArgumentError, "nothing to change"),
        ({"compression": "gzip"}, TopicError, "compression must be one of"),
        ({"retention_ms": -1}, TopicError, "retention_ms must be a non-negative int"),
        ({"segment_bytes": 0}, TopicError, "segment_bytes must be a positive int"),
        ({"retention_bytes": True}, TopicError, "must not be a bool"),
        ({"compatibility": "SOMETIMES"}, TopicError, "compatibility must be one of"),
    ],
)
def test_refused_settings_change_nothing(log, settings, error, said):
    before = (log.path / "topics" / "t" / "topic.json").read_bytes()
    with pytest.raises(error, match=said):
        log.alter_topic("t", **settings)
    assert (log.path / "topics" / "t" / "topic.json").read_bytes() == before


def test_alter_of_a_missing_topic_or_a_read_only_log(log):
    with pytest.raises(TopicNotFoundError):
        log.alter_topic("nope", retention_ms=1)
    assert not (log.path / "topics" / "nope").exists()
    with pytest.raises(TopicError, match="read-only"):
        logstore.open(log.path, readonly=True).alter_topic("t", retention_ms=1)


# --- the CLI -----------------------------------------------------------------------------------
class FakeTTY(io.StringIO):
    """A terminal whose user types the given answer."""

    def isatty(self) -> bool:
        return True


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_topics_long_and_json(log, capsys):
    d = str(log.path)
    assert cli(capsys, "topics", d) == (0, "t\nu\n", "")
    code, out, _ = cli(capsys, "topics", d, "--long")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["TOPIC", "PARTITIONS", "RECORDS", "BYTES", "VERSIONS", "RETENTION"]
    assert lines[1].split()[:3] == ["t", "2", "40"] and lines[1].split()[-1] == "1w"
    assert lines[2].split()[:3] == ["u", "1", "0"] and lines[2].endswith("forever")
    code, out, _ = cli(capsys, "topics", d, "--json")
    assert code == 0 and [s["records"] for s in json.loads(out)] == [40, 0]


def test_cli_alter_prints_old_and_new(log, capsys):
    d = str(log.path)
    code, out, err = cli(capsys, "alter", d, "t", "--retention", "1d", "--compression", "none")
    assert code == 0 and out.splitlines() == ["retention: 1w -> 1d", "compression: zstd -> none"], err
    assert logstore.open(d).config("t").compression is None
    code, out, _ = cli(capsys, "alter", d, "t", "--retention-ms", "5000", "--segment-age", "2h")
    assert code == 0 and out.splitlines() == ["retention: 1d -> 5s", "segment-age: none -> 2h"]
    code, out, _ = cli(capsys, "alter", d, "t", "--retention-bytes", "none", "--compatibility", "full")
    assert out.splitlines() == ["retention-bytes: none -> none (unchanged)", "compatibility: BACKWARD -> FULL"]
    for argv, said in [
        (["--retention", "7"], "a bare number is ambiguous"),
        (["--retention", "1d", "--retention-ms", "5"], "give --retention or --retention-ms, not both"),
        ([], "nothing to change"),
        (["--segment-bytes", "lots"], "--segment-bytes 'lots': give a number of bytes"),
    ]:
        code, _, err = cli(capsys, "alter", d, "t", *argv)
        assert code == 2 and said in err and err.count("\n") == 1, err
    assert logstore.open(d).config("t").retention_ms == 5000


def test_cli_delete_topic_asks_on_a_terminal_and_needs_yes_without_one(log, capsys, monkeypatch):
    d = str(log.path)
    size = log.describe("t")
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # a pipe: not a terminal
    code, _, err = cli(capsys, "delete-topic", d, "t")
    assert code == 2 and "pass --yes" in err and err.count("\n") == 1 and log.topics() == ["t", "u"]
    monkeypatch.setattr(sys, "stdin", FakeTTY("n\n"))
    code, _, err = cli(capsys, "delete-topic", d, "t")
    question = f"delete topic 't' ({size['records']:,} records, {size['bytes']:,} bytes)? [y/N]"
    assert code == 1 and question in err and log.topics() == ["t", "u"]
    log.consumer("t", "g").commit({0: 1})
    monkeypatch.setattr(sys, "stdin", FakeTTY("y\n"))
    code, out, err = cli(capsys, "delete-topic", d, "t")
    assert code == 0 and question in err and out.startswith("deleted topic 't' (40 records") and "group(s) g" in out
    assert log.topics() == ["u"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli(capsys, "delete-topic", d, "u", "--yes")[0] == 0 and log.topics() == []
    code, _, err = cli(capsys, "delete-topic", d, "u", "--yes")
    assert code == 2 and "does not exist" in err


def test_cli_delete_topic_refuses_a_busy_topic_before_asking(log, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTTY("y\n"))
    release = threading.Event()
    holder = _hold(log.topic("t").partition(0), until=release)
    try:
        code, _, err = cli(capsys, "delete-topic", str(log.path), "t")
    finally:
        release.set()
        holder.join(10)
    assert code == 2 and "is in use" in err and "[y/N]" not in err and log.topics() == ["t", "u"]


def test_cli_groups_and_delete_group(log, capsys, monkeypatch):
    d = str(log.path)
    assert cli(capsys, "groups", d) == (0, "no consumer groups\n", "")
    log.consumer("t", "g").commit({0: 2})
    ends = log.end_offsets("t")
    code, out, _ = cli(capsys, "groups", d)
    rows = [line.split() for line in out.splitlines()]
    assert code == 0 and rows == [
        ["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"],
        ["g", "t", "0", "2", str(ends[0]), str(ends[0] - 2)],
        ["g", "t", "1", "-", str(ends[1]), "-"],
    ]
    code, out, _ = cli(capsys, "groups", d, "--json")
    assert json.loads(out)[0]["lag"] == ends[0] - 2
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = cli(capsys, "delete-group", d, "g")
    assert code == 2 and "pass --yes" in err and admin.group_names(log) == ["g"]
    monkeypatch.setattr(sys, "stdin", FakeTTY("no\n"))
    code, _, err = cli(capsys, "delete-group", d, "g")
    assert code == 1 and "delete consumer group 'g' (cursors of 1 topic(s): t)? [y/N]" in err
    monkeypatch.setattr(sys, "stdin", FakeTTY("yes\n"))
    code, out, _ = cli(capsys, "delete-group", d, "g")
    assert code == 0 and out == "deleted consumer group 'g' (1 cursor(s))\n" and admin.group_names(log) == []
    code, _, err = cli(capsys, "delete-group", d, "g", "--yes")
    assert code == 2 and "no consumer group 'g'" in err


def test_the_console_script_refuses_without_yes_and_deletes_with_it(log):
    script = Path(sys.executable).parent / "logstore"
    if not script.exists():
        pytest.skip("no logstore console script beside this Python")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=ROOT
        )

    proc = run("delete-topic", str(log.path), "t")
    assert proc.returncode == 2 and "pass --yes" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and logstore.open(log.path).topics() == ["t", "u"]
    proc = run("delete-topic", str(log.path), "t", "--yes")
    assert proc.returncode == 0 and proc.stdout.startswith("deleted topic 't'"), proc.stderr
    assert run("topics", str(log.path)).stdout == "u\n"
