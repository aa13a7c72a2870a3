"""Pictures with matplotlib: detections drawn on an image, precision-recall curves.

Every ``draw_``/``plot_`` function draws into an Axes and returns it; pass ``ax`` to draw into your own figure. Without
one, a new figure is made through pyplot, so it shows inline in a notebook; headless, matplotlib picks its Agg backend
by itself. This module never selects a backend and never calls ``plt.show()``; scripts save with
``ax.figure.savefig(path)`` and may ``plt.close(ax.figure)`` when drawing many figures.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .backend import asnumpy

__all__ = ["draw_boxes", "draw_ground_truth_and_detections", "plot_precision_recall", "plot_precision_recall_curves",
           "save_loss_curves", "save_ground_truth_and_detections"]


def _new_axes(figsize=None):
    import matplotlib.pyplot as plt    # imported here so that importing minircnn never touches the GUI machinery
    _, ax = plt.subplots(figsize=figsize)
    return ax


def _class_name(class_names, label):
    """The name of class id ``label``: a sequence holds the foreground names (id k is ``class_names[k - 1]``, the
    datasets' convention, e.g. ``VOCDataset.class_names``); a dict maps ids to names."""
    if class_names is None:
        return str(label)
    if isinstance(class_names, Mapping):
        return str(class_names.get(label, label))
    return str(class_names[label - 1]) if 1 <= label <= len(class_names) else str(label)


def draw_boxes(image, boxes, labels=None, scores=None, class_names=None, ax=None, score_thresh=None,
               linewidth=2.0, fontsize=8, color=None, linestyle="-"):
    """Draw boxes, with class names and scores, on an image.

    A box ``(x1, y1, x2, y2)`` covers pixels x1..x2 inclusive, so its rectangle runs from ``x1 - 0.5`` to ``x2 + 0.5``
    in ``imshow``'s coordinates (pixel centres at integers): it is ``x2 - x1 + 1`` wide, the spec's convention (§7).

    Args:
        image: (H, W, 3) RGB array, uint8 0-255 or float 0-1, or (H, W) grey; None to draw on empty axes. A BGR
            blob must be converted first (``image[..., ::-1]``) and the pixel means added back.
        boxes: (N, 4) float array, boxes ``(x1, y1, x2, y2)`` in the image's pixel coordinates.
        labels: (N,) int array of class ids, or None. Each class gets its own colour.
        scores: (N,) float array of confidences, or None.
        class_names: the foreground class names (id k is ``class_names[k - 1]``, like ``VOCDataset.class_names``)
            or a dict id -> name; None shows ids.
        ax: matplotlib Axes to draw into; None makes a new figure.
        score_thresh: if given, only boxes with a score >= score_thresh are drawn (needs ``scores``).
        linewidth: box edge width in points.
        fontsize: caption font size in points.
        color: one matplotlib colour for every box (e.g. to tell proposals from regressed boxes); None: a colour
            per class (lime without labels).
        linestyle: matplotlib line style of the box edges, e.g. ``"--"``.

    Returns:
        The matplotlib Axes.

    Raises:
        ValueError: ``boxes`` is not (N, 4), or ``labels``/``scores`` do not have N entries.
    """
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    boxes = np.asarray(asnumpy(boxes), dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got shape {boxes.shape}")
    n = len(boxes)
    labels = None if labels is None else np.asarray(asnumpy(labels)).reshape(-1)
    scores = None if scores is None else np.asarray(asnumpy(scores), dtype=np.float64).reshape(-1)
    for name, a in (("labels", labels), ("scores", scores)):
        if a is not None and a.shape != (n,):
            raise ValueError(f"{name} must have shape (N,) = ({n},) to match boxes, got shape {a.shape}")
    if score_thresh is not None:
        if scores is None:
            raise ValueError("score_thresh needs scores")
        shown = scores >= score_thresh
        boxes, scores = boxes[shown], scores[shown]
        labels = None if labels is None else labels[shown]

    if ax is None:
        ax = _new_axes()
    if image is not None:
        image = np.asarray(asnumpy(image))
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    cmap = colormaps["tab20"]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        colour = color if color is not None else cmap(int(labels[i]) % 20) if labels is not None else "lime"
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1 + 1, y2 - y1 + 1, fill=False,
                               edgecolor=colour, linewidth=linewidth, linestyle=linestyle))
        caption = [] if labels is None else [_class_name(class_names, int(labels[i]))]
        if scores is not None:
            caption.append(f"{scores[i]:.3f}")
        if caption:
            ax.text(x1 - 0.5, y1 - 0.5, " ".join(caption), fontsize=fontsize, color="white", va="bottom",
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    if image is None and len(boxes) and not ax.images:
        # no image anywhere on the axes to set the view: frame the boxes, y pointing down like an image
        ax.set_xlim(boxes[:, 0].min() - 10, boxes[:, 2].max() + 10)
        ax.set_ylim(boxes[:, 3].max() + 10, boxes[:, 1].min() - 10)
    ax.set_axis_off()
    return ax



RIGHT, WRONG, MISSED = "limegreen", "red", "orange"      # what the colours of draw_ground_truth_and_detections mean


def draw_ground_truth_and_detections(image, gt_boxes, gt_labels, boxes, labels, scores, class_names=None, axes=None,
                                     gt_difficult=None, score_thresh=0.5, iou_thresh=0.5):
    """One image twice, side by side: its ground truth, and the detections scoring at least ``score_thresh``, each
    judged like the VOC devkit (:func:`minircnn.evaluation.match_detections`).

    Left, the objects: green when a shown detection found them, orange (dashed) when none did. Right, the
    detections: green when right (IoU >= ``iou_thresh`` with an object of the same class not found by a better
    detection), red when wrong (wrong class, poorly placed, or a duplicate), grey for a difficult object's.

    Args:
        image: (H, W, 3) RGB array.
        gt_boxes: (G, 4) float, gt_labels: (G,) int: the annotation. gt_difficult: (G,) bool or None.
        boxes: (D, 4) float, labels: (D,) int, scores: (D,) float: the detections (all of them; only those at or
            above ``score_thresh`` are drawn and judged).
        class_names: foreground names (id k is ``class_names[k - 1]``).
        axes: two matplotlib Axes (ground truth, detections); None makes a new figure.
        score_thresh, iou_thresh: what is shown, and what counts as right.

    Returns:
        dict with ``right``, ``wrong``, ``missed`` (counts among the shown detections and the non-difficult
        objects).
    """
    from .evaluation import match_detections
    if axes is None:
        import matplotlib.pyplot as plt
        _, axes = plt.subplots(1, 2, figsize=(8, 4))
    scores = np.asarray(asnumpy(scores), dtype=np.float64).reshape(-1)
    shown = scores >= score_thresh
    boxes = np.asarray(asnumpy(boxes), dtype=np.float64).reshape(-1, 4)[shown]
    labels, scores = np.asarray(asnumpy(labels)).reshape(-1)[shown], scores[shown]
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    difficult = np.zeros(len(gt_boxes), bool) if gt_difficult is None else np.asarray(gt_difficult, bool)
    correct, ignored, found = match_detections(boxes, labels, scores, gt_boxes, gt_labels, difficult, iou_thresh)
    missed = ~found & ~difficult
    for keep, colour, style in ((found | difficult, RIGHT, "-"), (missed, MISSED, "--")):
        draw_boxes(image, gt_boxes[keep], gt_labels[keep], None, class_names, ax=axes[0], color=colour,
                   linestyle=style)
    for keep, colour in ((correct, RIGHT), (~correct & ~ignored, WRONG), (ignored, "grey")):
        draw_boxes(image, boxes[keep], labels[keep], scores[keep], class_names, ax=axes[1], color=colour)
    counts = {"right": int(correct.sum()), "wrong": int((~correct & ~ignored).sum()), "missed": int(missed.sum())}
    objects = f"{len(gt_boxes)} object" + ("" if len(gt_boxes) == 1 else "s")
    axes[0].set_title(f"ground truth: {objects}, {counts['missed']} missed", fontsize=9)
    axes[1].set_title(f"detections >= {score_thresh:g}: {counts['right']} right, {counts['wrong']} wrong",
                      fontsize=9)
    return counts

def plot_precision_recall(recall, precision, ax=None, label=None, ap=None, envelope=True):
    """Plot one precision-recall curve (e.g. an entry of :func:`minircnn.evaluation.precision_recall`).

    Args:
        recall: (D,) float array, non-decreasing, in [0, 1].
        precision: (D,) float array, same length.
        ax: matplotlib Axes to draw into; None makes a new figure.
        label: legend entry (e.g. the class name); ``ap`` is appended when given.
        ap: the curve's average precision, shown in the legend.
        envelope: also draw the monotone envelope (best precision at any higher recall) that VOC's area AP
            integrates (docs/reference.md §10), dashed.

    Returns:
        The matplotlib Axes.

    Raises:
        ValueError: the arrays are not 1-D of the same length.
    """
    recall = np.asarray(asnumpy(recall), dtype=np.float64)
    precision = np.asarray(asnumpy(precision), dtype=np.float64)
    if recall.ndim != 1 or precision.shape != recall.shape:
        raise ValueError(f"recall and precision must be 1-D of the same length, got shapes {recall.shape} "
                         f"and {precision.shape}")
    if ax is None:
        ax = _new_axes()
    text = label
    if ap is not None:
        text = f"{text + ' ' if text else ''}AP {ap:.3f}"
    (line,) = ax.plot(recall, precision, label=text, drawstyle="steps-post" if len(recall) > 1 else "default",
                      marker="." if len(recall) == 1 else None)
    if envelope and len(recall):
        env = np.maximum.accumulate(precision[::-1])[::-1]
        ax.plot(recall, env, linestyle="--", color=line.get_color(), alpha=0.6)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    if text is not None:
        ax.legend(loc="lower left", fontsize="small")
    return ax


def plot_precision_recall_curves(precision, recall, class_names=None, ap=None, ax=None):
    """Plot every class's curve from :func:`minircnn.evaluation.precision_recall` on one Axes.

    Args:
        precision: list indexed by class id of (D_k,) float arrays or None (as returned by ``precision_recall``).
        recall: list of the same length; None entries (background, classes without ground truth) are skipped.
        class_names: foreground names (id k is ``class_names[k - 1]``) or a dict id -> name, for the legend.
        ap: (K,) float array of per-class APs (``eval_detection_voc(...)["ap"]``), for the legend.
        ax: matplotlib Axes to draw into; None makes a new figure.

    Returns:
        The matplotlib Axes.

    Raises:
        ValueError: ``precision`` and ``recall`` have different lengths.
    """
    if len(precision) != len(recall):
        raise ValueError(f"precision and recall must have one entry per class, got {len(precision)} and {len(recall)}")
    if ax is None:
        ax = _new_axes()
    for k, (p, r) in enumerate(zip(precision, recall)):
        if p is None or r is None:
            continue
        plot_precision_recall(r, p, ax=ax, label=_class_name(class_names, k), envelope=False,
                              ap=None if ap is None else float(ap[k]))
    return ax


# --------------------------------------------------------------------------------------- a run's figures, as files
def _figure(**kwargs):
    """A matplotlib Figure not registered with pyplot (nothing to close, no backend chosen): for files."""
    from matplotlib.figure import Figure
    return Figure(**kwargs)


def save_loss_curves(iterations, losses, path, window=20):
    """``loss.png`` of a training run: each loss per iteration (faint) and its running mean over ``window`` steps.

    Args:
        iterations: (T,) iteration numbers.
        losses: {name: (T,) values}, e.g. ``{"loss_cls": ..., "loss_bbox": ...}``.
        path: the PNG to write.
    """
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    it = np.asarray(iterations)
    for (key, values), colour in zip(losses.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        v = np.asarray(values, dtype=np.float64)
        k = min(window, len(v)) or 1
        smooth = np.convolve(v, np.ones(k) / k, mode="valid")
        ax.plot(it, v, color=colour, alpha=0.25)
        ax.plot(it[k - 1:], smooth, color=colour, label=f"{key} (mean of {k} steps)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")


def save_ground_truth_and_detections(dataset, detections, class_names, path, count=6):
    """``detections.png``: the first ``count`` images of ``dataset`` (``annotation(i)``, ``load_image(i)``), each
    as its ground truth beside the detections scoring at least 0.5, two images a row
    (:func:`draw_ground_truth_and_detections`).

    Args:
        detections: lists (boxes, labels, scores), one entry per image of the dataset.
    """
    count = min(count, len(dataset))
    cols = 2 if count > 1 else 1                              # images per row, each taking two panels
    rows = -(-count // cols)
    fig = _figure(figsize=(7 * cols, 3.6 * rows))
    axes = fig.subplots(rows, 2 * cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(count):
        note = dataset.annotation(i)
        boxes, labels, scores = (d[i] for d in detections)
        r, c = divmod(i, cols)
        draw_ground_truth_and_detections(dataset.load_image(i), note.boxes, note.labels, boxes, labels, scores,
                                         class_names, axes=axes[r, 2 * c:2 * c + 2], gt_difficult=note.difficult)
    fig.suptitle(f"left: ground truth ({RIGHT}: found, {MISSED}: missed); right: detections with score >= 0.5 "
                 f"({RIGHT}: right, {WRONG}: wrong)", fontsize=10)
    fig.savefig(path, dpi=90, bbox_inches="tight")


def save_detections(image, boxes, labels, scores, class_names, path):
    """One image with its detections drawn (:func:`draw_boxes`), as a PNG: what ``minircnn.detect`` writes."""
    fig = _figure(figsize=(6, 6 * image.shape[0] / image.shape[1]))
    ax = fig.subplots()
    draw_boxes(image, boxes, labels, scores, class_names=class_names, ax=ax)
    ax.set_axis_off()
    fig.savefig(path, dpi=100, bbox_inches="tight")


def save_precision_recall_curves(precision, recall, class_names, ap, title, path):
    """``pr_curves.png``: every class's precision-recall curve (:func:`plot_precision_recall_curves`)."""
    fig = _figure(figsize=(6, 5))
    ax = fig.subplots()
    plot_precision_recall_curves(precision, recall, class_names=class_names, ap=ap, ax=ax)
    ax.set_title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
