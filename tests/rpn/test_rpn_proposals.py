"""The proposal stage: decode, clip, minimum size, top-N, NMS, top-N."""
import numpy as np
import pytest

from minircnn.rpn import ProposalSettings, proposals_from_outputs


def _run(anchors, objectness, deltas=None, size=(100, 100), scale=1.0, **settings):
    anchors = np.asarray(anchors, np.float32)
    deltas = np.zeros((len(anchors), 4), np.float32) if deltas is None else np.asarray(deltas, np.float32)
    return proposals_from_outputs(anchors, np.asarray(objectness, np.float32), deltas, size, scale,
                                  ProposalSettings(**settings))


def test_zero_deltas_give_the_anchors_by_objectness():
    anchors = [[0, 0, 9, 9], [50, 50, 69, 69], [20, 0, 39, 9]]
    boxes, scores = _run(anchors, [0.2, 0.9, 0.5])
    np.testing.assert_allclose(boxes, [anchors[1], anchors[2], anchors[0]])
    np.testing.assert_allclose(scores, [0.9, 0.5, 0.2])


def test_deltas_move_the_box_and_it_is_clipped_to_the_image():
    """dx = 0.5 moves a 20-pixel anchor by 10 pixels to the right; the image is 100x25 (h x w), so x2 = 29 becomes
    24."""
    boxes, _ = _run([[0, 0, 19, 19]], [1.0], [[0.5, 0, 0, 0]], size=(100, 25))
    np.testing.assert_allclose(boxes, [[10, 0, 24, 19]])


def test_nms_at_0_7_keeps_the_better_of_two_near_duplicates():
    """Shifted by 1 pixel: IoU 19*20 / 420 = 0.905 > 0.7, the weaker goes; shifted by 10: 0.333, both stay."""
    boxes, scores = _run([[0, 0, 19, 19], [1, 0, 20, 19], [10, 0, 29, 19]], [0.8, 0.9, 0.7])
    np.testing.assert_allclose(boxes, [[1, 0, 20, 19], [10, 0, 29, 19]])


def test_boxes_below_the_minimum_size_are_dropped_at_the_image_scale():
    """min_size 4 image pixels at scale 2 is 8 blob pixels: a 7-pixel-wide box goes, an 8-pixel one stays."""
    boxes, _ = _run([[0, 0, 6, 19], [50, 0, 57, 19]], [0.9, 0.8], scale=2.0, min_size=4)
    np.testing.assert_allclose(boxes, [[50, 0, 57, 19]])


def test_top_n_before_and_after_nms():
    anchors = [[20 * i, 0, 20 * i + 9, 9] for i in range(5)]                 # disjoint
    boxes, scores = _run(anchors, [0.1, 0.5, 0.3, 0.9, 0.7], pre_nms_top_n=4, post_nms_top_n=2)
    np.testing.assert_allclose(scores, [0.9, 0.7])
    boxes, scores = _run(anchors, [0.1, 0.5, 0.3, 0.9, 0.7], pre_nms_top_n=2, post_nms_top_n=5)
    np.testing.assert_allclose(scores, [0.9, 0.7])


def test_huge_size_deltas_are_capped_instead_of_overflowing():
    boxes, _ = _run([[2000, 2000, 2015, 2015]], [1.0], [[0, 0, 1000, 1000]], size=(5000, 5000))
    assert np.isfinite(boxes).all()
    assert boxes[0, 2] - boxes[0, 0] + 1 == pytest.approx(1000, rel=1e-4)        # 16 * 1000 / 16


def test_settings_are_checked():
    with pytest.raises(ValueError, match="nms_thresh"):
        ProposalSettings(nms_thresh=0)
