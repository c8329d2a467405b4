"""Every notebook in notebooks/ runs top to bottom on small simulated data within a time budget,
and is committed without outputs.

Each notebook runs in its own temporary working directory (MLflow SQLite store there) in a
kernel of this test's Python. The cell tagged ``parameters`` is followed by an injected cell
that points the notebook at a small shared data set (only the names it defines are set).
New notebooks join automatically.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from features.simulator import SimConfig, simulate, write_simulation

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "customer-lifecycle-tests"
CELL_TIMEOUT_S = 300
BUDGET_S = 240  # per notebook, kernel start included (04 trains and starts a server: ~70 s idle)
SMALL_DATA = SimConfig(customers=2500, days=300, seed=7, campaign_share=0.15)
SMALL_TRAIN = {
    "dataset": {"snapshots": 4},
    "churn": {"n_estimators": 80},
    "stage": {"n_estimators": 40},
}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notebook_data") / "data"
    write_simulation(simulate(SMALL_DATA), folder, SMALL_DATA)
    return folder


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernel spec running this interpreter, found first through JUPYTER_PATH (so a user's
    own ``python3`` kernel pointing elsewhere cannot be picked up)."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", os.pathsep.join([str(root), os.environ.get("JUPYTER_PATH", "")]))
        yield KERNEL


def parameter_names(nb: nbformat.NotebookNode) -> tuple[int, set[str]]:
    """Index of the cell tagged ``parameters`` and the names it assigns."""
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", []):
            tree = ast.parse(cell.source)
            names = {t.id for node in tree.body if isinstance(node, ast.Assign)
                     for t in node.targets if isinstance(t, ast.Name)}  # fmt: skip
            return i, names
    raise AssertionError("the notebook has no cell tagged 'parameters'")


def inject(nb: nbformat.NotebookNode, values: dict) -> None:
    """Insert, after the parameters cell, a cell setting the ``values`` it defines."""
    index, names = parameter_names(nb)
    lines = [f"{name} = {values[name]!r}" for name in sorted(names & set(values))]
    cell = nbformat.v4.new_code_cell("\n".join(["# injected by tests/test_notebooks.py", *lines]))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))


def test_the_numbered_notebooks_exist():
    names = [p.stem for p in NOTEBOOKS]
    for expected in (
        "01_explore_lifecycle",
        "02_train_and_compare",
        "03_next_best_offer",
        "04_call_the_service",
    ):
        assert expected in names
    assert all(name[:2].isdigit() and name[2] == "_" for name in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    stale = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.outputs or c.execution_count is not None)]  # fmt: skip
    assert not stale, f"{path.name}: clear the outputs of cells {stale} before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, small_data, kernel, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    inject(nb, {"DATA": str(small_data), "CUSTOMERS": SMALL_DATA.customers, "SEED": 7,
                "TRAIN": SMALL_TRAIN, "TRACKING_URI": tracking})  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # OpenMP spin-waits on a busy shared machine
    client = NotebookClient(nb, kernel_name=kernel, timeout=CELL_TIMEOUT_S, startup_timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f}s")
    assert elapsed < BUDGET_S, f"{path.name} took {elapsed:.0f}s (budget {BUDGET_S}s)"
    assert images(nb) >= 2, f"{path.name} rendered {images(nb)} figures"
