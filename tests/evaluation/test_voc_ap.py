"""Tests for minircnn.evaluation: VOC devkit matching, 11-point and area AP (docs/reference.md §10, §14.16).

Exercise: ``python -m pytest tests/evaluation/test_voc_ap.py --impl my_ap.py`` runs the ``voc_ap`` tests (those
taking the ``exercise`` fixture) on a learner's version (the skeleton is ``exercises/voc_ap.py``).
"""
import numpy as np
import pytest

from minircnn.evaluation import (COCO_IOUS, eval_detection_coco_style, eval_detection_voc, match_detections,
                                 precision_recall)
from minircnn.functional.naive import eval_detection_voc_naive


def box(x1, y1, x2, y2):
    return [x1, y1, x2, y2]


A, B, C, D, FAR = box(0, 0, 9, 9), box(0, 0, 9, 9), box(30, 30, 39, 39), box(50, 50, 59, 59), box(100, 100, 109, 109)


def hand_example():
    """Two images, three classes; every outcome can be checked on paper.

    image 0: ground truth A (class 1) and D (class 1, difficult).
             detections: class 1 on A (0.9) -> TP; class 1 on A again (0.8) -> duplicate, FP;
                         class 1 on D (0.7) -> ignored; class 2 on A (0.95) -> FP (no class-2 box in image 0).
    image 1: ground truth B (class 1) and C (class 2).
             detections: class 1 far away (0.6) -> FP; class 1 on B (0.5) -> TP; class 2 on C (0.4) -> TP;
                         class 3 on C (0.3) -> class 3 has no ground truth anywhere.
    """
    pred_boxes = [np.array([A, A, D, A], float), np.array([FAR, B, C, C], float)]
    pred_labels = [np.array([1, 1, 1, 2]), np.array([1, 1, 2, 3])]
    pred_scores = [np.array([0.9, 0.8, 0.7, 0.95]), np.array([0.6, 0.5, 0.4, 0.3])]
    gt_boxes = [np.array([A, D], float), np.array([B, C], float)]
    gt_labels = [np.array([1, 1]), np.array([1, 2])]
    gt_difficult = [np.array([False, True]), np.array([False, False])]
    return pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult


def test_precision_recall_hand_example():
    """Class 1 ranks TP, FP (duplicate), FP (miss) -- the difficult hit is dropped -- then TP, with 2 positives
    (the difficult box does not count): precision 1, 1/2, 1/3, 1/2 and recall 1/2, 1/2, 1/2, 1. Class 2 ranks the
    wrong-image FP first. Class 3 has no ground truth, so its recall is undefined (None)."""
    prec, rec = precision_recall(*hand_example())
    assert len(prec) == len(rec) == 4 and prec[0] is None and rec[0] is None
    np.testing.assert_allclose(prec[1], [1, 1 / 2, 1 / 3, 1 / 2])
    np.testing.assert_allclose(rec[1], [1 / 2, 1 / 2, 1 / 2, 1])
    np.testing.assert_allclose(prec[2], [0, 1 / 2])
    np.testing.assert_allclose(rec[2], [0, 1])
    np.testing.assert_allclose(prec[3], [0])
    assert rec[3] is None


def test_eval_hand_example_07_metric():
    """11-point AP of class 1: precision 1 up to recall 0.5 (6 points), then 1/2 (5 points) -> 8.5/11; class 2:
    precision 1/2 at every point -> 1/2; class 3 (no ground truth) and background are NaN; mAP skips the NaNs."""
    result = eval_detection_voc(*hand_example())
    np.testing.assert_allclose(result["ap"], [np.nan, 8.5 / 11, 0.5, np.nan])
    assert result["map"] == pytest.approx((8.5 / 11 + 0.5) / 2)


def test_eval_hand_example_area_metric():
    """Area AP of class 1: 0.5 x 1 + 0.5 x 1/2 = 0.75; class 2: 1 x 1/2 = 0.5 -> mAP 0.625."""
    result = eval_detection_voc(*hand_example(), use_07_metric=False)
    np.testing.assert_allclose(result["ap"], [np.nan, 0.75, 0.5, np.nan])
    assert result["map"] == pytest.approx(0.625)


