"""Tests for minircnn.data.roidb: overlaps, flipping, normalised regression targets (docs/reference.md §5, §14.6-7)."""
import numpy as np
import pytest

from minircnn.boxes import encode, iou
from minircnn.data.roidb import append_flipped, build_roidb, compute_targets, unnormalize_deltas
from minircnn.data.transforms import flip_boxes


def random_dataset(rng, n_images, num_classes, n_random=30):
    """Per-image GT boxes, labels, proposals (jittered copies of the GT plus random boxes) and sizes."""
    gts, labels, props, sizes = [], [], [], []
    for _ in range(n_images):
        h, w = (int(v) for v in rng.integers(100, 200, 2))
        g = int(rng.integers(1, 5))
        xy = rng.uniform(0, 0.6, (g, 2)) * [w, h]
        wh = rng.uniform(12, 40, (g, 2))
        gt = np.floor(np.concatenate([xy, xy + wh], axis=1))
        jitter = np.repeat(gt, 15, axis=0) + rng.normal(0, 4, (15 * g, 4))
        xy = rng.uniform(0, 0.7, (n_random, 2)) * [w, h]
        rand = np.concatenate([xy, xy + rng.uniform(5, 60, (n_random, 2))], axis=1)
        p = np.concatenate([jitter, rand])
        p[:, 2:] = np.maximum(p[:, 2:], p[:, :2])
        p = np.clip(p, 0, [w - 1, h - 1, w - 1, h - 1])
        gts.append(gt.astype(np.float32))
        labels.append(rng.integers(1, num_classes, g))
        props.append(np.round(p).astype(np.float32))
        sizes.append((h, w))
    return gts, labels, props, sizes


