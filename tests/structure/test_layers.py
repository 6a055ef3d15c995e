"""The module graph points one way (docs/architecture.md, layers)."""

from __future__ import annotations

import subprocess
import sys

from tests.structure.imports import ROOT, cycles, graph, modules

LEAVES = {
    "logstore.errors",
    "logstore.files",
    "logstore.names",
    "logstore.checksum",
    "logstore.encodings",
    "logstore.timeutil",
}


def test_no_import_cycles():
    """No two modules import each other, directly or through others (function-level imports count)."""
    assert cycles(graph()) == []


def test_leaves_import_only_leaves():
    """The shared leaves at the bottom import nothing of the product but other leaves (and the
    package they sit in, whose __init__ loads only its errors)."""
    g = graph()
    for leaf in LEAVES:
        assert g[leaf] <= LEAVES | {"logstore"}, (leaf, g[leaf] - LEAVES)


def test_schemas_and_replay_use_the_engine_through_its_leaves_and_public_api():
    """`schemas` uses only the log's leaves; `replay` uses only the public API and the leaves."""
    g = graph()
    # the Kafka bridge, for the rendezvous's Kafka mode (rendezvous/kafka_transport.py): its clients,
    # framing and registry, and the from-kafka bridge the service runs to record the Kafka topics
    bridge = {f"logstore.bridge{m}" for m in ("", ".from_kafka", ".kafka", ".records", ".registry_client")}
    public = {"logstore", "logstore.cli"} | LEAVES
    for name, deps in g.items():
        if name.startswith("schemas"):
            assert {d for d in deps if d.startswith("logstore")} <= LEAVES | {"logstore"}, name
        if name.startswith("rendezvous"):
            assert {d for d in deps if d.startswith("logstore")} <= public | bridge, name


def _loaded(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return [m for m in out.stdout.split() if m.split(".")[0] in ("logstore", "schemas", "replay")]


def test_importing_schemas_does_not_load_the_log_engine():
    loaded = _loaded("import schemas")
    assert {m for m in loaded if m.startswith("logstore")} <= LEAVES | {"logstore"}, loaded


def test_importing_a_leaf_loads_nothing_else():
    assert _loaded("import logstore.errors") == ["logstore", "logstore.errors"]


def test_modules_stay_small():
    """No product module over 600 lines (tests and benchmarks aside)."""
    big = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 600}
    assert big == {}, big
