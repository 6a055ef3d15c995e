"""The remote tier over the S3 protocol (moto on loopback): moves, reads where the data is,
retention, describe, verify, damage, read-only opens and half-done states left by a crash."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import logstore
from logstore.manifest import MANIFEST_NAME
from logstore.sql import fetch_arrow
from tests.tier.data import SCHEMA, T0, fill
from tests.tier.s3server import S3Server

BLOCK = 32 * 1024


def _tiered(tmp_path: Path, remote: str, *, batches: int = 24, rows: int = 300, partitions: int = 1, **settings):
    """A log whose topic `t` was written (~30 KiB per commit, a segment per commit) and tiered."""
    lg = logstore.open(tmp_path / "log", remote=remote, block_bytes=BLOCK)
    lg.create_topic("t", SCHEMA, partitions=partitions, segment_bytes=20_000, compression=None, **settings)
    fill(lg, "t", batches, rows)
    local = lg.read("t")
    report = lg.tier()
    return lg, local, report


def _fresh(tmp_path: Path, **kw) -> logstore.Log:
    """The log opened again with an empty cache of its own."""
    cache = tmp_path / f"cache-{time.monotonic_ns()}"
    return logstore.open(tmp_path / "log", cache_dir=cache, block_bytes=BLOCK, **kw)


def _plain(key: str) -> str:
    """An object key without the random part each move gives it (``<base>.<random>.seg``)."""
    head, _, suffix = key.rpartition(".")
    return f"{head.rpartition('.')[0]}.{suffix}"


def _segments(tmp_path: Path, partition: int = 0) -> list[str]:
    return sorted(p.name for p in (tmp_path / "log" / "topics" / "t" / f"{partition:05d}").glob("*.seg"))


def test_tiering_moves_sealed_segments_and_every_read_path_sees_the_same_records(tmp_path, remote, s3):
    lg, local, report = _tiered(tmp_path, remote, partitions=2)
    assert len(report.moved) == 22 and report.bytes_moved > 0  # all but each partition's active segment
    assert [len(_segments(tmp_path, p)) for p in (0, 1)] == [1, 1]
    keys = s3.objects(remote)
    assert {_plain(k) for k in keys} == {
        f"t/{p:05d}/{b:020d}.{x}" for _, p, b, _ in report.moved for x in ("seg", "idx")
    }
    lg = _fresh(tmp_path)
    assert lg.read("t").equals(local)
    assert pa.Table.from_batches(list(lg.reader("t")), schema=local.schema).equals(local)
    consumer = lg.consumer("t", "g")
    polled = []
    while (batch := consumer.poll(max_records=1000)).num_rows:
        polled.append(batch)
    assert pa.concat_tables(polled).equals(local)
    con = lg.duckdb()
    sql = fetch_arrow(con.sql('SELECT seq, payload, _offset FROM "t" ORDER BY _partition, _offset'))
    assert sql.column("seq").to_pylist() == local.column("seq").to_pylist()
    assert sql.column("payload").to_pylist() == local.column("payload").to_pylist()
    start = local.column("_append_time")[local.num_rows // 2].as_py()
    assert lg.read("t", start=start).equals(local.filter(pa.compute.greater_equal(local["_append_time"], start)))
    assert lg.remote_stats().bytes_fetched > 0
    # a second read of the same log is served by its cache
    before = lg.remote_stats()
    assert lg.read("t").equals(local)
    assert lg.remote_stats().bytes_fetched == before.bytes_fetched
    assert json.loads((tmp_path / "log" / "logstore.json").read_text()) == {"format": 3}


def test_a_read_of_the_last_tenth_by_time_fetches_about_a_tenth_of_the_bytes(tmp_path, remote):
    lg, local, _ = _tiered(tmp_path, remote, batches=60)
    remote_bytes = sum(
        s["bytes"] for s in lg.describe("t")["partition_details"][0]["segments"] if s["place"] == "remote"
    )
    times = local.column("_append_time").to_pylist()
    cut = times[0] + (times[-1] - times[0]) * 9 / 10
    want = local.filter(pa.compute.greater_equal(local["_append_time"], cut))
    fresh = _fresh(tmp_path)
    assert fresh.read("t", start=cut).equals(want)
    read_share = fresh.remote_stats().bytes_fetched / remote_bytes
    fresh = _fresh(tmp_path)
    table = fetch_arrow(fresh.duckdb().sql('SELECT seq FROM "t" WHERE _append_time >= $1', params=[cut]))
    assert sorted(table.column("seq").to_pylist()) == want.column("seq").to_pylist()
    sql_share = fresh.remote_stats().bytes_fetched / remote_bytes
    assert 0.08 <= read_share <= 0.13, read_share
    assert 0.08 <= sql_share <= 0.16, sql_share  # the view samples a few frames' storage too


def test_local_retention_keeps_recent_history_on_local_disk(tmp_path, remote):
    lg = logstore.open(tmp_path / "log", remote=remote)
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, compression=None, local_retention_bytes=100_000)
    fill(lg, "t", 12, 300)
    sizes = [os.path.getsize(p) for p in (tmp_path / "log" / "topics" / "t" / "00000").glob("*.seg")]
    report = lg.tier()
    kept = sum(os.path.getsize(p) for p in (tmp_path / "log" / "topics" / "t" / "00000").glob("*.seg"))
    assert report.moved and kept <= 100_000 < kept + max(sizes)
    assert lg.tier().moved == []  # nothing more is due
    lg2 = logstore.open(tmp_path / "log", remote=remote)
    lg2.create_topic("u", SCHEMA, segment_bytes=20_000, local_retention_ms=3_600_000)
    fill(lg2, "u", 6, 300)
    assert lg2.tier("u", now=T0 + timedelta(minutes=30)).moved == []
    assert len(lg2.tier("u", now=T0 + timedelta(days=1)).moved) == 5


def test_retention_deletes_remote_segments_and_then_their_objects(tmp_path, remote, s3):
    lg, local, report = _tiered(tmp_path, remote, retention_ms=3_600_000)
    assert len(s3.objects(remote)) == 2 * len(report.moved)
    now = T0 + timedelta(days=2)
    deleted = lg.enforce_retention("t", now=now)
    assert len(deleted.deleted) == len(report.moved)
    assert all(path.startswith("s3://") for _, _, path, _ in deleted.deleted)
    assert _fresh(tmp_path).read("t").num_rows == local.num_rows - sum(300 for _ in report.moved)
    assert len(s3.objects(remote)) == 2 * len(report.moved)  # kept a while for reads in flight
    lg.enforce_retention("t", now=now + timedelta(minutes=2))
    assert s3.objects(remote) == {}
    manifest = json.loads((tmp_path / "log" / "topics" / "t" / "00000" / MANIFEST_NAME).read_text())
    assert manifest["segments"] == []


def test_describe_shows_where_each_segment_lives_and_credentials_stay_out_of_files(tmp_path, s3):
    uri = s3.bucket(prefix="p").replace("s3://", "s3://testing:testing@")
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, compression=None, remote=uri)
    fill(lg, "t", 4, 300)
    lg.tier()
    d = logstore.open(tmp_path / "log", readonly=True).describe("t")
    segs = d["partition_details"][0]["segments"]
    assert [s["place"] for s in segs] == ["remote"] * 3 + ["local"]
    assert all(s["uri"].startswith("s3://b-") and "/p/t/00000/" in s["uri"] for s in segs[:3])
    assert d["partition_details"][0]["remote_bytes"] == sum(s["bytes"] for s in segs[:3])
    assert d["records"] == 1200 and "testing:testing" not in json.dumps(d)
    for path in (tmp_path / "log").rglob("*.json"):
        assert "testing:testing" not in path.read_text(), path
    out = _cli(tmp_path, "describe", str(tmp_path / "log"), "t", "--segments")
    assert out.count(" remote ") == 3 and "(active)" in out


def _cli(tmp_path: Path, *args: str) -> str:
    import contextlib
    import io

    from logstore.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(list(args)) == 0
    return buf.getvalue()


def test_the_cli_creates_a_tiered_topic_and_tiers_it(tmp_path, remote):
    path = str(tmp_path / "log")
    schema = json.dumps(_avro())
    for topic, keep in (("t", "1d"), ("u", "1000d")):  # the records were appended in January 2026
        _cli(tmp_path, "create", path, topic, "--schema", schema, "--remote", remote, "--local-retention", keep,
             "--segment-bytes", "20000")  # fmt: skip
        fill(logstore.open(path), topic, 4, 300)
    cfg = logstore.open(path).config("t")
    assert cfg.remote == remote and cfg.local_retention_ms == 86_400_000
    assert "moved 0 segment(s)" in _cli(tmp_path, "tier", path, "u")
    assert "moved 3 segment(s)" in _cli(tmp_path, "tier", path)
    assert "ok" in _cli(tmp_path, "verify", path)


def _avro() -> dict:
    return {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "seq", "type": "long"},
            {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "payload", "type": "string"},
        ],
    }


def _flip(s3: S3Server, uri: str, at: int) -> None:
    fs = s3.filesystem()
    path = uri.removeprefix("s3://").partition("?")[0]
    with fs.open_input_stream(path) as f:
        data = bytearray(f.read())
    data[at] ^= 0x20
    with fs.open_output_stream(path) as f:
        f.write(bytes(data))


def test_a_flipped_byte_in_a_remote_object_is_reported_never_returned(tmp_path, remote, s3):
    lg, local, report = _tiered(tmp_path, remote, batches=6)
    seg = lg.describe("t")["partition_details"][0]["segments"][1]
    _flip(s3, seg["uri"], seg["bytes"] // 2)
    with pytest.raises(logstore.CorruptFrameError, match=r"s3://.*00000000000000000300\.[0-9a-f]{8}\.seg"):
        _fresh(tmp_path).read("t")
    reader = _fresh(tmp_path).reader("t", on_corrupt="skip")
    got = pa.Table.from_batches(list(reader), schema=local.schema)
    assert got.num_rows == local.num_rows - 300 and [g.start_offset for g in reader.gaps] == [300]
    assert set(got.column("seq").to_pylist()) == set(local.column("seq").to_pylist()) - set(range(300, 600))
    report = _fresh(tmp_path).verify()
    assert not report.ok and all("/00000000000000000300." in p.path for p in report.problems)
    assert any("not the segment the tier manifest recorded" in p.reason for p in report.problems)


def test_a_damaged_cache_file_is_fetched_again(tmp_path, remote):
    lg, local, _ = _tiered(tmp_path, remote, batches=4)
    cache = tmp_path / "cache"
    assert _fresh(tmp_path).read("t").num_rows == local.num_rows  # cache/ of another directory
    lg = logstore.open(tmp_path / "log", cache_dir=cache, block_bytes=BLOCK)
    assert lg.read("t").equals(local)
    blocks = sorted(cache.glob("*.blk"))
    assert blocks
    for b in blocks:
        data = bytearray(b.read_bytes())
        data[len(data) // 2] ^= 1
        b.write_bytes(bytes(data))
    lg = logstore.open(tmp_path / "log", cache_dir=cache, block_bytes=BLOCK)
    assert lg.read("t").equals(local)
    assert lg.remote_stats().cache_misses >= len(blocks) - 1


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_read_only_open_writes_nothing_and_caches_in_a_temporary_directory(tmp_path, remote):
    _, local, _ = _tiered(tmp_path, remote)
    before = _tree(tmp_path / "log")
    ro = logstore.open(tmp_path / "log", readonly=True)
    assert ro.read("t").equals(local)
    assert fetch_arrow(ro.duckdb().sql('SELECT count(*) AS n FROM "t"')).column("n")[0].as_py() == local.num_rows
    assert ro.verify().ok
    cache = ro.remotes.cache_dir
    assert cache is not None and not cache.is_relative_to(tmp_path) and any(cache.iterdir())
    ro.close()
    assert not cache.exists()
    assert _tree(tmp_path / "log") == before


def test_a_reader_seeing_both_copies_reads_the_one_the_manifest_names(tmp_path, remote):
    """A crash between recording a move and evicting the local copy leaves both: the remote one
    is authoritative (here the local copy is made wrong to tell them apart); `tier` evicts it."""
    lg = logstore.open(tmp_path / "log", remote=remote)
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, compression=None)
    fill(lg, "t", 3, 300)
    seg = tmp_path / "log" / "topics" / "t" / "00000" / f"{0:020d}.seg"
    copy = bytearray(seg.read_bytes())
    local = lg.read("t")
    lg.tier()
    copy[len(copy) // 2] ^= 1
    seg.write_bytes(bytes(copy))
    assert _fresh(tmp_path, readonly=True).read("t").equals(local)
    assert _fresh(tmp_path, readonly=True).verify().ok
    report = logstore.open(tmp_path / "log").tier()
    assert report.finished == ["t[0]: evicted the local copy of remote segment 0"] and not seg.exists()


def test_an_interrupted_upload_leaves_the_local_copy_authoritative_until_tier_finishes(tmp_path, remote, s3):
    lg = logstore.open(tmp_path / "log", remote=remote)
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, compression=None)
    fill(lg, "t", 3, 300)
    local = lg.read("t")
    part = lg.topic("t").partition(0)
    from logstore import manifest, tier

    placed, _ = tier.placed_for(lg.topic("t"), part, 0, lg.topic("t").remote, 0)
    lg.require_format(tier.TIERED_FORMAT)
    manifest.write(part.dir, manifest.EMPTY.with_entry(placed))
    lg.remotes.store(placed.remote).upload(placed.key, [b"half an upload"])
    assert _fresh(tmp_path, readonly=True).read("t").equals(local)
    assert _fresh(tmp_path, readonly=True).verify().ok
    report = logstore.open(tmp_path / "log", remote=remote).tier()
    assert report.finished == ["t[0]: undid an interrupted move of segment 0"]
    assert [m[2] for m in report.moved] == [0, 300]
    assert _fresh(tmp_path).read("t").equals(local)
    assert {_plain(k) for k in s3.objects(remote)} == {
        f"t/00000/{b:020d}.{x}" for b in (0, 300) for x in ("seg", "idx")
    }


def test_a_writer_tiers_in_the_background_when_configured(tmp_path, remote):
    lg = logstore.open(tmp_path / "log", remote=remote, tier_in_background=True)
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, compression=None)
    lg.writer("t").close()  # the topic exists: its writers' log tiers it
    fill(lg, "t", 4, 300)
    deadline = time.monotonic() + 20
    while len(_segments(tmp_path)) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    lg.close()
    assert len(_segments(tmp_path)) == 1
    assert _fresh(tmp_path).read("t").num_rows == 1200


def test_a_local_directory_is_a_remote_too_and_logs_without_a_remote_keep_format_2(tmp_path):
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("plain", SCHEMA, segment_bytes=20_000)
    fill(lg, "plain", 3, 300)
    assert lg.tier().moved == []
    assert json.loads((tmp_path / "log" / "logstore.json").read_text()) == {"format": 2}
    assert "remote" not in json.loads((tmp_path / "log" / "topics" / "plain" / "topic.json").read_text())
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, remote=f"file://{tmp_path}/store")
    fill(lg, "t", 3, 300)
    local = lg.read("t")
    assert len(lg.tier().moved) == 2
    assert sorted(_plain(p.name) for p in (tmp_path / "store" / "t" / "00000").iterdir()) == [
        f"{b:020d}.{x}" for b in (0, 300) for x in ("idx", "seg")
    ]
    assert _fresh(tmp_path).read("t").equals(local) and _fresh(tmp_path).verify().ok


def test_reads_racing_a_tiering_run_see_every_record_once(tmp_path, remote):
    """Segments move (and their local files go) while other logs read the topic: every read
    returns the same records, a local file gone since its snapshot found in the manifest."""
    import threading

    lg = logstore.open(tmp_path / "log", remote=remote)
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, compression=None)
    fill(lg, "t", 30, 300)
    local = lg.read("t")
    done = threading.Event()
    errors: list[BaseException] = []

    def tier() -> None:
        try:
            lg.tier()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=tier)
    thread.start()
    reads = 0
    try:
        while not done.is_set() or reads < 2:
            reader = _fresh(tmp_path, readonly=True)
            assert reader.read("t").equals(local)
            assert pa.Table.from_batches(list(reader.reader("t")), schema=local.schema).equals(local)
            reads += 1
    finally:
        thread.join(timeout=60)
    assert not errors and reads >= 2 and len(_segments(tmp_path)) == 1


def test_a_reader_whose_snapshot_predates_a_move_reads_the_moved_segments_from_the_store(tmp_path, remote):
    lg = logstore.open(tmp_path / "log", remote=remote)
    lg.create_topic("t", SCHEMA, segment_bytes=20_000, compression=None)
    fill(lg, "t", 5, 300)
    local = lg.read("t")
    reader = logstore.open(tmp_path / "log", readonly=True).reader("t")
    batches = iter(reader)
    first = next(batches)  # planned (and segment 0 mapped) before the move
    assert lg.tier().moved and len(_segments(tmp_path)) == 1
    got = pa.Table.from_batches([first, *batches], schema=local.schema)
    assert got.equals(local)
