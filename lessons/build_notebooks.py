#!/usr/bin/env python
"""Rebuild the lesson notebooks from their scripts, with the outputs of a full run, so that a reader who opens a
lesson on the web sees its figures and numbers without running anything.

The percent-format scripts ``NN_topic.py`` are the source of every lesson. For each lesson asked for, this script
turns the script into its notebook (jupytext), executes it top to bottom in a fresh kernel with ``lessons/`` as the
working folder and ``MINIRCNN_FAST`` unset (a full run: the real dataset, the real training runs), and writes
``NN_topic.ipynb`` with its outputs. The notebook's metadata records how it was made (``minircnn.build``: full, the
date, the seconds it took). The training runs a lesson needs are cached in ``runs/lessons/``, so a rebuild after a
prose edit takes minutes; the first build of every lesson trains dozens of small detectors (hours on a laptop CPU).

Usage (from the repository root or from ``lessons/``)::

    python lessons/build_notebooks.py                 # every lesson
    python lessons/build_notebooks.py 20 02 03        # some of them, by number, in that order
    python lessons/build_notebooks.py --clear 09      # the notebook from the script, without outputs

A lesson whose run fails leaves its notebook as it was and is named at the end; the exit status is 1.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

LESSONS = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 4 * 3600          # one cell may train several detectors
KERNEL = "python3"


def lesson_scripts(numbers=None):
    """The lesson scripts ``NN_topic.py``: all of them in order, or those numbered in ``numbers``, in that order."""
    scripts = {s.name[:2]: s for s in sorted(LESSONS.glob("[0-9][0-9]_*.py"))}
    if not numbers:
        return list(scripts.values())
    wanted = list(dict.fromkeys(f"{int(n):02d}" for n in numbers))
    unknown = [n for n in wanted if n not in scripts]
    if unknown:
        raise SystemExit(f"build_notebooks: no lesson numbered {', '.join(unknown)} in {LESSONS}")
    return [scripts[n] for n in wanted]


def build(script: Path, execute: bool = True) -> float:
    """Write ``script``'s notebook beside it, executed in full (``execute``) or without outputs; returns seconds."""
    import jupytext
    from nbclient import NotebookClient
    notebook = jupytext.read(script)
    start = time.perf_counter()
    if execute:
        environment = {k: v for k, v in os.environ.items() if k != "MINIRCNN_FAST"}
        environment["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        environment["TQDM_DISABLE"] = "1"   # a saved notebook shows results; progress bars would add hundreds of lines
        saved = os.environ.copy()
        os.environ.clear()
        os.environ.update(environment)      # the kernel inherits this process's environment
        try:
            NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                           resources={"metadata": {"path": str(LESSONS)}}).execute()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        notebook.metadata["minircnn"] = {"build": "full", "date": datetime.date.today().isoformat(),
                                         "seconds": round(time.perf_counter() - start)}
    else:
        notebook.metadata.pop("minircnn", None)
    jupytext.write(notebook, script.with_suffix(".ipynb"))
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lessons", nargs="*", help="lesson numbers (default: all)")
    parser.add_argument("--clear", action="store_true", help="write the notebooks without running them")
    args = parser.parse_args(argv)
    failed = []
    for script in lesson_scripts(args.lessons):
        print(f"{script.name} ...", end=" ", flush=True)
        try:
            seconds = build(script, execute=not args.clear)
        except Exception as error:          # noqa: BLE001 -- report every failing lesson, then exit 1
            failed.append(script.name)
            print(f"FAILED: {type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error) else ''}")
            continue
        print(f"{seconds:.0f} s")
    if failed:
        print(f"build_notebooks: {len(failed)} lesson(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
