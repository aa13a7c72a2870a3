"""Tests for minircnn.data.selective_search and minircnn.data.segmentation: the grouping steps one by one, the
hierarchy's invariants, recall on
generated images, determinism and bad input."""
import importlib

import numpy as np
import pytest
from scipy import ndimage
from skimage import color

from minircnn.boxes import iou
# the module (minircnn.data.selective_search, the function, shadows it as an attribute of minircnn.data)
ss = importlib.import_module("minircnn.data.selective_search")
seg = importlib.import_module("minircnn.data.segmentation")   # steps 1-4: the hierarchy's leaves


def rectangles_image(seed, size=(120, 160), count=3):
    """Coloured rectangles on a noisy, striped background; returns the (H, W, 3) uint8 image and the (count, 4)
    boxes of the rectangles (disjoint, so every one is fully visible)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    image = rng.integers(60, 190, 3) + 12 * np.sin(xx / 3 + yy / 5)[..., None] + rng.normal(0, 8, (h, w, 3))
    boxes = []
    for _ in range(1000):
        if len(boxes) == count:
            break
        bw, bh = rng.integers(12, max(13, min(h, w) // 3), 2)
        x1, y1 = rng.integers(0, w - bw), rng.integers(0, h - bh)
        box = np.array([x1, y1, x1 + bw - 1, y1 + bh - 1])
        if boxes and iou(box[None], np.array(boxes) + [-3, -3, 3, 3]).max() > 0:
            continue
        image[y1:y1 + bh, x1:x1 + bw] = rng.integers(0, 256, 3) + rng.normal(0, 6, (bh, bw, 3))
        boxes.append(box)
    assert len(boxes) == count, "no room for the rectangles"
    return np.clip(image, 0, 255).astype(np.uint8), np.array(boxes, dtype=np.float32)


def grouping_inputs(image, k=50, space="hsv"):
    converted = seg.colour_space(image, space)
    labels = seg.segment(converted, k)
    regions = seg.region_features(labels, seg.colour_codes(converted), seg.texture_codes(converted))
    return labels, regions, seg.adjacent_pairs(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_rectangle_is_found(seed):
    """Fast mode finds each coloured rectangle on a textured background with IoU >= 0.7."""
    image, gt = rectangles_image(seed)
    boxes = ss.selective_search(image, mode="fast")
    assert iou(gt, boxes).max(axis=1).min() >= 0.7


def test_output_format():
    """Boxes are (n, 4) float32, inside the image, not inverted, unique, and at most max_boxes."""
    image, _ = rectangles_image(3)
    boxes = ss.selective_search(image, mode="fast")
    h, w = image.shape[:2]
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 10
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w - 1).all() and (boxes[:, 3] <= h - 1).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    few = ss.selective_search(image, mode="fast", max_boxes=7)
    np.testing.assert_array_equal(few, boxes[:7])          # the cap keeps the best-ranked boxes
    assert ([0, 0, w - 1, h - 1] == boxes).all(axis=1).any()  # the top of every hierarchy: the whole image


def test_same_seed_same_boxes():
    """The ranking is random but seeded: the same seed gives identical boxes, another seed another order."""
    image, _ = rectangles_image(4)
    a = ss.selective_search(image, seed=5)
    np.testing.assert_array_equal(a, ss.selective_search(image, seed=5))
    b = ss.selective_search(image, seed=6)
    assert not np.array_equal(a, b)
    assert {tuple(r) for r in a} == {tuple(r) for r in b}  # no cap reached: same set, other order


def test_hierarchy_invariants():
    """Each merge joins two existing, adjacent regions into the next region, whose box and size are those of the
    union of their pixels; every region is merged once; the last region is the whole image."""
    image, _ = rectangles_image(5, size=(60, 80))
    labels, regions, pairs = grouping_inputs(image, k=30)
    n = len(regions.sizes)
    assert n > 5
    h = ss.merge_hierarchy(regions, pairs, labels.size, "CTSF")
    assert h.merges.shape == (n - 1, 2) and len(h.boxes) == 2 * n - 1
    masks = [labels == r for r in range(n)]
    merged = set()
    for step, (i, j) in enumerate(h.merges):
        assert i < n + step and j < n + step and i not in merged and j not in merged
        touching = ndimage.binary_dilation(masks[i], structure=ndimage.generate_binary_structure(2, 1)) & masks[j]
        assert touching.any(), f"merge {step} joins regions {i} and {j} that do not touch"
        merged |= {i, j}
        masks.append(masks[i] | masks[j])
        ys, xs = np.nonzero(masks[-1])
        np.testing.assert_array_equal(h.boxes[n + step], [xs.min(), ys.min(), xs.max(), ys.max()])
        assert h.sizes[n + step] == masks[-1].sum()
    assert masks[-1].all()
    np.testing.assert_array_equal(h.boxes[-1], [0, 0, labels.shape[1] - 1, labels.shape[0] - 1])


def test_merges_most_similar_pair_first():
    """Three regions in a row, the outer two red and the middle one almost red, the right one blue: with colour
    similarity alone the red pair merges first."""
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, :20] = (200, 20, 20)
    image[:, 20:40] = (190, 30, 20)
    image[:, 40:] = (20, 20, 200)
    labels = np.repeat(np.arange(3), 20)[None].repeat(20, axis=0)
    converted = seg.colour_space(image, "rgb")
    regions = seg.region_features(labels, seg.colour_codes(converted), seg.texture_codes(converted))
    h = ss.merge_hierarchy(regions, seg.adjacent_pairs(labels), labels.size, "C")
    np.testing.assert_array_equal(h.merges, [[0, 1], [2, 3]])


def test_region_features_match_a_loop():
    """Sizes, boxes and histograms equal a per-region loop; each histogram part sums to 1."""
    image, _ = rectangles_image(6, size=(50, 70))
    converted = seg.colour_space(image, "lab")
    labels = seg.segment(converted, 50)
    colour, texture = seg.colour_codes(converted), seg.texture_codes(converted)
    regions = seg.region_features(labels, colour, texture)
    assert regions.colour_dims == 3 * seg.COLOUR_BINS
    assert regions.histograms.shape[1] == 3 * seg.COLOUR_BINS + 3 * seg.ORIENTATIONS * seg.TEXTURE_BINS
    for r in range(labels.max() + 1):
        mask = (labels == r).ravel()
        ys, xs = np.nonzero(labels == r)
        assert regions.sizes[r] == mask.sum()
        np.testing.assert_array_equal(regions.boxes[r], [xs.min(), ys.min(), xs.max(), ys.max()])
        expected = np.bincount(colour[:, mask].ravel(), minlength=regions.colour_dims) / (3 * mask.sum())
        np.testing.assert_allclose(regions.histograms[r, :regions.colour_dims], expected)
        assert regions.histograms[r, regions.colour_dims:].sum() == pytest.approx(1)


def test_adjacent_pairs_by_hand():
    """4-connectivity: regions touching only at a corner are not neighbours."""
    labels = np.array([[0, 0, 1],
                       [2, 3, 1],
                       [2, 3, 3]])
    np.testing.assert_array_equal(seg.adjacent_pairs(labels), [[0, 1], [0, 2], [0, 3], [1, 3], [2, 3]])


def test_pair_similarity_by_hand():
    """Colour/texture intersection, size and fill terms on hand-made regions in a 10x10 image."""
    hist = np.array([[0.5, 0.5, 1.0, 0.0], [1.0, 0.0, 0.5, 0.5]])       # colour dims 2, texture dims 2
    sizes = np.array([10.0, 20.0])
    boxes = np.array([[0, 0, 4, 1], [0, 2, 4, 5]])                        # stacked: together 5x6 = 30 px
    i, j = np.array([0]), np.array([1])

    def sim(measure):
        return ss.pair_similarity(hist, sizes, boxes, i, j, 100, ss.measure_weights(measure, 2, 4))[0]
    assert sim("C") == pytest.approx(0.5)
    assert sim("T") == pytest.approx(0.5)
    assert sim("S") == pytest.approx(1 - 30 / 100)
    assert sim("F") == pytest.approx(1 - (30 - 30) / 100)
    assert sim("CTSF") == pytest.approx(0.5 + 0.5 + 0.7 + 1.0)
    with pytest.raises(ValueError, match="measure"):
        ss.measure_weights("CX", 2, 4)


def test_colour_spaces():
    """Every colour space has channels in [0, 1]; HSV equals scikit-image's."""
    image, _ = rectangles_image(7, size=(30, 40), count=1)
    for name, channels in (("rgb", 3), ("hsv", 3), ("lab", 3), ("rgi", 3), ("h", 1), ("i", 1)):
        out = seg.colour_space(image, name)
        assert out.shape == image.shape[:2] + (channels,) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(seg.colour_space(image, "hsv"), color.rgb2hsv(image), atol=1e-6)
    with pytest.raises(ValueError, match="colour space"):
        seg.colour_space(image, "xyz")


