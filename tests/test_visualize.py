"""Tests for minircnn.visualize: the plots draw what they are given, headless (Agg), and return their Axes."""
import matplotlib

matplotlib.use("Agg")   # tests never open windows; the library itself leaves the backend alone

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from minircnn.evaluation import eval_detection_voc, precision_recall  # noqa: E402
from minircnn.visualize import (MISSED, RIGHT, WRONG, draw_boxes, draw_ground_truth_and_detections,  # noqa: E402
                                plot_precision_recall, plot_precision_recall_curves, save_loss_curves)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_draw_boxes_rectangles_and_captions(tmp_path):
    """One rectangle per box covering its inclusive pixels (x1 - 0.5 .. x2 + 0.5), captioned 'name score'; the
    figure renders to a PNG."""
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    boxes = np.array([[2, 3, 11, 8], [20, 10, 39, 29]], dtype=np.float32)
    ax = draw_boxes(image, boxes, labels=np.array([1, 2]), scores=np.array([0.9, 0.25]),
                    class_names=["cat", "dog"])
    rects = rectangles(ax)
    assert len(rects) == 2
    assert rects[0].get_xy() == (1.5, 2.5) and rects[0].get_width() == 10 and rects[0].get_height() == 6
    assert [t.get_text() for t in ax.texts] == ["cat 0.900", "dog 0.250"]
    ax.figure.savefig(tmp_path / "boxes.png")
    assert (tmp_path / "boxes.png").stat().st_size > 0


def test_draw_boxes_one_colour_and_line_style():
    """``color`` gives every box the same edge colour whatever its class; ``linestyle`` sets the edges' dashes."""
    from matplotlib.colors import to_rgba
    boxes = np.array([[2, 3, 11, 8], [20, 10, 39, 29]], dtype=np.float32)
    ax = draw_boxes(None, boxes, labels=np.array([1, 2]), color="red", linestyle="--")
    for rect in rectangles(ax):
        assert rect.get_edgecolor() == to_rgba("red")
        assert rect.get_linestyle() == "--"
    plain = rectangles(draw_boxes(None, boxes, labels=np.array([1, 2])))
    assert plain[0].get_edgecolor() != plain[1].get_edgecolor() and plain[0].get_linestyle() == "-"


def test_draw_boxes_score_threshold_and_own_axes():
    """Drawing into a given Axes returns that Axes; score_thresh hides low-scoring boxes; without labels or
    class_names the caption is just the score."""
    _, ax = plt.subplots()
    out = draw_boxes(None, np.array([[0, 0, 9, 9], [5, 5, 20, 20]]), scores=np.array([0.8, 0.1]), ax=ax,
                     score_thresh=0.5)
    assert out is ax
    assert len(rectangles(ax)) == 1 and [t.get_text() for t in ax.texts] == ["0.800"]


def test_draw_boxes_zero_boxes():
    """An image without detections draws the image and no rectangles."""
    ax = draw_boxes(np.zeros((10, 10)), np.zeros((0, 4)), labels=np.zeros(0, int), scores=np.zeros(0))
    assert rectangles(ax) == [] and len(ax.texts) == 0 and len(ax.images) == 1


def test_draw_boxes_bad_shapes():
    """Boxes not (N, 4) and labels of another length raise ValueErrors naming the argument."""
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        draw_boxes(None, np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(2,\)"):
        draw_boxes(None, np.zeros((2, 4)), labels=np.array([1]))


def test_plot_precision_recall():
    """The curve and its dashed envelope are drawn on a [0, 1] x [0, 1] frame, with the AP in the legend."""
    ax = plot_precision_recall(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]), label="cat", ap=0.75)
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [1.0, 2 / 3, 2 / 3])
    assert ax.get_legend().get_texts()[0].get_text() == "cat AP 0.750"
    with pytest.raises(ValueError, match="same length"):
        plot_precision_recall(np.zeros(2), np.zeros(3))


def test_plot_precision_recall_curves_skips_undefined_classes():
    """All classes of precision_recall are drawn on one Axes except background and classes without ground truth."""
    boxes = [np.array([[0, 0, 9, 9], [0, 0, 9, 9], [20, 20, 29, 29]], float)]
    labels, scores = [np.array([1, 2, 3])], [np.array([0.9, 0.8, 0.7])]
    gt = [np.array([[0, 0, 9, 9], [20, 20, 29, 29]], float)], [np.array([1, 2])]
    prec, rec = precision_recall(boxes, labels, scores, *gt)
    ap = eval_detection_voc(boxes, labels, scores, *gt)["ap"]
    ax = plot_precision_recall_curves(prec, rec, class_names={1: "cat", 2: "dog", 3: "cow"}, ap=ap)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cat AP 1.000", "dog AP 0.000"]


def test_drawing_more_boxes_keeps_the_image_view():
    """Boxes drawn onto axes that already show an image (image=None) keep the image's view instead of reframing."""
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    ax = draw_boxes(image, np.array([[2, 3, 11, 8]], dtype=np.float32))
    limits = (ax.get_xlim(), ax.get_ylim())
    draw_boxes(None, np.array([[20, 10, 25, 15]], dtype=np.float32), ax=ax)
    assert (ax.get_xlim(), ax.get_ylim()) == limits


def test_ground_truth_beside_detections_colours_right_wrong_missed():
    """Two objects (class 1 at (0, 0, 9, 9), class 2 at (20, 20, 29, 29)); detections: class 1 on the first (right,
    green), class 1 on the second (wrong class, red), and one below the score threshold (not drawn). The second
    object is missed: orange and dashed on the left."""
    _, axes = plt.subplots(1, 2)
    counts = draw_ground_truth_and_detections(
        np.zeros((40, 40, 3), np.uint8), [[0, 0, 9, 9], [20, 20, 29, 29]], [1, 2],
        [[0, 0, 9, 9], [20, 20, 29, 29], [0, 0, 30, 30]], [1, 1, 2], [0.9, 0.8, 0.3], ["disc", "bar"], axes=axes)
    assert counts == {"right": 1, "wrong": 1, "missed": 1}
    left, right = rectangles(axes[0]), rectangles(axes[1])
    assert [matplotlib.colors.to_hex(p.get_edgecolor()) for p in left] == [
        matplotlib.colors.to_hex(RIGHT), matplotlib.colors.to_hex(MISSED)]
    assert [p.get_linestyle() for p in left] == ["-", "--"]
    assert [matplotlib.colors.to_hex(p.get_edgecolor()) for p in right] == [
        matplotlib.colors.to_hex(RIGHT), matplotlib.colors.to_hex(WRONG)]
    assert "1 missed" in axes[0].get_title() and "1 right, 1 wrong" in axes[1].get_title()


def test_save_loss_curves_writes_a_png_without_pyplot(tmp_path):
    """The run's loss figure is written to a file and leaves no open pyplot figure behind."""
    before = plt.get_fignums()
    save_loss_curves([1, 2, 3], {"loss_cls": [1.0, 0.5, 0.25], "loss_bbox": [0.4, 0.3, 0.2]}, tmp_path / "l.png")
    assert (tmp_path / "l.png").stat().st_size > 0 and plt.get_fignums() == before
