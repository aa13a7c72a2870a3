"""RoI max pooling: exactly the original Caffe layer (docs/reference.md §1, §14.1–14.5), and Eq. 4 for the backward."""
import numpy as np
import pytest

from minircnn.backend import asnumpy
from minircnn.functional.naive import roi_pool_backward_naive, roi_pool_forward_naive
from minircnn.gradcheck import check_backward, tie_free


def random_rois(rng, count, n_images, image_hw, allow_outside=True):
    """RoIs of many sizes, some leaving the image (and so the map) when allow_outside."""
    ih, iw = image_hw
    margin = 0.3 if allow_outside else 0.0
    x1 = rng.uniform(-margin * iw, iw, count)
    y1 = rng.uniform(-margin * ih, ih, count)
    x2 = x1 + rng.uniform(0, iw, count)
    y2 = y1 + rng.uniform(0, ih, count)
    if not allow_outside:
        x2, y2 = np.minimum(x2, iw - 1), np.minimum(y2, ih - 1)
    return np.stack([rng.integers(0, n_images, count), x1, y1, x2, y2], axis=1)


def run(F, xp, x, rois, size, scale):
    y, cache = F.roi_pool_forward(xp.asarray(x), xp.asarray(rois), output_size=size, spatial_scale=scale)
    return y, cache


def test_known_values_2x2_grid(F, xp):
    """A 4x4 map holding 0..15 pooled 2x2 over the whole map: each bin is a 2x2 quadrant, its max the bottom-right
    cell (5, 7, 13, 15), and the argmax is that cell's flat index h*W + w."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    rois = np.array([[0, 0, 0, 3, 3]], dtype=np.float32)
    y, cache = run(F, xp, x, rois, (2, 2), 1.0)
    np.testing.assert_array_equal(asnumpy(y)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(asnumpy(cache.argmax)[0, 0], [[5, 7], [13, 15]])


def test_roi_smaller_than_grid_repeats_cells(F, xp):
    """A one-cell RoI pooled 2x2: bin size 1/2, bins [floor(p/2), ceil((p+1)/2)) = [0, 1) for both p, so every bin
    is that single cell (bins overlap; none is empty inside the map)."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    rois = np.array([[0, 1, 2, 1, 2]], dtype=np.float32)  # x = 1, y = 2 -> cell value 2*4 + 1 = 9
    y, cache = run(F, xp, x, rois, (2, 2), 1.0)
    np.testing.assert_array_equal(asnumpy(y)[0, 0], [[9, 9], [9, 9]])
    np.testing.assert_array_equal(asnumpy(cache.argmax)[0, 0], [[9, 9], [9, 9]])


@pytest.mark.parametrize("x1, expected_col", [(40.0, 3), (8.0, 1), (24.0, 2), (39.99, 2)])
def test_corners_round_half_away_from_zero(F, xp, x1, expected_col):
    """At scale 1/16, x = 40 px projects to 2.5 cells: C's round gives 3 (numpy's half-to-even would give 2);
    8 px -> 0.5 -> 1 (not 0); 24 px -> 1.5 -> 2; 39.99 px -> 2.499 -> 2. A one-cell RoI reads that column."""
    x = np.arange(8, dtype=np.float32).reshape(1, 1, 1, 8)
    rois = np.array([[0, x1, 0, x1, 0]], dtype=np.float32)
    y, _ = run(F, xp, x, rois, (1, 1), 1.0 / 16)
    assert float(asnumpy(y)[0, 0, 0, 0]) == expected_col


def test_negative_corner_rounds_away_from_zero(F):
    """-40 px at scale 1/16 is -2.5 cells, rounded to -3 (away from zero); 0.49999997 rounds to 0, not 1
    (floor(v + 0.5) gets this wrong in float32)."""
    v = np.array([-2.5, 2.5, -0.5, 0.5, 1.5, np.float32(0.49999997), -1.2], dtype=np.float32)
    np.testing.assert_array_equal(F.round_half_away(v), [-3, 3, -1, 1, 2, 0, -1])


def test_float32_bin_edge_overshoot_like_the_original(F, xp):
    """For a 57-row RoI and 7 bins, float32 gives ceil(7 * float32(57/7)) = 58: the last bin reaches one row past the
    RoI (docs/reference.md §14.2). The original layer does this, so a large value just below the RoI wins the last
    bin."""
    x = np.zeros((1, 1, 60, 1), dtype=np.float32)
    x[0, 0, 57, 0] = 100.0          # row 57 lies outside rows 0..56
    rois = np.array([[0, 0, 0, 0, 56]], dtype=np.float32)
    y, cache = run(F, xp, x, rois, (7, 1), 1.0)
    assert float(asnumpy(y)[0, 0, 6, 0]) == 100.0
    assert int(asnumpy(cache.argmax)[0, 0, 6, 0]) == 57