def test_rank_boxes_dedups_and_caps():
    """A box found by several hierarchies appears once; the top of each hierarchy has the lowest rank value on
    average, and the cap keeps the first boxes."""
    a = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [0, 0, 3, 3]])
    b = np.array([[2, 2, 3, 3], [0, 0, 3, 3]])
    out = ss.rank_boxes([a, b], np.random.default_rng(0), 10)
    assert out.dtype == np.float32 and len(out) == 3
    assert {tuple(r) for r in out.tolist()} == {(0, 0, 1, 1), (2, 2, 3, 3), (0, 0, 3, 3)}
    assert len(ss.rank_boxes([a, b], np.random.default_rng(0), 2)) == 2


def test_tiny_and_flat_images():
    """A 1x1 image, a one-row image and a flat image give one box, the whole image."""
    for shape in ((1, 1, 3), (1, 9, 3), (12, 12, 3)):
        boxes = ss.selective_search(np.full(shape, 128, np.uint8))
        np.testing.assert_array_equal(boxes, [[0, 0, shape[1] - 1, shape[0] - 1]])


@pytest.mark.parametrize("bad", [np.zeros((20, 20, 3), np.float32), np.zeros((20, 20), np.uint8),
                                 np.zeros((20, 20, 4), np.uint8), np.zeros((0, 20, 3), np.uint8),
                                 [[[0, 0, 0]]]])
def test_bad_image(bad):
    """Non-uint8, wrong-shape, empty or non-array images are a ValueError naming ``image``."""
    with pytest.raises(ValueError, match="image"):
        ss.selective_search(bad)


def test_bad_mode_and_max_boxes():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="mode"):
        ss.selective_search(image, mode="slow")
    with pytest.raises(ValueError, match="max_boxes"):
        ss.selective_search(image, max_boxes=0)
