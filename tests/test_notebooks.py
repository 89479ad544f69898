"""Every notebook runs top to bottom, offline, in a fresh kernel of this environment, and is committed
without outputs.

The kernel is `python3` as JupyterLab would start it from this venv (`make lab`): the venv's own
ipykernel spec, with jupyter_client putting this interpreter in its command line.
`test_the_python3_kernel_is_this_environment` checks that. A private Jupyter data dir and IPython dir keep
a user-level `python3` spec (which would take precedence) and IPython startup files out of the runs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = "python3"
# Seconds per notebook: generous for a loaded 2-core machine. On an idle one each takes 10-15 s, and
# 40 s at most when other jobs share the cores.
BUDGET = {
    "01_quickstart.ipynb": 180,
    "02_axioms.ipynb": 180,
    "03_layer_debugging.ipynb": 180,
    "04_compare_methods.ipynb": 180,
    "05_your_model.ipynb": 180,
    "06_dataset_debugging.ipynb": 180,
    "07_strategies.ipynb": 180,
    "app.ipynb": 180,
}
HEAVY: set[str] = set()  # notebooks too slow for the default run (none today)


@pytest.fixture(autouse=True, scope="module")
def private_jupyter_dirs(tmp_path_factory):
    home = tmp_path_factory.mktemp("jupyter")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_DATA_DIR", str(home / "data"))
        mp.setenv("IPYTHONDIR", str(home / "ipython"))
        mp.delenv("JUPYTER_PATH", raising=False)
        yield


def notebook_params():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        marks = [pytest.mark.timeout(BUDGET.get(path.name, 180) + 60)]
        if path.name in HEAVY:
            marks.append(pytest.mark.heavy)
        yield pytest.param(path, id=path.stem, marks=marks)


def run_notebook(path: Path, timeout: int) -> nbformat.NotebookNode:
    """Execute `path` in a fresh kernel, with the notebook's folder as the working directory."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL, allow_errors=False, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return nb


def test_every_notebook_has_a_budget():
    names = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert names, "no notebooks found"
    assert names <= set(BUDGET), f"add a time budget for {sorted(names - set(BUDGET))}"
    expected = {
        "01_quickstart.ipynb",
        "02_axioms.ipynb",
        "03_layer_debugging.ipynb",
        "04_compare_methods.ipynb",
        "05_your_model.ipynb",
        "06_dataset_debugging.ipynb",
        "07_strategies.ipynb",
        "app.ipynb",
    }
    assert expected <= names, f"missing notebooks: {sorted(expected - names)}"


@pytest.mark.parametrize("path", [p.values[0] for p in notebook_params()], ids=lambda p: p.stem)
def test_notebooks_are_committed_clean(path: Path):
    """No outputs, no execution counts, the python3 kernel, valid nbformat."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; strip them before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state in the metadata; strip it"


def test_the_python3_kernel_is_this_environment():
    """nbclient's `python3` kernel is this interpreter (the venv), with xcam_widgets importable."""
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import sys, json, xcam_widgets\nprint(json.dumps([sys.prefix, sys.executable]))")
        ]
    )
    NotebookClient(nb, timeout=120, kernel_name=KERNEL).execute()
    prefix, executable = json.loads(nb.cells[0].outputs[0]["text"])
    assert Path(prefix).resolve() == Path(sys.prefix).resolve(), (
        f"the python3 kernel runs {executable}, not this environment's {sys.executable}: "
        f"install the kernel spec with `{sys.executable} -m ipykernel install --sys-prefix`"
    )


@pytest.mark.parametrize("path", list(notebook_params()))
def test_notebook_runs(path: Path):
    budget = BUDGET.get(path.name, 180)
    start = time.monotonic()
    try:
        nb = run_notebook(path, timeout=budget)
    except CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}", pytrace=False)
    seconds = time.monotonic() - start
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error" or (out.get("name") == "stderr" and "Traceback" in out.get("text", ""))
    ]
    assert not errors, f"{path.name}: error output {errors[:1]}"
    print(f"{path.name}: {seconds:.1f} s")
    assert seconds < budget, f"{path.name} took {seconds:.0f} s, over its {budget} s budget"
