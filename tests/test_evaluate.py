"""``python -m minircnn.evaluate`` and ``python -m minircnn.detect`` on a checkpoint made by ``minircnn.train``, and
the per-image test protocol."""
import json

import numpy as np
import pytest
from PIL import Image

from minircnn import detect, evaluate, train
from minircnn import inference
from minircnn.training.config import get_preset
from minircnn.data import PLAIN, VOCDataset, generate_shapes_dataset
from minircnn.models import build_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A VOC-format dataset (2 trainval, 2 test images) and a checkpoint trained 20 steps on it."""
    base = tmp_path_factory.mktemp("roundtrip")
    root = generate_shapes_dataset(base / "voc", seed=5, trainval=2, test=2, progress=False)
    train.main(["--data", str(root), "--out", str(base / "run"), "--iters", "20", "--weights", "none",
                "--scale", "96", "--lr", "0.01", "--no-eval", "--quiet"])
    return root, base / "run" / "checkpoint.npz"


def test_train_then_evaluate_round_trip(trained, tmp_path, capsys):
    """evaluate reads the checkpoint (model, classes, target statistics, preprocessing, test settings), finds the
    dataset and split, writes metrics.json with the issue's keys and pr_curves.png, and prints the AP table."""
    root, ckpt = trained
    metrics = evaluate.main(["--checkpoint", str(ckpt), "--data", str(root), "--split", "test", "--out",
                             str(tmp_path)])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metric"] == "voc07" and 0.0 <= saved["map"] <= 1.0
    assert saved["map"] == pytest.approx(metrics["map"])
    assert set(saved["ap"]) == set(VOCDataset(root, "test").class_names)
    assert (tmp_path / "pr_curves.png").is_file()
    printed = capsys.readouterr().out
    assert "mAP" in printed and "ellipse" in printed


def test_detect_draws_and_lists(trained, tmp_path, capsys):
    root, ckpt = trained
    image = VOCDataset(root, "test").load_image(0)
    path = tmp_path / "mine.png"
    Image.fromarray(image).save(path)
    results = detect.main(["--checkpoint", str(ckpt), str(path), "--out", str(tmp_path / "out"), "--show", "0.0"])
    boxes, labels, scores = results[str(path)]
    assert boxes.shape == (len(labels), 4) and np.all(scores[:-1] >= scores[1:])
    assert (tmp_path / "out" / "mine_detections.png").is_file()
    assert "detections with score" in capsys.readouterr().out


def test_detect_image_protocol():
    """Per class: scores > 0.05 only, NMS at 0.3 removes the duplicate of a box, at most max_per_image kept, boxes
    clipped to the image, labels in 1..K, sorted by score."""
    rng = np.random.default_rng(0)
    model = build_model("tiny", 3, seed=0, channels=(2, 2, 3, 3, 4), fc_width=8)
    image = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
    props = np.array([[0, 0, 40, 40], [1, 1, 41, 41], [50, 20, 99, 79], [-5, -5, 120, 90]], np.float32)
    means, stds = np.zeros((3, 4)), np.ones((3, 4))
    boxes, labels, scores = inference.detect_image(model, image, props, means, stds, PLAIN, 80, 200)
    assert np.all(scores > 0.05) and np.all((labels >= 1) & (labels <= 2))
    assert np.all(scores[:-1] >= scores[1:])
    assert np.all(boxes[:, [0, 2]] <= 99) and np.all(boxes[:, [1, 3]] <= 79) and np.all(boxes >= 0)
    for k in (1, 2):                      # proposals 0 and 1 overlap with IoU ~0.9: one survives per class
        assert np.sum(labels == k) <= 3
    few = inference.detect_image(model, image, props, means, stds, PLAIN, 80, 200, max_per_image=2)
    assert len(few[0]) == min(2, len(boxes))


def test_a_file_that_is_not_a_checkpoint_gives_one_error(tmp_path):
    bad = tmp_path / "weights.npz"
    np.savez(bad, **{"conv1.weight": np.zeros((16, 3, 3, 3), np.float32)})
    with pytest.raises(SystemExit, match="weights.npz is not a minircnn training checkpoint"):
        evaluate.main(["--checkpoint", str(bad)])
    with pytest.raises(SystemExit, match="no checkpoint"):
        detect.main(["--checkpoint", str(tmp_path / "missing.npz"), "x.png"])


