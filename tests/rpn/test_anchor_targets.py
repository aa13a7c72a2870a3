"""Anchor targets (Faster R-CNN Sec. 3.1.2), on cases worked out by hand.

Exercise: ``python -m pytest tests/rpn/test_anchor_targets.py --impl my_rpn.py`` runs these on a learner's
``anchor_targets`` (the skeleton is ``exercises/anchor_targets.py``).
"""
import numpy as np
import pytest

from minircnn.boxes import encode

RNG = np.random.default_rng(0)


def square(x, y, side):
    return [x, y, x + side - 1, y + side - 1]


def test_labels_follow_the_two_thresholds(exercise):
    """gt = 20x20 at (10, 10). IoU of each anchor with it (+1 areas):
    same box 1.0 -> 1; shifted by 2 px: 18*20 / (2*400 - 360) = 0.818 -> 1; shifted by 5: 0.6 -> ignored;
    shifted by 10: 0.333 -> ignored; far away: 0 -> 0."""
    gt = np.array([square(10, 10, 20)], float)
    anchors = np.array([square(10, 10, 20), square(12, 10, 20), square(15, 10, 20), square(20, 10, 20),
                        square(60, 60, 20)], float)
    labels, _ = exercise.anchor_targets(anchors, gt, (100, 100), RNG)
    np.testing.assert_array_equal(labels, [1, 1, -1, -1, 0])


def test_each_box_s_best_anchor_is_foreground_even_below_0_7(exercise):
    """A 20x20 box whose best anchor overlaps it at 0.6 only: that anchor is still foreground; a worse one at
    0.333 stays ignored, one at 0.0 is background."""
    gt = np.array([square(10, 10, 20)], float)
    anchors = np.array([square(15, 10, 20), square(20, 10, 20), square(70, 70, 20)], float)
    labels, _ = exercise.anchor_targets(anchors, gt, (100, 100), RNG)
    np.testing.assert_array_equal(labels, [1, -1, 0])


def test_anchors_crossing_the_border_are_ignored(exercise):
    """The image is 50x40 (h x w): x must stay in [0, 39], y in [0, 49]; even a perfect match outside is -1."""
    gt = np.array([square(0, 0, 20)], float)
    anchors = np.array([square(-1, 0, 20), square(0, 0, 20), square(25, 0, 20), square(0, 31, 20),
                        square(20, 30, 20)], float)
    labels, _ = exercise.anchor_targets(anchors, gt, (50, 40), RNG)
    np.testing.assert_array_equal(labels, [-1, 1, -1, -1, 0])


def test_targets_move_foreground_anchors_onto_their_best_box(exercise):
    gts = np.array([square(10, 10, 20), square(60, 60, 30)], float)
    anchors = np.array([square(12, 10, 20), square(61, 62, 30), square(0, 70, 10)], float)
    labels, targets = exercise.anchor_targets(anchors, gts, (100, 100), RNG)
    np.testing.assert_array_equal(labels, [1, 1, 0])
    np.testing.assert_allclose(targets[:2], encode(anchors[:2], gts), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(targets[2], 0)
    assert targets.dtype == np.float32 and labels.dtype.kind == "i"


def test_the_sample_has_at_most_256_anchors_half_of_them_foreground(exercise):
    """400 anchors on the box itself (foreground) and 400 far away (background): 128 of each are kept."""
    gt = np.array([square(10, 10, 20)], float)
    anchors = np.array([square(10, 10, 20)] * 400 + [square(60, 60, 20)] * 400, float)
    labels, _ = exercise.anchor_targets(anchors, gt, (100, 100), np.random.default_rng(1))
    assert np.count_nonzero(labels[:400] == 1) == 128 and np.count_nonzero(labels[:400] == 0) == 0
    assert np.count_nonzero(labels[400:] == 0) == 128 and np.count_nonzero(labels[400:] == 1) == 0


def test_few_objects_fill_the_sample_with_background(exercise):
    """3 foreground anchors: all kept, and 253 of the 500 background ones."""
    gt = np.array([square(10, 10, 20)], float)
    anchors = np.array([square(10, 10, 20)] * 3 + [square(60, 60, 20)] * 500, float)
    labels, _ = exercise.anchor_targets(anchors, gt, (100, 100), np.random.default_rng(2))
    assert np.count_nonzero(labels == 1) == 3 and np.count_nonzero(labels == 0) == 253


def test_an_image_without_objects_has_only_background(exercise):
    anchors = np.array([square(10 + i, 10, 20) for i in range(10)], float)
    labels, targets = exercise.anchor_targets(anchors, np.zeros((0, 4)), (100, 100), RNG)
    np.testing.assert_array_equal(labels, 0)
    np.testing.assert_array_equal(targets, 0)


def test_the_sample_is_drawn_from_the_generator(exercise):
    """Same generator state, same sample; another seed, another sample."""
    gt = np.array([square(10, 10, 20)], float)
    anchors = np.array([square(10, 10, 20)] * 300 + [square(60, 60, 20)] * 300, float)
    a, _ = exercise.anchor_targets(anchors, gt, (100, 100), np.random.default_rng(5))
    b, _ = exercise.anchor_targets(anchors, gt, (100, 100), np.random.default_rng(5))
    c, _ = exercise.anchor_targets(anchors, gt, (100, 100), np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_settings_are_checked():
    from minircnn.rpn import AnchorTargetSettings
    with pytest.raises(ValueError, match="bg_thresh"):
        AnchorTargetSettings(fg_thresh=0.2, bg_thresh=0.3)
