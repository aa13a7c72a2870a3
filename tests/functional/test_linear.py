"""Fully connected layer: ``linear_forward`` / ``linear_backward`` (minircnn/functional/linear.py).

``y = x W^T + b`` with W stored (out, in) like Caffe and torchvision. Every test takes the layer from the ``F``
fixture, so ``pytest tests/functional/test_linear.py --impl my_layers.py`` checks your own implementation.
"""
import numpy as np
import pytest

from minircnn.backend import asnumpy
from minircnn.gradcheck import EXACT_ATOL, check_backward


def assert_exact(actual, expected):
    """Hand-computed float64 numbers must come out exactly (up to EXACT_ATOL)."""
    np.testing.assert_allclose(asnumpy(actual), np.asarray(expected, dtype=np.float64), rtol=0, atol=EXACT_ATOL)


# ------------------------------------------------------------------------------------------- known values

def test_linear_known_values(F, xp):
    """Each output is a dot product of the input row with a row of W, plus the bias.

    x = [[1, 2, 3], [4, 5, 6]], W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -1]:
        y[0] = [1 - 3 + 0.5, 2 + 2 - 1] = [-1.5, 3]
        y[1] = [4 - 6 + 0.5, 8 + 5 - 1] = [-1.5, 12]
    Backward with dy = [[1, 0], [0, 1]] (the identity):
        dx = dy W = W = [[1, 0, -1], [2, 1, 0]],  dW = dy^T x = x = [[1, 2, 3], [4, 5, 6]],  db = [1, 1]
    """
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    w = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    y, cache = F.linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray([0.5, -1.0]))
    assert_exact(y, [[-1.5, 3.0], [-1.5, 12.0]])
    dx, dw, db = F.linear_backward(xp.asarray(np.eye(2)), cache)
    assert_exact(dx, [[1, 0, -1], [2, 1, 0]])
    assert_exact(dw, [[1, 2, 3], [4, 5, 6]])
    assert_exact(db, [1, 1])


def test_linear_flattens_nchw_like_caffe_inner_product(F, xp):
    """An (N, C, H, W) input is flattened per row in (c, h, w) order, as Caffe's InnerProduct does with the RoI-pool
    output before fc6; dx comes back in the input's (N, C, H, W) shape.

    x[0] has channel 0 = [[1, 2]] and channel 1 = [[3, 4]] (C=2, H=1, W=2), so its flat row is [1, 2, 3, 4].
    With W = [[1, 10, 100, 1000]] and b = 0 the output reads the digits back: y[0] = 1 + 20 + 300 + 4000 = 4321.
    x[1] = 0 gives y[1] = 0. With dy = [[1], [2]], dx[n] = dy[n] * W reshaped:
        dx[0] = [[[1, 10]], [[100, 1000]]],  dx[1] = [[[2, 20]], [[200, 2000]]]
    """
    x = np.zeros((2, 2, 1, 2))
    x[0] = [[[1.0, 2.0]], [[3.0, 4.0]]]
    w = np.array([[1.0, 10.0, 100.0, 1000.0]])
    y, cache = F.linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray([0.0]))
    assert_exact(y, [[4321.0], [0.0]])
    dx, dw, db = F.linear_backward(xp.asarray([[1.0], [2.0]]), cache)
    assert dx.shape == (2, 2, 1, 2)
    assert_exact(dx, [[[[1, 10]], [[100, 1000]]], [[[2, 20]], [[200, 2000]]]])
    assert_exact(dw, [[1, 2, 3, 4]])             # dy^T x_flat = 1 * [1, 2, 3, 4] + 2 * [0, 0, 0, 0]
    assert_exact(db, [3])


