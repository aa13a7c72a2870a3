"""The lessons: every notebook is paired with its jupytext script, is committed without outputs, and runs top to
bottom without an error (with MINIRCNN_FAST=1, so that CI can afford to run them all)."""
import pathlib
import time

import jupytext
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

LESSONS = pathlib.Path(__file__).resolve().parents[1] / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
SCRIPTS = sorted(LESSONS.glob("[0-9][0-9]_*.py"))
CELL_TIMEOUT_S = 300      # per cell; FAST cells take seconds, this only stops a hung kernel
KERNEL = "python3"


def _cells(path):
    """(cell_type, source) of every cell, as jupytext reads the file (a .ipynb or a percent-format .py)."""
    notebook = jupytext.read(path)
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_there_are_lessons():
    """The lessons folder holds notebooks, so the tests below cannot pass vacuously."""
    assert NOTEBOOKS, f"no NN_topic.ipynb files in {LESSONS}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_has_a_notebook(script):
    """Each lesson script NN_topic.py has its notebook NN_topic.ipynb beside it."""
    assert script.with_suffix(".ipynb").is_file(), (
        f"{script.name} has no notebook: run `jupytext --to notebook {script.name}` in lessons/")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_and_script_are_in_sync(notebook):
    """The notebook and its percent-format script hold the same cells (type and source), in the same order.

    The script is what reviewers read; after editing either one, `jupytext --sync lessons/NN_topic.ipynb` updates
    the other."""
    script = notebook.with_suffix(".py")
    assert script.is_file(), f"{notebook.name} has no paired script {script.name}"
    from_notebook, from_script = _cells(notebook), _cells(script)
    for i, (a, b) in enumerate(zip(from_notebook, from_script)):
        assert a == b, f"cell {i} differs between {notebook.name} and {script.name}:\n{a}\n---\n{b}"
    assert len(from_notebook) == len(from_script), (
        f"{notebook.name} has {len(from_notebook)} cells, {script.name} has {len(from_script)}")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(notebook):
    """Notebooks are committed stripped: no outputs and no execution counts (the learner's run makes them)."""
    nb = nbformat.read(notebook, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{notebook.name} cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{notebook.name} cell {i} has an execution count"


def test_the_kernel_is_installed():
    """Jupyter finds a kernel named python3 in this environment (ipykernel, from the `test` extra, provides it)."""
    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(f"no Jupyter kernel named {KERNEL!r}: pip install -e '.[test]' installs ipykernel")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_runs(notebook, monkeypatch):
    """The lesson executes top to bottom in a fresh kernel, in lessons/, with MINIRCNN_FAST=1 and a headless
    matplotlib; any error in any cell fails the test (nbclient raises CellExecutionError naming the cell)."""
    monkeypatch.setenv("MINIRCNN_FAST", "1")      # the kernel inherits this process's environment
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(LESSONS)}})
    start = time.perf_counter()
    client.execute()
    print(f"{notebook.name}: {time.perf_counter() - start:.1f} s with MINIRCNN_FAST=1")
