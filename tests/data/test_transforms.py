"""Tests for minircnn.data.transforms: scale rule, resize, flip, preprocessing presets, blobs, pyramids
(docs/reference.md §5)."""
import numpy as np
import pytest

from minircnn.data.transforms import (CAFFE_VGG16, PLAIN, PREPROCESSING_PRESETS, TORCHVISION, Preprocessing,
                                      flip_boxes, flip_image, image_pyramid, images_to_blob, prepare_image,
                                      pyramid_rois, resize_bilinear, scale_for, scaled_size, warp_region)


def random_image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------------- scaling
@pytest.mark.parametrize("h, w, target, max_size, size", [
    (375, 500, 600, 1000, (600, 800)),     # VOC's most common size: shorter side 600, longer 800
    (500, 375, 600, 1000, (800, 600)),     # portrait: the same rule on the other axis
    (300, 1000, 600, 1000, (300, 1000)),   # would be 600x2000: capped, scale 1.0
    (600, 1000, 600, 1000, (600, 1000)),   # long side exactly 1000: allowed
    (600, 1001, 600, 1000, (599, 1000)),   # 1001 > 1000: capped to 1000/1001
    (400, 667, 600, 1000, (600, 1000)),    # 1.5 * 667 = 1000.5 rounds half-to-even to 1000: not capped
    (400, 668, 600, 1000, (599, 1000)),    # 1.5 * 668 = 1002: capped
])
def test_scale_rule_at_the_max_size_boundary(h, w, target, max_size, size):
    """The shorter side goes to the target unless round(scale * longer) exceeds max_size; then the longer side goes
    to max_size (docs/reference.md §5). round() is half-to-even, so a long side of 1000.5 counts as 1000."""
    scale = scale_for(h, w, target, max_size)
    assert scaled_size(h, w, scale) == size
    assert scale in (target / min(h, w), max_size / max(h, w))


def test_scale_values_by_hand():
    """375x500 -> 1.6; 300x1000 with max 1000 -> 1.0; 600x1001 -> 1000/1001."""
    assert scale_for(375, 500, 600, 1000) == 1.6
    assert scale_for(300, 1000, 600, 1000) == 1.0
    assert scale_for(600, 1001, 600, 1000) == 1000 / 1001


@pytest.mark.parametrize("args, name", [((0, 5, 600, 1000), "h"), ((5, 5, 600.0, 1000), "target_size"),
                                        ((5, 5, 600, -1), "max_size")])
def test_scale_for_rejects_bad_sizes(args, name):
    """Non-positive or non-integer sizes are a ValueError naming the argument."""
    with pytest.raises(ValueError, match=name):
        scale_for(*args)


# -------------------------------------------------------------------------------------------------------- resize
def test_resize_identity_and_constant():
    """Scale 1 returns the image exactly; any scale keeps a constant image constant (weights sum to 1)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 9)).astype(np.float32)
    np.testing.assert_array_equal(resize_bilinear(x, 1.0), x)
    c = np.full((3, 5, 6), -17.25, dtype=np.float32)
    for s in (0.37, 1.0, 1.6, 3.0):
        out = resize_bilinear(c, s)
        assert out.shape == (3, round(5 * s), round(6 * s))
        np.testing.assert_allclose(out, -17.25, rtol=1e-6)


def test_resize_by_hand_like_opencv():
    """Doubling [0, 10, 20] samples at (i + 0.5)/2 - 0.5 = -0.25, 0.25, 0.75, ...: the ends repeat the border pixel
    and the inside interpolates (cv2.INTER_LINEAR). Halving averages pixel pairs."""
    row = np.array([0.0, 10.0, 20.0], dtype=np.float32).reshape(1, 1, 3)
    np.testing.assert_allclose(resize_bilinear(row, 2.0)[0, 0], [0, 2.5, 7.5, 12.5, 17.5, 20], atol=1e-6)
    col = np.array([0.0, 4.0, 8.0, 16.0], dtype=np.float32).reshape(1, 4, 1)
    np.testing.assert_allclose(resize_bilinear(col, 0.5)[0, :, 0], [2.0, 12.0], atol=1e-6)


def test_resize_commutes_with_per_channel_affine_maps():
    """Bilinear resizing is linear with weights summing to 1, so normalising before or after resizing agrees: the
    order only matters for the padding, which is 0 = the mean colour (docs/reference.md §14.14)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (3, 11, 13)).astype(np.float32)
    a, b = np.float32(0.5), np.float32(-3.0)
    np.testing.assert_allclose(resize_bilinear(a * x + b, 1.7), a * resize_bilinear(x, 1.7) + b, atol=1e-4)


