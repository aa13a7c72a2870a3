"""Local response normalisation: ``lrn_forward`` / ``lrn_backward`` (minircnn/functional/lrn.py), Caffe's LRN across
channels as in CaffeNet (norm1, norm2 after the pools) and VGG_CNN_M_1024 (before the pools, k = 2).

Every test takes the layer from the ``F`` fixture, so ``pytest tests/functional/test_lrn.py --impl my_layers.py``
checks your own implementation against the same statements.
"""
import numpy as np
import pytest

from minircnn.backend import asnumpy
from minircnn.functional.naive import lrn_forward_naive
from minircnn.gradcheck import EXACT_ATOL, check_backward


def assert_exact(actual, expected):
    np.testing.assert_allclose(asnumpy(actual), np.asarray(expected, dtype=np.float64), rtol=0, atol=EXACT_ATOL)


def pixel(values):
    """A (1, C, 1, 1) input: one pixel with the given channel values."""
    return np.asarray(values, dtype=np.float64).reshape(1, -1, 1, 1)


# ---------------------------------------------------------------------------------------------- known values

def test_lrn_forward_known_values_window_of_3(F, xp):
    """One pixel with channels x = [1, 2, 3], local_size 3, alpha 3 (so alpha / size = 1), beta 1, k 1.

    Each channel's window is itself and its neighbours; the channel ends see a zero beyond the edge:
        scale = 1 + [1 + 4, 1 + 4 + 9, 4 + 9] = [6, 15, 14]
        y = x / scale = [1/6, 2/15, 3/14]
    """
    y, _ = F.lrn_forward(xp.asarray(pixel([1, 2, 3])), local_size=3, alpha=3.0, beta=1.0, k=1.0)
    assert_exact(y, pixel([1 / 6, 2 / 15, 3 / 14]))


def test_lrn_forward_divides_alpha_by_local_size(F, xp):
    """Caffe divides alpha by local_size. With x = [1, 2, 3], local_size 5, alpha 5, beta 1, k 1 every window holds
    all three channels: scale = 1 + (5 / 5) * 14 = 15 and y = x / 15. Without the division the scale would be 71."""
    y, _ = F.lrn_forward(xp.asarray(pixel([1, 2, 3])), local_size=5, alpha=5.0, beta=1.0, k=1.0)
    assert_exact(y, pixel([1 / 15, 2 / 15, 3 / 15]))


def test_lrn_forward_known_values_beta_and_k(F, xp):
    """k other than 1 (VGG_CNN_M uses k = 2) and a fractional beta: x = [2, 0], local_size 1 (each channel alone),
    alpha 3, beta 0.5, k 2: scale = [2 + 3 * 4, 2] = [14, 2], y = [2 / sqrt(14), 0]."""
    y, _ = F.lrn_forward(xp.asarray(pixel([2, 0])), local_size=1, alpha=3.0, beta=0.5, k=2.0)
    assert_exact(y, pixel([2 / np.sqrt(14), 0]))


def test_lrn_backward_known_values(F, xp):
    """x = [1, 2, 3], local_size 3, alpha 3, beta 1, k 1 (scale = [6, 15, 14]) and dy = [1, 0, 0]: only
    y0 = x0 / (1 + x0^2 + x1^2) matters, so dx is its gradient:
        dx0 = (s0 - 2 x0^2) / s0^2 = (6 - 2) / 36 = 1/9
        dx1 = -2 x0 x1 / s0^2 = -4 / 36 = -1/9
        dx2 = 0          (channel 2 lies outside channel 0's window)
    """
    _, cache = F.lrn_forward(xp.asarray(pixel([1, 2, 3])), local_size=3, alpha=3.0, beta=1.0, k=1.0)
    dx = F.lrn_backward(xp.asarray(pixel([1, 0, 0])), cache)
    assert_exact(dx, pixel([1 / 9, -1 / 9, 0]))


# (N, C, H, W, local_size, alpha, beta, k): windows wider than the channel count, the two models' settings
# (alpha made larger so that the normalisation is far from the identity and its gradient is tested in earnest).
CASES = [
    pytest.param((2, 7, 3, 4, 5, 1.0, 0.75, 1.0), id="caffenet-like"),
    pytest.param((1, 6, 2, 3, 5, 2.5, 0.75, 2.0), id="vgg-cnn-m-like-k2"),
    pytest.param((2, 2, 3, 2, 5, 1.0, 0.75, 1.0), id="fewer-channels-than-window"),
    pytest.param((1, 1, 2, 2, 3, 1.0, 0.5, 1.0), id="one-channel"),
    pytest.param((1, 9, 1, 2, 7, 0.5, 1.5, 0.5), id="size7-beta1.5"),
]


