"""Convolution: ``conv2d_forward`` / ``conv2d_backward`` / ``conv_output_size`` (minircnn/functional/conv.py).

Every test takes the layer from the ``F`` fixture, so ``pytest tests/functional/test_conv.py --impl my_layers.py``
checks your own implementation against the same statements.
"""
import numpy as np
import pytest

from minircnn.backend import asnumpy
from minircnn.functional.naive import conv2d_forward_naive
from minircnn.gradcheck import EXACT_ATOL, check_backward

# The 3x3 image every hand-computed case uses:  [[1, 2, 3],
#                                                [4, 5, 6],
#                                                [7, 8, 9]]
X3 = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)


def assert_exact(actual, expected):
    """Hand-computed float64 numbers must come out exactly (up to EXACT_ATOL)."""
    np.testing.assert_allclose(asnumpy(actual), np.asarray(expected, dtype=np.float64), rtol=0, atol=EXACT_ATOL)


def random_inputs(n, c, h, w, out, kh, kw, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c, h, w)), rng.standard_normal((out, c, kh, kw)), rng.standard_normal(out)


# (N, C, H, W, out, kh, kw, stride, pad). The package stacks the kernel offsets into one im2col matrix when
# C*kh*kw <= 64 and otherwise accumulates one GEMM per offset; both paths are covered (see the guard test below).
CASES = [
    pytest.param((2, 3, 5, 6, 2, 3, 3, 1, 1), id="im2col-k3-s1-p1"),
    pytest.param((2, 3, 7, 6, 2, 3, 3, 2, 0), id="im2col-k3-s2-p0"),
    pytest.param((1, 2, 7, 5, 3, 3, 3, 2, 1), id="im2col-k3-s2-p1-odd"),
    pytest.param((2, 4, 3, 5, 3, 1, 1, 1, 0), id="1x1-s1"),
    pytest.param((1, 3, 5, 4, 2, 1, 1, 2, 1), id="1x1-s2-p1"),
    pytest.param((2, 3, 5, 6, 2, 2, 3, 1, 0), id="im2col-2x3-kernel"),
    pytest.param((2, 8, 5, 4, 3, 3, 3, 1, 1), id="gemm-C8-k3-s1-p1"),
    pytest.param((2, 8, 6, 5, 2, 3, 3, 2, 1), id="gemm-C8-k3-s2-p1"),
    pytest.param((1, 8, 7, 7, 2, 3, 3, 2, 0), id="gemm-C8-k3-s2-p0-odd"),
    pytest.param((1, 3, 6, 7, 2, 5, 5, 1, 2), id="gemm-C3-k5-s1-p2"),
    # the first convs of the paper's models S and M (docs/reference.md §2): large kernels, strides 2 and 4
    pytest.param((1, 3, 15, 14, 2, 11, 11, 4, 5), id="caffenet-conv1-k11-s4-p5"),
    pytest.param((1, 3, 12, 11, 2, 7, 7, 2, 0), id="vgg-cnn-m-conv1-k7-s2-p0"),
    pytest.param((2, 4, 9, 8, 3, 5, 5, 2, 1), id="vgg-cnn-m-conv2-k5-s2-p1"),
]


# ---------------------------------------------------------------------------------------------- known values

def test_conv_forward_known_values_2x2_kernel(F, xp):
    """A 2x2 kernel slides over the 3x3 image (stride 1, no padding) and gives a 2x2 output plus the bias.

    With w = [[1, 2], [3, 4]] and b = 0.5, by hand:
        y[0,0] = 1*1 + 2*2 + 3*4 + 4*5 = 37     y[0,1] = 1*2 + 2*3 + 3*5 + 4*6 = 47
        y[1,0] = 1*4 + 2*5 + 3*7 + 4*8 = 67     y[1,1] = 1*5 + 2*6 + 3*8 + 4*9 = 77
    It is a cross-correlation (the kernel is not flipped), as in Caffe and PyTorch.
    """
    w = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    y, _ = F.conv2d_forward(xp.asarray(X3), xp.asarray(w), xp.asarray([0.5]), stride=1, pad=0)
    assert_exact(y, [[[[37.5, 47.5], [67.5, 77.5]]]])


