"""Administration of a log: topics and consumer groups listed with sizes and lag, a topic's
settings altered, topics and groups deleted.

Deleting is crash-safe: the directory is renamed to a hidden name beside it
(``topics/.deleted-<ns>-<pid>-<name>``: no reader lists dot names), the parent fsynced: the commit
point; after a power cut the topic is whole or gone. Then every group's cursor of it goes, then
the tree. The next `delete_topic`/`delete_group` removes what a crash left (`sweep`; opening a log
writes nothing), cursors only if written before ``<ns>``: a topic made again keeps its new ones.

A topic is deleted only while no writer holds any of its partitions' write locks (taken
non-blocking on descriptors of its own, held across the rename; else `TopicBusyError` naming the
holder from ``/proc/locks``). Writers lock per commit: one between commits does not stop a
deletion, and its next commit to a partition it wrote before is refused, nothing written
(`Partition._check_lock_file`). Readers keep the segments they opened (POSIX); new opens find no
topic. `alter_topic` rewrites ``topic.json`` atomically under a flock on
``topics/<name>/.topic.json.lock``, reading it under the lock (concurrent alters keep each
other's change); `delete_topic` takes it too. Names are validated: none leaves the log.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import errors
from .files import CLOEXEC, NOFOLLOW, fsync_dir, remove, write_atomic
from .names import GROUPS_DIR, LOCK_NAME, TOPIC_FILE, TOPICS_DIR, partition_dirname, validate_name
from .partition import Partition
from .topic import TopicConfig, load_config

if TYPE_CHECKING:
    from .log import Log

logger = logging.getLogger("logstore")

ALTERABLE = (
    "retention_ms retention_bytes compression segment_bytes segment_ms compatibility max_record_bytes "
    "remote local_retention_ms local_retention_bytes"
).split()
FIXED = {  # what cannot be changed, and why
    "partitions": "a keyed record's partition is its key's hash modulo the partition count: keys would "
    "move and lose their order; create a new topic and copy",
    "key_field": "the records stored were placed in partitions by the old key",
    "event_time_field": "the frame indexes hold each frame's event-time range of it, and replays chose ranges by it",
}
CONFIG_LOCK = ".topic.json.lock"
DELETED = ".deleted-"


class TopicBusyError(errors.TopicError):
    """A topic (or group) a writer (or consumer) holds right now: nothing was deleted."""


@dataclass(frozen=True)
class DeletedTopic:
    """What `delete_topic` removed: its size just before (None: unreadable), groups that had cursors."""

    topic: str
    records: int | None
    bytes: int | None
    groups: tuple[str, ...]


@dataclass(frozen=True)
class DeletedGroup:
    """What `delete_group` removed: the group and the topics it had cursors of."""

    group: str
    topics: tuple[str, ...]


def topic_summaries(log: Log) -> list[dict[str, Any]]:
    """Per topic, by name: partitions, records, bytes, schema versions, settings, first and last
    append time (ISO text, None when empty); ``{"topic": name, "error": why}`` if unreadable."""
    out: list[dict[str, Any]] = []
    for name, d in log.describe().items():
        try:
            if "error" in d:
                raise errors.TopicError(d["error"])
            cfg = log.config(name)
        except errors.LogstoreError as e:  # one damaged (or just deleted) topic costs only itself
            out.append({"topic": name, "error": str(e)})
            continue
        parts = d["partition_details"]
        summary = {k: d[k] for k in ("topic", "partitions", "records", "bytes", "schema_versions")}
        summary.update({k: getattr(cfg, k) for k in (*ALTERABLE, "key_field", "event_time_field")})
        # UTC isoformat() texts sort as their instants ("...:05+00:00" < "...:05.000001+00:00")
        summary["first_append_time"] = min(filter(None, (p["first_append_time"] for p in parts)), default=None)
        summary["last_append_time"] = max(filter(None, (p["last_append_time"] for p in parts)), default=None)
        out.append(summary)
    return out


def group_names(log: Log) -> list[str]:
    """The consumer groups of `log` (directories under ``groups/``), sorted."""
    return [n for n in _listdir(log.path / GROUPS_DIR) if _valid(n) and (log.path / GROUPS_DIR / n).is_dir()]


def cursor_topics(log: Log, group: str) -> list[str]:
    """The topics consumer group `group` has a cursor of, sorted."""
    names = [n.removesuffix(".json") for n in _listdir(log.path / GROUPS_DIR / group) if n.endswith(".json")]
    return [n for n in names if _valid(n)]


def groups(log: Log) -> list[dict[str, Any]]:
    """Per group, per topic it has a cursor of, per partition: committed offset (None: never), end
    offset, lag (end - committed), summed per topic and group; an unusable cursor has an ``error``."""
    out = []
    for group in group_names(log):
        entries = [_group_topic(log, group, topic) for topic in cursor_topics(log, group)]
        out.append({"group": group, "topics": entries, "lag": sum(e["lag"] or 0 for e in entries)})
    return out


def _group_topic(log: Log, group: str, topic: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"topic": topic, "partitions": [], "lag": None, "error": None}
    try:
        committed = log.consumer(topic, group).committed()  # checked as its consumers check it
        ends = log.end_offsets(topic)  # read after the cursor: ends only grow
    except errors.LogstoreError as e:  # a damaged cursor, or one of a topic gone
        entry["error"] = str(e)
        return entry
    for p, end in sorted(ends.items()):
        c = committed.get(p)
        entry["partitions"].append({"partition": p, "committed": c, "end": end, "lag": None if c is None else end - c})
    entry["lag"] = sum(p["lag"] or 0 for p in entry["partitions"])
    return entry


def alter_topic(log: Log, name: str, **settings: Any) -> tuple[TopicConfig, TopicConfig]:
    """Change `ALTERABLE` settings of topic `name` (checked by `TopicConfig`; `FIXED` ones are
    refused saying why); returns the (old, new) settings. ``topic.json`` is replaced atomically
    under the topic's settings lock, read again under it: concurrent alters keep each other's change.

    When it applies: every `Log` opened afterwards (any process) reads the new settings. The
    `log` given drops its cached settings, so its writers opened afterwards, its retention and
    schema registrations use them at once; its writers already running take compression and
    max_record_bytes at their next frame and keep segment_bytes/segment_ms (cached at their
    first commit) until reopened. Other `Log` objects keep the settings they read until reopened."""
    _checked(log, name, "topic")
    if not settings:
        raise errors.ArgumentError(f"nothing to change: give one of {', '.join(ALTERABLE)}")
    for key, value in settings.items():
        if key in FIXED:
            raise errors.TopicError(f"topic {name!r}: {key} cannot be changed: {FIXED[key]}")
        if key not in ALTERABLE:
            raise errors.ArgumentError(f"unknown topic setting {key!r}: alter_topic changes {', '.join(ALTERABLE)}")
        if isinstance(value, bool):
            raise errors.TopicError(f"topic {name!r}: {key} must not be a bool, found {value!r}")
    path = log.path / TOPICS_DIR / name / TOPIC_FILE
    with _config_lock(log, name):
        try:
            old = load_config(path, name)
        except FileNotFoundError:
            raise errors.TopicNotFoundError(f"topic {name!r} does not exist in {log.path}") from None
        if "remote" in settings:
            settings["remote"] = _new_remote(log, name, old.remote, settings["remote"])
        new = replace(old, **settings)  # TopicConfig.__post_init__ checks every value
        if new != old:
            write_atomic(path, new.to_json().encode(), "alter topic settings")
    cached = log._topics.get(name)
    if cached is not None:
        cached._config = None  # read again at next use
    return old, new


def _new_remote(log: Log, name: str, old: str | None, new: str | None) -> str | None:
    """The remote store `new` for topic `name` (credentials kept in this process only), refused
    while any of its segments is in another store: they would no longer be found."""
    public = None if new is None else log.remotes.configure(new)
    if public != old and old is not None:
        topic = log.topic(name)
        for p in range(topic.config.partitions):
            placed = topic.partition(p).placement.current()
            if placed.segments:
                raise errors.TopicError(
                    f"topic {name!r}: its segments are in {old} (partition {p} has some there): the remote "
                    "cannot change while they are; it can be set on a topic that has none"
                )
    return public


@contextmanager
def _config_lock(log: Log, name: str) -> Iterator[None]:
    """Hold the exclusive flock on the topic's settings lock, the file at its path now (a topic
    deleted and created again while this waited has another one)."""
    path = log.path / TOPICS_DIR / name / CONFIG_LOCK
    while True:
        try:
            fd = _locked(path)
        except FileNotFoundError:
            raise errors.TopicNotFoundError(f"topic {name!r} does not exist in {log.path}") from None
        try:
            now, held = _stat(path), os.fstat(fd)
            if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                yield
                return
        finally:
            os.close(fd)


def delete_topic(log: Log, name: str) -> DeletedTopic:
    """Delete topic `name` and every group's cursor of it (module docstring); `TopicBusyError` while
    a writer holds one of its partitions. A topic with damaged settings is deleted too."""
    _checked(log, name, "topic")
    sweep(log)
    check_not_busy(log, name)  # at once, not after a describe that waits for the holder
    try:
        info = log.describe(name)
        size: tuple[int | None, int | None] = (info["records"], info["bytes"])
    except errors.LogstoreError as e:
        logger.warning("deleting topic %r whose state cannot be read: %s", name, e)
        size = (None, None)
    with _config_lock(log, name):
        hidden = retire_topic(log, name)
    cleaned = remove_cursors(log, name)
    if _remove_remote(log, hidden):
        _remove_tree(hidden)
    return DeletedTopic(name, size[0], size[1], tuple(cleaned))


def _remove_remote(log: Log, tree: Path) -> bool:
    """Delete the remote objects (segments and indexes) the partition manifests of a retired topic
    `tree` name, in any state; True when none is left (the tree may go: it is what names them),
    False (logged; the next deletion's `sweep` tries again) when the store refused some."""
    from . import manifest as manifest_mod

    left = 0
    for part in sorted(tree.iterdir()) if tree.is_dir() else []:
        try:
            m = manifest_mod.load(part) if part.is_dir() else None
        except errors.LogstoreError as e:  # a damaged manifest: its objects cannot be named
            logger.warning("remote objects of %s are not deleted: %s", part, e)
            continue
        for entry in [] if m is None else m.segments.values():
            store = log.remotes.store(entry.remote)
            for key in (entry.key, entry.index_key):
                try:
                    store.delete(key)
                except errors.LogstoreError as e:
                    left += 1
                    logger.warning("cannot delete %s yet (%s): the next deletion tries again", key, e)
    return left == 0


def retire_topic(log: Log, name: str) -> Path:
    """(`delete_topic`'s commit point.) Under every partition's write lock, taken non-blocking,
    rename the topic to a hidden name, fsync ``topics/``; returns that path. The log's cached
    `Topic` is dropped, not closed: a writer may hold it (its next commit is refused)."""
    with _partitions_held(log, name):
        hidden = _rename_hidden(log.path / TOPICS_DIR / name, f"topic {name!r}")
    log._topics.pop(name, None)
    return hidden


def check_not_busy(log: Log, name: str) -> None:
    """`TopicBusyError` (naming the holder) if a writer holds a partition of topic `name` now."""
    _checked(log, name, "topic")
    with _partitions_held(log, name):
        pass


@contextmanager
def _partitions_held(log: Log, name: str) -> Iterator[None]:
    """Hold the write locks of every partition of topic `name`, taken non-blocking (in partition
    order, on descriptors of their own); `TopicBusyError` if one is held."""
    tdir = log.path / TOPICS_DIR / name
    parts = [Partition(tdir / partition_dirname(p), p) for p in _partition_numbers(log, name)]
    try:
        with ExitStack() as stack:
            for part in parts:
                if not stack.enter_context(part.exclusive(blocking=False)):
                    raise TopicBusyError(
                        f"topic {name!r} is in use: the write lock of partition {part.number} is held"
                        f"{_holder(part.dir / LOCK_NAME)}; nothing was deleted: retry when its writer is done"
                    )
            yield
    finally:
        for part in parts:
            part.close()


def _partition_numbers(log: Log, name: str) -> list[int]:
    """The topic's partitions by its settings, or (settings damaged) its partition directories."""
    tdir = log.path / TOPICS_DIR / name
    try:
        return list(range(load_config(tdir / TOPIC_FILE, name).partitions))
    except FileNotFoundError:
        raise errors.TopicNotFoundError(f"topic {name!r} does not exist in {log.path}") from None
    except (errors.TopicError, errors.LogIOError):
        return sorted(int(n) for n in _listdir(tdir) if len(n) == 5 and n.isdigit() and (tdir / n).is_dir())


def remove_cursors(log: Log, topic: str, *, written_before_ns: int | None = None) -> list[str]:
    """Remove every group's cursor of `topic` (under its cursor lock, its directory fsynced), only
    those last written before `written_before_ns` if given; returns the groups that had one."""
    done: list[str] = []
    for group in group_names(log):
        gdir = log.path / GROUPS_DIR / group
        cursor, lock = gdir / f"{topic}.json", gdir / f".{topic}.json.lock"
        if not (os.path.lexists(cursor) or os.path.lexists(lock)):
            continue
        try:
            fd = _locked(lock)
        except FileNotFoundError:  # the group was deleted meanwhile
            continue
        try:
            st = _stat(cursor)
            if written_before_ns is None or st is None or st.st_mtime_ns <= written_before_ns:
                done += [group] if remove(cursor) else []
                remove(lock)
                fsync_dir(gdir)
        finally:
            os.close(fd)
    return done


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def delete_group(log: Log, group: str) -> DeletedGroup:
    """Delete consumer group `group` crash-safely as a topic; `TopicBusyError` while one of its
    consumers is committing. A consumer of it still running creates it again at its next commit."""
    _checked(log, group, "group")
    sweep(log)
    gdir = log.path / GROUPS_DIR / group
    if not gdir.is_dir():
        raise errors.ConsumerError(f"no consumer group {group!r} in {log.path} (`logstore groups LOG` lists them)")
    topics = cursor_topics(log, group)
    with ExitStack() as stack:
        for topic in topics:
            fd = _locked(gdir / f".{topic}.json.lock", blocking=False)
            if fd is None:
                raise TopicBusyError(
                    f"group {group!r} is in use: a consumer is committing its cursor of topic {topic!r}"
                    f"{_holder(gdir / f'.{topic}.json.lock')}; nothing was deleted: retry"
                )
            stack.callback(os.close, fd)
        hidden = _rename_hidden(gdir, f"group {group!r}")
    _remove_tree(hidden)
    return DeletedGroup(group, tuple(topics))


def sweep(log: Log) -> list[Path]:
    """Remove what deletions a crash interrupted left: hidden trees under ``topics/`` (with the
    cursors of their topic written before the deletion) and ``groups/``. Returns the trees removed."""
    done = []
    for sub in (TOPICS_DIR, GROUPS_DIR):
        for entry in _listdir(log.path / sub, hidden=True):
            ns, _, rest = entry.removeprefix(DELETED).partition("-")
            pid, _, name = rest.partition("-")
            if not (entry.startswith(DELETED) and ns.isdigit() and pid.isdigit() and _valid(name)):
                continue
            if sub == TOPICS_DIR:
                remove_cursors(log, name, written_before_ns=int(ns))
                if not _remove_remote(log, log.path / sub / entry):
                    continue
            if _remove_tree(log.path / sub / entry):
                done.append(log.path / sub / entry)
    return done


def _rename_hidden(path: Path, what: str) -> Path:
    """Rename `path` to ``.deleted-<ns>-<pid>-<name>`` beside it and fsync the parent."""
    hidden = path.with_name(f"{DELETED}{time.time_ns()}-{os.getpid()}-{path.name}")
    try:
        os.rename(path, hidden)
        fsync_dir(path.parent)
    except OSError as e:
        raise errors.LogIOError(f"cannot delete {what} ({path}): {e.strerror or e}") from e
    return hidden


def _remove_tree(path: Path) -> bool:
    """Remove a retired tree; False (logged, left for `sweep`) if it cannot be removed now."""
    try:
        shutil.rmtree(path)
    except OSError as e:
        logger.warning("cannot remove %s yet (%s): the next deletion removes it", path, e)
        return False
    fsync_dir(path.parent)
    return True


def _locked(path: Path, *, blocking: bool = True) -> Any:
    """A descriptor of `path` (created if missing) holding its exclusive flock (None: not `blocking`
    and another holds it); an OSError as raised (FileNotFoundError: no directory)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _holder(lock: Path) -> str:
    """' by pid N (command)' from ``/proc/locks`` for the flock on `lock`, '' when unknown."""
    try:
        st = os.lstat(lock)
        where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        rows = [f for f in map(str.split, Path("/proc/locks").read_text().splitlines()) if len(f) > 5]
        pid = next(f[4] for f in rows if f[1] == "FLOCK" and f[5] == where and f[4].isdigit())
        if int(pid) == os.getpid():
            return f" by this process (pid {pid}: another thread or Log)"
        cmd = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split())
    except (OSError, StopIteration):
        return ""
    return f" by pid {pid}" + (f" ({cmd[:80]})" if cmd else "")


def _listdir(path: Path, *, hidden: bool = False) -> list[str]:
    try:
        names = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise errors.LogIOError(f"cannot list {path}: {e.strerror or e}") from e
    return sorted(n for n in names if hidden == n.startswith("."))


def _valid(name: str) -> bool:
    try:
        validate_name(name)
        return True
    except errors.InvalidNameError:
        return False


def _checked(log: Log, name: str, kind: str) -> None:
    validate_name(name, kind)
    if log.readonly:
        raise errors.TopicError(f"log {log.path} is open read-only")
