"""Tests for minircnn.boxes: IoU, encode/decode, clipping, NMS (docs/reference.md §7, §9).

Exercise: ``python -m pytest tests/test_boxes.py --impl my_boxes.py`` runs the tests of ``iou``, ``encode``,
``decode`` and ``nms`` (those taking the ``exercise`` fixture) on a learner's versions (the skeleton is
``exercises/boxes.py``); the rest test the package's own functions.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minircnn.backend import asnumpy
from minircnn.boxes import batched_nms, clip_boxes, decode, encode, encode_classwise, iou, nms
from minircnn.functional.naive import batched_nms_naive, nms_naive


def random_boxes(rng, n, size=300, max_wh=120, integer=False):
    """(n, 4) float64 boxes with x2 >= x1, y2 >= y1 inside a size x size image."""
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(0, max_wh, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    return np.floor(boxes) if integer else boxes


# ---------------------------------------------------------------------------------------------------------- IoU
def test_iou_hand_values(exercise, xp):
    """IoU uses +1 areas: 10x10 boxes shifted by 5 share 5x5 = 25 px of a 175 px union; touching corners share 1 px;
    a gap of one pixel shares nothing."""
    a = xp.asarray([[0, 0, 9, 9]], dtype=xp.float64)
    b = xp.asarray([[5, 5, 14, 14], [9, 9, 18, 18], [10, 0, 19, 9], [0, 0, 9, 9]], dtype=xp.float64)
    np.testing.assert_allclose(asnumpy(exercise.iou(a, b)), [[25 / 175, 1 / 199, 0.0, 1.0]], rtol=1e-15)


def test_iou_symmetric_and_bounded(exercise, xp):
    """iou(a, b) is the transpose of iou(b, a), lies in [0, 1], and a box has IoU 1 with itself."""
    rng = np.random.default_rng(0)
    a, b = xp.asarray(random_boxes(rng, 50)), xp.asarray(random_boxes(rng, 70))
    ab, ba = asnumpy(exercise.iou(a, b)), asnumpy(exercise.iou(b, a))
    assert ab.shape == (50, 70)
    np.testing.assert_array_equal(ab, ba.T)
    assert (ab >= 0).all() and (ab <= 1).all()
    np.testing.assert_allclose(np.diag(asnumpy(exercise.iou(a, a))), 1.0, rtol=1e-12)


def test_iou_dtypes(exercise):
    """float32 boxes give a float32 IoU, integer boxes float64; zero-area pairs give 0, not NaN."""
    box = np.array([[0, 0, 9, 9]])
    assert exercise.iou(box.astype(np.float32), box.astype(np.float32)).dtype == np.float32
    assert exercise.iou(box, box).dtype == np.float64
    flat = np.array([[5, 5, 4, 4]], dtype=np.float64)              # x2 = x1 - 1: zero width and height
    assert exercise.iou(flat, flat)[0, 0] == 0


def test_iou_zero_boxes(exercise, xp):
    """No boxes on either side gives an empty (N, K) matrix."""
    some = xp.asarray([[0, 0, 9, 9]] * 3, dtype=xp.float32)
    empty = xp.zeros((0, 4), dtype=xp.float32)
    assert exercise.iou(empty, some).shape == (0, 3)
    assert exercise.iou(some, empty).shape == (3, 0)
    assert exercise.iou(empty, empty).shape == (0, 0)


@pytest.mark.validation
@pytest.mark.parametrize("bad", [np.zeros((3, 5)), np.zeros(4), np.zeros((2, 4, 1))])
def test_iou_bad_shape_names_argument(exercise, bad):
    """Boxes that are not (N, 4) raise a ValueError naming the argument and the expected shape."""
    with pytest.raises(ValueError, match=r"b must have shape \(N, 4\)"):
        exercise.iou(np.zeros((1, 4)), bad)


# ------------------------------------------------------------------------------------------------ encode/decode
def test_encode_hand_values(exercise):
    """A 10x10 proposal and a 20x20 target whose centre is 5 px right: dx = 5/10, dy = 0, dw = dh = log 2."""
    rois = np.array([[0.0, 0.0, 9.0, 9.0]])
    gt = np.array([[0.0, -5.0, 19.0, 14.0]])      # centre (10, 5) vs (5, 5), size 20
    np.testing.assert_allclose(exercise.encode(rois, gt), [[0.5, 0.0, np.log(2), np.log(2)]], rtol=1e-15)


box_coord = st.floats(0, 1000, allow_nan=False, allow_infinity=False)
box_size = st.floats(1, 500, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(box_coord, box_coord, box_size, box_size, box_coord, box_coord, box_size, box_size),
                min_size=1, max_size=8))
def test_decode_inverts_encode(exercise, rows):
    """decode(p, encode(p, g)) == g for any proposals p and targets g of positive width and height (+1 widths)."""
    a = np.array(rows)
    p = np.stack([a[:, 0], a[:, 1], a[:, 0] + a[:, 2] - 1, a[:, 1] + a[:, 3] - 1], axis=1)
    g = np.stack([a[:, 4], a[:, 5], a[:, 4] + a[:, 6] - 1, a[:, 5] + a[:, 7] - 1], axis=1)
    np.testing.assert_allclose(exercise.decode(p, exercise.encode(p, g)), g, rtol=1e-9, atol=1e-9)


def test_decode_zero_deltas_is_identity(exercise, xp):
    """Zero deltas give back the proposals themselves (the -1 on x2/y2 keeps the +1 width)."""
    rois = xp.asarray(random_boxes(np.random.default_rng(1), 20))
    np.testing.assert_allclose(asnumpy(exercise.decode(rois, xp.zeros((20, 4)))), asnumpy(rois), atol=1e-12)


def test_decode_classwise_columns(exercise, xp):
    """(N, 4K) deltas decode each class's four columns independently, like K calls on (N, 4) deltas."""
    rng = np.random.default_rng(2)
    rois = xp.asarray(random_boxes(rng, 6, max_wh=50) + [0, 0, 1, 1])
    deltas = xp.asarray(rng.normal(0, 0.2, (6, 12)))
    out = asnumpy(exercise.decode(rois, deltas))
    assert out.shape == (6, 12)
    for k in range(3):
        np.testing.assert_allclose(out[:, 4 * k:4 * k + 4],
                                   asnumpy(exercise.decode(rois, deltas[:, 4 * k:4 * k + 4])))