def test_malformed_roi_becomes_one_cell(F, xp):
    """x2 < x1 and y2 < y1: the size is forced to 1x1 at the rounded start, so every bin reads that cell."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    rois = np.array([[0, 2, 1, 0, 0]], dtype=np.float32)  # start (x=2, y=1) -> value 1*4 + 2 = 6
    y, _ = run(F, xp, x, rois, (2, 2), 1.0)
    np.testing.assert_array_equal(asnumpy(y)[0, 0], np.full((2, 2), 6))


def test_bins_off_the_map_are_zero_with_argmax_minus_one(F, xp):
    """A RoI hanging off the bottom-right: bins clipped to nothing output 0 (not -inf), argmax -1, and get no
    gradient; bins still on the map pool what remains of them."""
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)       # all positive, so 0 can only mean "empty"
    rois = np.array([[0, 2, 2, 9, 9]], dtype=np.float32)              # 8x8 RoI, only its top-left 2x2 on the map
    y, cache = run(F, xp, x, rois, (2, 2), 1.0)
    np.testing.assert_array_equal(asnumpy(y)[0, 0], [[16, 0], [0, 0]])
    np.testing.assert_array_equal(asnumpy(cache.argmax)[0, 0], [[15, -1], [-1, -1]])
    dx = asnumpy(F.roi_pool_backward(xp.ones_like(y), cache))
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 3, 3] = 1
    np.testing.assert_array_equal(dx, expected)


def test_roi_entirely_off_the_map(F, xp):
    """A RoI wholly outside the map: every bin is empty (0, argmax -1)."""
    x = np.ones((1, 2, 4, 4), dtype=np.float32)
    rois = np.array([[0, -100, -100, -50, -50]], dtype=np.float32)
    y, cache = run(F, xp, x, rois, (3, 3), 1.0)
    assert not asnumpy(y).any()
    assert (asnumpy(cache.argmax) == -1).all()


def test_first_maximum_wins_ties(F, xp):
    """On equal values the first in row-major order is the argmax (the original compares with strict >)."""
    x = np.zeros((1, 1, 2, 2), dtype=np.float32)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 5.0
    rois = np.array([[0, 0, 0, 1, 1]], dtype=np.float32)
    _, cache = run(F, xp, x, rois, (1, 1), 1.0)
    assert int(asnumpy(cache.argmax)[0, 0, 0, 0]) == 1


def test_negative_zero_keeps_its_sign(F, xp):
    """The output is a copy of the winning input bit for bit: -0.0 first in a bin of zeros stays -0.0."""
    x = np.zeros((1, 1, 1, 2), dtype=np.float32)
    x[0, 0, 0, 0] = -0.0
    y, cache = run(F, xp, x, np.array([[0, 0, 0, 1, 0]], dtype=np.float32), (1, 1), 1.0)
    assert np.signbit(asnumpy(y)[0, 0, 0, 0]) and int(asnumpy(cache.argmax)[0, 0, 0, 0]) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size, scale, map_hw", [((7, 7), 1 / 16, (9, 13)), ((3, 2), 1 / 8, (7, 5)),
                                                 ((6, 6), 1 / 16, (5, 6))])
def test_matches_the_original_layer_on_random_rois(F, xp, dtype, size, scale, map_hw):
    """Values (bit for bit) and argmaxes equal the original layer's loop (``roi_pool_forward_naive``, a line-by-line
    transcription), for random RoIs of all sizes (many leaving the map), several images, odd map sizes, and negative
    feature values."""
    rng = np.random.default_rng(sum(size) + map_hw[0])
    x = rng.standard_normal((2, 3) + map_hw).astype(dtype)
    rois = random_rois(rng, 60, 2, (map_hw[0] / scale, map_hw[1] / scale))
    y, cache = run(F, xp, x, rois, size, scale)
    y_ref, cache_ref = roi_pool_forward_naive(x, rois, size, scale)
    assert asnumpy(y).dtype == dtype
    np.testing.assert_array_equal(asnumpy(y).view(np.uint8), y_ref.view(np.uint8))
    np.testing.assert_array_equal(asnumpy(cache.argmax), cache_ref.argmax)


def test_exact_half_cell_coordinates(F, xp):
    """Every corner at an exact k + 0.5 cell (x = 8, 24, 40, ... px at 1/16) rounds away from zero, as in C."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    coords = np.arange(8, 128, 16, dtype=np.float32)
    rois = np.array([[0, a, b, c, d] for a in coords[:3] for b in coords[:3] for c in coords[3:] for d in coords[4:]],
                    dtype=np.float32)
    y, cache = run(F, xp, x, rois, (2, 2), 1 / 16)
    y_ref, cache_ref = roi_pool_forward_naive(x, rois, (2, 2), 1 / 16)
    np.testing.assert_array_equal(asnumpy(y), y_ref)
    np.testing.assert_array_equal(asnumpy(cache.argmax), cache_ref.argmax)


