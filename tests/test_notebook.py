"""examples/quickstart.ipynb, executed headless from top to bottom, so that it never goes stale."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_and_shows_its_results(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat and nbclient are dev dependencies")
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "d_data =" in text and "synthetic lesion" in text
    claims = [line for line in text.splitlines() if "  " in line and line.strip().split("  ")[0] in (
        "consistent", "same sign, other magnitude", "opposite", "inconclusive", "not enough runs")]
    assert len(claims) == 5  # the study's verdict on each of the method's claims
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the closest pairs, and two of the report's figures inline