def test_voc_ap_07_vs_area_on_one_curve(exercise):
    """On the curve (recall, precision) = (0.5, 1), (1, 0.5) the 11-point AP is (6 x 1 + 5 x 0.5) / 11 = 0.7727 and
    the area AP is 0.5 x 1 + 0.5 x 0.5 = 0.75; with the envelope, a dip in precision does not lower either."""
    assert exercise.voc_ap([0.5, 1.0], [1.0, 0.5], use_07_metric=True) == pytest.approx(8.5 / 11)
    assert exercise.voc_ap([0.5, 1.0], [1.0, 0.5], use_07_metric=False) == pytest.approx(0.75)
    dipped = ([0.5, 0.5, 1.0], [1.0, 0.2, 0.5])
    assert exercise.voc_ap(*dipped, use_07_metric=True) == pytest.approx(8.5 / 11)
    assert exercise.voc_ap(*dipped, use_07_metric=False) == pytest.approx(0.75)


def test_voc_ap_recall_exactly_three_tenths(exercise):
    """A recall of exactly 3/10 reaches the t = 0.3 point of the 11-point AP (4 points of 11), and the area is 0.3."""
    assert exercise.voc_ap([3 / 10], [1.0]) == pytest.approx(4 / 11)
    assert exercise.voc_ap([3 / 10], [1.0], use_07_metric=False) == pytest.approx(0.3)


def test_voc_ap_never_reaching_high_recall(exercise):
    """Recall stops at 0.6 with precision 2/3 throughout: the 11-point AP counts 7 points (t = 0 .. 0.6) at 2/3 and
    4 at 0 -> 14/33; the area is 0.6 x 2/3 = 0.4."""
    recall, precision = [0.2, 0.4, 0.6], [2 / 3, 2 / 3, 2 / 3]
    assert exercise.voc_ap(recall, precision) == pytest.approx(14 / 33)
    assert exercise.voc_ap(recall, precision, use_07_metric=False) == pytest.approx(0.4)


def test_voc_ap_empty_curve(exercise):
    """An empty curve (no detections of the class) has AP 0 under both rules."""
    assert exercise.voc_ap([], []) == 0 and exercise.voc_ap([], [], use_07_metric=False) == 0


@pytest.mark.validation
def test_voc_ap_bad_curve(exercise):
    """Curves of different lengths raise a ValueError."""
    with pytest.raises(ValueError, match="same length"):
        exercise.voc_ap([0.5, 1.0], [1.0])


def test_iou_of_exactly_half_is_a_match():
    """The devkit matches at IoU >= 0.5: a 10x5 detection inside a 10x10 box (IoU 50/100) is a TP; at a threshold
    just above 0.5 it is a miss."""
    args = ([np.array([box(0, 0, 9, 4)], float)], [np.array([1])], [np.array([0.9])],
            [np.array([A], float)], [np.array([1])])
    assert eval_detection_voc(*args)["ap"][1] == pytest.approx(1.0)
    assert eval_detection_voc(*args, iou_thresh=0.51)["ap"][1] == 0.0


def test_duplicate_on_matched_box_is_fp_even_if_another_box_is_free():
    """The best-overlap box is chosen before looking at whether it is taken: a second detection on box A (IoU 1) is
    a duplicate FP although box E (IoU 0.67 with it) is still unmatched. AP = 6/11 (recall stops at 0.5)."""
    E = box(0, 2, 9, 11)
    args = ([np.array([A, A], float)], [np.array([1, 1])], [np.array([0.9, 0.8])],
            [np.array([A, E], float)], [np.array([1, 1])])
    prec, rec = precision_recall(*args)
    np.testing.assert_allclose(prec[1], [1, 0.5])
    np.testing.assert_allclose(rec[1], [0.5, 0.5])
    assert eval_detection_voc(*args)["ap"][1] == pytest.approx(6 / 11)


def test_class_without_detections_has_ap_zero():
    """A class with ground truth but no detections gets AP 0 (not NaN): it counts in the mAP."""
    result = eval_detection_voc([np.zeros((0, 4))], [np.zeros(0, int)], [np.zeros(0)],
                                [np.array([A], float)], [np.array([2])], num_classes=3)
    np.testing.assert_array_equal(result["ap"], [np.nan, np.nan, 0.0])
    assert result["map"] == 0.0


