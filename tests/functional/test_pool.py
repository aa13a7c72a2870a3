"""Max pooling with Caffe's rules: ``max_pool2d_forward`` / ``max_pool2d_backward`` / ``pool_output_size``
(minircnn/functional/pool.py).

Caffe (and the Fast R-CNN paper's VGG16) rounds the pooled size *up*, so the last window may hang over the border;
it is clipped to the input. Padding never wins a max. Every test takes the layer from the ``F`` fixture, so
``pytest tests/functional/test_pool.py --impl my_layers.py`` checks your own implementation.
"""
import numpy as np
import pytest

from minircnn.backend import asnumpy
from minircnn.functional.naive import max_pool2d_forward_naive
from minircnn.gradcheck import EXACT_ATOL, check_backward, tie_free


def assert_exact(actual, expected):
    """Hand-computed numbers must come out exactly (max pooling only copies values)."""
    np.testing.assert_allclose(asnumpy(actual), np.asarray(expected, dtype=np.float64), rtol=0, atol=EXACT_ATOL)


# (N, C, H, W, kernel_size, stride, pad)
CASES = [
    pytest.param((2, 3, 4, 6, 2, 2, 0), id="k2-s2"),
    pytest.param((2, 2, 5, 7, 2, 2, 0), id="k2-s2-odd-partial-windows"),
    pytest.param((2, 2, 7, 5, 3, 2, 1), id="k3-s2-p1-odd"),
    pytest.param((1, 3, 6, 6, 3, 2, 1), id="k3-s2-p1-even"),
    pytest.param((1, 2, 6, 8, 3, 2, 0), id="k3-s2-ceil-partial"),
    pytest.param((1, 2, 5, 3, 2, 2, 1), id="k2-s2-p1-minus-one-rule"),
    pytest.param((1, 2, 5, 5, 3, 1, 1), id="k3-s1-p1-overlapping"),
]


# -------------------------------------------------------------------------------------------- output size

def test_pool_output_size_vgg16_600_rows(F):
    """VGG16's four 2x2 stride-2 pools take a 600-row image to 300, 150, 75 and then 38 rows at conv5:
    ceil((75 - 2) / 2) + 1 = ceil(36.5) + 1 = 38 (a floor rule would give 37). The 1000-pixel side goes
    500, 250, 125, 63."""
    for size, expected in ((600, [300, 150, 75, 38]), (1000, [500, 250, 125, 63])):
        sizes = []
        for _ in range(4):
            size = F.pool_output_size(size, 2, 2, 0)
            sizes.append(size)
        assert sizes == expected


@pytest.mark.parametrize("size, kernel, stride, pad, expected", [
    (4, 2, 2, 0, 2),   # exact fit
    (5, 2, 2, 0, 3),   # ceil(3 / 2) + 1: the third window holds only pixel 4
    (6, 3, 2, 0, 3),   # ceil(3 / 2) + 1: the third window holds pixels 4 and 5 (floor would give 2)
    (7, 3, 2, 1, 4),   # ceil((7 + 2 - 3) / 2) + 1 = 4; the last window starts at padded index 6 < 7 + 1: kept
    (3, 3, 2, 1, 2),   # ceil(2 / 2) + 1 = 2; the last window starts at padded 2 < 3 + 1: kept
])
def test_pool_output_size_ceil_rule(F, size, kernel, stride, pad, expected):
    """Pooling output size is ceil((size + 2*pad - kernel) / stride) + 1 (Caffe rounds up, convolution down)."""
    assert F.pool_output_size(size, kernel, stride, pad) == expected


def test_pool_output_size_minus_one_rule(F):
    """With padding, Caffe drops the last window if it would start in the padding (at or after size + pad).

    3 rows, kernel 2, stride 2, pad 1: the ceil rule gives ceil((3 + 2 - 2) / 2) + 1 = 3 windows, starting at padded
    rows 0, 2 and 4. Padded row 4 is the bottom padding (input rows are padded 1..3), so the third window would see
    no input at all: the size is 2. Same for 5 rows (windows at 0, 2, 4, 6 -> 3).
    """
    assert F.pool_output_size(3, 2, 2, 1) == 2
    assert F.pool_output_size(5, 2, 2, 1) == 3