def test_encode_classwise_places_targets_and_weights():
    """Row i's deltas land in the four columns of its label with weight 1; background rows stay all zero."""
    rois = np.array([[0, 0, 9, 9], [0, 0, 9, 9], [10, 10, 29, 29]], dtype=np.float32)
    gt = np.array([[1, 1, 10, 10], [0, 0, 19, 19], [10, 10, 29, 29]], dtype=np.float32)
    targets, weights = encode_classwise(rois, gt, np.array([2, 0, 1]), num_classes=3)
    assert targets.shape == weights.shape == (3, 12) and targets.dtype == np.float32
    d = encode(rois, gt)
    np.testing.assert_array_equal(targets[0], np.r_[np.zeros(8), d[0]])
    np.testing.assert_array_equal(targets[1], np.zeros(12))
    np.testing.assert_array_equal(targets[2], np.r_[np.zeros(4), d[2], np.zeros(4)])
    np.testing.assert_array_equal(weights, [[0] * 8 + [1] * 4, [0] * 12, [0] * 4 + [1] * 4 + [0] * 4])
    with pytest.raises(ValueError, match="labels must lie in"):
        encode_classwise(rois, gt, np.array([0, 3, 1]), num_classes=3)


def test_encode_decode_zero_boxes(xp):
    """Zero proposals encode to (0, 4) and decode to (0, 4K)."""
    empty = xp.zeros((0, 4))
    assert encode(empty, empty).shape == (0, 4)
    assert decode(empty, xp.zeros((0, 8))).shape == (0, 8)
    t, w = encode_classwise(empty, empty, xp.zeros(0, dtype=xp.int64), num_classes=3)
    assert t.shape == w.shape == (0, 12)


