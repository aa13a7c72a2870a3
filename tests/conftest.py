"""Shared fixtures.

* ``xp``: runs a backend-generic test on NumPy and, when CuPy and a CUDA GPU are present, on CuPy (marked ``gpu``).
* ``F``: the functional layers under test. By default ``minircnn.functional``; with ``--impl my_layers.py`` every
  contract function that file defines replaces the package's (exercise mode), the rest fall back.
* ``exercise``: the same for the exercises beyond the layers (:data:`EXERCISES`, e.g. the RPN's ``anchor_targets``).

Tests marked ``validation`` check that bad input raises a clear error, which the package does and a learner's first
version need not: in exercise mode they are left out unless ``--with-validation`` is given, and the header says so.
At the end of an exercise-mode run a summary lists, for each function of the learner's file, the tests that called
it: how many passed, and which failed.
"""
import collections
import functools
import importlib.util
import pathlib
import sys
import types

import numpy as np
import pytest

import minircnn.boxes as _boxes
import minircnn.data.sampler as _sampler
import minircnn.evaluation as _evaluation
import minircnn.inference.svd as _svd
import minircnn.functional as _functional
import minircnn.rpn as _rpn
from minircnn.backend import gpu_available

#: exercises beyond the layers: function name -> the package's version
EXERCISES = {"anchor_targets": _rpn.anchor_targets, "iou": _boxes.iou, "encode": _boxes.encode,
             "decode": _boxes.decode, "nms": _boxes.nms, "voc_ap": _evaluation.voc_ap,
             "sample_rois": _sampler.sample_rois, "truncated_svd": _svd.truncated_svd}


def pytest_addoption(parser):
    parser.addoption(
        "--impl", default=None, metavar="FILE.py",
        help="exercise mode: a Python file whose functions (relu_forward, conv2d_backward, ...) replace "
             "minircnn.functional's in the layer tests; functions it does not define fall back to the package's")
    parser.addoption(
        "--with-validation", action="store_true",
        help="exercise mode: also run the input-validation tests (marked 'validation'), left out by default")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA GPU (skipped when absent)")
    config.addinivalue_line("markers", "validation: bad input raises a clear error (optional in exercise mode)")


def _validation_left_out(config):
    return bool(config.getoption("--impl")) and not config.getoption("--with-validation")


def pytest_collection_modifyitems(config, items):
    if not _validation_left_out(config):
        return
    left_out = [item for item in items if item.get_closest_marker("validation")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("validation")]


def _load_impl(path):
    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise pytest.UsageError(f"--impl: no such file {path}")
    spec = importlib.util.spec_from_file_location("learner_impl", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # registered first, so that a dataclass in the learner's file works
    spec.loader.exec_module(module)
    return module


_CURRENT_TEST = [None]                              # the nodeid of the test running now
_CALLERS = collections.defaultdict(set)             # learner's function name -> nodeids of the tests that called it
_OUTCOMES = {}                                      # nodeid -> "passed" / "failed" / "skipped"


def _recorded(name, fn):
    """``fn``, noting which test calls it (for the exercise summary)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _CURRENT_TEST[0] is not None:
            _CALLERS[name].add(_CURRENT_TEST[0])
        return fn(*args, **kwargs)
    return wrapper


def pytest_runtest_setup(item):
    _CURRENT_TEST[0] = item.nodeid


def pytest_runtest_logreport(report):
    if report.failed or report.when == "call" or report.skipped:
        if _OUTCOMES.get(report.nodeid) != "failed":            # a failed teardown after a passed call still fails
            _OUTCOMES[report.nodeid] = report.outcome


def exercise_summary(callers, outcomes):
    """Lines: for each learner function (name -> test ids that called it), its passed tests and its failed ones."""
    lines = []
    for name in sorted(callers):
        ran = sorted(callers[name])
        failed = [t for t in ran if outcomes.get(t) == "failed"]
        passed = sum(outcomes.get(t) == "passed" for t in ran)
        verdict = "all passed" if not failed else f"{len(failed)} failed"
        lines.append(f"{name}: {passed} of {len(ran)} tests passed ({verdict})")
        lines += [f"    failed: {t}" for t in failed]
    return lines


def pytest_terminal_summary(terminalreporter, config):
    if not config.getoption("--impl"):
        return
    terminalreporter.section("exercise summary: the math checks of your functions")
    lines = exercise_summary(_CALLERS, _OUTCOMES) or ["no test called a function of your file"]
    for line in lines:
        terminalreporter.write_line(line)


def _functional_namespace(impl_path, names=None):
    names = dict(names or {name: getattr(_functional, name) for name in _functional.__all__})
    overridden = []
    if impl_path:
        module = _load_impl(impl_path)
        for name in names:
            fn = getattr(module, name, None)
            # only what the file defines: a package function it imports (e.g. iou for anchor_targets) is not its own
            if callable(fn) and getattr(fn, "__module__", None) == module.__name__:
                names[name] = _recorded(name, fn)
                overridden.append(name)
    ns = types.SimpleNamespace(**names)
    ns.overridden = tuple(overridden)
    return ns


def pytest_report_header(config):
    impl = config.getoption("--impl")
    if impl:
        ns = _functional_namespace(impl)
        used = ", ".join(ns.overridden + _functional_namespace(impl, EXERCISES).overridden) \
            or "none of the contract functions"
        lines = [f"exercise mode: {impl} provides {used}; everything else is the package's"]
        if _validation_left_out(config):
            lines.append("input-validation tests left out (add --with-validation to run them)")
        return lines
    return None


@pytest.fixture(scope="session")
def F(pytestconfig):
    """The layer functions under test (minircnn.functional, or the learner's file given with --impl)."""
    return _functional_namespace(pytestconfig.getoption("--impl"))


@pytest.fixture(scope="session")
def exercise(pytestconfig):
    """The exercise functions beyond the layers (:data:`EXERCISES`): the package's, or the learner's (--impl)."""
    return _functional_namespace(pytestconfig.getoption("--impl"), EXERCISES)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module to run a backend-generic test on."""
    if request.param == "numpy":
        return np
    if not gpu_available():
        pytest.skip("gpu: CuPy with a CUDA device is not available")
    from minircnn.backend import get_xp
    return get_xp("gpu")


@pytest.fixture
def cupy():
    """The CuPy module, for tests that compare a GPU kernel with its NumPy twin (mark them ``gpu``)."""
    if not gpu_available():
        pytest.skip("gpu: CuPy with a CUDA device is not available")
    from minircnn.backend import get_xp
    return get_xp("gpu")