def test_linear_nchw_equals_flattened_input(F, xp):
    """Feeding (N, C, H, W) gives the same y, dW and db as feeding x.reshape(N, -1); dx differs only by its shape."""
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4, 2, 3)), rng.standard_normal((5, 24)), rng.standard_normal(5)
    dy = xp.asarray(rng.standard_normal((3, 5)))
    y4, cache4 = F.linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    y2, cache2 = F.linear_forward(xp.asarray(x.reshape(3, -1)), xp.asarray(w), xp.asarray(b))
    np.testing.assert_allclose(asnumpy(y4), asnumpy(y2), rtol=1e-12, atol=1e-12)
    dx4, dw4, db4 = F.linear_backward(dy, cache4)
    dx2, dw2, db2 = F.linear_backward(dy, cache2)
    assert dx4.shape == x.shape and dx2.shape == (3, 24)
    for a, b_ in ((asnumpy(dx4).reshape(3, -1), dx2), (dw4, dw2), (db4, db2)):
        np.testing.assert_allclose(asnumpy(a), asnumpy(b_), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------- gradient checks

@pytest.mark.parametrize("x_shape, out", [
    pytest.param((3, 5), 4, id="2d"),
    pytest.param((1, 7), 3, id="single-row"),
    pytest.param((2, 3, 2, 2), 5, id="nchw"),
])
def test_linear_gradients(F, xp, x_shape, out):
    """dx, dW and db from linear_backward match centred finite differences of sum(y * dy) (float64), also for an
    (N, C, H, W) input."""
    rng = np.random.default_rng(1)
    n_in = int(np.prod(x_shape[1:]))
    x, w, b = (xp.asarray(a) for a in (rng.standard_normal(x_shape), rng.standard_normal((out, n_in)),
                                       rng.standard_normal(out)))
    check_backward(F.linear_forward, F.linear_backward, (x, w, b), wrt=(0, 1, 2))


def test_linear_keeps_float32(F, xp):
    """float32 stays float32 through forward and backward; the gradients have the shapes of x, W and b."""
    rng = np.random.default_rng(2)
    x, w, b = (xp.asarray(a.astype(np.float32)) for a in (rng.standard_normal((4, 2, 3)),
                                                          rng.standard_normal((5, 6)), rng.standard_normal(5)))
    y, cache = F.linear_forward(x, w, b)
    assert y.shape == (4, 5) and y.dtype == np.float32
    grads = F.linear_backward(xp.ones((4, 5), dtype=xp.float32), cache)
    assert [g.dtype for g in grads] == [np.float32] * 3
    assert [g.shape for g in grads] == [x.shape, w.shape, b.shape]


# ---------------------------------------------------------------------------------------------- bad input

def _good():
    return np.zeros((2, 6)), np.zeros((4, 6)), np.zeros(4)


@pytest.mark.validation
@pytest.mark.parametrize("make, match", [
    (lambda x, w, b: (x[0], w, b), r"\bx\b"),                                 # 1-D x: no batch axis
    (lambda x, w, b: (x, w[0], b), r"\bw\b"),                                 # 1-D w
    (lambda x, w, b: (x, w[None], b), r"\bw\b"),                              # 3-D w
    (lambda x, w, b: (x, w, b[None]), r"\bb\b"),                              # 2-D b
    (lambda x, w, b: (x[:, :5], w, b), r"\bx\b.*features"),                   # 5 inputs for a 6-input layer
    (lambda x, w, b: (x.reshape(2, 2, 3)[:, :1], w, b), r"\bx\b.*features"),  # (N, 1, 3) flattens to 3, not 6
    (lambda x, w, b: (x, w, b[:3]), r"\bb\b"),                                # 3 biases for 4 outputs
    (lambda x, w, b: (x.astype(np.float32), w, b), r"dtype"),                 # float32 x, float64 W
    (lambda x, w, b: (x, w, b.astype(np.float32)), r"dtype"),
    (lambda x, w, b: (x.astype(np.int64), w.astype(np.int64), b.astype(np.int64)), r"\bx\b.*floating"),
])
def test_linear_forward_rejects_bad_input(F, make, match):
    """Bad arguments raise ValueError naming the argument: wrong ndim, a feature count that does not match W's
    (out, in), a bias of the wrong length, mixed dtypes or an integer input."""
    with pytest.raises(ValueError, match=match):
        F.linear_forward(*make(*_good()))


@pytest.mark.validation
def test_linear_backward_rejects_wrong_dy_shape(F):
    """linear_backward raises ValueError naming dy when dy is not (N, out)."""
    _, cache = F.linear_forward(*_good())
    for bad in (np.zeros((2, 3)), np.zeros((3, 4)), np.zeros(8)):
        with pytest.raises(ValueError, match=r"\bdy\b"):
            F.linear_backward(bad, cache)