@pytest.mark.validation
def test_encode_decode_bad_shapes(exercise):
    """Wrong shapes and row counts raise ValueErrors naming the argument."""
    with pytest.raises(ValueError, match=r"gt must have shape \(N, 4\)"):
        exercise.encode(np.zeros((2, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rois and gt must have the same number of rows"):
        exercise.encode(np.zeros((2, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"deltas must have shape \(N, 4K\)"):
        exercise.decode(np.zeros((2, 4)), np.zeros((2, 6)))


# ----------------------------------------------------------------------------------------------------- clipping
def test_clip_boxes(xp):
    """Every coordinate is clamped to [0, W-1] (x) and [0, H-1] (y), for all K classes; boxes inside are unchanged."""
    boxes = xp.asarray([[-5, -3, 120, 40, 10, 10, 20, 20], [3, 90, 4, 120, -1, -1, 200, 200]], dtype=xp.float32)
    out = asnumpy(clip_boxes(boxes, (100, 50, 3)))                      # H = 100, W = 50
    np.testing.assert_array_equal(out, [[0, 0, 49, 40, 10, 10, 20, 20], [3, 90, 4, 99, 0, 0, 49, 99]])
    assert out.dtype == np.float32
    assert clip_boxes(xp.zeros((0, 4)), (10, 10)).shape == (0, 4)
    with pytest.raises(ValueError, match="image_shape"):
        clip_boxes(boxes, (100,))


# ---------------------------------------------------------------------------------------------------------- NMS
def test_nms_hand_cases(exercise):
    """Box 1 overlaps box 0 with IoU 81/119 = 0.68 and box 2 is apart: at 0.5 box 1 goes, at 0.7 all stay.
    Kept indices come in descending score order."""
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29]], dtype=np.float32)
    scores = np.array([0.8, 0.7, 0.9], dtype=np.float32)
    np.testing.assert_array_equal(exercise.nms(boxes, scores, 0.5), [2, 0])
    np.testing.assert_array_equal(exercise.nms(boxes, scores, 0.7), [2, 0, 1])
    assert exercise.nms(boxes, scores, 0.5).dtype == np.int64


def test_nms_threshold_is_strict(exercise):
    """A box whose IoU equals the threshold exactly (50/100 = 0.5) is kept: suppression needs IoU > threshold."""
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 4]], dtype=np.float32)
    np.testing.assert_array_equal(exercise.nms(boxes, np.array([0.9, 0.8]), 0.5), [0, 1])
    np.testing.assert_array_equal(exercise.nms(boxes, np.array([0.9, 0.8]), 0.49), [0])


def test_nms_threshold_compared_as_double(exercise):
    """A float32 IoU of 7/10 is not above a threshold of 0.7 even though float32(0.7) < 0.7 (C++ NMS semantics)."""
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 6]], dtype=np.float32)          # IoU = 70 / 100
    np.testing.assert_array_equal(exercise.nms(boxes, np.array([0.9, 0.8]), 0.7), [0, 1])


def test_nms_ties_broken_by_index(exercise):
    """Equal scores are visited in index order: of two identical boxes the lower index survives, and kept boxes
    with equal scores are listed by index."""
    boxes = np.array([[0, 0, 9, 9], [50, 50, 59, 59], [0, 0, 9, 9], [50, 50, 59, 59]], dtype=np.float64)
    np.testing.assert_array_equal(exercise.nms(boxes, np.ones(4), 0.5), [0, 1])
    np.testing.assert_array_equal(exercise.nms(boxes, np.array([1, 2, 2, 1]), 0.5), [1, 2])


def test_nms_greedy_chain(exercise):
    """Greedy semantics: box 0 suppresses box 1, so box 1 cannot suppress box 2 (IoU(0, 2) is only 0.11)."""
    boxes = np.array([[0, 0, 9, 9], [4, 0, 13, 9], [8, 0, 17, 9]], dtype=np.float64)
    np.testing.assert_array_equal(exercise.nms(boxes, np.array([3.0, 2.0, 1.0]), 0.3), [0, 2])


@pytest.mark.parametrize("block", [1, 7, 64, None])
def test_nms_matches_slow_loop(block):
    """On random boxes with many tied scores, nms keeps exactly the boxes of the pair-by-pair greedy loop
    (``nms_naive``), in the same order, whatever the block size (blocks only change speed)."""
    rng = np.random.default_rng(3)
    for trial in range(6):
        n = int(rng.integers(1, 400))
        boxes = random_boxes(rng, n, integer=trial % 2 == 0)
        scores = rng.integers(0, 30, n).astype(np.float64)                   # ties on purpose
        for threshold in (0.0, 0.3, 0.7):
            np.testing.assert_array_equal(nms(boxes, scores, threshold, block=block),
                                          nms_naive(boxes, scores, threshold))


def test_nms_matches_the_greedy_loop_on_random_boxes(exercise):
    """On random boxes with tied scores, at three thresholds, the same boxes in the same order as the pair-by-pair
    greedy loop (``nms_naive``)."""
    rng = np.random.default_rng(8)
    boxes = random_boxes(rng, 300, integer=True)
    scores = rng.integers(0, 20, 300).astype(np.float64)
    for threshold in (0.0, 0.3, 0.7):
        np.testing.assert_array_equal(exercise.nms(boxes, scores, threshold), nms_naive(boxes, scores, threshold))


def test_nms_long_suppression_chain(exercise):
    """Boxes sliding by one pixel form a long chain (each suppresses only its close neighbours), which takes the
    block resolver's host fallback; the result still equals the greedy loop."""
    x = np.arange(300, dtype=np.float64)
    boxes = np.stack([x, np.zeros(300), x + 9, np.full(300, 9.0)], axis=1)
    scores = 1.0 - x / 300
    for threshold in (0.6, 0.8):
        np.testing.assert_array_equal(exercise.nms(boxes, scores, threshold), nms_naive(boxes, scores, threshold))


