"""Anchors: shapes worked out by hand, their order on the grid, and their centres on the cells."""
import numpy as np
import pytest

from minircnn.rpn import anchor_shapes, grid_anchors


def test_a_square_anchor_of_scale_16_spans_16_pixels_around_the_centre():
    np.testing.assert_allclose(anchor_shapes((16,), (1.0,)), [[-7.5, -7.5, 7.5, 7.5]])


def test_ratio_sets_height_over_width_and_keeps_the_area():
    """Scale 32, ratio 2 (h/w): w = 32/sqrt(2) = 22.63, h = 45.25, area 32**2."""
    (x1, y1, x2, y2), = anchor_shapes((32,), (2.0,))
    w, h = x2 - x1 + 1, y2 - y1 + 1
    assert w == pytest.approx(32 / np.sqrt(2)) and h == pytest.approx(32 * np.sqrt(2))
    assert w * h == pytest.approx(1024)


def test_shapes_are_scale_major():
    shapes = anchor_shapes((16, 64), (0.5, 1.0, 2.0))
    widths = shapes[:, 2] - shapes[:, 0] + 1
    np.testing.assert_allclose(widths, [16 / np.sqrt(0.5), 16, 16 / np.sqrt(2), 64 / np.sqrt(0.5), 64, 64 / np.sqrt(2)])


def test_grid_anchors_sit_on_cell_centres_in_row_major_order():
    """A 2x3 map at stride 16, one 16-pixel anchor: cell (y, x) covers pixels 16x .. 16x + 15, so its anchor is
    exactly that square; rows go x fastest."""
    anchors = grid_anchors((2, 3), 16, (16,), (1.0,))
    expected = [[16 * x, 16 * y, 16 * x + 15, 16 * y + 15] for y in range(2) for x in range(3)]
    np.testing.assert_allclose(anchors, expected)
    assert anchors.dtype == np.float32


def test_grid_anchors_put_the_a_shapes_of_a_cell_together():
    shapes = anchor_shapes((16, 32), (1.0, 2.0))
    anchors = grid_anchors((2, 2), 16, (16, 32), (1.0, 2.0))
    assert anchors.shape == (2 * 2 * 4, 4)
    cell = 3                                                    # (y, x) = (1, 1): centre (23.5, 23.5)
    np.testing.assert_allclose(anchors[cell * 4:(cell + 1) * 4], shapes + 23.5, rtol=1e-6)


@pytest.mark.parametrize("bad", [dict(scales=()), dict(ratios=(0,)), dict(scales=(-4,))])
def test_bad_shapes_are_refused(bad):
    with pytest.raises(ValueError, match="scales|ratios"):
        anchor_shapes(**{"scales": (16,), "ratios": (1.0,), **bad})


def test_an_empty_map_is_refused():
    with pytest.raises(ValueError, match="feature map"):
        grid_anchors((0, 3), 16)
