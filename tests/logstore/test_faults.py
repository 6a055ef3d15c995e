"""Fault injection: the n-th call of each write-path op raises ENOSPC or EIO once, for every n.

The workload (`Trial.run`): open a log, create two topics (one keyed, 2 partitions, 4 KiB segments
so commits roll), append batches, single records flushed one by one, a commit of several frames,
a batch spread over both partitions, commit a consumer cursor, close the writers. A step that
raised is retried once the fault has cleared (it fires once). Promises checked:

* a record call that raised stored nothing (else its retry doubles it); one that returned stored
  its records; at the end every acknowledged record is present exactly once, where it was placed,
  unchanged, offsets dense, `verify()` clean, and a fresh open reads it all;
* a retry succeeds (no writer, partition or log is wedged by a failure);
* a consumer commit that raised left the old cursor or the new one, whole; after its retry, the new;
* ftruncate is called only to undo a failed write or sync: its trials fail a pwritev or fdatasync
  of a commit and then the ftruncate that undoes it;
* a create_topic that raised left no topic or a whole one; after its retry (``exist_ok=True``) the
  topic exists with its settings and schema.

Each test prints per op kind and error: trials, failures, and the failure categories with an example.
"""

from __future__ import annotations

import errno
import random
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.logstore.powerloss import FAULT_KINDS, Fault, Recorder, Written, check_records, close_fds_under
from tests.logstore.test_powerloss import EVENTS, KEYED, event, keyed

ERRORS = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO}