@pytest.mark.parametrize("case", CASES)
def test_lrn_forward_matches_loops(F, xp, case):
    """The vectorised layer computes Caffe's formula one activation at a time (``lrn_forward_naive``), for every
    shape and setting in CASES."""
    n, c, h, w, size, alpha, beta, k = case
    x = np.random.default_rng(0).standard_normal((n, c, h, w)) * 2
    y, _ = F.lrn_forward(xp.asarray(x), local_size=size, alpha=alpha, beta=beta, k=k)
    np.testing.assert_allclose(asnumpy(y), lrn_forward_naive(x, size, alpha, beta, k), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_lrn_gradients(F, xp, case):
    """dx from lrn_backward matches centred finite differences of sum(y * dy) (float64). LRN is smooth (k > 0), so
    any input works."""
    n, c, h, w, size, alpha, beta, k = case
    x = xp.asarray(np.random.default_rng(1).standard_normal((n, c, h, w)) * 2)
    check_backward(F.lrn_forward, F.lrn_backward, (x,), wrt=(0,),
                   kwargs=dict(local_size=size, alpha=alpha, beta=beta, k=k))


def test_lrn_pixels_and_images_are_independent(F, xp):
    """The window runs over channels only: normalising one pixel of one image alone gives the same numbers."""
    x = np.random.default_rng(2).standard_normal((2, 6, 3, 3))
    y, _ = F.lrn_forward(xp.asarray(x), local_size=5, alpha=1.0, beta=0.75, k=1.0)
    y_one, _ = F.lrn_forward(xp.asarray(x[1:2, :, 2:3, 0:1].copy()), local_size=5, alpha=1.0, beta=0.75, k=1.0)
    np.testing.assert_allclose(asnumpy(y)[1:2, :, 2:3, 0:1], asnumpy(y_one), rtol=1e-14, atol=0)


def test_lrn_keeps_float32(F, xp):
    """float32 stays float32 through forward and backward; the caffenet setting (alpha 1e-4) at activation sizes
    of a few hundred agrees with the float64 result to float32 precision."""
    x = np.random.default_rng(3).standard_normal((1, 96, 4, 5)) * 300
    y32, cache = F.lrn_forward(xp.asarray(x.astype(np.float32)), local_size=5, alpha=1e-4, beta=0.75, k=1.0)
    assert y32.dtype == np.float32
    assert F.lrn_backward(xp.ones(y32.shape, dtype=xp.float32), cache).dtype == np.float32
    np.testing.assert_allclose(asnumpy(y32), lrn_forward_naive(x, 5, 1e-4, 0.75, 1.0), rtol=1e-5, atol=1e-4)


@pytest.mark.validation
@pytest.mark.parametrize("x, kwargs, match", [
    (np.zeros((2, 3, 4)), {}, r"\bx\b"),                                     # 3-D
    (np.zeros((1, 3, 2, 2), dtype=np.int64), {}, r"floating"),
    (np.zeros((1, 3, 2, 2)), dict(local_size=4), r"odd"),                    # Caffe supports odd sizes only
    (np.zeros((1, 3, 2, 2)), dict(local_size=0), r"local_size"),
    (np.zeros((1, 3, 2, 2)), dict(k=0.0), r"k > 0"),
    (np.zeros((1, 3, 2, 2)), dict(alpha=-1.0), r"alpha"),
])
def test_lrn_forward_rejects_bad_input(F, x, kwargs, match):
    """Bad arguments raise ValueError naming what is wrong."""
    with pytest.raises(ValueError, match=match):
        F.lrn_forward(x, **kwargs)


@pytest.mark.validation
def test_lrn_backward_rejects_wrong_dy_shape(F):
    """lrn_backward raises ValueError naming dy when dy does not have the input's shape."""
    _, cache = F.lrn_forward(np.ones((1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"\bdy\b"):
        F.lrn_backward(np.ones((1, 3, 2, 3)), cache)
