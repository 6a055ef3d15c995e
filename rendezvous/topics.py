"""The rendezvous's topics and their shipped schemas; `ensure_topics` creates what is missing.

=============  ============  ==========  ==========================================================
role           schema        key field   holds
=============  ============  ==========  ==========================================================
``inputs``     model_input   request_id  each request as archived by the front door (the decoy)
``scores``     model_score   request_id  every model's answer (or error), one per input scored
``decisions``  decision      request_id  which answer was served, and why
``outcomes``   outcome       request_id  delayed feedback (label or reward)
``metrics``    metric        (none)      the service's per-minute metrics
=============  ============  ==========  ==========================================================

Keyed by ``request_id``, so one request's input, scores, decision and outcome share a partition
number (with equal partition counts). Names come from `rendezvous.config.Topics`.

Invariants of `ensure_topics`:

- idempotent, and safe when processes race: creating a topic that another process created
  meanwhile is not an error (`Log.create_topic(exist_ok=True)` renames a whole topic directory
  into place, so the loser sees the winner's topic);
- a topic that exists with an older version of its shipped schema (one lacking some of its fields,
  or unable to read its records) gets the shipped schema registered as a new version, the topic's own extra fields kept
  (`Log.register_schema`, checked by the topic's compatibility mode), so writers append the
  current records and readers resolve the old frames; a topic whose schema cannot evolve so is
  refused with `TopicSchemaError` naming the topic and every reason;
- an existing topic's partition count and key field are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import logstore
import schemas

from .config import Topics

__all__ = ["KEY_FIELD", "ROLES", "SCHEMAS", "TopicSchemaError", "ensure_topics", "names", "upgrade_schema"]

# role -> shipped schema name
SCHEMAS: Mapping[str, str] = {
    "inputs": "model_input",
    "scores": "model_score",
    "decisions": "decision",
    "outcomes": "outcome",
    "metrics": "metric",
}
ROLES = tuple(SCHEMAS)
KEY_FIELD = "request_id"
_UNKEYED = frozenset({"metrics"})


class TopicSchemaError(ValueError):
    """An existing topic whose schema the shipped one cannot evolve (the message says why)."""


def names(topics: Topics | Mapping[str, str] | None = None) -> dict[str, str]:
    """Role -> topic name: `topics` (a `Topics`, or a mapping overriding some roles) over the defaults."""
    if topics is None:
        topics = Topics()
    if isinstance(topics, Topics):
        return {role: str(getattr(topics, role)) for role in ROLES}
    unknown = sorted(set(topics) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown topic role(s) {unknown}; the roles are {list(ROLES)}")
    default = Topics()
    return {role: str(topics.get(role, getattr(default, role))) for role in ROLES}


def upgrade_schema(log: logstore.Log, topic: str, shipped: str) -> int | None:
    """Register the shipped schema `shipped` on `topic` if its latest schema lacks some of its
    fields, or cannot read records of the shipped schema (a field typed narrower).

    The new version is the shipped record with the topic's own extra fields appended. Returns the
    new version number, or None when the topic can already hold every shipped record. Raises
    `TopicSchemaError` when the topic's compatibility mode refuses the evolution.
    """
    latest = log.schema(topic)
    have = {f["name"] for f in latest["fields"]}
    want = schemas.load(shipped)
    missing = [f["name"] for f in want["fields"] if f["name"] not in have]
    # every field there, but some cannot hold what the shipped schema allows (a score that cannot be null)
    if not missing and not schemas.check_compatibility(latest, [want], "BACKWARD"):
        return None
    own = {f["name"] for f in want["fields"]}
    want["fields"] = list(want["fields"]) + [f for f in latest["fields"] if f["name"] not in own]
    try:
        return log.register_schema(topic, want)
    except logstore.SchemaIncompatibleError as e:
        raise TopicSchemaError(
            f"topic {topic!r} of {log.path} cannot hold records of the shipped {shipped!r} schema"
            f"{f' (it lacks {missing})' if missing else ''}, and that schema cannot be registered on it: {e}; "
            "use another topic name (a [topics] table in the config)"
        ) from None


def ensure_topics(
    log: logstore.Log,
    topics: Topics | Mapping[str, str] | None = None,
    *,
    partitions: int = 4,
    roles: Iterable[str] | None = None,
    compression: str | None = "zstd",
) -> dict[str, str]:
    """Create the missing topics of `roles` (default: all) with their shipped schemas, and evolve
    existing ones to them (module docstring); returns role -> topic name.

    `partitions` is the partition count of new keyed topics (metrics get one).
    """
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"partitions must be a positive int, found {partitions!r}")
    by_role = names(topics)
    wanted = list(ROLES) if roles is None else list(dict.fromkeys(roles))
    unknown = [r for r in wanted if r not in SCHEMAS]
    if unknown:
        raise ValueError(f"unknown topic role(s) {unknown}; the roles are {list(ROLES)}")
    out: dict[str, str] = {}
    for role in wanted:
        name = by_role[role]
        keyed = role not in _UNKEYED
        kwargs: dict[str, Any] = {"key_field": KEY_FIELD} if keyed else {}
        log.create_topic(
            name,
            schema=SCHEMAS[role],
            partitions=partitions if keyed else 1,
            compression=compression,
            exist_ok=True,
            **kwargs,
        )
        upgrade_schema(log, name, SCHEMAS[role])
        out[role] = name
    return out
