"""Schema compatibility under Avro's reader/writer resolution rules, in Confluent's modes.

A reader schema can read data written with a writer schema when, recursively (Avro spec,
"Schema Resolution"):

- both are the same primitive, or the writer's is promotable: int -> long, float, double;
  long -> float, double; float -> double; string <-> bytes;
- records have the same unqualified name (or the writer's name is a reader alias); every reader
  field either exists in the writer (by name or reader alias) and resolves, or has a default;
  writer fields the reader lacks are ignored;
- enums have the same name, and every writer symbol is a reader symbol unless the reader enum
  has a default; fixed types have the same name and size; arrays and maps resolve their items/values;
- a writer union: every branch must be readable; a reader union: some branch reads the writer type.

Stricter than Avro/Confluent on one point, because the log stores typed Arrow values: a logical
type may only change where the value converts exactly (timestamp/local-timestamp/time millis ->
micros, decimal to a wider precision with the same scale, adding or removing ``uuid``); e.g. a
long turning into a timestamp-micros is reported.

Modes (Confluent Schema Registry): BACKWARD (the new schema reads data of the latest previous),
FORWARD (the latest previous reads data of the new), FULL (both); the _TRANSITIVE forms check
against every previous version; NONE checks nothing.

`check_compatibility` answers the Avro question only: schemas are parsed without the Arrow
mapping's limits (recursive types, any nesting and any union are checked as Avro has them), so
no verdict depends on how the log stores a type. Unions follow Java's Avro (and so Confluent's
registry): adding a branch to a union is BACKWARD compatible, removing one is not; a plain type
becoming a union holding it (int -> [int, string]) is BACKWARD compatible, the reverse only when
every branch is readable as the plain type.
"""

from __future__ import annotations

from typing import Any

from logstore.errors import SchemaError
from schemas.avro import PRIMITIVES, base_type, expand, short_name, type_name
from schemas.parse import parse

MODES = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE")

PROMOTIONS = {
    "int": ("long", "float", "double"),
    "long": ("float", "double"),
    "float": ("double",),
    "string": ("bytes",),
    "bytes": ("string",),
}
_LOGICAL_WIDENING = {
    ("timestamp-millis", "timestamp-micros"),
    ("local-timestamp-millis", "local-timestamp-micros"),
    ("time-millis", "time-micros"),
    (None, "uuid"),
    ("uuid", None),
}