def test_warp_region_is_a_crop_then_a_resize():
    """A square box warped by a whole factor equals resize_bilinear of its crop; a box of the output's size is the
    crop itself; a constant image stays constant whatever the aspect ratio."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 20, 30)).astype(np.float32)
    np.testing.assert_allclose(warp_region(x, (4, 2, 11, 9), 16), resize_bilinear(x[:, 2:10, 4:12], 2.0), atol=1e-6)
    np.testing.assert_array_equal(warp_region(x, (10, 5, 17, 12), 8), x[:, 5:13, 10:18])
    c = np.full((3, 20, 30), 2.5, dtype=np.float32)
    out = warp_region(c, (0, 3, 29, 6), 12)                 # 30 x 4 px stretched to 12 x 12
    assert out.shape == (3, 12, 12)
    np.testing.assert_allclose(out, 2.5, rtol=1e-6)


def test_warp_region_stretches_each_axis_on_its_own():
    """A horizontal ramp keeps being constant down each column when only the height is stretched: x and y are
    resized by their own factors (R-CNN's anisotropic warp)."""
    ramp = np.tile(np.arange(8, dtype=np.float32), (1, 2, 1))          # (1, 2, 8): 2 rows of 0..7
    out = warp_region(ramp, (0, 0, 7, 1), 8)                            # 8 x 2 px -> 8 x 8
    np.testing.assert_allclose(out[0], np.tile(np.arange(8, dtype=np.float32), (8, 1)), atol=1e-6)


def test_warp_region_clips_and_rounds_the_box():
    """Corners are rounded to whole pixels and clipped to the image; a box outside the image keeps its border pixel."""
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    np.testing.assert_array_equal(warp_region(x, (-5.0, -5.0, 10.0, 10.0), 4), warp_region(x, (0, 0, 3, 2), 4))
    np.testing.assert_array_equal(warp_region(x, (0.4, 0.6, 1.4, 1.6), 2), x[:, 1:3, 0:2])
    np.testing.assert_allclose(warp_region(x, (9, 9, 12, 12), 2), 11.0)


# ------------------------------------------------------------------------------------------------------ flipping
def test_flip_twice_is_identity():
    """Flipping an image or its boxes twice gives them back unchanged."""
    rng = np.random.default_rng(2)
    image = random_image(rng, 6, 9)
    np.testing.assert_array_equal(flip_image(flip_image(image)), image)
    boxes = np.array([[0, 0, 8, 5], [2.5, 1, 3.5, 4], [4, 4, 4, 4]], dtype=np.float32)
    np.testing.assert_array_equal(flip_boxes(flip_boxes(boxes, 9), 9), boxes)


def test_flipped_boxes_by_hand():
    """In a 10-px wide image, x1' = W - x2 - 1 and x2' = W - x1 - 1: (1, 2, 3, 4) -> (6, 2, 8, 4); the full-width
    box maps to itself; y is untouched; the pixels under the box move with it."""
    boxes = np.array([[1, 2, 3, 4], [0, 0, 9, 7]], dtype=np.float32)
    np.testing.assert_array_equal(flip_boxes(boxes, 10), [[6, 2, 8, 4], [0, 0, 9, 7]])
    image = np.zeros((8, 10, 3), dtype=np.uint8)
    image[2:5, 1:4] = 255                               # the pixels of box (1, 2, 3, 4)
    ys, xs = np.nonzero(flip_image(image)[..., 0])
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (6, 2, 8, 4)


def test_flip_rejects_bad_input():
    """Boxes not (N, 4), a non-positive width or an image that is not 2-D/3-D are ValueErrors naming the argument."""
    with pytest.raises(ValueError, match="boxes"):
        flip_boxes(np.zeros((3, 5)), 10)
    with pytest.raises(ValueError, match="width"):
        flip_boxes(np.zeros((3, 4)), 0)
    with pytest.raises(ValueError, match="image"):
        flip_image(np.zeros(5))


# ------------------------------------------------------------------------------------------------- preprocessing
def test_caffe_preset_is_bgr_0_255_with_bgr_means():
    """The Caffe VGG16 preset: BGR order, values 0-255, the BGR pixel means of docs/reference.md §4, std 1."""
    assert CAFFE_VGG16.channel_order == "BGR" and CAFFE_VGG16.value_range == 255.0
    assert CAFFE_VGG16.mean == (102.9801, 115.9465, 122.7717) and CAFFE_VGG16.std == (1.0, 1.0, 1.0)
    assert TORCHVISION.channel_order == "RGB" and TORCHVISION.value_range == 1.0
    assert TORCHVISION.mean == (0.485, 0.456, 0.406) and TORCHVISION.std == (0.229, 0.224, 0.225)
    assert set(PREPROCESSING_PRESETS) == {"caffe_vgg16", "torchvision", "plain"}
    assert Preprocessing.from_dict(CAFFE_VGG16.to_dict()) == CAFFE_VGG16


def test_rgb_input_ends_up_bgr_for_caffe():
    """A pure red RGB pixel (255, 0, 0) becomes channels (0 - 102.98, 0 - 115.95, 255 - 122.77) for Caffe: red is
    the last channel. The mean colour itself becomes exactly 0 (what the blob padding means)."""
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[..., 0] = 255
    chw, scale = prepare_image(image, 4, 1000, CAFFE_VGG16)
    assert scale == 1.0 and chw.shape == (3, 4, 6) and chw.dtype == np.float32
    np.testing.assert_allclose(chw[:, 0, 0], [-102.9801, -115.9465, 255 - 122.7717], rtol=1e-6)
    torch_like, _ = prepare_image(image, 4, 1000, TORCHVISION)
    np.testing.assert_allclose(torch_like[:, 0, 0], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225],
                               rtol=1e-6)
    plain, _ = prepare_image(image, 4, 1000, PLAIN)
    np.testing.assert_allclose(plain[:, 0, 0], [2.0, -2.0, -2.0], rtol=1e-6)


