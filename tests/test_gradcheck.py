"""The gradient-checking helpers themselves: they must pass correct gradients and catch wrong ones."""
import numpy as np
import pytest

from minircnn import gradcheck
from minircnn.functional import relu_backward, relu_forward


def test_rel_error_known_values():
    """Normwise: max|a - b| / max(max|a|, max|b|) = 0.2 / 2.2; identical arrays and two zero arrays give 0."""
    assert gradcheck.rel_error([1.0, 2.0], [1.0, 2.2]) == pytest.approx(0.2 / 2.2)
    assert gradcheck.rel_error([3.0], [3.0]) == 0.0
    assert gradcheck.rel_error(np.zeros(3), np.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        gradcheck.rel_error(np.zeros(2), np.zeros(3))


def test_numerical_gradient_of_a_square():
    """d/dx sum(x^2) = 2x; the centred difference is exact for quadratics up to round-off."""
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    g = gradcheck.numerical_gradient(lambda: float((x ** 2).sum()), x)
    np.testing.assert_allclose(g, 2 * x, rtol=1e-8)
    np.testing.assert_array_equal(x, [[1.0, -2.0], [0.5, 3.0]])  # restored after perturbing


def test_check_backward_passes_a_correct_layer():
    """ReLU's backward agrees with numerical derivatives (inputs kept 0.1 or more away from the kink at 0)."""
    x = np.array([[-1.0, 0.5], [2.0, -0.1]])
    assert gradcheck.check_backward(relu_forward, relu_backward, [x], [0])[0] < gradcheck.GRAD_RTOL


def test_check_backward_catches_a_wrong_layer():
    """A backward that lets the gradient through where x < 0 is caught."""
    x = np.array([[-1.0, 0.5], [2.0, -0.3]])
    with pytest.raises(AssertionError, match="gradient of argument 0 is off"):
        gradcheck.check_backward(relu_forward, lambda dy, cache: dy, [x], [0])


def test_tie_free_values_are_distinct_and_far_apart():
    """tie_free gives every element a different value, spaced (high - low) / (n - 1) apart."""
    a = gradcheck.tie_free((3, 4), np.random.default_rng(0))
    diffs = np.diff(np.sort(a.ravel()))
    assert a.shape == (3, 4) and diffs.min() == pytest.approx(2 / 11)
