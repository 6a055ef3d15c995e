"""The `rendezvous` command: help, one-line errors, `serve` as a process, `status`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import logstore
from rendezvous.cli import main
from rendezvous.client import send
from rendezvous.launch import Fleet
from tests.rendezvous.procs import ROOT


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_bare_command_prints_help_with_every_subcommand() -> None:
    """`rendezvous` alone prints the help (serve, model, status, an example) and exits 0."""
    code, out, _ = run([])
    assert code == 0
    for word in ("serve", "model", "status", "example:"):
        assert word in out


@pytest.mark.parametrize("command", ["serve", "model", "status"])
def test_each_subcommand_has_help_ending_with_an_example(command: str) -> None:
    """Every subcommand's --help ends with an example."""
    code, out, _ = run([command, "--help"])
    assert code == 0 and "example:\n  rendezvous " + command in out


def test_user_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    """A missing config, a config with a bad key, a missing log: one line on stderr, exit 2."""
    code, _, err = run(["serve", str(tmp_path / "log"), "--config", str(tmp_path / "nope.toml")])
    assert code == 2 and err.count("\n") == 1 and "no config file" in err
    bad = tmp_path / "bad.toml"
    bad.write_text('sla_ms = 50\n[[schedule]]\nmodel = "m"\nafter_ms = 80\n')
    code, _, err = run(["serve", str(tmp_path / "log"), "--config", str(bad)])
    assert code == 2 and "schedule[0].after_ms" in err and "Traceback" not in err
    code, _, err = run(["status", str(tmp_path / "missing")])
    assert code == 2 and "no log at" in err


@pytest.mark.timeout(120)
def test_serve_as_a_process_answers_and_stops_cleanly_then_status_reads_the_log(tmp_path: Path) -> None:
    """`rendezvous serve --port 0 --decoy-only` listens on loopback, answers, exposes /healthz and
    /metrics, exits 0 on SIGTERM; `rendezvous status` then reads what it recorded."""
    cfg = tmp_path / "decoy.toml"
    cfg.write_text("sla_ms = 50\ndefault = { score = 0.5 }\n")
    with Fleet(tmp_path / "log", tmp_path / "out", env={"PYTHONPATH": str(ROOT)}, cwd=ROOT) as fleet:
        url = fleet.serve(cfg, "--decoy-only")
        assert url.startswith("http://127.0.0.1:")
        results = asyncio.run(send(url, [{"features": {"a": float(i)}} for i in range(20)], rate=200, timeout=30))
        assert all(r.status == 200 and r.answer and r.answer["score"] == 0.5 for r in results)
        health = json.loads(urllib.request.urlopen(url + "/healthz", timeout=5).read())
        assert health["status"] == "ok" and health["decoy_only"] is True and health["decided"] == 20
        metrics = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
        assert 'rendezvous_answers_total{model="default",reason="default"} 20.0' in metrics
        assert fleet.kill("service", signal.SIGTERM) == 0
    assert "serving http://127.0.0.1:" in fleet.output("service").read_text()
    log = logstore.open(tmp_path / "log", readonly=True)
    assert log.read("inputs").num_rows == log.read("decisions").num_rows == 20
    code, out, _ = run(["status", str(tmp_path / "log")])
    assert code == 0 and "inputs 20" in out and "decisions 20: default 100.0%" in out
    code, out, _ = run(["status", str(tmp_path / "log"), "--json"])
    doc: dict[str, Any] = json.loads(out)
    assert doc["inputs"] == 20 and doc["decisions"]["served"] == {"default": 20}


def test_python_dash_m_rendezvous_is_the_command() -> None:
    """`python -m rendezvous --help` runs the same command."""
    out = subprocess.run(
        [sys.executable, "-m", "rendezvous", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0 and "usage: rendezvous" in out.stdout
