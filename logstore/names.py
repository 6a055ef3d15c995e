"""Names and file names: the one place that says what a topic/group/run may be called and how
files are named.

Layout of a log directory::

    <log>/logstore.json                         format marker {"format": 2} (1: no row frames; 3: remote segments)
    <log>/topics/<topic>/topic.json             topic settings (TopicConfig)
    <log>/topics/<topic>/.topic.json.lock       serializes `alter_topic` and `delete_topic` (logstore.admin)
    <log>/topics/.deleted-<ns>-<pid>-<topic>/   a deleted topic being removed (never read; the next
                                                deletion finishes a removal a crash interrupted)
    <log>/topics/<topic>/schemas/v00001.avsc    schema versions (schemas.registry)
    <log>/topics/<topic>/schemas/v00001.fingerprint  SHA-256 of that version's canonical form
    <log>/topics/<topic>/00000/                 partition 0
        00000000000000000000.seg                segment, named by its base offset (20 digits: `ls` sorts)
        00000000000000000000.idx                its frame index (derived, rebuildable)
        segments.sum                            summaries of sealed segments (derived)
        .lock                                   writers' exclusive / readers' shared flock; tail hints
        tier.json                               where sealed segments live, local or remote (manifest.py)
        .tier.lock                              serializes tiering and remote retention (tier.py)
    <log>/groups/<group>/<topic>.json           consumer group cursors
    <log>/groups/<group>/.<topic>.json.lock     serializes commits of the group's consumers
    <log>/runs/<run>/manifest.json              replay run manifests
    <log>/cache/                                blocks of remote segments (blockcache.py; derived, safe to delete)

A log is created by its first topic (`Log.create_topic`, or a writer's first use): opening one
writes nothing. Files whose names match none of these (temp files ``.<name>.<pid>.<thread>.tmp``
left by a crash, strays) are ignored by every reader.

Names are validated before they touch the file system: 1-200 characters from
``[A-Za-z0-9._-]``, not starting with a dot or a dash, never containing ``..``. That keeps every name
inside the log directory and makes it safe in a file name on every platform; SQL still quotes it.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidNameError

SEGMENT_SUFFIX = ".seg"
INDEX_SUFFIX = ".idx"
LOCK_NAME = ".lock"
TOPIC_FILE = "topic.json"
LOG_FILE = "logstore.json"
TOPICS_DIR = "topics"
GROUPS_DIR = "groups"
RUNS_DIR = "runs"
CACHE_DIR = "cache"
SCHEMAS_DIR = "schemas"

SYSTEM_COLUMNS = ("_partition", "_offset", "_append_time")  # the columns the log adds to every row read

MAX_NAME = 200
MAX_OFFSET = 2**63 - 1  # offsets are int64 in frame headers and indexes
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def validate_name(name: object, kind: str = "topic") -> str:
    """Return `name` if it is a valid topic/group/run name, else raise InvalidNameError saying why."""
    if not isinstance(name, str):
        raise InvalidNameError(f"{kind} name must be a string, found {type(name).__name__}")
    if not name:
        raise InvalidNameError(f"{kind} name is empty")
    if len(name) > MAX_NAME:
        raise InvalidNameError(f"{kind} name is {len(name)} characters long, the limit is {MAX_NAME}")
    if "\x00" in name:
        raise InvalidNameError(f"{kind} name {name!r} contains a NUL byte")
    if "/" in name or "\\" in name:
        raise InvalidNameError(f"{kind} name {name!r} contains a path separator")
    if ".." in name:
        raise InvalidNameError(f"{kind} name {name!r} contains '..'")
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
        if bad:
            raise InvalidNameError(
                f"{kind} name {name!r} contains {''.join(bad)!r}: use letters, digits, '.', '_' and '-'"
            )
        raise InvalidNameError(f"{kind} name {name!r} must start with a letter, digit or '_'")
    return name


def segment_name(base_offset: int) -> str:
    """File name of the segment whose first record has `base_offset`."""
    return f"{base_offset:020d}{SEGMENT_SUFFIX}"


def index_name(base_offset: int) -> str:
    """File name of the frame index of the segment with `base_offset`."""
    return f"{base_offset:020d}{INDEX_SUFFIX}"


def partition_dirname(partition: int) -> str:
    """Directory name of partition number `partition` inside its topic directory."""
    return f"{partition:05d}"


def parse_segment_name(filename: str) -> int | None:
    """Base offset of a segment file name, or None if `filename` is not a segment."""
    if len(filename) == 20 + len(SEGMENT_SUFFIX) and filename.endswith(SEGMENT_SUFFIX):
        stem = filename[:20]
        if stem.isascii() and stem.isdigit() and int(stem) <= MAX_OFFSET:
            return int(stem)
    return None


def quote_ident(name: str) -> str:
    """`name` as a DuckDB quoted identifier: the only way a table or column name enters SQL.

    Embedded double quotes are doubled, so the name cannot end the identifier early. Control
    characters (NUL, newline, DEL, C1, ...) are refused: a newline could end a ``--`` comment
    around a placeholder, and no legitimate topic or column name needs one.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"an SQL identifier must be a non-empty string, found {name!r}")
    bad = [c for c in name if unicodedata.category(c) == "Cc"]
    if bad:
        raise InvalidNameError(f"identifier {name!r} contains control character {bad[0]!r}; refused")
    return '"' + name.replace('"', '""') + '"'
