"""ReLU and inverted dropout: ``relu_forward`` / ``relu_backward``, ``dropout_forward`` / ``dropout_backward``
(minircnn/functional/activations.py).

Every test takes the layer from the ``F`` fixture, so ``pytest tests/functional/test_activations.py --impl
my_layers.py`` checks your own implementation. The tests never look inside a cache: your forward may return any
cache your backward understands.
"""
import numpy as np
import pytest

from minircnn.backend import asnumpy
from minircnn.gradcheck import EXACT_ATOL, check_backward


def assert_exact(actual, expected):
    """Hand-computed float64 numbers must come out exactly (up to EXACT_ATOL)."""
    np.testing.assert_allclose(asnumpy(actual), np.asarray(expected, dtype=np.float64), rtol=0, atol=EXACT_ATOL)


def generator(xp, seed):
    """A seeded random generator of the array library: numpy.random.Generator, or CuPy's for CuPy arrays."""
    return xp.random.default_rng(seed)


# ------------------------------------------------------------------------------------------------------ ReLU

def test_relu_known_values(F, xp):
    """ReLU keeps positive inputs and zeroes the rest; the gradient passes only where the input was positive.

    x  = [-2, -0.5, 0, 0.5, 3]  ->  y = [0, 0, 0, 0.5, 3]
    dy = [ 1,  2,   3, 4,   5]  -> dx = [0, 0, 0, 4, 5]   (at x = 0 exactly the gradient is taken as 0, like Caffe)
    The input array itself is left unchanged.
    """
    x_np = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    x = xp.asarray(x_np)
    y, cache = F.relu_forward(x)
    assert_exact(y, [[0, 0, 0, 0.5, 3]])
    assert_exact(x, x_np)
    dx = F.relu_backward(xp.asarray([[1.0, 2.0, 3.0, 4.0, 5.0]]), cache)
    assert_exact(dx, [[0, 0, 0, 4, 5]])


def test_relu_gradient(F, xp):
    """dx from relu_backward matches centred finite differences of sum(y * dy) (float64).

    Why the inputs stay away from 0: ReLU has a kink at 0. For |x| < h (the step, 1e-6) the centred difference
    (relu(x+h) - relu(x-h)) / 2h straddles both pieces and gives something between 0 and 1, whatever the layer
    does. Magnitudes of at least 0.1 keep every numerical derivative on one side of the kink.
    """
    rng = np.random.default_rng(0)
    shape = (2, 3, 4, 5)
    x = rng.choice([-1.0, 1.0], size=shape) * (0.1 + rng.random(shape))
    check_backward(F.relu_forward, F.relu_backward, (xp.asarray(x),), wrt=(0,))


def test_relu_keeps_shape_and_float32(F, xp):
    """ReLU works on any shape; y and dx have the input's shape and float32 stays float32."""
    x = xp.asarray(np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32))
    y, cache = F.relu_forward(x)
    assert y.shape == x.shape and y.dtype == np.float32
    dx = F.relu_backward(xp.ones(x.shape, dtype=xp.float32), cache)
    assert dx.shape == x.shape and dx.dtype == np.float32


@pytest.mark.validation
@pytest.mark.parametrize("x, match", [
    (np.array([1, -2, 3]), r"\bx\b.*floating"),     # integers: the gradient would be truncated
    ([1.0, -2.0, 3.0], r"\bx\b"),                    # a list, not an array
])
def test_relu_forward_rejects_bad_input(F, x, match):
    """relu_forward raises ValueError naming x for a non-array or non-floating input."""
    with pytest.raises(ValueError, match=match):
        F.relu_forward(x)


@pytest.mark.validation
def test_relu_backward_rejects_wrong_dy_shape(F):
    """relu_backward raises ValueError naming dy when dy does not have the forward input's shape (even when the
    shapes would broadcast)."""
    _, cache = F.relu_forward(np.ones((2, 3)))
    for bad in (np.ones((2, 4)), np.ones((1, 3)), np.ones(3)):
        with pytest.raises(ValueError, match=r"\bdy\b"):
            F.relu_backward(bad, cache)


# --------------------------------------------------------------------------------------------------- dropout

def test_dropout_is_identity_at_test_time(F, xp):
    """With train=False dropout passes x through unchanged (inverted dropout already scaled at train time) and
    the gradient through unchanged."""
    x_np = np.random.default_rng(0).standard_normal((3, 7))
    dy_np = np.random.default_rng(1).standard_normal((3, 7))
    y, cache = F.dropout_forward(xp.asarray(x_np), p=0.5, train=False, rng=generator(xp, 0))
    assert_exact(y, x_np)
    assert_exact(F.dropout_backward(xp.asarray(dy_np), cache), dy_np)