def test_nms_matches_torchvision(exercise):
    """On 2000 integer-cornered float32 boxes, nms keeps exactly torchvision's boxes given x2 + 1, y2 + 1 (torchvision
    has no +1 in its areas). torchvision is an optional oracle; skipped when absent."""
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    rng = np.random.default_rng(4)
    boxes = random_boxes(rng, 2000, size=600, max_wh=200, integer=True).astype(np.float32)
    scores = rng.random(2000).astype(np.float32)
    for threshold in (0.3, 0.5, 0.7):
        expected = tv.ops.nms(torch.from_numpy(boxes + np.float32([0, 0, 1, 1])), torch.from_numpy(scores), threshold)
        np.testing.assert_array_equal(exercise.nms(boxes, scores, threshold), expected.numpy())


def test_nms_backend_twin(xp):
    """On thousands of random boxes, nms on the xp backend (its default block: 256 on NumPy, 2048 on CuPy) keeps
    exactly what the NumPy path keeps with a different block size. On CuPy this is the CPU/GPU twin test."""
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 3000, size=800, max_wh=200).astype(np.float32)
    scores = np.round(rng.random(3000), 2).astype(np.float32)                 # ties on purpose
    for threshold in (0.3, 0.7):
        expected = nms(boxes, scores, threshold, block=97)
        got = nms(xp.asarray(boxes), xp.asarray(scores), threshold)
        np.testing.assert_array_equal(asnumpy(got), expected)


def test_nms_max_keep_hand_case():
    """Boxes 2, 0 and 1 are kept at 0.7 (test_nms_hand_cases); max_keep=2 stops after the first two, 1 after one."""
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29]], dtype=np.float32)
    scores = np.array([0.8, 0.7, 0.9], dtype=np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, max_keep=2), [2, 0])
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, max_keep=1), [2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, max_keep=10), [2, 0, 1])
    with pytest.raises(ValueError, match="max_keep"):
        nms(boxes, scores, 0.7, max_keep=0)


def test_nms_max_keep_is_a_prefix_of_the_greedy_answer(xp):
    """Stopping early keeps exactly the first max_keep boxes of the greedy loop (``nms_naive``), across block
    boundaries (blocks of 32, 64, ...) and with tied scores."""
    rng = np.random.default_rng(6)
    boxes = random_boxes(rng, 600, size=200, max_wh=50)
    scores = rng.integers(0, 50, 600).astype(np.float64)
    for threshold in (0.3, 0.7):
        expected = nms_naive(boxes, scores, threshold)
        assert len(expected) > 100
        for max_keep in (1, 5, 33, 100, len(expected) + 5):
            keep = nms(xp.asarray(boxes), xp.asarray(scores), threshold, max_keep=max_keep)
            np.testing.assert_array_equal(asnumpy(keep), expected[:max_keep])


def test_nms_zero_boxes(xp):
    """No boxes in, no indices out (an empty int64 array)."""
    keep = nms(xp.zeros((0, 4), dtype=xp.float32), xp.zeros(0, dtype=xp.float32), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64
    keep = batched_nms(xp.zeros((0, 4)), xp.zeros(0), xp.zeros(0, dtype=xp.int64), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64


@pytest.mark.validation
def test_nms_bad_inputs(exercise):
    """Bad shapes, mismatched lengths and NaN scores raise ValueErrors naming the argument."""
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        exercise.nms(np.zeros((3, 5)), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"scores must have shape \(N,\) = \(3,\)"):
        exercise.nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        exercise.nms(np.zeros((2, 4)), np.array([0.5, np.nan]), 0.5)
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\)"):
        batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(4, dtype=int), 0.5)


def test_batched_nms_per_class(xp):
    """Identical boxes of different classes do not suppress each other; within a class they do. The merged result
    is ordered by score."""
    boxes = xp.asarray([[0, 0, 9, 9]] * 4, dtype=xp.float32)
    scores = xp.asarray([0.5, 0.9, 0.8, 0.6], dtype=xp.float32)
    labels = xp.asarray([1, 2, 1, 2])
    np.testing.assert_array_equal(asnumpy(batched_nms(boxes, scores, labels, 0.5)), [1, 2])


def test_batched_nms_matches_per_class_loop():
    """batched_nms equals running the greedy loop on each class's boxes and merging by (descending score, index)
    (``batched_nms_naive``)."""
    rng = np.random.default_rng(6)
    boxes = random_boxes(rng, 500)
    scores = rng.integers(0, 40, 500).astype(np.float64)
    labels = rng.integers(0, 5, 500)
    np.testing.assert_array_equal(batched_nms(boxes, scores, labels, 0.4),
                                  batched_nms_naive(boxes, scores, labels, 0.4))