class Trial:
    """One run of the workload, with the problems found (category, detail)."""

    def __init__(self, root: Path, durability: str) -> None:
        self.root = root
        self.durability = durability
        self.written = Written()
        self.acked: dict[str, set[int]] = defaultdict(set)
        self.unknown: dict[str, set[int]] = defaultdict(set)  # a call and its retry both raised
        self.cursor: dict[int, int] | None = None
        self.problems: list[tuple[str, str]] = []
        self.raised: list[str] = []
        self.log = None

    # --- steps --------------------------------------------------------------------------------
    def _twice(self, label: str, fn, after_raise=None) -> bool:
        try:
            fn()
            return True
        except Exception as e:
            self.raised.append(f"{label}: {type(e).__name__}: {e}")
            if after_raise is not None:
                after_raise()
        try:
            fn()
            return True
        except Exception as e:
            self.problems.append(("retry failed", f"{label}: the retry raised {type(e).__name__}: {e}"))
            return False

    def _seqs_now(self, topic: str) -> list[int] | None:
        try:
            return self.log.read(topic)["seq"].to_pylist()
        except Exception as e:
            self.problems.append(("read raised after a failure", f"{topic}: {type(e).__name__}: {e}"))
            return None

    def records(self, label: str, topic: str, rows: list[dict], call) -> None:
        seqs = [r["seq"] for r in rows]
        for r in rows:
            self.written.records[topic][r["seq"]] = dict(r)
        self.written.commits[topic].append(seqs)

        def not_stored() -> None:
            now = self._seqs_now(topic)
            if now is not None and set(now) & set(seqs):
                self.problems.append(
                    (
                        "raised but stored",
                        f"{label}: the call raised, but records "
                        f"{sorted(set(now) & set(seqs))} are stored (a retry doubles them)",
                    )
                )

        if self._twice(label, call, not_stored):
            self.acked[topic].update(seqs)
        else:
            self.unknown[topic].update(seqs)

    def create_topic(self, name: str, schema, **kw) -> None:
        self.written.topics.add(name)

        def half_made() -> None:
            try:
                if name in self.log.topics():
                    cfg = self.log.config(name)
                    self.log.schemas(name)
                    if cfg.partitions != kw.get("partitions", 1):
                        self.problems.append(("half-made topic", f"{name}: {cfg}"))
            except Exception as e:
                self.problems.append(
                    (
                        "half-made topic",
                        f"create_topic {name} raised and left a topic that does not load: {type(e).__name__}: {e}",
                    )
                )

        first = [True]

        def go() -> None:
            self.log.create_topic(name, schema=schema, exist_ok=not first[0], **kw)

        try:
            go()
            return
        except Exception as e:
            self.raised.append(f"create_topic {name}: {type(e).__name__}: {e}")
            half_made()
        first[0] = False
        try:
            go()
            cfg = self.log.config(name)
            assert cfg.partitions == kw.get("partitions", 1) and cfg.key_field == kw.get("key_field")
            assert len(self.log.schemas(name)) == 1
        except Exception as e:
            self.problems.append(("retry failed", f"create_topic {name}: the retry failed: {type(e).__name__}: {e}"))

    def commit(self, topic: str, group: str, n: int) -> None:
        consumer = self.log.consumer(topic, group)
        old = consumer.committed()
        consumer.poll(n)
        new = dict(consumer.positions)

        def either() -> None:
            try:
                got = self.log.consumer(topic, group).committed()
            except Exception as e:
                self.problems.append(("cursor damaged", f"after a failed commit: {type(e).__name__}: {e}"))
                return
            if got not in (old, new):
                self.problems.append(("cursor damaged", f"after a failed commit: {got}, neither {old} nor {new}"))

        if self._twice(f"commit {group}/{topic}", consumer.commit, either):
            self.cursor = new

    # --- the workload ---------------------------------------------------------------------------
    def run(self) -> None:
        import logstore

        def open_log() -> None:
            self.log = logstore.open(self.root)

        if not self._twice("open", open_log):
            return
        self.create_topic("events", EVENTS, compression=None, segment_bytes=4096)
        self.create_topic("keyed", KEYED, partitions=2, key_field="key", compression=None, segment_bytes=4096)
        try:
            w = self.log.writer("events", durability=self.durability, linger_ms=None)
            wk = self.log.writer("keyed", durability=self.durability, linger_ms=None)
        except Exception as e:
            self.problems.append(("retry failed", f"writer(): {type(e).__name__}: {e}"))
            return
        seq = kseq = 0
        for r in range(2):
            rows = [event(s) for s in range(seq, seq + 3)]
            self.records(f"append_batch events {seq}", "events", rows, lambda rows=rows: w.append_batch(rows))
            seq += 3
            for _ in range(2):
                row = event(seq)

                def single(row=row) -> None:
                    w.append(row)
                    w.flush()

                self.records(f"append+flush events {seq}", "events", [row], single)
                seq += 1
            rows = [event(s) for s in range(seq, seq + 5)]

            def several(rows=rows) -> None:  # two appended records and a batch: two frames, one commit
                w.append(rows[0])
                w.append(rows[1])
                w.append_batch(rows[2:])

            self.records(f"append x2 + append_batch events {seq}", "events", rows, several)
            seq += 5
            krows = [keyed(s) for s in range(kseq, kseq + 6)]
            self.records(f"append_batch keyed {kseq}", "keyed", krows, lambda krows=krows: wk.append_batch(krows))
            kseq += 6
            if r == 0:
                self.commit("events", "g", 4)
        self._twice("close events writer", w.close)
        self._twice("close keyed writer", wk.close)
        self.placement()
        self.log.close()

    def placement(self) -> None:
        for t in ("events", "keyed"):
            try:
                table = self.log.read(t)
            except Exception:
                continue
            for seq, where in zip(
                table["seq"].to_pylist(), zip(table["_partition"].to_pylist(), table["_offset"].to_pylist())
            ):
                self.written.placed[t].setdefault(seq, where)  # a duplicate is reported as such

    def check(self) -> None:
        """Reopen the log (no faults now): every acknowledged record exactly once, verify clean."""
        import logstore

        try:
            log = logstore.open(self.root)
        except Exception as e:
            self.problems.append(("reopen raised", f"{type(e).__name__}: {e}"))
            return
        try:
            for t in ("events", "keyed"):
                if t not in log.topics():
                    if self.acked[t]:
                        self.problems.append(("acknowledged record lost", f"topic {t} is gone"))
                    continue
                got, rows = check_records(log, t, self.written, None)
                self.problems += got
                if rows is None:
                    continue
                seqs = {r["seq"] for r in rows}
                missing = self.acked[t] - seqs
                extra = seqs - self.acked[t] - self.unknown[t]
                if missing:
                    self.problems.append(("acknowledged record lost", f"{t}: {sorted(missing)[:8]}"))
                if extra:
                    self.problems.append(
                        ("raised but stored", f"{t}: records {sorted(extra)[:8]} of calls that raised are stored")
                    )
            report = log.verify()
            if not report.ok:
                self.problems.append(("verify reports damage", "; ".join(str(p) for p in report.problems[:3])))
            if self.cursor is not None:
                got = log.consumer("events", "g").committed()
                if got != self.cursor:
                    self.problems.append(("cursor damaged", f"{got}, committed {self.cursor}"))
        except Exception as e:
            self.problems.append(("reopen raised", f"{type(e).__name__}: {e}"))
        finally:
            log.close()
            close_fds_under(self.root)