def tiny_model():
    return build_model("tiny", 3, seed=0, channels=(2, 2, 3, 3, 4), fc_width=8)


def test_multi_scale_test_pools_each_roi_from_the_level_closest_to_224_squared():
    """A 400x600 image at scales (100, 400): factors 0.25 and 1. A box's area at a level is its area x factor^2;
    the level closest to 224^2 = 50176 wins. 400x300 = 120000 -> 7500 or 120000: level 0; 100x100 = 10000 ->
    625 or 10000: level 1; 200x200 -> 2500 or 40000: level 1; 350x300 = 105000 -> 6563 or 105000: level 0. The
    network receives both levels in one blob (level 0 top-left, zero-padded) and each RoI in its level's pixels."""
    rng = np.random.default_rng(1)
    model = tiny_model()
    image = rng.integers(1, 255, (400, 600, 3), dtype=np.uint8)
    props = np.array([[0, 0, 399, 299], [10, 20, 109, 119], [200, 100, 399, 299], [0, 0, 349, 299]], np.float32)
    seen = {}
    predict = model.predict

    def spy(blob, rois):
        seen["blob"], seen["rois"] = blob, rois
        return predict(blob, rois)

    model.predict = spy
    probs, boxes = inference.im_detect(model, image, props, np.zeros((3, 4)), np.ones((3, 4)), PLAIN, (100, 400),
                                      1000)
    assert seen["blob"].shape == (2, 3, 400, 600)
    np.testing.assert_array_equal(seen["blob"][0, :, 100:, :], 0)
    assert np.all(seen["blob"][0, :, :100, :150].any(axis=0))
    np.testing.assert_array_equal(seen["rois"][:, 0], [0, 1, 1, 0])
    np.testing.assert_allclose(seen["rois"][:, 1:], [[0, 0, 99.75, 74.75], [10, 20, 109, 119],
                                                     [200, 100, 399, 299], [0, 0, 87.25, 74.75]])
    assert probs.shape == (4, 3) and boxes.shape == (4, 3, 4)
    single = inference.im_detect(model, image, props, np.zeros((3, 4)), np.ones((3, 4)), PLAIN, 400, 1000)[1]
    np.testing.assert_array_equal(seen["rois"][:, 0], 0)         # one scale: every RoI on the only level
    assert single.shape == (4, 3, 4)


def test_box_regression_off_uses_the_proposals():
    """bbox_pred outputs 0 and the target mean is dx = 0.25 for every class, so the regression moves a 40-px wide
    proposal (10, 10, 49, 49) right by 10 px to (20, 10, 59, 49); with bbox_reg=False every class's box is the
    proposal itself."""
    model = tiny_model()
    model.bbox_pred.params["weight"][...] = 0
    model.bbox_pred.params["bias"][...] = 0
    image = np.full((80, 100, 3), 128, np.uint8)
    props = np.array([[10, 10, 49, 49]], np.float32)
    means = np.tile([0.25, 0.0, 0.0, 0.0], (3, 1))
    args = (model, image, props, means, np.ones((3, 4)), PLAIN, 80, 200)
    np.testing.assert_allclose(inference.im_detect(*args)[1][0], [[20, 10, 59, 49]] * 3)
    np.testing.assert_array_equal(inference.im_detect(*args, bbox_reg=False)[1][0], [[10, 10, 49, 49]] * 3)
    boxes, labels, _ = inference.detect_image(*args, score_thresh=0.0, bbox_reg=False)
    np.testing.assert_array_equal(boxes, [[10, 10, 49, 49]] * len(labels))
    assert sorted(labels.tolist()) == [1, 2]


