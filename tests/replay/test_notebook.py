"""The example notebook `examples/analysis.ipynb` runs clean against a small demo log."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from replay import demo

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "analysis.ipynb"


def test_notebook_is_stored_without_outputs():
    """The committed notebook carries no outputs or execution counts (it is run by the tests)."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("LOGSTORE_DEMO_LOG" in c.source for c in code)


@pytest.mark.slow
def test_notebook_runs_clean_against_a_small_demo_log(tmp_path, monkeypatch):
    """Every cell of the notebook executes without error, plots included."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert (
        demo.main(
            ["--out", str(out), "--days", "3", "--rate", "0.7", "--tick", "30", "--workers", "1"], out=io.StringIO()
        )
        == 0
    )
    # the kernel is a child process: it finds the log through the environment, and the project
    # through PYTHONPATH even when it is not installed into the environment
    monkeypatch.setenv("LOGSTORE_DEMO_LOG", str(out / "log"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on the first error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the canary, histogram/calibration and drift figures