# ------------------------------------------------------------------------------------------- known values

def test_max_pool_known_values_k2_s2(F, xp):
    """2x2 windows with stride 2 pick the largest of each block; the gradient goes back to that one pixel.

    x = [[1, 2, 5, 3],      blocks: [1 2 / 4 0] -> 4,  [5 3 / 6 1] -> 6,
         [4, 0, 6, 1],              [9 8 / 7 3] -> 9,  [2 2 / 0 4] -> 4
         [9, 8, 2, 2],
         [7, 3, 0, 4]]
    Backward with dy = [[1, 2], [3, 4]] puts 1 at (1,0), 2 at (1,2), 3 at (2,0), 4 at (3,3), 0 elsewhere.
    """
    x = np.array([[1, 2, 5, 3], [4, 0, 6, 1], [9, 8, 2, 2], [7, 3, 0, 4]], dtype=np.float64)[None, None]
    y, cache = F.max_pool2d_forward(xp.asarray(x), kernel_size=2, stride=2, pad=0)
    assert_exact(y, [[[[4, 6], [9, 4]]]])
    dx = F.max_pool2d_backward(xp.asarray([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    assert_exact(dx, [[[[0, 0, 0, 0], [1, 0, 2, 0], [3, 0, 0, 0], [0, 0, 0, 4]]]])


def test_max_pool_partial_window_from_ceil(F, xp):
    """On a 3x3 map a 2x2 stride-2 pool gives 2x2 outputs (ceil rule); the windows past the border are clipped.

    x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]: windows [1 2 / 4 5] -> 5, [3 / 6] -> 6, [7 8] -> 8, [9] -> 9.
    Backward with dy = [[1, 2], [3, 4]] gives dx = [[0, 0, 0], [0, 1, 2], [0, 3, 4]].
    """
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    y, cache = F.max_pool2d_forward(xp.asarray(x), kernel_size=2, stride=2, pad=0)
    assert_exact(y, [[[[5, 6], [8, 9]]]])
    dx = F.max_pool2d_backward(xp.asarray([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    assert_exact(dx, [[[[0, 0, 0], [0, 1, 2], [0, 3, 4]]]])


def test_max_pool_k3_s2_p1_overlapping_windows(F, xp):
    """Overlapping 3x3 windows (stride 2, pad 1): a pixel that is the max of two windows receives both gradients.

    x = [[3, 1, 2],     the four windows cover rows/cols {0,1} or {1,2}:
         [9, 5, 4],         y = [[max(3,1,9,5), max(1,2,5,4)],   = [[9, 5],
         [6, 8, 7]]              [max(9,5,6,8), max(5,4,8,7)]]      [9, 8]]
    Backward with dy = 1: the 9 at (1,0) wins two windows and gets 2; 5 and 8 get 1.
    """
    x = np.array([[3, 1, 2], [9, 5, 4], [6, 8, 7]], dtype=np.float64)[None, None]
    y, cache = F.max_pool2d_forward(xp.asarray(x), kernel_size=3, stride=2, pad=1)
    assert_exact(y, [[[[9, 5], [9, 8]]]])
    dx = F.max_pool2d_backward(xp.ones((1, 1, 2, 2)), cache)
    assert_exact(dx, [[[[0, 0, 0], [2, 1, 0], [0, 1, 0]]]])


def test_max_pool_padding_never_wins(F, xp):
    """Padding is not a zero that can beat negative inputs: windows are clipped to the input (Caffe).

    x = -[[1, 2, 3], [4, 5, 6], [7, 8, 9]], kernel 3, stride 2, pad 1:
        y = [[max(-1,-2,-4,-5), max(-2,-3,-5,-6)], [max(-4,-5,-7,-8), max(-5,-6,-8,-9)]] = [[-1, -2], [-4, -5]]
    """
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    y, _ = F.max_pool2d_forward(xp.asarray(x), kernel_size=3, stride=2, pad=1)
    assert_exact(y, [[[[-1, -2], [-4, -5]]]])


def test_max_pool_minus_one_rule_values(F, xp):
    """3x3 map, kernel 2, stride 2, pad 1: two windows per side (the third would lie in the padding).

    In input coordinates the windows cover rows/cols {0} and {1, 2}; on x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]:
        y = [[x[0,0], max(x[0,1:3])], [max(x[1:3,0]), max(x[1:3,1:3])]] = [[1, 3], [7, 9]]
    """
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    y, _ = F.max_pool2d_forward(xp.asarray(x), kernel_size=2, stride=2, pad=1)
    assert_exact(y, [[[[1, 3], [7, 9]]]])


def test_max_pool_tie_goes_to_first_in_row_major_order(F, xp):
    """Caffe's rule for equal maxima: the first one in row-major order of the window wins (a strict ``>`` scan), so
    exactly one input receives the gradient.

    x = [[1, 3, 5, 5],     window 1 = [1 3 / 3 0]: the 3 at (0,1) comes before the 3 at (1,0);
         [3, 0, 5, 5]]     window 2 = [5 5 / 5 5]: the 5 at (0,2) is first.
    With dy = [[1, 2]]: dx = [[0, 1, 2, 0], [0, 0, 0, 0]].
    """
    x = np.array([[1, 3, 5, 5], [3, 0, 5, 5]], dtype=np.float64)[None, None]
    y, cache = F.max_pool2d_forward(xp.asarray(x), kernel_size=2, stride=2, pad=0)
    assert_exact(y, [[[[3, 5]]]])
    dx = F.max_pool2d_backward(xp.asarray([[[[1.0, 2.0]]]]), cache)
    assert_exact(dx, [[[[0, 1, 2, 0], [0, 0, 0, 0]]]])


@pytest.mark.parametrize("case", CASES)
def test_max_pool_forward_matches_caffe_loops(F, xp, case):
    """The layer computes the same maxima and output shape as Caffe's clipped-window loop
    (``max_pool2d_forward_naive``) for every case in CASES."""
    n, c, h, w, k, s, p = case
    x = np.random.default_rng(0).standard_normal((n, c, h, w))
    y, _ = F.max_pool2d_forward(xp.asarray(x), kernel_size=k, stride=s, pad=p)
    expected = max_pool2d_forward_naive(x, k, s, p)
    assert y.shape == expected.shape
    assert_exact(y, expected)


# ---------------------------------------------------------------------------------------- gradient checks

@pytest.mark.parametrize("case", CASES)
def test_max_pool_gradients(F, xp, case):
    """dx from max_pool2d_backward matches centred finite differences of sum(y * dy) (float64), including partial
    windows added by the ceil rule, padding, overlapping windows and several images.

    Why tie-free inputs: max is not differentiable where two candidates of a window are equal (or closer than the
    step h = 1e-6). There, nudging one of them by +-h changes which one wins, so the numerical derivative splits the
    gradient (0.5 each) while the layer rightly sends it all to one input, and the check would fail for a correct
    layer. tie_free draws distinct values about 2/size apart, far more than h, so the winner never changes.
    """
    n, c, h, w, k, s, p = case
    x = tie_free((n, c, h, w), np.random.default_rng(1), xp=xp)
    check_backward(F.max_pool2d_forward, F.max_pool2d_backward, (x,), wrt=(0,),
                   kwargs=dict(kernel_size=k, stride=s, pad=p))


def test_max_pool_keeps_float32(F, xp):
    """float32 stays float32 through forward and backward, and dx has x's shape."""
    x = xp.asarray(np.random.default_rng(2).standard_normal((2, 3, 7, 7)).astype(np.float32))
    y, cache = F.max_pool2d_forward(x, kernel_size=3, stride=2, pad=1)
    assert y.dtype == np.float32 and y.shape == (2, 3, 4, 4)
    dx = F.max_pool2d_backward(xp.ones(y.shape, dtype=xp.float32), cache)
    assert dx.dtype == np.float32 and dx.shape == x.shape


# ---------------------------------------------------------------------------------------------- bad input

@pytest.mark.validation
@pytest.mark.parametrize("x, kwargs, match", [
    (np.zeros((3, 4, 4)), {}, r"\bx\b"),                                         # 3-D input
    (np.zeros((1, 1, 4, 4), dtype=np.int32), {}, r"\bx\b.*floating"),            # integer input
    (np.zeros((1, 1, 4, 4)), dict(kernel_size=0), r"kernel_size"),
    (np.zeros((1, 1, 4, 4)), dict(stride=-2), r"stride"),
    (np.zeros((1, 1, 4, 4)), dict(stride=0), r"stride"),
    (np.zeros((1, 1, 4, 4)), dict(pad=-1), r"pad"),
    (np.zeros((1, 1, 4, 4)), dict(kernel_size=2, pad=2), r"pad"),               # pad >= kernel_size
    (np.zeros((1, 1, 4, 4)), dict(kernel_size=3, pad=3), r"pad"),
    (np.zeros((1, 1, 2, 2)), dict(kernel_size=3, stride=1, pad=0), r"window"),   # window larger than the input
])
def test_max_pool_forward_rejects_bad_input(F, x, kwargs, match):
    """Bad arguments raise ValueError naming the argument; pad must be smaller than the kernel (otherwise a window
    could lie entirely in the padding)."""
    with pytest.raises(ValueError, match=match):
        F.max_pool2d_forward(x, **kwargs)


@pytest.mark.validation
def test_max_pool_backward_rejects_wrong_dy_shape(F):
    """max_pool2d_backward raises ValueError naming dy when dy does not have y's shape."""
    y, cache = F.max_pool2d_forward(np.zeros((1, 2, 4, 4)), kernel_size=2, stride=2)
    with pytest.raises(ValueError, match=r"\bdy\b"):
        F.max_pool2d_backward(np.zeros((1, 2, 3, 2)), cache)


# ------------------------------------------------------------------------------------- blocks of planes

def pool_backward_loop(x, dy, k, s, p):
    """Caffe's backward as a loop: each output's gradient goes to the first maximum (row-major) of its clipped
    window; where windows overlap the gradients add."""
    n, c, h, w = x.shape
    dx = np.zeros_like(x)
    for b, ch, oh, ow in np.ndindex(*dy.shape):
        r0, c0 = oh * s - p, ow * s - p
        rows = range(max(r0, 0), min(r0 + k, h))
        cols = range(max(c0, 0), min(c0 + k, w))
        best = max(x[b, ch, r, q] for r in rows for q in cols)
        r, q = next((r, q) for r in rows for q in cols if x[b, ch, r, q] == best)
        dx[b, ch, r, q] += dy[b, ch, oh, ow]
    return dx


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("block_bytes", [1, 200, 1 << 19])
def test_max_pool_blocks_of_planes_give_caffe_s_answer(monkeypatch, case, block_bytes):
    """The package pools blocks of whole planes at a time on NumPy (minircnn/functional/pool.py, ``BLOCK_BYTES``):
    one plane per block, a few, or all at once give the loops' maxima and switches, ties included (small integers
    make many tied windows). Where windows overlap, the gradients add in another order than the loop's: equal up to
    rounding."""
    from minircnn.functional import pool
    monkeypatch.setattr(pool, "BLOCK_BYTES", block_bytes)
    n, c, h, w, k, s, p = case
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (n, c, h, w)).astype(np.float64)
    y, cache = pool.max_pool2d_forward(x, kernel_size=k, stride=s, pad=p)
    np.testing.assert_array_equal(y, max_pool2d_forward_naive(x, k, s, p))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(pool.max_pool2d_backward(dy, cache), pool_backward_loop(x, dy, k, s, p), rtol=0,
                               atol=1e-12)
