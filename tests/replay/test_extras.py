"""Commands that end in the HTML report say which extra to install, before doing any work."""

from __future__ import annotations

import importlib.util

import pytest

import rendezvous.demo
import replay.demo
from replay import report_plots


@pytest.fixture
def no_matplotlib(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] == "matplotlib" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("demo", [replay.demo, rendezvous.demo], ids=["replay", "rendezvous"])
def test_demo_without_report_extra_names_it(demo, no_matplotlib, tmp_path, capsys):
    out = tmp_path / "out"
    assert demo.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'logstore[report]'" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before any work


def test_require_passes_with_matplotlib():
    report_plots.require()  # installed in the test environment: no error