# ------------------------------------------------------------------------------------------------------- overlaps
def test_max_overlaps_on_hand_made_boxes():
    """GT rows come first with IoU 1 and their own class; a proposal's max IoU (+1 areas) and class come from the GT
    it overlaps most: half of A (0.5), a third of A (50/150), half of B, nothing (class 0), a copy of A (1)."""
    gt = np.array([[0, 0, 9, 9], [20, 20, 29, 29]], dtype=np.float32)
    props = np.array([[0, 0, 9, 4], [5, 0, 14, 9], [20, 20, 29, 24], [30, 0, 39, 9], [0, 0, 9, 9]])
    (entry,) = build_roidb([gt], [np.array([1, 2])], [props], [(40, 40)], num_classes=3)
    assert entry.boxes.dtype == np.float32 and entry.boxes.shape == (7, 4)
    np.testing.assert_array_equal(entry.boxes[:2], gt)
    np.testing.assert_array_equal(entry.gt_classes, [1, 2, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(entry.max_overlaps, [1, 1, 0.5, 1 / 3, 0.5, 0, 1], rtol=1e-6)
    np.testing.assert_array_equal(entry.max_classes, [1, 2, 1, 1, 2, 0, 1])
    np.testing.assert_array_equal(entry.gt_assignment, [0, 1, 0, 0, 1, -1, 0])
    assert entry.max_overlaps.dtype == np.float32 and entry.num_gt == 2
    assert (entry.height, entry.width, entry.flipped, entry.image_index) == (40, 40, False, 0)


def test_identical_gt_boxes_keep_their_own_class():
    """Two GT boxes on the same pixels with different classes: each GT row keeps its own class (as the original's
    overlap matrix did), though a proposal sees only the first."""
    gt = np.array([[0, 0, 9, 9], [0, 0, 9, 9]], dtype=np.float32)
    (entry,) = build_roidb([gt], [np.array([2, 1])], [np.array([[0, 0, 9, 9]])], [(10, 10)], num_classes=3)
    np.testing.assert_array_equal(entry.max_classes, [2, 1, 2])
    np.testing.assert_array_equal(entry.gt_assignment, [0, 1, 0])


def test_image_without_ground_truth():
    """An image without objects: every proposal has max IoU 0, class 0, no assignment, and no regression target."""
    (entry,) = build_roidb([np.zeros((0, 4))], [np.zeros(0, dtype=np.int64)], [np.array([[0, 0, 5, 5]])],
                           [(10, 10)], num_classes=3)
    np.testing.assert_array_equal(entry.max_overlaps, [0])
    np.testing.assert_array_equal(entry.max_classes, [0])
    np.testing.assert_array_equal(entry.gt_assignment, [-1])
    (entry,), means, stds = compute_targets([entry], 3)
    np.testing.assert_array_equal(entry.bbox_targets, 0)
    np.testing.assert_array_equal(entry.target_classes, [0])
    np.testing.assert_array_equal(stds, 1)


@pytest.mark.parametrize("args, name", [
    (([np.zeros((1, 4))], [[1]], [np.zeros((0, 4))], [(5, 5), (5, 5)], 3), "image_sizes"),
    (([np.zeros((1, 4))], [np.array([3])], [np.zeros((0, 4))], [(5, 5)], 3), r"gt_labels_list\[0\]"),
    (([np.zeros((1, 4))], [np.array([0])], [np.zeros((0, 4))], [(5, 5)], 3), r"gt_labels_list\[0\]"),
    (([np.zeros((1, 3))], [np.array([1])], [np.zeros((0, 4))], [(5, 5)], 3), r"gt_boxes_list\[0\]"),
    (([np.zeros((1, 4))], [np.array([1])], [np.array([[3, 0, 2, 1]])], [(5, 5)], 3), r"proposals_list\[0\] row 0"),
    (([np.zeros((1, 4))], [np.array([1])], [np.array([[0, 0, 5, 1]])], [(5, 5)], 3), r"proposals_list\[0\] row 0"),
    (([np.zeros((1, 4))], [np.array([1])], [np.zeros((0, 4))], [(5, 5)], 1), "num_classes"),
])
def test_build_roidb_rejects_bad_input(args, name):
    """Mismatched list lengths, labels outside [1, num_classes), bad shapes, boxes with x2 < x1 or leaving the image
    and fewer than 2 classes are ValueErrors naming the argument (and the image and row)."""
    with pytest.raises(ValueError, match=name):
        build_roidb(*args)


# ------------------------------------------------------------------------------------------------------ flipping
def test_append_flipped_mirrors_boxes_and_keeps_overlaps():
    """append_flipped doubles the roidb: copies share the image index, have mirrored boxes and the same overlaps,
    which equal those computed from scratch on the mirrored boxes (IoU is invariant under the mirror)."""
    rng = np.random.default_rng(0)
    gts, labels, props, sizes = random_dataset(rng, 3, 4)
    roidb = append_flipped(build_roidb(gts, labels, props, sizes, 4))
    assert len(roidb) == 6
    for orig, flip in zip(roidb[:3], roidb[3:]):
        assert not orig.flipped and flip.flipped and flip.image_index == orig.image_index
        np.testing.assert_array_equal(flip.boxes, flip_boxes(orig.boxes, orig.width))
        np.testing.assert_array_equal(flip.max_overlaps, orig.max_overlaps)
        np.testing.assert_array_equal(flip.max_classes, orig.max_classes)
        g = flip.boxes[:flip.num_gt]
        np.testing.assert_allclose(iou(flip.boxes.astype(np.float64), g.astype(np.float64)).max(axis=1),
                                   orig.max_overlaps, atol=1e-6)
    done, _, _ = compute_targets(roidb, 4)
    with pytest.raises(ValueError, match="compute_targets"):
        append_flipped(done)


# ------------------------------------------------------------------------------------------------------- targets
def test_targets_only_for_rows_with_iou_at_least_half():
    """Rows with max IoU >= 0.5 (GT rows included) get a target of the class of their GT; the others get zeros and
    class 0. A proposal between two GT boxes regresses onto the one it overlaps most, whatever its class."""
    gt = np.array([[0, 0, 9, 9], [4, 0, 13, 9]], dtype=np.float32)           # A (class 1) and B (class 2)
    props = np.array([[3, 0, 12, 9], [0, 0, 9, 3], [30, 30, 35, 35]])         # mostly B; 0.4 of A; nothing
    roidb = build_roidb([gt], [np.array([1, 2])], [props], [(40, 40)], 3)
    (entry,), means, stds = compute_targets(roidb, 3)
    ov = iou(props.astype(np.float64), gt.astype(np.float64))[0]
    assert ov[1] > ov[0] >= 0.5
    np.testing.assert_array_equal(entry.target_classes, [1, 2, 2, 0, 0])
    np.testing.assert_array_equal(entry.bbox_targets[3:], 0)
    t = entry.bbox_targets[2] * stds[2] + means[2]
    np.testing.assert_allclose(t, encode(props[:1].astype(np.float64), gt[1:].astype(np.float64))[0], atol=1e-6)


def test_normalised_targets_have_zero_mean_unit_std_per_class():
    """Over all rows with a target of all entries, flipped copies included, each class's normalised targets have
    mean ~0 and std ~1 in each of dx, dy, dw, dh (paper Sec. 2.3)."""
    rng = np.random.default_rng(1)
    roidb = append_flipped(build_roidb(*random_dataset(rng, 20, 4), 4))
    roidb, means, stds = compute_targets(roidb, 4)
    assert means.shape == stds.shape == (4, 4)
    t = np.concatenate([e.bbox_targets for e in roidb])
    c = np.concatenate([e.target_classes for e in roidb])
    for k in (1, 2, 3):
        assert (c == k).sum() > 50
        np.testing.assert_allclose(t[c == k].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(t[c == k].std(axis=0), 1, atol=1e-5)


def test_flipped_copies_cancel_the_dx_mean():
    """Mirroring negates dx (cx' = W - cx), so with the flipped copies the per-class mean of dx is exactly 0
    (up to rounding) and the other coordinates' statistics are unchanged by the mirror."""
    rng = np.random.default_rng(2)
    roidb = build_roidb(*random_dataset(rng, 10, 3), 3)
    _, means_orig, stds_orig = compute_targets(roidb, 3)
    _, means, stds = compute_targets(append_flipped(roidb), 3)
    np.testing.assert_allclose(means[:, 0], 0, atol=1e-12)
    assert np.abs(means_orig[1:, 0]).max() > 1e-4
    np.testing.assert_allclose(means[:, 1:], means_orig[:, 1:], rtol=1e-9, atol=1e-12)


def test_unnormalize_inverts_the_normalisation():
    """unnormalize_deltas(normalised class-wise targets) equals encode(roi, assigned GT) in the label's columns:
    what the test-time decoder must see."""
    rng = np.random.default_rng(3)
    roidb, means, stds = compute_targets(build_roidb(*random_dataset(rng, 5, 3), 3), 3)
    for e in roidb:
        rows = np.flatnonzero(e.target_classes > 0)
        wide = np.zeros((rows.size, 3, 4), dtype=np.float32)
        wide[np.arange(rows.size), e.target_classes[rows]] = e.bbox_targets[rows]
        out = unnormalize_deltas(wide.reshape(rows.size, 12), means, stds).reshape(rows.size, 3, 4)
        assert out.dtype == np.float32
        raw = encode(e.boxes[rows].astype(np.float64), e.boxes[e.gt_assignment[rows]].astype(np.float64))
        np.testing.assert_allclose(out[np.arange(rows.size), e.target_classes[rows]], raw, atol=1e-5)
    with pytest.raises(ValueError, match="deltas"):
        unnormalize_deltas(np.zeros((2, 8)), means, stds)


def test_statistics_are_safe_to_divide():
    """Background, a class with no examples and a class whose only examples are GT rows (all targets 0) get
    std 1 (mean 0): dividing by std never makes NaN."""
    gt = np.array([[0, 0, 9, 9]], dtype=np.float32)
    roidb = build_roidb([gt], [np.array([1])], [np.zeros((0, 4))], [(20, 20)], 4)
    (entry,), means, stds = compute_targets(roidb, 4)
    np.testing.assert_array_equal(means, 0)
    np.testing.assert_array_equal(stds, 1)
    assert np.isfinite(entry.bbox_targets).all()


def test_roidb_from_dataset_reads_annotations_and_clips_proposals(tmp_path):
    """From a generated VOC-format dataset: one entry per image, its ground truth first (labels >= 1, max overlap 1),
    and proposals that poke outside the image clipped to it rather than rejected."""
    from minircnn.data.roidb import roidb_from_dataset
    from minircnn.data.shapes import generate_shapes_dataset
    from minircnn.data.voc import VOCDataset
    root = generate_shapes_dataset(tmp_path / "shapes", seed=1, trainval=3, test=1, progress=False)
    dataset = VOCDataset(root, "trainval")
    proposals = [np.array([[-5.0, -5.0, 20.0, 20.0], [10.0, 10.0, 1e4, 1e4]]) for _ in range(len(dataset))]
    roidb = roidb_from_dataset(dataset, proposals)
    assert len(roidb) == 3
    for i, entry in enumerate(roidb):
        note = dataset.annotation(i)
        g = len(note.boxes)
        np.testing.assert_array_equal(entry.boxes[:g], note.boxes)
        np.testing.assert_array_equal(entry.max_overlaps[:g], 1)
        assert entry.boxes[g:, :2].min() >= 0
        assert entry.boxes[g:, 2].max() <= note.width - 1 and entry.boxes[g:, 3].max() <= note.height - 1
    with pytest.raises(ValueError, match="proposals_list has 1 entries but the dataset has 3"):
        roidb_from_dataset(dataset, proposals[:1])