def _calls(tmp: Path, durability: str) -> tuple[Counter, list[str]]:
    """Calls of each fault kind in a run without faults (and that run's own problems)."""
    root = tmp / "dry"
    with Recorder(root) as rec:
        trial = Trial(root, durability)
        trial.run()
    shim = rec.self_check()  # before check(), whose reopen writes (recovery, hints)
    trial.check()
    problems = [f"{c}: {d}" for c, d in trial.problems] + shim
    shutil.rmtree(root, ignore_errors=True)
    return rec.calls, problems


def _plan(count: int, limit: int | None, rng: random.Random) -> list[int]:
    if limit is None or count <= limit:
        return list(range(1, count + 1))
    picks = {1, count, 2, count - 1}
    while len(picks) < limit:
        picks.add(rng.randint(1, count))
    return sorted(picks)


def sweep_faults(tmp: Path, durability: str, limit: int | None) -> None:
    calls, dry = _calls(tmp, durability)
    rng = random.Random(5)
    trials: Counter = Counter()
    failed: Counter = Counter()
    categories: Counter = Counter()
    examples: dict = {}
    unfired = 0
    n = 0
    for kind in FAULT_KINDS:
        for ename, eno in ERRORS.items():
            if kind == "ftruncate":
                # a commit truncates only to undo a failed write or sync: fail that one too
                plan = [
                    (Fault("ftruncate", 1, eno), Fault(k, nth, eno))
                    for k in ("pwritev", "fdatasync")
                    for nth in _plan(calls[k], limit and limit // 2, rng)
                ]
            else:
                plan = [(Fault(kind, nth, eno), None) for nth in _plan(calls[kind], limit, rng)]
            for fault, first in plan:
                nth = fault.nth
                n += 1
                root = tmp / f"t{n}"
                with Recorder(root, fault=[fault] + ([first] if first else [])):
                    trial = Trial(root, durability)
                    try:
                        trial.run()
                    except Exception as e:
                        trial.problems.append(("workload raised", f"{type(e).__name__}: {e}"))
                trial.check()
                shutil.rmtree(root, ignore_errors=True)
                trials[(kind, ename)] += 1
                unfired += not fault.fired
                if trial.problems:
                    failed[(kind, ename)] += 1
                    for cat in {c for c, _ in trial.problems}:
                        categories[(kind, ename, cat)] += 1
                        detail = next(d for c, d in trial.problems if c == cat)
                        where = f"{first.where} (call {first.nth}) then " if first else ""
                        seen = examples.setdefault((kind, ename, cat), [])
                        if len(seen) < 2 and all(not e.startswith(where + fault.where.split("/")[0]) for e in seen):
                            seen.append(f"{where}{fault.where} (call {nth}) failed: {detail}")
    print()
    print(f"faults {durability}: calls in the workload {dict(calls)}; {unfired} armed faults never fired")
    for kind in FAULT_KINDS:
        for ename in ERRORS:
            print(
                f"faults {durability}/{kind}/{ename}: {trials[(kind, ename)]} trials, {failed[(kind, ename)]} failures"
            )
    for key, count in sorted(categories.items()):
        print(f"  {key[0]}/{key[1]} [{key[2]}]: {count} trials")
        for e in examples[key]:
            print(f"    e.g. {e[:300]}")
    for p in dry:
        print(f"  without faults: {p}")
    assert not dry, dry
    assert not failed, f"{sum(failed.values())} of {sum(trials.values())} fault trials failed (see the output above)"


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_faults(tmp_path, durability):
    """Every fault kind and error, up to 6 call numbers each (first, last and a seeded few)."""
    sweep_faults(tmp_path, durability, limit=6)


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_faults_every_call(tmp_path, durability):
    """Every call number of every fault kind, both errors."""
    sweep_faults(tmp_path, durability, limit=None)
