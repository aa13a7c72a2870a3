"""Exercise mode: `pytest tests/functional --impl my_layers.py` tests a learner's own layers."""
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pytest(test_file, impl, *args):
    """Run one test file in exercise mode on the file ``impl``, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "pytest", str(test_file), "--impl", str(impl),
                           "-p", "no:cacheprovider", *args], capture_output=True, text=True, cwd=ROOT)


def _run_layer_tests(impl, test_file, tmp_path, *args):
    path = tmp_path / "my_layers.py"
    path.write_text(textwrap.dedent(impl))
    return _pytest(ROOT / "tests" / "functional" / test_file, path, *args)


def test_a_wrong_backward_fails_the_gradient_check(tmp_path):
    """A linear_backward whose bias gradient averages instead of summing over rows is caught by the gradient check;
    the run's header says the learner's file provided linear_backward, and its summary names the failed check."""
    result = _run_layer_tests("""
        def linear_backward(dy, cache):
            x, w = cache.x, cache.w
            return (dy @ w).reshape(cache.x_shape), dy.T @ x, dy.mean(axis=0)   # bug: db must be a sum
        """, "test_linear.py", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "provides linear_backward" in result.stdout
    assert "gradient of argument 2 is off" in result.stdout
    summary = result.stdout.split("exercise summary")[1]
    assert "linear_backward: " in summary and "failed)" in summary.split("linear_backward: ")[1].splitlines()[0]
    assert "test_linear.py::test_linear_gradients" in summary.split("    failed: ", 1)[1]


def test_a_correct_implementation_passes(tmp_path):
    """A learner's correct ReLU (without the package's input validation) passes the ReLU behaviour tests;
    functions it does not define fall back to the package."""
    result = _run_layer_tests("""
        import numpy as np

        def relu_forward(x):
            mask = x > 0
            return x * mask, mask

        def relu_backward(dy, mask):
            return dy * mask
        """, "test_activations.py", tmp_path, "-k", "relu and not rejects")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "provides relu_forward, relu_backward" in result.stdout
    summary = result.stdout.split("exercise summary")[1]
    for name in ("relu_forward", "relu_backward"):
        line = next(x for x in summary.splitlines() if x.startswith(f"{name}: "))
        ran = int(line.split(" of ")[1].split()[0])
        assert ran > 0 and line == f"{name}: {ran} of {ran} tests passed (all passed)"


CORRECT_LINEAR = """
    def linear_forward(x, w, b):
        x2 = x.reshape(x.shape[0], -1)
        return x2 @ w.T + b, (x2, w, x.shape)

    def linear_backward(dy, cache):
        x2, w, shape = cache
        return (dy @ w).reshape(shape), dy.T @ x2, dy.sum(axis=0)
    """


def test_input_validation_is_optional_in_exercise_mode(tmp_path):
    """A linear layer with the right math and no input checks passes every test of test_linear.py: the validation
    tests are left out, and the header says how to add them. With --with-validation they run, and only they fail."""
    result = _run_layer_tests(CORRECT_LINEAR, "test_linear.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "input-validation tests left out (add --with-validation" in result.stdout
    assert "deselected" in result.stdout
    result = _run_layer_tests(CORRECT_LINEAR, "test_linear.py", tmp_path, "--with-validation")
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert result.returncode == 1 and failed, result.stdout
    assert all("rejects" in line for line in failed), failed


def test_the_anchor_target_exercise_is_checked(tmp_path):
    """The anchor-target exercise (exercises/anchor_targets.py): the skeleton as shipped fails the hand-worked
    cases; a version that forgot the border rule fails exactly the border test; the run's header names the
    learner's function."""
    test_file = ROOT / "tests" / "rpn" / "test_anchor_targets.py"
    skeleton = ROOT / "exercises" / "anchor_targets.py"
    run = _pytest(test_file, skeleton)
    assert run.returncode == 1 and "NotImplementedError" in run.stdout, run.stdout + run.stderr
    assert "provides anchor_targets;" in run.stdout          # not iou or encode, which the skeleton imports

    package = (ROOT / "minircnn" / "rpn" / "targets.py").read_text().replace("from ..boxes", "from minircnn.boxes")
    no_border = package.replace("inside = np.flatnonzero(inside_image(anchors, image_size))", "inside = np.arange(m)")
    assert no_border != package
    path = tmp_path / "my_rpn.py"
    path.write_text(no_border)
    run = _pytest(test_file, path)
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "test_anchors_crossing_the_border_are_ignored" in failed[0], run.stdout


def test_the_box_exercises_are_checked(tmp_path):
    """exercises/boxes.py as shipped fails the tests of iou, encode, decode and nms (NotImplementedError), and the
    header names all four; a plain learner's answer without input checks (tests/fixtures/learner_boxes.py) passes
    every test of tests/test_boxes.py."""
    test_file = ROOT / "tests" / "test_boxes.py"
    run = _pytest(test_file, ROOT / "exercises" / "boxes.py")
    assert run.returncode == 1 and "NotImplementedError" in run.stdout, run.stdout + run.stderr
    assert "provides iou, encode, decode, nms" in run.stdout
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED")]
    assert any("test_iou" in f for f in failed) and any("test_nms" in f for f in failed)
    run = _pytest(test_file, ROOT / "tests" / "fixtures" / "learner_boxes.py")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("skeleton, test_file, functions", [
    ("sampler.py", "tests/data/test_sampler.py", "sample_rois"),
    ("voc_ap.py", "tests/evaluation/test_voc_ap.py", "voc_ap"),
    ("truncated_svd.py", "tests/inference/test_svd.py", "truncated_svd"),
])
def test_each_skeleton_fails_its_own_tests(skeleton, test_file, functions):
    """Every skeleton in exercises/ is picked up by its test file (the header names its functions) and, as shipped,
    fails the tests of those functions with NotImplementedError while the package's other tests still pass."""
    run = _pytest(ROOT / test_file, ROOT / "exercises" / skeleton)
    assert run.returncode == 1 and "NotImplementedError" in run.stdout, run.stdout + run.stderr
    assert f"provides {functions};" in run.stdout
    assert " passed" in run.stdout.splitlines()[-1]
