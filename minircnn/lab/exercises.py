"""Running the exercise tests on a learner's code from inside a lesson (README, "Exercises").

A lesson shows how the tests judge an implementation: it writes the source to a temporary file and runs
``python -m pytest TESTS --impl FILE`` from the source checkout, then prints the lines that matter: which functions
came from the file, the failed tests, and the summary.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def tests_available(tests: str) -> bool:
    """Whether ``tests`` (a path relative to the checkout, e.g. ``tests/rpn``) is next to this installation."""
    return (REPO / tests).exists()


def run_exercise_tests(source: str, tests: str, *pytest_args: str, name: str = "my_impl.py") -> int:
    """Run the tests ``tests`` on ``source`` in exercise mode and print the summary lines.

    Args:
        source: the learner's Python code (dedented here).
        tests: test file or folder, relative to the checkout (e.g. ``tests/functional``).
        *pytest_args: more pytest arguments, e.g. ``"-k", "relu and not rejects"``.
        name: the temporary file's name.

    Returns:
        pytest's exit status (0: every selected test passed).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(textwrap.dedent(source))
        result = subprocess.run([sys.executable, "-m", "pytest", tests, "--impl", str(path), "-p",
                                 "no:cacheprovider", *pytest_args], cwd=REPO, capture_output=True, text=True)
    lines = result.stdout.splitlines()
    print("\n".join([line for line in lines if "provides" in line or line.startswith("FAILED")] + lines[-1:]))
    return result.returncode