def test_dropout_with_p_zero_is_identity(F, xp):
    """p = 0 drops nothing and scales by 1/(1 - 0) = 1: the identity even at train time."""
    x_np = np.random.default_rng(2).standard_normal((4, 5))
    y, cache = F.dropout_forward(xp.asarray(x_np), p=0.0, train=True, rng=generator(xp, 0))
    assert_exact(y, x_np)
    assert_exact(F.dropout_backward(xp.ones((4, 5)), cache), np.ones((4, 5)))


def test_dropout_scales_kept_units_and_reuses_the_mask(F, xp):
    """At train time every unit is either dropped (0) or kept and scaled by 1/(1-p); with p = 0.25 a kept unit
    becomes x / 0.75 = 4x/3. The backward drops and scales the very same units: dx = dy / 0.75 where kept, else 0.

    x is kept in [1, 2) so a 0 in y can only mean "dropped".
    """
    p, shape = 0.25, (20, 30)
    rng = np.random.default_rng(3)
    x_np, dy_np = 1.0 + rng.random(shape), rng.standard_normal(shape)
    y, cache = F.dropout_forward(xp.asarray(x_np), p=p, train=True, rng=generator(xp, 4))
    dx = asnumpy(F.dropout_backward(xp.asarray(dy_np), cache))
    y = asnumpy(y)
    kept = y != 0
    assert 0 < kept.sum() < kept.size                       # both kinds occur among 600 units
    np.testing.assert_allclose(y[kept], x_np[kept] / (1 - p), rtol=1e-14)
    np.testing.assert_allclose(dx[kept], dy_np[kept] / (1 - p), rtol=1e-14)
    assert np.all(dx[~kept] == 0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_preserves_the_mean(F, xp, p):
    """Inverted dropout keeps the expected value: on 200,000 ones the mean of y is 1 and the dropped fraction is p,
    both up to 5 standard deviations of their sampling error (sqrt(p/(1-p)/n) and sqrt(p(1-p)/n))."""
    n = 200_000
    y, _ = F.dropout_forward(xp.ones(n), p=p, train=True, rng=generator(xp, 5))
    y = asnumpy(y)
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    assert abs((y == 0).mean() - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_dropout_is_reproducible_with_the_same_generator(F, xp):
    """Two generators with the same seed give the same mask; a different seed gives a different one."""
    x = xp.asarray(np.random.default_rng(6).standard_normal((8, 16)))
    y1, _ = F.dropout_forward(x, p=0.5, train=True, rng=generator(xp, 42))
    y2, _ = F.dropout_forward(x, p=0.5, train=True, rng=generator(xp, 42))
    y3, _ = F.dropout_forward(x, p=0.5, train=True, rng=generator(xp, 43))
    assert np.array_equal(asnumpy(y1), asnumpy(y2))
    assert not np.array_equal(asnumpy(y1), asnumpy(y3))


def test_dropout_gradient_at_train_time(F, xp):
    """dx from dropout_backward matches centred finite differences of sum(y * dy) at train=True (float64).

    Dropout is random, so the numerical derivative only makes sense if every forward call drops the same units:
    each call gets a fresh generator with the same seed, which fixes the mask. With a fixed mask the layer is linear,
    y = x * mask, and its gradient is dy * mask.
    """
    x = xp.asarray(np.random.default_rng(7).standard_normal((4, 5, 3)))

    def forward(x):
        return F.dropout_forward(x, p=0.3, train=True, rng=generator(xp, 8))

    check_backward(forward, F.dropout_backward, (x,), wrt=(0,))


@pytest.mark.validation
@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_p_outside_0_1(F, p):
    """p must lie in [0, 1): ValueError naming p (p = 1 would drop everything and divide by zero)."""
    with pytest.raises(ValueError, match=r"\bp\b"):
        F.dropout_forward(np.ones((2, 3)), p=p, train=True, rng=np.random.default_rng(0))


@pytest.mark.validation
def test_dropout_rejects_bad_input(F):
    """A non-floating x, or a dy whose shape is not the input's (at train and at test time), raises ValueError
    naming the argument."""
    with pytest.raises(ValueError, match=r"\bx\b"):
        F.dropout_forward(np.ones((2, 3), dtype=np.int64), p=0.5, train=True, rng=np.random.default_rng(0))
    for train in (True, False):
        _, cache = F.dropout_forward(np.ones((2, 3)), p=0.5, train=train, rng=np.random.default_rng(0))
        with pytest.raises(ValueError, match=r"\bdy\b"):
            F.dropout_backward(np.ones((3, 2)), cache)