def test_gradient_check(F, xp):
    """Float64 gradient check of Eq. 4 on a tie-free map (values far apart compared with the step, so the argmax
    never changes under perturbation), overlapping RoIs on two images, one leaving the map."""
    rng = np.random.default_rng(0)
    x = xp.asarray(tie_free((2, 2, 6, 7), rng))
    rois = xp.asarray(np.array([[0, 0, 0, 60, 50], [1, 10, 5, 90, 80], [0, 20, 16, 40, 40], [1, -30, 40, 200, 200]],
                               dtype=np.float64))
    check_backward(F.roi_pool_forward, F.roi_pool_backward, [x, rois], [0],
                   dict(output_size=(3, 2), spatial_scale=1 / 16))


def test_backward_matches_the_loop_of_eq4(F, xp):
    """dx equals Eq. 4 computed one output at a time (``roi_pool_backward_naive``): overlapping RoIs on two images,
    one leaving the map, integer-valued dy so that every sum is exact whatever its order."""
    rng = np.random.default_rng(2)
    x = tie_free((2, 3, 6, 7), rng).astype(np.float32)
    rois = np.array([[0, 0, 0, 60, 50], [1, 10, 5, 90, 80], [0, 20, 16, 40, 40], [1, -30, 40, 200, 200]], np.float32)
    y, cache = run(F, xp, x, rois, (3, 2), 1 / 16)
    dy = rng.integers(-4, 5, y.shape).astype(np.float32)
    expected = roi_pool_backward_naive(dy, roi_pool_forward_naive(x, rois, (3, 2), 1 / 16)[1])
    np.testing.assert_array_equal(asnumpy(F.roi_pool_backward(xp.asarray(dy), cache)), expected)


def test_gradients_of_overlapping_rois_add_up(F, xp):
    """The same RoI twice: every argmax cell receives both RoIs' gradients (Eq. 4 sums over RoIs and bins)."""
    rng = np.random.default_rng(1)
    x = tie_free((1, 1, 4, 4), rng).astype(np.float32)
    one = np.array([[0, 0, 0, 3, 3]], dtype=np.float32)
    y1, c1 = run(F, xp, x, one, (2, 2), 1.0)
    y2, c2 = run(F, xp, x, np.repeat(one, 2, axis=0), (2, 2), 1.0)
    dx1 = asnumpy(F.roi_pool_backward(xp.ones_like(y1), c1))
    dx2 = asnumpy(F.roi_pool_backward(xp.ones_like(y2), c2))
    np.testing.assert_array_equal(dx2, 2 * dx1)
    assert dx1.sum() == 4


def test_no_rois(F, xp):
    """Zero RoIs give an empty (0, C, ph, pw) output and a zero gradient."""
    x = np.ones((1, 3, 4, 4), dtype=np.float32)
    y, cache = run(F, xp, x, np.zeros((0, 5), dtype=np.float32), (2, 2), 1.0)
    assert y.shape == (0, 3, 2, 2)
    assert not asnumpy(F.roi_pool_backward(y, cache)).any()


@pytest.mark.validation
@pytest.mark.parametrize("rois, message", [
    (np.zeros((2, 4)), r"rois must have shape \(R, 5\)"),
    (np.array([[2, 0, 0, 5, 5]]), r"rois\[:, 0\] must hold whole image indices in \[0, 2\)"),
    (np.array([[0.5, 0, 0, 5, 5]]), r"rois\[:, 0\]"),
    (np.array([[-1, 0, 0, 5, 5]]), r"rois\[:, 0\]"),
    (np.array([[0, np.nan, 0, 5, 5]]), "rois contains NaN"),
])
def test_bad_rois_are_named(F, rois, message):
    """Malformed RoIs raise a ValueError that names rois and what was expected."""
    with pytest.raises(ValueError, match=message):
        F.roi_pool_forward(np.zeros((2, 1, 4, 4)), rois)


@pytest.mark.validation
def test_bad_feature_map_and_settings_are_named(F):
    """A 3-D or non-finite feature map, a bad output_size or spatial_scale, or a dy of the wrong shape: ValueError."""
    rois = np.array([[0, 0, 0, 3, 3]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\)"):
        F.roi_pool_forward(np.zeros((1, 4, 4)), rois)
    bad = np.zeros((1, 1, 4, 4))
    bad[0, 0, 1, 1] = np.inf
    with pytest.raises(ValueError, match="x contains NaN or infinite"):
        F.roi_pool_forward(bad, rois)
    with pytest.raises(ValueError, match="output_size"):
        F.roi_pool_forward(np.zeros((1, 1, 4, 4)), rois, output_size=(0, 2))
    with pytest.raises(ValueError, match="spatial_scale"):
        F.roi_pool_forward(np.zeros((1, 1, 4, 4)), rois, spatial_scale=0)
    y, cache = F.roi_pool_forward(np.zeros((1, 1, 4, 4)), rois, output_size=2)
    with pytest.raises(ValueError, match="dy must have shape"):
        F.roi_pool_backward(np.zeros((1, 1, 3, 3)), cache)
