"""``python -m minircnn.evaluate`` and ``python -m minircnn.detect`` on a checkpoint made by ``minircnn.train``, and
the per-image test protocol."""
import json

import numpy as np
import pytest
from PIL import Image

from minircnn import detect, evaluate, train
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
    boxes, labels, scores = evaluate.detect_image(model, image, props, means, stds, PLAIN, 80, 200)
    assert np.all(scores > 0.05) and np.all((labels >= 1) & (labels <= 2))
    assert np.all(scores[:-1] >= scores[1:])
    assert np.all(boxes[:, [0, 2]] <= 99) and np.all(boxes[:, [1, 3]] <= 79) and np.all(boxes >= 0)
    for k in (1, 2):                      # proposals 0 and 1 overlap with IoU ~0.9: one survives per class
        assert np.sum(labels == k) <= 3
    few = evaluate.detect_image(model, image, props, means, stds, PLAIN, 80, 200, max_per_image=2)
    assert len(few[0]) == min(2, len(boxes))


def test_a_file_that_is_not_a_checkpoint_gives_one_error(tmp_path):
    bad = tmp_path / "weights.npz"
    np.savez(bad, **{"conv1.weight": np.zeros((16, 3, 3, 3), np.float32)})
    with pytest.raises(SystemExit, match="weights.npz is not a minircnn training checkpoint"):
        evaluate.main(["--checkpoint", str(bad)])
    with pytest.raises(SystemExit, match="no checkpoint"):
        detect.main(["--checkpoint", str(tmp_path / "missing.npz"), "x.png"])