def test_zero_images_and_zero_boxes():
    """No images, or images with no boxes at all, give NaN for every class and a NaN mAP (nothing to measure)."""
    result = eval_detection_voc([], [], [], [], [])
    assert result["ap"].shape == (1,) and np.isnan(result["map"])
    empty = [np.zeros((0, 4))] * 3, [np.zeros(0, int)] * 3, [np.zeros(0)] * 3, [np.zeros((0, 4))] * 3, \
        [np.zeros(0, int)] * 3
    result = eval_detection_voc(*empty, num_classes=4)
    assert result["ap"].shape == (4,) and np.isnan(result["ap"]).all() and np.isnan(result["map"])


def test_streams_generators():
    """Generators work like lists (each is consumed once) and give the same result."""
    lists = hand_example()
    gens = [(x for x in field) for field in lists]
    np.testing.assert_array_equal(eval_detection_voc(*gens)["ap"], eval_detection_voc(*lists)["ap"])


def test_matches_slow_devkit_loop_on_random_data():
    """On random images (clustered boxes, tied scores, difficult boxes, duplicates, empty images), both metrics and
    two IoU thresholds, every class's AP equals a detection-by-detection transcription of the devkit's loop
    (``eval_detection_voc_naive``); a class nobody has (4) is NaN in both."""
    rng = np.random.default_rng(0)
    data = [[] for _ in range(6)]
    for _ in range(40):
        g = int(rng.integers(0, 5))
        xy = rng.integers(0, 100, (g, 2))
        gb = np.concatenate([xy, xy + rng.integers(5, 40, (g, 2))], 1).astype(float)
        p = int(rng.integers(0, 25))
        src = gb[rng.integers(0, g, p)] if g else np.zeros((p, 4)) + [0, 0, 20, 20]
        pb = src + rng.integers(-4, 5, (p, 4))
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2])
        for field, value in zip(data, (pb, rng.integers(1, 4, p), np.round(rng.random(p), 1),
                                       gb, rng.integers(1, 4, g), rng.random(g) < 0.2)):
            field.append(value)
    for use_07 in (True, False):
        for thresh in (0.5, 0.7):
            ap = eval_detection_voc(*data, iou_thresh=thresh, use_07_metric=use_07, num_classes=5)["ap"]
            expected = eval_detection_voc_naive(*data, iou_thresh=thresh, use_07_metric=use_07, num_classes=5)["ap"]
            assert np.isnan(expected[4]) and not np.isnan(expected[1:4]).any()
            np.testing.assert_allclose(ap, expected, rtol=1e-12)


# -------------------------------------------------------------------------------------------------- bad inputs
def corrupt(field, image, value):
    args = list(hand_example())
    args[field] = list(args[field])
    args[field][image] = value
    return args


@pytest.mark.parametrize("field, value, message", [
    (0, np.array([A, box(5, 0, 4, 9), A, A], float), r"image 1: pred_boxes row 1 has x2 < x1"),
    (3, np.array([A, box(0, 9, 9, 0)], float), r"image 1: gt_boxes row 1 has x2 < x1 or y2 < y1"),
    (0, np.zeros((4, 5)), r"image 1: pred_boxes must have shape \(N, 4\)"),
    (0, np.array([A, A, A, [0, 0, np.nan, 9]], float), r"image 1: pred_boxes contains NaN"),
    (2, np.array([0.6, np.nan, 0.4, 0.3]), r"image 1: pred_scores contains NaN"),
    (2, np.array([0.6, 0.5]), r"image 1: pred_scores must have shape \(4,\)"),
    (1, np.array([1, 0, 2, 3]), r"image 1: pred_labels must be class ids >= 1"),
    (4, np.array([1, -2]), r"image 1: gt_labels must be class ids >= 1"),
    (5, np.array([True]), r"image 1: gt_difficult must have shape \(2,\)"),
])
def test_bad_input_names_image_and_field(field, value, message):
    """Broken boxes, NaN scores, wrong shapes and out-of-range labels raise a ValueError naming image and field."""
    with pytest.raises(ValueError, match=message):
        eval_detection_voc(*corrupt(field, 1, value))