def check_compatibility(new: Any, previous: list[Any], mode: str = "BACKWARD") -> list[str]:
    """Every reason `new` is incompatible with `previous` (oldest first) under `mode`; [] if compatible."""
    mode = str(mode).upper()
    if mode not in MODES:
        raise SchemaError(f"unknown compatibility mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "NONE" or not previous:
        return []
    trees = [expand(parse(s, arrow=False), recursive=True) for s in [new, *previous]]
    return check_expanded(trees[0], trees[1:], mode)


def check_expanded(new_tree: Any, olds: list[Any], mode: str) -> list[str]:
    """`check_compatibility` on already parsed and expanded trees (`schemas.avro.expand`)."""
    mode = str(mode).upper()
    if mode not in MODES:
        raise SchemaError(f"unknown compatibility mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "NONE" or not olds:
        return []
    transitive = mode.endswith("_TRANSITIVE")
    base = mode.replace("_TRANSITIVE", "")
    checked = list(enumerate(olds)) if transitive else [(len(olds) - 1, olds[-1])]
    reasons: list[str] = []
    seen: set[str] = set()
    for i, old in checked:
        prefix = f"against version {i + 1}: " if transitive and len(olds) > 1 else ""
        found: list[str] = []
        if base in ("BACKWARD", "FULL"):
            found += reader_writer_issues(new_tree, old, "BACKWARD")
        if base in ("FORWARD", "FULL"):
            found += reader_writer_issues(old, new_tree, "FORWARD")
        for r in found:
            if prefix + r not in seen:
                seen.add(prefix + r)
                reasons.append(prefix + r)
    return reasons


def reader_writer_issues(reader: Any, writer: Any, direction: str = "BACKWARD") -> list[str]:
    """Why `reader` cannot read data written with `writer` (expanded trees); [] when it can.

    `direction` only words the messages: BACKWARD means the reader is the new schema,
    FORWARD that the reader is the previous one.
    """
    out: list[str] = []
    _Checker(direction, out).check(reader, writer, "")
    return out


def best_branch(branches: list[Any], writer: Any) -> int | None:
    """The reader union branch that values of (non-union) type `writer` resolve to: the first of
    the same type (same full name, for named types), else of the same named kind under another
    name or an alias, else the first that reads it (a promotion); None when none reads it."""
    wk = base_type(writer)

    def reads(b: Any) -> bool:
        return not reader_writer_issues(b, writer)

    def rank(b: Any) -> int:  # 0: the same type, 1: the same kind, 2: any other
        if base_type(b) != wk:
            return 2
        return 0 if wk not in ("record", "enum", "fixed") or b["name"] == writer["name"] else 1

    for level in (0, 1, 2):
        for j, b in enumerate(branches):
            if rank(b) <= level and reads(b):
                return j
    return None


def _logical(t: Any) -> str | None:
    """The logical type of `t` as it should appear in messages: decimal(9, 2), timestamp-micros or None."""
    if not isinstance(t, dict) or "logicalType" not in t:
        return None
    if t["logicalType"] == "decimal":
        return f"decimal({t.get('precision')}, {t.get('scale', 0)})"
    return str(t["logicalType"])


class _Checker:
    def __init__(self, direction: str, out: list[str], active: set[tuple[int, int]] | None = None) -> None:
        self.d = direction
        self.out = out
        # record pairs being checked (shared with probes): a recursive record is assumed to
        # read itself while its check is under way, so cyclic trees terminate
        self.active: set[tuple[int, int]] = set() if active is None else active

    def _where(self, path: str) -> str:
        return f"field '{path}'" if path else "the record"

    def _old_new(self, reader: Any, writer: Any) -> tuple[Any, Any]:
        return (writer, reader) if self.d == "BACKWARD" else (reader, writer)

    def _changed(self, reader: Any, writer: Any, path: str, why: str | None = None) -> None:
        old, new = self._old_new(reader, writer)
        if self.d == "BACKWARD":
            tail = f"BACKWARD: the new schema cannot read old {type_name(writer)} values as {type_name(reader)}"
        else:
            tail = f"FORWARD: the previous schema cannot read new {type_name(writer)} values as {type_name(reader)}"
        detail = f"; {why}" if why else ""
        self.out.append(f"{self._where(path)}: type changed from {type_name(old)} to {type_name(new)}{detail} ({tail})")

    def readable(self, reader: Any, writer: Any) -> bool:
        probe: list[str] = []
        _Checker(self.d, probe, self.active).check(reader, writer, "")
        return not probe

    def check(self, reader: Any, writer: Any, path: str) -> None:
        if isinstance(writer, list):
            for branch in writer:
                if isinstance(reader, list):
                    if not any(self.readable(r, branch) for r in reader):
                        old, new = self._old_new(reader, writer)
                        side = "old" if self.d == "BACKWARD" else "new"
                        self.out.append(
                            f"{self._where(path)}: type changed from {type_name(old)} to {type_name(new)}; "
                            f"{side} {type_name(branch)} values have no matching branch in {type_name(reader)} "
                            f"({self.d})"
                        )
                else:
                    if branch == "null" and reader != "null":
                        old, new = self._old_new(reader, writer)
                        side = "old records" if self.d == "BACKWARD" else "new records"
                        self.out.append(
                            f"{self._where(path)}: type changed from {type_name(old)} to {type_name(new)}; "
                            f"{side} may hold null, which {type_name(reader)} cannot ({self.d})"
                        )
                    else:
                        self.check(reader, branch, path)
            return
        if isinstance(reader, list):
            for branch in reader:
                if self.readable(branch, writer):
                    return
            self._changed(reader, writer, path)
            return
        rk, wk = base_type(reader), base_type(writer)
        if rk in PRIMITIVES or wk in PRIMITIVES:
            if rk == wk or rk in PROMOTIONS.get(wk, ()):
                lr, lw = _logical(reader), _logical(writer)
                if lr != lw and not self._logical_ok(reader, writer, lw, lr):
                    old, new = self._old_new(lr, lw)
                    self.out.append(
                        f"{self._where(path)}: logical type changed from {old or 'none'} to {new or 'none'}; "
                        f"stored values would change meaning ({self.d})"
                    )
            else:
                self._changed(reader, writer, path)
            return
        if rk != wk:
            self._changed(reader, writer, path)
            return
        if rk in ("record", "enum", "fixed") and not self._names_match(reader, writer, path):
            return
        if rk == "record":
            key = (id(reader), id(writer))
            if key in self.active:
                return
            self.active.add(key)
            wfields = {f["name"]: f for f in writer["fields"]}
            for rf in reader["fields"]:
                fpath = f"{path}.{rf['name']}" if path else rf["name"]
                wf = wfields.get(rf["name"])
                if wf is None:
                    for alias in rf.get("aliases", ()):
                        if alias in wfields:
                            wf = wfields[alias]
                            break
                if wf is not None:
                    self.check(rf["type"], wf["type"], fpath)
                elif "default" not in rf:
                    if self.d == "BACKWARD":
                        self.out.append(
                            f"field '{fpath}' added without a default (BACKWARD: old records have no value for it)"
                        )
                    else:
                        self.out.append(
                            f"field '{fpath}' removed, and the previous schema has no default for it "
                            f"(FORWARD: the previous schema cannot read new records)"
                        )
            self.active.discard(key)
        elif rk == "enum":
            if "default" in reader:
                return
            known = set(reader["symbols"])
            missing = [s for s in writer["symbols"] if s not in known]
            for sym in missing:
                if self.d == "BACKWARD":
                    self.out.append(
                        f"{self._where(path)}: enum symbol '{sym}' removed and the enum has no default "
                        f"(BACKWARD: old records holding '{sym}' cannot be read)"
                    )
                else:
                    self.out.append(
                        f"{self._where(path)}: enum symbol '{sym}' added and the previous enum has no "
                        f"default (FORWARD: the previous schema cannot read new records holding '{sym}')"
                    )
        elif rk == "fixed":
            if int(reader["size"]) != int(writer["size"]):
                old, new = self._old_new(reader, writer)
                self.out.append(
                    f"{self._where(path)}: fixed size changed from {old['size']} to {new['size']} ({self.d})"
                )
            elif _logical(reader) != _logical(writer) and not self._logical_ok(
                reader, writer, _logical(writer), _logical(reader)
            ):
                old, new = self._old_new(_logical(reader), _logical(writer))
                self.out.append(
                    f"{self._where(path)}: logical type changed from {old or 'none'} to "
                    f"{new or 'none'}; stored values would change meaning ({self.d})"
                )
        elif rk == "array":
            self.check(reader["items"], writer["items"], path + "[]" if path else "[]")
        elif rk == "map":
            self.check(reader["values"], writer["values"], path + "{}" if path else "{}")

    def _logical_ok(self, reader: Any, writer: Any, lw: str | None, lr: str | None) -> bool:
        if (lw, lr) in _LOGICAL_WIDENING:
            return True
        if (lw or "").startswith("decimal(") and (lr or "").startswith("decimal("):
            ws, rs = int(writer.get("scale", 0)), int(reader.get("scale", 0))
            return ws == rs and int(reader["precision"]) >= int(writer["precision"])
        return False

    def _names_match(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> bool:
        if short_name(reader["name"]) == short_name(writer["name"]):
            return True
        aliases = reader.get("aliases", ())
        if writer["name"] in aliases or short_name(writer["name"]) in map(short_name, aliases):
            return True
        old, new = self._old_new(reader, writer)
        what = reader["type"]
        hint = (
            f"add '{old['name']}' to the new {what}'s aliases"
            if self.d == "BACKWARD"
            else "renaming breaks readers of the previous schema"
        )
        self.out.append(
            f"{self._where(path)}: {what} name changed from {old['name']} to {new['name']}; {hint} ({self.d})"
        )
        return False
