"""The multi-task loss pieces: softmax log loss (mean over RoIs) and smooth L1 (sum / number of RoIs), docs/reference.md
§3."""
import math

import numpy as np
import pytest

from minircnn.backend import asnumpy
from minircnn.gradcheck import EXACT_ATOL, check_loss_gradient


def test_softmax_cross_entropy_known_values(F, xp):
    """Two equal scores: p = 1/2, so the loss is log 2 and the gradient is (p - onehot) / N = (-1/2, 1/2) for one row;
    with two rows the loss is still log 2 (a mean) and each row's gradient halves."""
    loss, d = F.softmax_cross_entropy(xp.zeros((1, 2)), xp.asarray([0]))
    assert abs(loss - math.log(2)) < EXACT_ATOL
    np.testing.assert_allclose(asnumpy(d), [[-0.5, 0.5]], atol=EXACT_ATOL)
    loss, d = F.softmax_cross_entropy(xp.zeros((2, 2)), xp.asarray([0, 1]))
    assert abs(loss - math.log(2)) < EXACT_ATOL
    np.testing.assert_allclose(asnumpy(d), [[-0.25, 0.25], [0.25, -0.25]], atol=EXACT_ATOL)


def test_softmax_cross_entropy_is_stable_for_huge_scores(F, xp):
    """Scores of 1000 do not overflow: the loss is 0 for the winning label and 1000 for the other."""
    scores = xp.asarray([[1000.0, 0.0]])
    assert F.softmax_cross_entropy(scores, xp.asarray([0]))[0] == pytest.approx(0.0, abs=1e-12)
    loss, d = F.softmax_cross_entropy(scores, xp.asarray([1]))
    assert loss == pytest.approx(1000.0)
    np.testing.assert_allclose(asnumpy(d), [[1.0, -1.0]], atol=1e-12)


def test_softmax_cross_entropy_gradient(F, xp):
    """Float64 gradient check over 5 RoIs and 4 classes."""
    rng = np.random.default_rng(0)
    scores = xp.asarray(rng.standard_normal((5, 4)))
    labels = xp.asarray(rng.integers(0, 4, 5))
    check_loss_gradient(F.softmax_cross_entropy, [scores, labels])


@pytest.mark.validation
@pytest.mark.parametrize("scores, labels, message", [
    (np.zeros((2, 3)), np.array([0, 3]), r"labels must lie in \[0, 3\)"),
    (np.zeros((2, 3)), np.array([0]), r"labels must have shape \(2,\)"),
    (np.zeros((2, 3)), np.array([0.0, 1.0]), "labels must be integers"),
    (np.zeros(3), np.array([0]), r"scores must have shape \(N, K\)"),
    (np.array([[0.0, np.nan]]), np.array([0]), "scores contains NaN"),
    (np.zeros((0, 3)), np.zeros(0, dtype=int), "no rows"),
])
def test_softmax_cross_entropy_bad_input(F, scores, labels, message):
    """Bad labels or scores raise a ValueError naming the argument."""
    with pytest.raises(ValueError, match=message):
        F.softmax_cross_entropy(scores, labels)


def test_smooth_l1_known_values(F, xp):
    """d = 0.5 is in the quadratic zone: 0.5 * 0.25 = 0.125, gradient 0.5; d = 3 is linear: 3 - 0.5 = 2.5, gradient 1;
    d = -2: 1.5, gradient -1. One row, so the loss is the sum, 4.125."""
    pred = xp.asarray([[0.5, 3.0, -2.0]])
    loss, d = F.smooth_l1_loss(pred, xp.zeros((1, 3)), xp.ones((1, 3)))
    assert loss == pytest.approx(4.125, abs=EXACT_ATOL)
    np.testing.assert_allclose(asnumpy(d), [[0.5, 1.0, -1.0]], atol=EXACT_ATOL)


def test_smooth_l1_divides_by_rows_and_respects_weights(F, xp):
    """Two rows, only the first row's first column weighted: loss = f(2)/2 = 1.5/2 = 0.75, gradient 1/2 there and 0
    elsewhere (background RoIs and other classes' columns add nothing, yet still count in the divisor)."""
    pred = xp.asarray([[2.0, 5.0], [7.0, -3.0]])
    weights = xp.asarray([[1.0, 0.0], [0.0, 0.0]])
    loss, d = F.smooth_l1_loss(pred, xp.zeros((2, 2)), weights)
    assert loss == pytest.approx(0.75, abs=EXACT_ATOL)
    np.testing.assert_allclose(asnumpy(d), [[0.5, 0.0], [0.0, 0.0]], atol=EXACT_ATOL)


def test_smooth_l1_sigma(F, xp):
    """sigma = 3 moves the switch to |d| = 1/9: d = 0.1 gives 0.5 * 9 * 0.01 = 0.045 (gradient 9 * 0.1 = 0.9),
    d = 1 gives 1 - 0.5/9 (gradient 1)."""
    loss, d = F.smooth_l1_loss(xp.asarray([[0.1, 1.0]]), xp.zeros((1, 2)), xp.ones((1, 2)), sigma=3.0)
    assert loss == pytest.approx(0.045 + 1 - 0.5 / 9, abs=EXACT_ATOL)
    np.testing.assert_allclose(asnumpy(d), [[0.9, 1.0]], atol=EXACT_ATOL)


def test_smooth_l1_gradient(F, xp):
    """Float64 gradient check with weights; differences stay at least 0.1 away from the kink at |d| = 1 (there the
    function has no second derivative and a finite difference would straddle both pieces)."""
    rng = np.random.default_rng(1)
    d = rng.uniform(0.1, 0.9, (4, 8)) * rng.choice([-1, 1], (4, 8))
    d[:, ::2] *= 3  # half of them in the linear zone
    target = rng.standard_normal((4, 8))
    weights = (rng.random((4, 8)) < 0.6).astype(float)
    pred = xp.asarray(target + d)
    check_loss_gradient(F.smooth_l1_loss, [pred, xp.asarray(target), xp.asarray(weights)])


@pytest.mark.validation
def test_smooth_l1_bad_input(F):
    """Shape mismatches and a non-positive sigma raise a ValueError naming the argument."""
    with pytest.raises(ValueError, match="target must have the shape of pred"):
        F.smooth_l1_loss(np.zeros((2, 4)), np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="weights must have the shape of pred"):
        F.smooth_l1_loss(np.zeros((2, 4)), np.zeros((2, 4)), np.zeros((4,)))
    with pytest.raises(ValueError, match="sigma"):
        F.smooth_l1_loss(np.zeros((2, 4)), np.zeros((2, 4)), np.zeros((2, 4)), sigma=0)
