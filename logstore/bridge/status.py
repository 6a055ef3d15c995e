"""Where a log's bridges stand (`logstore bridge status`), from the log alone (Kafka optional).

From Kafka: a topic whose schema has the bridge's fields; per partition, the Kafka offset the
next record will come from (its last record's `kafka_offset` + 1), and, given the Kafka cluster
and topic, Kafka's end offset and the lag between them. To Kafka: the log's consumer groups
named ``bridge.*`` (the default), their committed cursor, the partition's end and the lag, as
`logstore groups` shows them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from logstore.errors import LogstoreError

from .kafka import BridgeError, describe_error, kafka_config, require
from .records import has_bridge_fields

if TYPE_CHECKING:
    from logstore.log import Log


def _kafka_ends(bootstrap: str, kafka_topic: str, partitions: list[int]) -> dict[int, int]:
    ck = require()
    consumer = ck.Consumer(kafka_config(bootstrap, None, **{"group.id": "logstore-bridge-status"}))
    try:
        ends = {}
        for p in partitions:
            try:
                _, high = consumer.get_watermark_offsets(ck.TopicPartition(kafka_topic, p), timeout=5.0)
            except ck.KafkaException as e:
                raise BridgeError(f"cannot reach Kafka at {bootstrap}: {describe_error(e.args[0])}") from None
            ends[p] = int(high)
        return ends
    finally:
        consumer.close()


def _from_kafka(lg: Log, topic: str, bootstrap: str | None, kafka_topic: str | None) -> dict[str, Any]:
    from .from_kafka import resume_positions

    entry: dict[str, Any] = {"topic": topic, "partitions": [], "error": None}
    try:
        positions = resume_positions(lg, topic)
        records = lg.end_offsets(topic)
    except LogstoreError as e:
        entry["error"] = str(e)
        return entry
    ends = _kafka_ends(bootstrap, kafka_topic, sorted(positions)) if bootstrap and kafka_topic else {}
    for p, nxt in sorted(positions.items()):
        end = ends.get(p)
        lag = None if end is None else end - (nxt or 0)
        entry["partitions"].append(
            {"partition": p, "records": records[p], "next_kafka_offset": nxt, "kafka_end": end, "lag": lag}
        )
    return entry


def bridge_status(
    lg: Log, topic: str | None = None, *, bootstrap: str | None = None, kafka_topic: str | None = None
) -> dict[str, Any]:
    """{"from_kafka": [per topic fed from Kafka], "to_kafka": [per bridge group]} (see the module docstring)."""
    from logstore.admin import groups

    names = [topic] if topic is not None else lg.topics()
    fed = []
    for name in names:
        try:
            if not has_bridge_fields(lg.schema(name)):
                continue
        except LogstoreError as e:
            fed.append({"topic": name, "partitions": [], "error": str(e)})
            continue
        fed.append(_from_kafka(lg, name, bootstrap, kafka_topic))
    out: list[dict[str, Any]] = []
    from logstore.names import GROUPS_DIR

    root = lg.path / GROUPS_DIR
    if not (root.is_dir() and any(n.startswith("bridge.") for n in os.listdir(root))):
        return {"from_kafka": fed, "to_kafka": out}  # no bridge group: skip reading every cursor
    for g in groups(lg):
        if not g["group"].startswith("bridge."):
            continue
        mine = [t for t in g["topics"] if topic is None or t["topic"] == topic]
        if mine:
            out.append({"group": g["group"], "topics": mine})
    return {"from_kafka": fed, "to_kafka": out}


def print_status(found: dict[str, Any]) -> None:
    """`bridge_status` as two tables."""
    rows = [["FROM KAFKA", "PARTITION", "RECORDS", "NEXT KAFKA OFFSET", "KAFKA END", "LAG"]]
    for t in found["from_kafka"]:
        if t["error"]:
            rows.append([t["topic"], f"error: {t['error']}", "", "", "", ""])
        for p in t["partitions"]:
            cells = [p["next_kafka_offset"], p["kafka_end"], p["lag"]]
            rows.append(
                [t["topic"], str(p["partition"]), str(p["records"]), *("-" if c is None else str(c) for c in cells)]
            )
    rows.append([])
    rows.append(["TO KAFKA (GROUP)", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"])
    for g in found["to_kafka"]:
        for t in g["topics"]:
            for p in t["partitions"]:
                committed = "-" if p["committed"] is None else str(p["committed"])
                lag = "-" if p["lag"] is None else str(p["lag"])
                rows.append([g["group"], t["topic"], str(p["partition"]), committed, str(p["end"]), lag])
    widths = [max(len(r[i]) for r in rows if r) for i in range(6)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() if r else "")


def by_topic(lg: Log, topic: str | None = None) -> dict[str, dict[str, Any]]:
    """Per topic, where its Kafka bridges stand (what `logstore describe` shows): ``from_kafka``
    (the next Kafka offset per partition) and ``to_kafka`` (the bridge groups' cursors and lag)."""
    found = bridge_status(lg, topic)
    out: dict[str, dict[str, Any]] = {}
    for t in found["from_kafka"]:
        out.setdefault(t["topic"], {})["from_kafka"] = t["partitions"]
    for g in found["to_kafka"]:
        for t in g["topics"]:
            out.setdefault(t["topic"], {}).setdefault("to_kafka", []).append({"group": g["group"], **t})
    return out


def describe_lines(bridge: dict[str, Any]) -> list[str]:
    """`by_topic`'s entry of one topic as lines of `logstore describe`."""
    lines = [
        f"bridge from Kafka, partition {p['partition']}: next Kafka offset {p['next_kafka_offset']}"
        for p in bridge.get("from_kafka", [])
    ]
    for g in bridge.get("to_kafka", []):
        lines += [
            f"bridge to Kafka ({g['group']}), partition {p['partition']}: committed {p['committed']}, "
            f"end {p['end']}, lag {p['lag']}"
            for p in g["partitions"]
        ]
    return lines
