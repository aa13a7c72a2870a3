"""The readable reference implementations (minircnn/functional/naive.py) against their fast twins and hand values.

The other tests use these loops as their oracle, so here each one is checked on its own: it gives a value worked out
by hand, and it agrees with the package's vectorised function on random inputs. These tests call the package
directly (not the ``F`` fixture): they test the loops, not a learner's layers.
"""
import numpy as np
import pytest

import minircnn.functional as fast
from minircnn.backend import asnumpy
from minircnn.boxes import batched_nms, decode, encode, iou, nms
from minircnn.evaluation import eval_detection_voc, voc_ap
from minircnn.functional import naive
from minircnn.gradcheck import tie_free

X16 = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)      # [[0, 1, 2, 3], [4, 5, 6, 7], ...]


def random_boxes(rng, n, size=300, max_wh=120):
    xy = rng.uniform(0, size, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(0, max_wh, (n, 2))], axis=1)


# ------------------------------------------------------------------------------------------------------ RoI pooling
def test_roi_pool_forward_known_values():
    """The 4x4 map 0..15 pooled 2x2 over the whole map: each bin is a 2x2 quadrant whose maximum is its bottom-right
    cell, 5, 7, 13, 15, and the argmax is that cell's flat index h*W + w (the same numbers here)."""
    y, cache = naive.roi_pool_forward_naive(X16, np.array([[0, 0, 0, 3, 3]], np.float32), (2, 2), 1.0)
    np.testing.assert_array_equal(y[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(cache.argmax[0, 0], [[5, 7], [13, 15]])


def test_roi_pool_forward_first_maximum_wins():
    """Two equal maxima in one bin: the first in row-major order (flat index 1, not 2) is the switch, like the
    original's strict ``>``; -0.0 first in a bin of zeros is copied with its sign."""
    x = np.zeros((1, 1, 2, 2), np.float32)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 5
    _, cache = naive.roi_pool_forward_naive(x, np.array([[0, 0, 0, 1, 1]], np.float32), (1, 1), 1.0)
    assert cache.argmax[0, 0, 0, 0] == 1
    y, _ = naive.roi_pool_forward_naive(-np.zeros((1, 1, 1, 2), np.float32), np.array([[0, 0, 0, 1, 0]], np.float32),
                                        (1, 1), 1.0)
    assert np.signbit(y[0, 0, 0, 0])


def test_roi_pool_forward_float32_overshoot_and_bins_off_the_map():
    """57 rows in 7 bins: in float32 ceil(7 * (57/7)) = 58, so the last bin reaches row 57, one past the RoI, and
    finds the 100 put there (the original layer does the same). A RoI hanging off the map's bottom-right corner
    keeps only its top-left bin (cell 15); the other bins output 0 with argmax -1."""
    x = np.zeros((1, 1, 60, 1), np.float32)
    x[0, 0, 57, 0] = 100
    y, cache = naive.roi_pool_forward_naive(x, np.array([[0, 0, 0, 0, 56]], np.float32), (7, 1), 1.0)
    assert y[0, 0, 6, 0] == 100 and cache.argmax[0, 0, 6, 0] == 57
    y, cache = naive.roi_pool_forward_naive(X16 + 1, np.array([[0, 2, 2, 9, 9]], np.float32), (2, 2), 1.0)
    np.testing.assert_array_equal(y[0, 0], [[16, 0], [0, 0]])
    np.testing.assert_array_equal(cache.argmax[0, 0], [[15, -1], [-1, -1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_pool_forward_equals_the_package(xp, dtype):
    """On a tie-free map (two images, odd sizes) and random RoIs of every size, many leaving the map and some at
    exact half cells, the loop gives the package's values bit for bit and the same argmaxes, in float32 and float64
    (on CuPy: the same as the CUDA kernel)."""
    rng = np.random.default_rng(0)
    x = tie_free((2, 3, 9, 13), rng).astype(dtype)
    x1, y1 = rng.uniform(-60, 200, 80), rng.uniform(-60, 140, 80)
    rois = np.stack([rng.integers(0, 2, 80), x1, y1, x1 + rng.uniform(0, 220, 80), y1 + rng.uniform(0, 150, 80)], 1)
    rois[:10, 1:] = np.round(rois[:10, 1:] / 16) * 16 + 8                       # corners at k + 0.5 cells
    y, cache = naive.roi_pool_forward_naive(x, rois, (7, 7), 1 / 16)
    y_fast, cache_fast = fast.roi_pool_forward(xp.asarray(x), xp.asarray(rois), output_size=(7, 7),
                                               spatial_scale=1 / 16)
    assert y.dtype == dtype and (cache.argmax == -1).any()
    np.testing.assert_array_equal(y.view(np.uint8), asnumpy(y_fast).view(np.uint8))
    np.testing.assert_array_equal(cache.argmax, asnumpy(cache_fast.argmax))
    np.testing.assert_array_equal(cache.batch, asnumpy(cache_fast.batch))


def test_roi_pool_backward_known_values():
    """dy = [[1, 2], [3, 4]] on the 2x2 pooling of the 0..15 map goes to the four switch cells 5, 7, 13, 15; a second,
    identical RoI adds the same again (Eq. 4 sums over RoIs)."""
    _, cache = naive.roi_pool_forward_naive(X16, np.array([[0, 0, 0, 3, 3]] * 2, np.float32), (2, 2), 1.0)
    dx = naive.roi_pool_backward_naive(np.tile(np.float32([[[[1, 2], [3, 4]]]]), (2, 1, 1, 1)), cache)
    expected = np.zeros(16)
    expected[[5, 7, 13, 15]] = [2, 4, 6, 8]
    np.testing.assert_array_equal(dx.ravel(), expected)


def test_roi_pool_backward_equals_the_package():
    """With the same switches (overlapping RoIs, bins off the map) and integer-valued dy, so that every sum is exact,
    the loop's dx equals the package's."""
    rng = np.random.default_rng(1)
    x = tie_free((2, 2, 7, 6), rng).astype(np.float32)
    rois = np.array([[0, 0, 0, 90, 80], [1, 10, 5, 60, 100], [0, 20, 16, 40, 40], [1, -30, 40, 300, 300]], np.float32)
    y, cache = fast.roi_pool_forward(x, rois, output_size=(3, 3), spatial_scale=1 / 16)
    dy = rng.integers(-5, 6, y.shape).astype(np.float32)
    np.testing.assert_array_equal(naive.roi_pool_backward_naive(dy, cache), fast.roi_pool_backward(dy, cache))


# ----------------------------------------------------------------------------------------- conv, max pool and LRN
def test_conv2d_forward_known_values():
    """w = [[1, 2], [3, 4]], b = 0.5 over [[1, 2, 3], [4, 5, 6], [7, 8, 9]]: y[0, 0] = 1 + 4 + 12 + 20 + 0.5 = 37.5,
    then 47.5, 67.5, 77.5 (no kernel flip)."""
    y = naive.conv2d_forward_naive(np.arange(1.0, 10.0).reshape(1, 1, 3, 3), np.array([[[[1.0, 2], [3, 4]]]]),
                                   np.array([0.5]))
    np.testing.assert_array_equal(y, [[[[37.5, 47.5], [67.5, 77.5]]]])


@pytest.mark.parametrize("shape, stride, pad, groups", [((2, 3, 7, 6), 1, 1, 1), ((1, 4, 9, 8), 2, 2, 2),
                                                        ((2, 6, 5, 7), 2, 0, 3)])
def test_conv2d_forward_equals_the_package(shape, stride, pad, groups):
    """Random float64 inputs, strides 1 and 2, padding, groups: the loop equals conv2d_forward to rounding."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((2 * groups, shape[1] // groups, 3, 3))
    b = rng.standard_normal(2 * groups)
    y_fast, _ = fast.conv2d_forward(x, w, b, stride=stride, pad=pad, groups=groups)
    np.testing.assert_allclose(naive.conv2d_forward_naive(x, w, b, stride, pad, groups), y_fast, rtol=1e-12,
                               atol=1e-12)


def test_max_pool_known_values():
    """A 1x5 row [1, 5, 2, 0, 3] pooled 1x2 with stride 2: Caffe's ceil rule keeps a third, partial window holding
    only the last value: [5, 2, 3]."""
    x = np.array([1.0, 5, 2, 0, 3]).reshape(1, 1, 1, 5)
    np.testing.assert_array_equal(naive.max_pool2d_forward_naive(x, kernel_size=1, stride=1)[0, 0], [[1, 5, 2, 0, 3]])
    y = naive.max_pool2d_forward_naive(np.repeat(x, 2, axis=2), kernel_size=2, stride=2)
    np.testing.assert_array_equal(y[0, 0], [[5, 2, 3]])


@pytest.mark.parametrize("shape, k, s, p", [((2, 3, 5, 7), 2, 2, 0), ((1, 2, 7, 5), 3, 2, 1), ((1, 2, 5, 3), 2, 2, 1)])
def test_max_pool_equals_the_package(shape, k, s, p):
    """Tie-free random maps, partial windows, padding and the minus-one rule: the same shape and values."""
    x = tie_free(shape, np.random.default_rng(3))
    y_fast, _ = fast.max_pool2d_forward(x, kernel_size=k, stride=s, pad=p)
    np.testing.assert_array_equal(naive.max_pool2d_forward_naive(x, k, s, p), y_fast)


def test_lrn_known_values_and_package():
    """Channels [1, 2, 3], window 3, alpha 3 (alpha / size = 1), beta 1, k 1: scales 1 + [5, 14, 13] -> y = [1/6,
    2/15, 3/14]. On random input with VGG_CNN_M's k = 2 it equals lrn_forward."""
    y = naive.lrn_forward_naive(np.array([1.0, 2, 3]).reshape(1, 3, 1, 1), local_size=3, alpha=3.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(y.ravel(), [1 / 6, 2 / 15, 3 / 14], rtol=1e-15)
    x = np.random.default_rng(4).standard_normal((2, 7, 3, 2)) * 2
    y_fast, _ = fast.lrn_forward(x, local_size=5, alpha=2.5, beta=0.75, k=2.0)
    np.testing.assert_allclose(naive.lrn_forward_naive(x, 5, 2.5, 0.75, 2.0), y_fast, rtol=1e-12)


# ------------------------------------------------------------------------------------------------------------ losses
def test_softmax_cross_entropy_known_values_and_package():
    """Scores [0, log 3], label 1: p = [1/4, 3/4], loss -log(3/4), gradient p - onehot = [1/4, -1/4]. Random scores
    (huge ones too, which a softmax without the max shift would overflow) give the package's loss and gradient."""
    loss, d = naive.softmax_cross_entropy_naive(np.array([[0.0, np.log(3)]]), np.array([1]))
    assert loss == pytest.approx(-np.log(0.75), rel=1e-14)
    np.testing.assert_allclose(d, [[0.25, -0.25]], rtol=1e-14)
    rng = np.random.default_rng(5)
    scores, labels = rng.standard_normal((7, 5)) * 3, rng.integers(0, 5, 7)
    scores[0] += 1000
    loss_fast, d_fast = fast.softmax_cross_entropy(scores, labels)
    loss, d = naive.softmax_cross_entropy_naive(scores, labels)
    assert loss == pytest.approx(loss_fast, rel=1e-12)
    np.testing.assert_allclose(d, d_fast, rtol=1e-12, atol=1e-15)


def test_smooth_l1_known_values_and_package():
    """Residuals 0.5 (quadratic: 0.125, slope 0.5) and -3 (linear: 2.5, slope -1) in one row: loss 2.625; with
    sigma 2, 0.1 is quadratic (2 x 0.01, slope 0.4) and 1 linear (1 - 1/8, slope 1). Random
    residuals kept away from the kinks at +-1, with 0/1 weights and sigma 1 and 3, give the package's values."""
    loss, d = naive.smooth_l1_loss_naive(np.array([[0.5, -3.0]]), np.zeros((1, 2)), np.ones((1, 2)))
    assert loss == 2.625
    np.testing.assert_array_equal(d, [[0.5, -1.0]])
    loss, d = naive.smooth_l1_loss_naive(np.array([[0.1, 1.0]]), np.zeros((1, 2)), np.ones((1, 2)), sigma=2.0)
    assert loss == pytest.approx(0.5 * 4 * 0.01 + (1 - 0.5 / 4))      # sigma 2: quadratic only for |d| < 1/4
    np.testing.assert_allclose(d, [[0.4, 1.0]])
    rng = np.random.default_rng(6)
    pred, target = rng.uniform(-3, 3, (6, 8)), rng.uniform(-3, 3, (6, 8))
    pred = np.where(np.abs(np.abs(pred - target) - 1) < 0.05, pred + 0.2, pred)
    weights = (rng.random((6, 8)) < 0.5).astype(np.float64)
    for sigma in (1.0, 3.0):
        loss_fast, d_fast = fast.smooth_l1_loss(pred, target, weights, sigma=sigma)
        loss, d = naive.smooth_l1_loss_naive(pred, target, weights, sigma)
        assert loss == pytest.approx(loss_fast, rel=1e-12)
        np.testing.assert_allclose(d, d_fast, rtol=1e-12)


# ------------------------------------------------------------------------------------------------------------ boxes
def test_iou_known_values_and_package():
    """+1 areas: 10x10 boxes shifted by 5 share 25 of 175 px, touching corners 1 of 199, a one-pixel gap nothing.
    On random boxes the loop equals iou(), bit for bit, in float64 and in float32."""
    a = np.array([[0, 0, 9, 9]])
    b = np.array([[5, 5, 14, 14], [9, 9, 18, 18], [10, 0, 19, 9], [0, 0, 9, 9]])
    np.testing.assert_allclose(naive.iou_naive(a, b), [[25 / 175, 1 / 199, 0, 1]], rtol=1e-15)
    rng = np.random.default_rng(7)
    for dtype in (np.float64, np.float32):
        p, q = random_boxes(rng, 30).astype(dtype), random_boxes(rng, 40).astype(dtype)
        out = naive.iou_naive(p, q)
        assert out.dtype == dtype and (out > 0).any()
        np.testing.assert_array_equal(out, iou(p, q))


def test_nms_known_values():
    """Box 0 suppresses box 1 (IoU 0.6), so box 1 cannot suppress box 2 (IoU(0, 2) = 0.11): keep [0, 2]. An IoU
    equal to the threshold (50/100 at 0.5) does not suppress; equal scores are visited by index. IoUs are computed
    in the boxes' dtype: 1/3 in float32 is 0.33333334, above a threshold of 1/3 (a double), so the float32 box goes
    while the float64 one, exactly at the threshold, stays."""
    chain = np.array([[0, 0, 9, 9], [4, 0, 13, 9], [8, 0, 17, 9]], np.float64)
    np.testing.assert_array_equal(naive.nms_naive(chain, np.array([3.0, 2, 1]), 0.3), [0, 2])
    half = np.array([[0, 0, 9, 9], [0, 0, 9, 4]], np.float32)
    np.testing.assert_array_equal(naive.nms_naive(half, np.array([0.9, 0.8]), 0.5), [0, 1])
    np.testing.assert_array_equal(naive.nms_naive(chain[[0, 0]], np.ones(2), 0.5), [0])
    third = np.array([[0, 0, 9, 9], [5, 0, 14, 9]])                 # IoU 50/150 = 1/3
    np.testing.assert_array_equal(naive.nms_naive(third.astype(np.float32), np.array([2, 1]), 1 / 3), [0])
    np.testing.assert_array_equal(naive.nms_naive(third.astype(np.float64), np.array([2, 1]), 1 / 3), [0, 1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nms_and_batched_nms_equal_the_package(dtype):
    """Random boxes with many tied scores, several thresholds (0.7 also checks that a float32 IoU is compared with
    the threshold as a double): the same indices in the same order as nms() and batched_nms()."""
    rng = np.random.default_rng(8)
    boxes = random_boxes(rng, 300).astype(dtype)
    scores = rng.integers(0, 30, 300).astype(dtype)
    labels = rng.integers(0, 4, 300)
    for threshold in (0.0, 0.3, 0.7):
        np.testing.assert_array_equal(naive.nms_naive(boxes, scores, threshold), nms(boxes, scores, threshold))
    np.testing.assert_array_equal(naive.batched_nms_naive(boxes, scores, labels, 0.4),
                                  batched_nms(boxes, scores, labels, 0.4))


def test_encode_decode_known_values_and_package():
    """A 10x10 proposal and a 20x20 box whose centre is 5 px to the right: (0.5, 0, log 2, log 2); decoding gives the
    box back. On random boxes and class-wise deltas both loops equal encode() and decode()."""
    p, g = np.array([[0.0, 0, 9, 9]]), np.array([[0.0, -5, 19, 14]])
    t = naive.encode_naive(p, g)
    np.testing.assert_allclose(t, [[0.5, 0, np.log(2), np.log(2)]], rtol=1e-15)
    np.testing.assert_allclose(naive.decode_naive(p, t), g, atol=1e-12)
    rng = np.random.default_rng(9)
    rois, gt = random_boxes(rng, 12) + [0, 0, 1, 1], random_boxes(rng, 12) + [0, 0, 1, 1]
    np.testing.assert_allclose(naive.encode_naive(rois, gt), encode(rois, gt), rtol=1e-13, atol=1e-13)
    deltas = rng.normal(0, 0.3, (12, 12))
    np.testing.assert_allclose(naive.decode_naive(rois, deltas), decode(rois, deltas), rtol=1e-13)


# ------------------------------------------------------------------------------------------------------- evaluation
def test_voc_ap_known_values_and_package():
    """The curve (recall, precision) = (0.5, 1), (1, 0.5): 11-point (6 x 1 + 5 x 0.5) / 11, area 0.75. Random
    monotone-recall curves give voc_ap's values."""
    assert naive.voc_ap_naive([0.5, 1.0], [1.0, 0.5]) == pytest.approx(8.5 / 11)
    assert naive.voc_ap_naive([0.5, 1.0], [1.0, 0.5], use_07_metric=False) == pytest.approx(0.75)
    rng = np.random.default_rng(10)
    for _ in range(20):
        recall, precision = np.sort(rng.random(15)), rng.random(15)
        for use_07 in (True, False):
            assert naive.voc_ap_naive(recall, precision, use_07) == pytest.approx(
                voc_ap(recall, precision, use_07), rel=1e-12)


def test_eval_detection_voc_known_values():
    """One image, class 1, objects A and C: detections on A (0.9, TP), on empty ground (0.8, FP), on C (0.7, TP).
    Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: 11-point AP (6 x 1 + 5 x 2/3) / 11 = 28/33, area
    1/2 x 1 + 1/2 x 2/3 = 5/6. A second detection on A would be a duplicate; on a difficult box it is ignored."""
    A, C, EMPTY = [0, 0, 9, 9], [30, 30, 39, 39], [60, 60, 69, 69]
    args = ([np.array([A, EMPTY, C], float)], [np.array([1, 1, 1])], [np.array([0.9, 0.8, 0.7])],
            [np.array([A, C], float)], [np.array([1, 1])])
    result = naive.eval_detection_voc_naive(*args)
    np.testing.assert_allclose(result["ap"], [np.nan, 28 / 33])
    assert naive.eval_detection_voc_naive(*args, use_07_metric=False)["map"] == pytest.approx(5 / 6)

