"""The hot-swap token: switch a model's version at one consistent cut of the inputs stream.

    rendezvous swap LOG --model M --to VERSION [--why TEXT] [--config FILE]

`swap` appends, in this order, a ``swap`` control record (who, when, what, why; its ``token``
names the swap) and one token per partition of ``inputs`` (an input record whose ``swap`` field
holds the token id, M and VERSION), all tokens in one commit. The token's offset in each partition
is the cut, as a barrier is in Flink's aligned checkpoints: every input before it is handled by
M's old version, every input after it by VERSION, none by both or neither, however many runners
share the partitions (each partition is read by one runner of the group, in order).

A runner (`Versions`) keeps the version of each of its partitions. On a token of its model it
scores the inputs before it with the old version, switches that partition, and appends a marker to
``scores`` (`replay.engine.tokens`: status ``"swap"``, ``swapped_from``, the token's place); the
inputs after it are scored by the new version. Starting, it reads the ``swap`` control records of
its model and finds their tokens (each appended right after its record, so found from the record's
append time on): a token before the group's committed position has been passed. A version that
cannot be loaded is recorded, not skipped: every input after the token gets an error score under
the new version (status ``"error"``), and the service falls back.

The service aligns on the markers (`rendezvous.mailbox`): once it has seen a partition's marker it
drops any score of the model whose version contradicts the cut. Replay reads the same cut from
the markers (`replay.engine.tokens.VersionCut.read`), so the recorded period replays with the
version that served each request. In the control fold a swap leaves the model's schedule entry
matching any of its versions: which one serves an input is its partition's cut.

Loading a version: the runner's ``versions`` callable, else the model's ``with_version(v)``
method, else (a ``module:factory`` spec) the factory called with ``version=v``.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import logstore
from replay import load_model
from replay.engine.tokens import TOKEN_FIELD, tokens_in
from replay.models import check as check_model

from .config import Config, Topics
from .control import CONTROL_TOPIC, ControlState, ensure_control, make_record, read_records
from .deploy import _config, _fold, _open, who
from .topics import upgrade_schema

__all__ = ["Swapped", "Unloadable", "Versions", "find_tokens", "swap", "token_request_id", "version_loader"]

log = logging.getLogger("rendezvous.swap")

TOKEN_SOURCE = "rendezvous swap"


def token_request_id(token: str, partition: int, partitions: int) -> str:
    """The request id of `token`'s record in `partition`: ``swap:<token>:<k>`` for the first k
    whose key hash places it there (the topic is keyed by request_id)."""
    k = 0
    while logstore.partition_of(f"swap:{token}:{k}", partitions) != partition:
        k += 1
    return f"swap:{token}:{k}"


def find_tokens(
    log: logstore.Log, inputs: str, token: str, since_us: int, partitions: list[int] | None = None
) -> dict[int, int]:
    """Partition -> offset of `token`'s record in `inputs`, searched from the first input appended
    at or after `since_us` (the swap's control record); a partition without it is left out."""
    if inputs not in log.topics():
        return {}
    if not any(f["name"] == TOKEN_FIELD for f in log.schema(inputs)["fields"]):
        return {}
    parts = range(log.config(inputs).partitions) if partitions is None else partitions
    found: dict[int, int] = {}
    for p in parts:
        lo = log.offset_for_time(inputs, p, since_us)
        for batch in log.reader(inputs, start={p: lo}, partitions=[p], columns=[TOKEN_FIELD, "_offset"]):
            offsets = batch.column("_offset")
            hit = next((row for row, tok in tokens_in(batch) if tok["token"] == token), None)
            if hit is not None:
                found[p] = int(offsets[hit].as_py())
                break
    return found


@dataclass(frozen=True)
class Swapped:
    """What `swap` appended: the control record and its offset, the token offsets, the state."""

    record: dict[str, Any]
    offset: int
    token: str
    tokens: dict[int, int]
    state: ControlState


def check_version(model_id: str, version: str) -> None:
    """A version a token can carry: a non-empty string without ':' (ValueError otherwise)."""
    if not isinstance(version, str) or not version or ":" in version:
        raise ValueError(f"swap {model_id}: version must be a non-empty string without ':', found {version!r}")


def append_swap_record(
    log: logstore.Log, model_id: str, version: str, *, config: Config | None, why: str, by: str | None
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Append a swap's control record (with a new token) if it applies to the deployment
    (`ControlError`, nothing appended, if not); returns (record, the record as read back with its
    offset and append time, the records before it, those from it on). The tokens are the
    caller's: into the log's inputs (`swap`) or Kafka's (`rendezvous.transport.kafka_swap`)."""
    ensure_control(log)
    records = read_records(log)
    state = _fold(config, records)
    token = secrets.token_hex(8)
    rec = make_record("swap", model_id, who=by or who(), version=version, why=why, token=token)
    rec["generation"] = state.generation + 1
    state.apply(rec)  # raises ControlError: nothing appended
    with log.writer(CONTROL_TOPIC, durability="fsync", linger_ms=None) as w:
        w.append_batch([rec])
    after = read_records(log, len(records))
    mine = next(r for r in after if r.get("token") == token)
    return rec, mine, records, after


def swap(
    log: logstore.Log,
    model_id: str,
    version: str,
    *,
    config: Config | None = None,
    why: str = "",
    by: str | None = None,
    topics: Topics | None = None,
) -> Swapped:
    """Append a swap: its control record, then a token in every inputs partition (module
    docstring). `ControlError` (nothing appended) if the swap does not apply to the deployment."""
    topics = topics or (config.topics if config is not None else Topics())
    check_version(model_id, version)
    if topics.inputs not in log.topics():
        raise logstore.TopicNotFoundError(f"no topic {topics.inputs!r} in {log.path}: nothing to swap")
    upgrade_schema(log, topics.inputs, "model_input")
    rec, mine, records, after = append_swap_record(log, model_id, version, config=config, why=why, by=by)
    token = rec["token"]
    n = log.config(topics.inputs).partitions
    now = datetime.now(UTC)
    rows = [
        {
            "request_id": token_request_id(token, p, n),
            "event_time": now,
            "features": {},
            "raw": "",
            "enrichment": None,
            "source": TOKEN_SOURCE,
            TOKEN_FIELD: {"token": token, "model_id": model_id, "version": version},
        }
        for p in range(n)
    ]
    with log.writer(topics.inputs, durability="fsync", linger_ms=None) as w:
        w.append_batch(rows)  # one commit: every partition's token or none
    tokens = find_tokens(log, topics.inputs, token, int(mine["_append_us"]))
    return Swapped(rec, int(mine["_offset"]), token, tokens, _fold(config, records + after))


# ---- the runner's side ------------------------------------------------------------------------


class Unloadable:
    """A version that could not be loaded: it answers every batch with the load error."""

    def __init__(self, name: str, version: str, error: str) -> None:
        self.name, self.version, self.error = name, version, error

    def predict(self, batch: Any, ctx: Any) -> Any:
        raise RuntimeError(f"cannot load version {self.version} of {self.name}: {self.error}")


def version_loader(model: Any, spec: str | None, versions: Callable[[str], Any] | None) -> Callable[[str], Any] | None:
    """How a runner builds another version of `model` (module docstring), None if it cannot."""
    if versions is not None:
        return versions
    with_version = getattr(model, "with_version", None)
    if callable(with_version):
        return with_version  # type: ignore[no-any-return]
    if spec is None:
        return None
    factory = _factory(spec)
    try:
        takes = "version" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes = False
    return (lambda v: factory(version=v)) if takes else None


def _factory(spec: str) -> Any:
    import importlib

    mod_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Versions:
    """The version of a runner's model that handles each of its partitions (module docstring)."""

    def __init__(self, model: Any, loader: Callable[[str], Any] | None) -> None:
        self.name: str = model.name
        self.default: str = model.version
        self.models: dict[str, Any] = {model.version: model}
        self.current: dict[int, str] = {}
        self.loader = loader

    @classmethod
    def start(
        cls,
        log: logstore.Log,
        topics: Topics,
        model: Any,
        loader: Callable[[str], Any] | None,
        positions: dict[int, int],
    ) -> Versions:
        """The versions at the group's committed `positions`: each swap of the model whose token
        lies before a partition's position has switched that partition."""
        v = cls(model, loader)
        for r in read_records(log):
            if r["kind"] != "swap" or r["model_id"] != v.name or not r.get("token"):
                continue
            found = find_tokens(log, topics.inputs, r["token"], int(r["_append_us"]), sorted(positions))
            for p, offset in found.items():
                if offset < positions.get(p, 0):
                    v.current[p] = r["version"]
        return v

    def version(self, partition: int) -> str:
        return self.current.get(partition, self.default)

    def model(self, partition: int) -> Any:
        """The model object of `partition`'s version (loaded on first use; `Unloadable` if it fails)."""
        v = self.version(partition)
        m = self.models.get(v)
        if m is None:
            m = self.models[v] = self._load(v)
        return m

    def switch(self, partition: int, version: str) -> str:
        """Switch `partition` to `version` (at a token); returns the version it had."""
        old = self.version(partition)
        self.current[partition] = version
        log.info("model %s: partition %d switches from version %s to %s", self.name, partition, old, version)
        return old

    def _load(self, version: str) -> Any:
        if self.loader is None:
            return Unloadable(self.name, version, "the model has no with_version() and its factory takes no version")
        try:
            m = self.loader(version)
            if isinstance(m, str):
                m = load_model(m)
            check_model(m)
            if m.name != self.name or m.version != version:
                raise ValueError(f"the loader built {m.name}:{m.version}")
        except Exception as e:  # the failure is recorded with every score of that version
            log.error("model %s: cannot load version %s: %s", self.name, version, e)
            return Unloadable(self.name, version, f"{type(e).__name__}: {e}")
        return m


def cmd_swap(args: Any) -> int:
    """``rendezvous swap``: print the control offset and the token offsets."""
    with _open(args) as lg:
        done = swap(lg, args.model, args.to, config=_config(args), why=args.why)
    offsets = ", ".join(f"{p}:{o}" for p, o in sorted(done.tokens.items()))
    print(f"control offset {done.offset}: swap {args.model} to {args.to} (token {done.token}); inputs cut at {offsets}")
    print(done.state.describe())
    return 0