def test_test_time_flags(trained, tmp_path):
    """--protocol, --test-scales, --test-max-size, --no-bbox-reg and --svd reach the evaluation and are recorded
    in metrics.json."""
    root, ckpt = trained
    metrics = evaluate.main(["--checkpoint", str(ckpt), "--data", str(root), "--out", str(tmp_path), "--protocol",
                             "paper", "--test-scales", "64,96", "--test-max-size", "200", "--no-bbox-reg",
                             "--svd", "fc6=16,fc7=8"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert (saved["protocol"], saved["test_scales"], saved["test_max_size"], saved["bbox_reg"], saved["svd"]) == (
        "paper", [64, 96], 200, False, {"fc6": 16, "fc7": 8})
    assert 0.0 <= metrics["map"] <= 1.0
    results = detect.main(["--checkpoint", str(ckpt), str(_save_test_image(root, tmp_path)), "--out",
                           str(tmp_path / "d"), "--svd", "fc7=4", "--protocol", "paper", "--show", "0"])
    assert len(results) == 1


def _save_test_image(root, folder):
    path = folder / "test0.png"
    Image.fromarray(VOCDataset(root, "test").load_image(0)).save(path)
    return path


def test_bad_test_time_flags_name_the_flag(trained, capsys):
    """A malformed value is refused by argparse naming the flag; a rank the layer cannot have names --svd and the
    layer's size (the tiny fc6 is 512 x 6272)."""
    root, ckpt = trained
    for flag, value in (("--svd", "fc6"), ("--svd", "fc6=x"), ("--test-scales", "480,big"), ("--test-scales", "0")):
        with pytest.raises(SystemExit):
            evaluate.main(["--checkpoint", str(ckpt), flag, value])
        assert f"argument {flag}" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"--svd: rank of fc6 must be an integer in \[1, 512\]"):
        evaluate.main(["--checkpoint", str(ckpt), "--data", str(root), "--svd", "fc6=600"])
    with pytest.raises(SystemExit, match=r"--svd: 'bbox_pred' is not an fc layer"):
        detect.main(["--checkpoint", str(ckpt), "x.png", "--svd", "bbox_pred=2"])


def test_evaluate_reports_localisation_with_and_without_box_regression(trained, tmp_path, capsys):
    """evaluate prints and saves mAP@0.5, mAP@0.7 and COCO-style AP, with test-time regression and without it (the
    same network outputs, each class's box replaced by the proposal), and the 'without' numbers are those of a run
    with --no-bbox-reg."""
    root, ckpt = trained
    metrics = evaluate.main(["--checkpoint", str(ckpt), "--data", str(root), "--out", str(tmp_path / "both")])
    printed = capsys.readouterr().out
    for label in ("mAP@0.5", "mAP@0.7", "AP@[.5:.95]", "box reg.", "without"):
        assert label in printed
    plain = evaluate.main(["--checkpoint", str(ckpt), "--data", str(root), "--out", str(tmp_path / "plain"),
                           "--no-bbox-reg"])
    assert "without_bbox_reg" not in plain
    for key in ("map", "map_70", "map_coco"):
        assert metrics["without_bbox_reg"][key] == plain[key]
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["map_70"] <= metrics["map"]
    saved = json.loads((tmp_path / "both" / "metrics.json").read_text())
    assert saved["without_bbox_reg"] == metrics["without_bbox_reg"]


def test_detect_images_both_equals_two_separate_runs():
    """One network pass per image gives both settings: each equals detect_images with that setting alone."""
    model = tiny_model()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (80, 100, 3), dtype=np.uint8) for _ in range(2)]
    props = [np.array([[10, 10, 49, 49], [0, 5, 70, 60], [30, 20, 99, 79]], np.float32)] * 2
    means, stds = np.tile([0.25, 0.0, 0.0, 0.0], (3, 1)), np.full((3, 4), 0.5)
    config = get_preset("tiny").replace(test_scale=80, test_max_size=200, score_thresh=0.0)
    both = inference.detect_images_both(model, images.__getitem__, props, means, stds, PLAIN, config, progress=False)
    for reg in (True, False):
        alone = inference.detect_images(model, images.__getitem__, props, means, stds, PLAIN, config, bbox_reg=reg,
                                       progress=False)
        for mine, theirs in zip(both[reg], alone):
            for a, b in zip(mine, theirs):
                np.testing.assert_array_equal(a, b)
