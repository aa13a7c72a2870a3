"""The lessons: every notebook is paired with its jupytext script, carries the outputs of a full run or none, and runs
top to bottom without an error (with MINIRCNN_FAST=1, so that CI can afford to run them all)."""
import importlib.util
import os
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
def test_a_committed_notebook_carries_a_full_run_or_no_outputs(notebook):
    """A notebook with outputs was built by lessons/build_notebooks.py from a full run (its metadata says so): every
    code cell executed, in order, none ended in an error. One without outputs has no execution counts either."""
    nb = nbformat.read(notebook, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    if not any(cell.outputs or cell.execution_count for cell in code):
        return
    assert nb.metadata.get("minircnn", {}).get("build") == "full", (
        f"{notebook.name} has outputs but not from build_notebooks.py's full run: run "
        f"`python lessons/build_notebooks.py {notebook.name[:2]}` (or --clear)")
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{notebook.name}: its code cells were not executed once each, top to bottom")
    errors = [i for i, cell in enumerate(code) for out in cell.outputs if out.output_type == "error"]
    assert not errors, f"{notebook.name}: code cells {errors} end in an error"


def _build_notebooks():
    spec = importlib.util.spec_from_file_location("build_notebooks", LESSONS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_notebooks_runs_a_lesson_in_full_and_records_it(tmp_path, monkeypatch):
    """build() executes a script's cells in a fresh kernel with MINIRCNN_FAST unset (even when the caller has it
    set) and without progress bars, and writes the notebook with outputs and its build metadata; --clear writes it
    without either."""
    builder = _build_notebooks()
    monkeypatch.setenv("MINIRCNN_FAST", "1")
    script = tmp_path / "99_probe.py"
    script.write_text("# %% [markdown]\n# A probe.\n\n# %%\nimport os\nfrom tqdm import tqdm\n"
                      "for _ in tqdm(range(3), desc='a bar'):\n    pass\nprint('fast:', os.environ.get('MINIRCNN_FAST'))\n")
    builder.build(script)
    nb = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    assert nb.metadata["minircnn"]["build"] == "full"
    assert [out.get("text") for out in nb.cells[1].outputs] == ["fast: None\n"]     # no progress bar
    assert nb.cells[1].execution_count == 1
    assert os.environ["MINIRCNN_FAST"] == "1"                # the caller's environment is restored
    builder.build(script, execute=False)
    nb = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    assert "minircnn" not in nb.metadata and not nb.cells[1].outputs


def test_build_notebooks_picks_lessons_by_number():
    builder = _build_notebooks()
    assert [p.name[:2] for p in builder.lesson_scripts(["20", "2", "02"])] == ["20", "02"]
    assert len(builder.lesson_scripts()) == len(SCRIPTS)
    with pytest.raises(SystemExit, match="no lesson numbered 98"):
        builder.lesson_scripts(["98"])


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