def test_labels_beyond_num_classes():
    """With num_classes given, a label >= num_classes is out of range."""
    with pytest.raises(ValueError, match=r"image 1: pred_labels must be class ids \[1, 3\)"):
        eval_detection_voc(*hand_example(), num_classes=3)


def test_mismatched_lengths_name_the_fields():
    """Inputs with different numbers of images raise a ValueError saying which ran out and at which image."""
    args = list(hand_example())
    args[4] = args[4][:1]
    with pytest.raises(ValueError, match="gt_labels ended before image 1"):
        eval_detection_voc(*args)
    args = list(hand_example())
    args[5] = args[5] + [np.zeros(0, bool)]
    with pytest.raises(ValueError, match="pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels ended before "
                                         "image 2 but gt_difficult did not"):
        eval_detection_voc(*args)


def test_coco_style_hand_example():
    """One ground-truth box (0, 0, 9, 9), area 100, and one detection (0, 0, 9, 6), area 70 inside it: IoU exactly
    0.7. It is a true positive at the thresholds 0.50, 0.55, 0.60, 0.65, 0.70 (IoU >= threshold) and a miss plus a
    false positive at 0.75 ... 0.95, so the AP is 1 at five thresholds and 0 at five: the COCO-style AP is 0.5, while
    the VOC AP at IoU 0.5 is 1."""
    gt = ([np.array([A], float)], [np.array([1])])
    det = ([np.array([box(0, 0, 9, 6)], float)], [np.array([1])], [np.array([0.9])])
    result = eval_detection_coco_style(*det, *gt)
    np.testing.assert_allclose(result["iou_threshs"], [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
    np.testing.assert_allclose(result["map_per_iou"], [1] * 5 + [0] * 5)
    assert result["map"] == pytest.approx(0.5)
    assert result["ap"].shape == (len(COCO_IOUS), 2) and np.isnan(result["ap"][:, 0]).all()
    assert result["map_per_iou"][0] == eval_detection_voc(*det, *gt)["map"]


def test_coco_style_reads_generators_once_and_matches_voc_per_threshold():
    """Inputs may be generators (read once); each threshold's mAP equals eval_detection_voc's at that threshold,
    difficult boxes included in the matching rules."""
    example = hand_example()
    result = eval_detection_coco_style(*(iter(x) for x in example), iou_threshs=(0.5, 0.9))
    for t, m in zip((0.5, 0.9), result["map_per_iou"]):
        assert m == pytest.approx(eval_detection_voc(*example, iou_thresh=t, use_07_metric=False)["map"])
    with pytest.raises(ValueError, match="at least one"):
        eval_detection_coco_style(*example, iou_threshs=())


def test_match_detections_one_image_by_hand():
    """Objects: A class 1 at (0, 0, 9, 9), B class 2 at (20, 20, 29, 29), C class 1 difficult at (40, 0, 49, 9).
    Detections: d0 class 1 on A (IoU 1) right; d1 class 1 on A again, lower score: a duplicate, wrong; d2 class 1 on
    B's place: wrong class, wrong; d3 class 1 on C: ignored (difficult); d4 class 2 at (20, 20, 29, 34), IoU with B
    100/150 = 0.667: right at 0.5, wrong at 0.7. Found: A and B at 0.5, only A at 0.7 (C is never 'found')."""
    gt = np.array([[0, 0, 9, 9], [20, 20, 29, 29], [40, 0, 49, 9]], float)
    gl, gd = np.array([1, 2, 1]), np.array([False, False, True])
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 9], [20, 20, 29, 29], [40, 0, 49, 9], [20, 20, 29, 34]], float)
    labels, scores = np.array([1, 1, 1, 1, 2]), np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct, ignored, found = match_detections(boxes, labels, scores, gt, gl, gd)
    assert correct.tolist() == [True, False, False, False, True]
    assert ignored.tolist() == [False, False, False, True, False]
    assert found.tolist() == [True, True, False]
    correct, _, found = match_detections(boxes, labels, scores, gt, gl, gd, iou_thresh=0.7)
    assert correct.tolist() == [True, False, False, False, False] and found.tolist() == [True, False, False]
    correct, ignored, found = match_detections(np.zeros((0, 4)), [], [], gt, gl)
    assert correct.shape == ignored.shape == (0,) and found.tolist() == [False, False, False]