def test_mean_subtracted_before_resizing():
    """prepare_image = resize(preprocess(flip(image))): the Caffe path of docs/reference.md §5 with a flip."""
    rng = np.random.default_rng(3)
    image = random_image(rng, 15, 20)
    out, scale = prepare_image(image, 24, 1000, CAFFE_VGG16, flip=True)
    assert scale == 1.6 and out.shape == (3, 24, 32)
    bgr = image[:, ::-1, ::-1].astype(np.float32) - np.float32([102.9801, 115.9465, 122.7717])
    np.testing.assert_allclose(out, resize_bilinear(np.ascontiguousarray(bgr.transpose(2, 0, 1)), 1.6), atol=1e-4)


def test_preprocessing_rejects_bad_values():
    """Unknown channel orders or value ranges, wrong-length means and non-positive stds are ValueErrors."""
    with pytest.raises(ValueError, match="channel_order"):
        Preprocessing("GBR", 255.0, (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="value_range"):
        Preprocessing("RGB", 2.0, (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="mean"):
        Preprocessing("RGB", 1.0, (0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="std"):
        Preprocessing("RGB", 1.0, (0, 0, 0), (1, 0, 1))
    with pytest.raises(ValueError, match="image"):
        prepare_image(np.zeros((4, 4, 3), dtype=np.float32), 4, 10, PLAIN)


# --------------------------------------------------------------------------------------------------------- blobs
def test_blob_zero_pads_top_left():
    """Images of different sizes sit in the top-left corner of an (N, 3, max H, max W) blob; the rest is 0."""
    a = np.full((3, 2, 5), 1.0, dtype=np.float32)
    b = np.full((3, 4, 3), 2.0, dtype=np.float32)
    blob = images_to_blob([a, b])
    assert blob.shape == (2, 3, 4, 5) and blob.dtype == np.float32
    np.testing.assert_array_equal(blob[0, :, :2, :5], 1.0)
    np.testing.assert_array_equal(blob[0, :, 2:, :], 0.0)
    np.testing.assert_array_equal(blob[1, :, :4, :3], 2.0)
    np.testing.assert_array_equal(blob[1, :, :, 3:], 0.0)
    with pytest.raises(ValueError, match="images"):
        images_to_blob([])
    with pytest.raises(ValueError, match=r"images\[1\]"):
        images_to_blob([a, np.zeros((1, 2, 2))])


def test_image_pyramid_levels_and_roi_levels():
    """Each pyramid level follows the scale rule and is padded into one blob; a box goes to the level where its
    scaled area is closest to 224^2 (docs/reference.md §8): a 100x100 box to scale 2.24 (224^2), a 200x200 box to
    1.12."""
    rng = np.random.default_rng(4)
    image = random_image(rng, 100, 150)
    blob, factors = image_pyramid(image, (112, 224), 1000, PLAIN)
    np.testing.assert_allclose(factors, [1.12, 2.24])
    assert blob.shape == (2, 3, 224, 336)
    np.testing.assert_array_equal(blob[0, :, 112:, :], 0.0)
    boxes = np.array([[0, 0, 99, 99], [0, 0, 199, 199]], dtype=np.float32)
    rois = pyramid_rois(boxes, factors)
    assert rois.dtype == np.float32
    np.testing.assert_array_equal(rois[:, 0], [1, 0])
    np.testing.assert_allclose(rois[:, 1:], [[0, 0, 99 * 2.24, 99 * 2.24], [0, 0, 199 * 1.12, 199 * 1.12]],
                               rtol=1e-6)