def test_conv_backward_known_values_2x2_kernel(F, xp):
    """With dy = 1 everywhere, dx[p] sums the weights that touch pixel p, dw[i,j] sums the pixels that met w[i,j],
    and db counts the outputs.

    By hand (w = [[1, 2], [3, 4]]):
        dx = [[1, 1+2, 2], [1+3, 1+2+3+4, 2+4], [3, 3+4, 4]] = [[1, 3, 2], [4, 10, 6], [3, 7, 4]]
        dw[0,0] = 1+2+4+5 = 12, dw[0,1] = 2+3+5+6 = 16, dw[1,0] = 4+5+7+8 = 24, dw[1,1] = 5+6+8+9 = 28
        db = 4 (four outputs)
    """
    w = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    _, cache = F.conv2d_forward(xp.asarray(X3), xp.asarray(w), xp.asarray([0.5]), stride=1, pad=0)
    dx, dw, db = F.conv2d_backward(xp.ones((1, 1, 2, 2)), cache)
    assert_exact(dx, [[[[1, 3, 2], [4, 10, 6], [3, 7, 4]]]])
    assert_exact(dw, [[[[12, 16], [24, 28]]]])
    assert_exact(db, [4])


def test_conv_known_values_stride2_pad1(F, xp):
    """Padding adds zeros around the image and the stride skips window positions.

    A 3x3 all-ones kernel, stride 2, pad 1 on the 3x3 image: the output is floor((3 + 2 - 3) / 2) + 1 = 2 per side,
    each output the sum of a pixel's neighbourhood cut by the border:
        y = [[1+2+4+5, 2+3+5+6], [4+5+7+8, 5+6+8+9]] = [[12, 16], [24, 28]]
    Backward with dy = [[1, 0], [0, 2]]:
        dw = 1 * x_pad[0:3, 0:3] + 2 * x_pad[2:5, 2:5]
           = [[0, 0, 0], [0, 1, 2], [0, 4, 5]] + 2 * [[5, 6, 0], [8, 9, 0], [0, 0, 0]]
           = [[10, 12, 0], [16, 19, 2], [0, 4, 5]]        (the padding's zeros contribute nothing)
        dx = 1 on x[0:2, 0:2] + 2 on x[1:3, 1:3] = [[1, 1, 0], [1, 3, 2], [0, 2, 2]]
        db = 1 + 2 = 3
    """
    w = np.ones((1, 1, 3, 3))
    y, cache = F.conv2d_forward(xp.asarray(X3), xp.asarray(w), xp.asarray([0.0]), stride=2, pad=1)
    assert_exact(y, [[[[12, 16], [24, 28]]]])
    dx, dw, db = F.conv2d_backward(xp.asarray([[[[1.0, 0.0], [0.0, 2.0]]]]), cache)
    assert_exact(dw, [[[[10, 12, 0], [16, 19, 2], [0, 4, 5]]]])
    assert_exact(dx, [[[[1, 1, 0], [1, 3, 2], [0, 2, 2]]]])
    assert_exact(db, [3])


def test_conv_1x1_kernel_mixes_channels(F, xp):
    """A 1x1 convolution is a per-pixel matrix product over channels: y[o] = sum_c w[o, c] * x[c] + b[o].

    x has channels [1, 2] and [3, 4]; w = [[1, 0], [0, 1], [1, -1]], b = [0, 10, 100]:
        y[0] = [1, 2]     y[1] = [3, 4] + 10 = [13, 14]     y[2] = [1-3, 2-4] + 100 = [98, 98]
    """
    x = np.array([[[[1.0, 2.0]], [[3.0, 4.0]]]])                        # (1, 2, 1, 2)
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]).reshape(3, 2, 1, 1)
    y, _ = F.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray([0.0, 10.0, 100.0]))
    assert_exact(y, [[[[1, 2]], [[13, 14]], [[98, 98]]]])


@pytest.fixture(params=["im2col", "offsets"])
def gemm_path(request, monkeypatch):
    """Run a test through both of the package's GEMM formulations (one im2col product, or one product per kernel
    offset), with output-row chunks small enough that every layer uses several. These are speed choices: the numbers
    must not depend on them."""
    import minircnn.functional.conv as conv
    monkeypatch.setattr(conv, "CHUNK_COLUMNS", 8)
    if request.param == "im2col":
        monkeypatch.setattr(conv, "IM2COL_MAX_ROWS", 10 ** 9)
    else:
        monkeypatch.setattr(conv, "IM2COL_MAX_ROWS", 0)
        monkeypatch.setattr(conv, "IM2COL_MAX_COLUMNS", 0)
    return request.param


@pytest.mark.parametrize("case", CASES)
def test_conv_forward_matches_direct_loops(F, xp, case, gemm_path):
    """The layer computes the same numbers as the textbook loop over output pixels (``conv2d_forward_naive``), for
    every stride, padding, kernel shape and channel count in CASES."""
    n, c, h, w, out, kh, kw, stride, pad = case
    x, wt, b = random_inputs(n, c, h, w, out, kh, kw)
    y, _ = F.conv2d_forward(xp.asarray(x), xp.asarray(wt), xp.asarray(b), stride=stride, pad=pad)
    np.testing.assert_allclose(asnumpy(y), conv2d_forward_naive(x, wt, b, stride, pad), rtol=1e-12, atol=1e-12)


def test_conv_images_are_independent(F, xp):
    """Convolving a batch equals convolving each image alone: the batch axis is never mixed."""
    x, w, b = random_inputs(3, 2, 5, 5, 2, 3, 3, seed=1)
    y, _ = F.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), stride=1, pad=1)
    for n in range(3):
        y_n, _ = F.conv2d_forward(xp.asarray(x[n:n + 1]), xp.asarray(w), xp.asarray(b), stride=1, pad=1)
        np.testing.assert_allclose(asnumpy(y[n:n + 1]), asnumpy(y_n), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------ gradient checks

@pytest.mark.parametrize("case", CASES)
def test_conv_gradients(F, xp, case, gemm_path):
    """dx, dw and db from conv2d_backward match centred finite differences of sum(y * dy) (float64).

    Covers stride 1 and 2, pad 0, 1 and 2, odd map sizes (in "im2col-k3-s2-p0" no window reaches the last column,
    whose dx must then be exactly 0), several images, 1x1 and non-square kernels, each through both GEMM paths.
    """
    n, c, h, w, out, kh, kw, stride, pad = case
    x, wt, b = (xp.asarray(a) for a in random_inputs(n, c, h, w, out, kh, kw, seed=2))
    check_backward(F.conv2d_forward, F.conv2d_backward, (x, wt, b), wrt=(0, 1, 2),
                   kwargs=dict(stride=stride, pad=pad))


def test_conv_backward_need_flags(F, xp):
    """need_dx=False returns None for dx, need_dw=False returns None for dw and db; what is still computed is
    identical to the full backward. (The first trainable layer skips dx; frozen layers skip dw and db.)"""
    x, w, b = (xp.asarray(a) for a in random_inputs(2, 3, 5, 5, 4, 3, 3, seed=3))
    dy = xp.asarray(np.random.default_rng(4).standard_normal((2, 4, 5, 5)))
    _, cache = F.conv2d_forward(x, w, b, stride=1, pad=1)
    dx, dw, db = F.conv2d_backward(dy, cache)

    no_dx = F.conv2d_backward(dy, cache, need_dx=False)
    assert no_dx[0] is None
    np.testing.assert_allclose(asnumpy(no_dx[1]), asnumpy(dw), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(asnumpy(no_dx[2]), asnumpy(db), rtol=1e-12, atol=1e-12)

    no_dw = F.conv2d_backward(dy, cache, need_dw=False)
    assert no_dw[1] is None and no_dw[2] is None
    np.testing.assert_allclose(asnumpy(no_dw[0]), asnumpy(dx), rtol=1e-12, atol=1e-12)

    assert F.conv2d_backward(dy, cache, need_dx=False, need_dw=False) == (None, None, None)


# ----------------------------------------------------------------------------------------- grouped convolution

def test_grouped_conv_known_values(F, xp):
    """With groups=2 the first half of the outputs sees only the first half of the input channels, the second half
    only the second. A 1x1 kernel makes it hand-checkable: x has channels a = [1, 2] and c = [3, 4] (one row of two
    pixels); w = [[2], [3]] holds one input channel per group (shape (2, 1, 1, 1)), b = [0, 1]:
        y[0] = 2 * a = [2, 4]         y[1] = 3 * c + 1 = [10, 13]
    Backward with dy = [[1, 1], [1, -1]]:
        dx[0] = 2 * dy[0] = [2, 2]    dx[1] = 3 * dy[1] = [3, -3]
        dw[0] = a . dy[0] = 3         dw[1] = c . dy[1] = 3 - 4 = -1        db = [2, 0]
    """
    x = np.array([[[[1.0, 2.0]], [[3.0, 4.0]]]])                        # (1, 2, 1, 2)
    w = np.array([2.0, 3.0]).reshape(2, 1, 1, 1)
    y, cache = F.conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray([0.0, 1.0]), groups=2)
    assert_exact(y, [[[[2, 4]], [[10, 13]]]])
    dx, dw, db = F.conv2d_backward(xp.asarray([[[[1.0, 1.0]], [[1.0, -1.0]]]]), cache)
    assert_exact(dx, [[[[2, 2]], [[3, -3]]]])
    assert_exact(dw, np.array([3.0, -1.0]).reshape(2, 1, 1, 1))
    assert_exact(db, [2, 0])


# (N, C, H, W, out, k, stride, pad, groups): CaffeNet's conv2 (k5 p2) and conv4/conv5 (k3 p1) shapes with 2 groups,
# 3 groups with a stride, and one group per channel.
GROUPED_CASES = [
    pytest.param((1, 4, 7, 7, 4, 5, 1, 2, 2), id="caffenet-conv2-k5-p2-g2"),
    pytest.param((2, 4, 6, 5, 6, 3, 1, 1, 2), id="caffenet-conv4-k3-p1-g2"),
    pytest.param((1, 6, 5, 6, 3, 3, 2, 1, 3), id="k3-s2-p1-g3"),
    pytest.param((1, 3, 4, 4, 3, 3, 1, 1, 3), id="one-channel-per-group"),
]


def grouped_inputs(n, c, h, w, out, k, groups, seed):
    """x (n, c, h, w), w (out, c / groups, k, k), b (out,)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c, h, w)), rng.standard_normal((out, c // groups, k, k)), rng.standard_normal(out)


@pytest.mark.parametrize("case", GROUPED_CASES)
def test_grouped_conv_forward_matches_loops(F, xp, case):
    """groups=g equals the definition in which output block t sees only input block t (``conv2d_forward_naive``
    with groups), i.e. g separate convolutions of consecutive channel blocks, outputs side by side."""
    n, c, h, w, out, k, stride, pad, groups = case
    x, wt, b = grouped_inputs(n, c, h, w, out, k, groups, seed=5)
    y, _ = F.conv2d_forward(xp.asarray(x), xp.asarray(wt), xp.asarray(b), stride=stride, pad=pad, groups=groups)
    np.testing.assert_allclose(asnumpy(y), conv2d_forward_naive(x, wt, b, stride, pad, groups), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("case", GROUPED_CASES)
def test_grouped_conv_gradients(F, xp, case):
    """dx, dw and db of a grouped convolution match centred finite differences (float64); in particular no
    gradient leaks from one group's outputs into another group's inputs or weights."""
    n, c, h, w, out, k, stride, pad, groups = case
    x, wt, b = (xp.asarray(a) for a in grouped_inputs(n, c, h, w, out, k, groups, seed=7))
    check_backward(F.conv2d_forward, F.conv2d_backward, (x, wt, b), wrt=(0, 1, 2),
                   kwargs=dict(stride=stride, pad=pad, groups=groups))


def test_grouped_conv_backward_need_flags(F, xp):
    """need_dx / need_dw work for grouped convolutions as for ordinary ones (frozen grouped layers, first layer)."""
    x, w, b = (xp.asarray(a) for a in grouped_inputs(1, 4, 5, 5, 6, 3, 2, seed=9))
    y, cache = F.conv2d_forward(x, w, b, stride=1, pad=1, groups=2)
    dy = xp.ones(y.shape)
    dx, dw, db = F.conv2d_backward(dy, cache)
    no_dx = F.conv2d_backward(dy, cache, need_dx=False)
    no_dw = F.conv2d_backward(dy, cache, need_dw=False)
    assert no_dx[0] is None and no_dw[1] is None and no_dw[2] is None
    np.testing.assert_allclose(asnumpy(no_dx[1]), asnumpy(dw), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(asnumpy(no_dw[0]), asnumpy(dx), rtol=1e-12, atol=1e-12)


@pytest.mark.validation
@pytest.mark.parametrize("w_shape, groups", [((4, 4, 3, 3), 2), ((3, 2, 3, 3), 2), ((4, 1, 3, 3), 3)])
def test_grouped_conv_rejects_mismatched_groups(F, w_shape, groups):
    """x has 4 channels: w must hold 4/groups input channels and a multiple of groups outputs, else ValueError."""
    with pytest.raises(ValueError, match=r"groups"):
        F.conv2d_forward(np.zeros((1, 4, 5, 5)), np.zeros(w_shape), np.zeros(w_shape[0]), groups=groups)


# -------------------------------------------------------------------------------------------- edge cases

@pytest.mark.parametrize("size, kernel, stride, pad, expected", [
    (224, 3, 1, 1, 224),   # VGG's "same" 3x3 conv: (224 + 2 - 3) // 1 + 1
    (600, 3, 1, 1, 600),
    (5, 3, 2, 0, 2),       # (5 - 3) // 2 + 1
    (6, 3, 2, 1, 3),       # (6 + 2 - 3) // 2 + 1 = 5 // 2 + 1
    (7, 2, 2, 0, 3),       # (7 - 2) // 2 + 1: floor, the last pixel is left over (pooling would ceil)
    (4, 1, 2, 0, 2),       # 1x1 kernel, stride 2: pixels 0 and 2
    (3, 3, 1, 0, 1),       # the kernel exactly covers the input
])
def test_conv_output_size(F, size, kernel, stride, pad, expected):
    """Convolution output size is floor((size + 2*pad - kernel) / stride) + 1 (Caffe and PyTorch agree)."""
    assert F.conv_output_size(size, kernel, stride, pad) == expected


def test_conv_output_shape_and_dtype(F, xp):
    """y has shape (N, out, H_out, W_out) with H_out, W_out from conv_output_size, and float32 stays float32 through
    forward and backward (training runs in float32)."""
    x, w, b = (xp.asarray(a.astype(np.float32)) for a in random_inputs(2, 3, 7, 6, 5, 3, 3))
    y, cache = F.conv2d_forward(x, w, b, stride=2, pad=1)
    assert y.shape == (2, 5, F.conv_output_size(7, 3, 2, 1), F.conv_output_size(6, 3, 2, 1)) == (2, 5, 4, 3)
    assert y.dtype == np.float32
    grads = F.conv2d_backward(xp.ones(y.shape, dtype=xp.float32), cache)
    assert [g.dtype for g in grads] == [np.float32] * 3
    assert [g.shape for g in grads] == [x.shape, w.shape, b.shape]


# ----------------------------------------------------------------------------------------------- bad input

def _good():
    return np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3)), np.zeros(4)


@pytest.mark.validation
@pytest.mark.parametrize("make, kwargs, match", [
    (lambda x, w, b: (x[0], w, b), {}, r"\bx\b"),                                      # x is 3-D
    (lambda x, w, b: (x, w[0], b), {}, r"\bw\b"),                                      # w is 3-D
    (lambda x, w, b: (x, w, b[:, None]), {}, r"\bb\b"),                                # b is 2-D
    (lambda x, w, b: (x, w[:, :2], b), {}, r"input channels"),                         # w has 2 in-channels, x 3
    (lambda x, w, b: (x, w, b[:3]), {}, r"\bb\b"),                                     # 3 biases for 4 outputs
    (lambda x, w, b: (x.astype(np.float32), w, b), {}, r"dtype"),                      # float32 x, float64 w
    (lambda x, w, b: (x, w, b.astype(np.float32)), {}, r"dtype"),
    (lambda x, w, b: (x.astype(np.int64), w.astype(np.int64), b.astype(np.int64)), {}, r"\bx\b.*floating"),
    (lambda x, w, b: (x, w, b), dict(stride=-1), r"stride"),
    (lambda x, w, b: (x, w, b), dict(stride=0), r"stride"),
    (lambda x, w, b: (x, w, b), dict(pad=-1), r"pad"),
    (lambda x, w, b: (x[:, :, :2, :2], w, b), {}, r"kernel"),                          # 3x3 kernel, 2x2 input
])
def test_conv_forward_rejects_bad_input(F, make, kwargs, match):
    """Bad arguments raise ValueError naming the argument (not a shape error from deep inside NumPy)."""
    with pytest.raises(ValueError, match=match):
        F.conv2d_forward(*make(*_good()), **kwargs)


@pytest.mark.validation
def test_conv_backward_rejects_wrong_dy_shape(F):
    """conv2d_backward raises ValueError naming dy when dy does not have y's shape (N, out, H_out, W_out)."""
    y, cache = F.conv2d_forward(*_good(), stride=1, pad=1)
    with pytest.raises(ValueError, match=r"\bdy\b"):
        F.conv2d_backward(np.zeros(y.shape[:3] + (y.shape[3] + 1,)), cache)
