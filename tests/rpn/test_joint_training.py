"""Training with ``--proposals rpn`` (approximate joint training): the step's data, its RoIs, a whole run with
resume, and evaluate/detect with the checkpoint's RPN."""
import csv
import json

import numpy as np
import pytest

from minircnn import detect, evaluate, train
from minircnn.boxes import encode
from minircnn.data import PREPROCESSING_PRESETS, VOCDataset, generate_shapes_dataset
from minircnn.data.roidb import append_flipped, roidb_from_dataset
from minircnn.data.sampler import SamplerConfig
from minircnn.rpn import grid_anchors
from minircnn.rpn.joint import TARGET_STDS, JointBatch, detector_rois, joint_minibatch
from minircnn.training.config import TrainConfig


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    """A VOC-format shapes dataset of 3 trainval and 2 test images."""
    root = tmp_path_factory.mktemp("voc") / "shapes"
    return generate_shapes_dataset(root, seed=4, trainval=3, test=2, progress=False)


def run(*argv):
    return train.main([str(a) for a in argv] + ["--quiet"])


def test_the_step_s_batch_is_a_function_of_seed_and_step(tiny_voc):
    dataset = VOCDataset(tiny_voc, "trainval")
    roidb = append_flipped(roidb_from_dataset(dataset, [np.zeros((0, 4), np.float32)] * len(dataset)))
    sampler = SamplerConfig(scales=(96,), max_size=160)

    def anchors_for(size):
        return grid_anchors((-(-size[0] // 16), -(-size[1] // 16)), 16)

    a, b, c = (joint_minibatch(i, roidb, dataset.load_image, PREPROCESSING_PRESETS["plain"], sampler, 3, anchors_for)
               for i in (1, 1, 2))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.concatenate(x) if isinstance(x, list) else x,
                                      np.concatenate(y) if isinstance(y, list) else y)
    assert not np.array_equal(a.anchor_labels, c.anchor_labels)
    n, m = a.anchor_labels.shape
    assert n == 2 and m == len(anchors_for(a.blob.shape[2:])) and a.anchor_targets.shape == (n, m, 4)
    assert (a.anchor_labels == 1).any() and (a.anchor_labels == 0).any()
    for boxes, (h, w) in zip(a.gt_boxes, a.image_sizes):        # ground truth scaled into each image, inside it
        assert len(boxes) and boxes[:, 2].max() <= w - 1 and boxes[:, 3].max() <= h - 1


def test_detector_rois_add_the_ground_truth_and_normalise_targets_with_fixed_stds():
    """One image, one box (class 2); proposals: the box shifted by 2 px (IoU 0.818, foreground) and one far away
    (IoU 0, neither foreground nor background: below 0.1). The ground-truth box is always a candidate."""
    gt = np.array([[10, 10, 29, 29]], np.float32)
    batch = JointBatch(None, np.array([[100, 100]]), np.array([1.0]), [gt], [np.array([2])], None, None)
    proposals = [np.array([[12, 10, 31, 29], [70, 70, 89, 89]], np.float32)]
    rois, labels, targets, weights = detector_rois(proposals, batch, SamplerConfig(ims_per_batch=1, batch_size=64),
                                                   3, np.random.default_rng(0))
    assert sorted(labels.tolist()) == [2, 2]
    order = np.argsort(rois[:, 1])
    np.testing.assert_allclose(rois[order], [[0, 10, 10, 29, 29], [0, 12, 10, 31, 29]])
    shifted = order[1]
    expected = encode(proposals[0][:1], gt)[0] / np.asarray(TARGET_STDS)
    np.testing.assert_allclose(targets[shifted, 8:12], expected, rtol=1e-6)
    np.testing.assert_array_equal(weights[shifted], [0] * 8 + [1] * 4)


def test_a_run_trains_both_and_resumes_bit_exactly(tiny_voc, tmp_path):
    """4 joint steps, or 2 then 2 more after --resume: the same checkpoint, array for array. The log has the RPN's
    losses, the checkpoint its layers, and the metrics the proposal time."""
    common = ["--data", tiny_voc, "--proposals", "rpn", "--scale", 96, "--checkpoint-every", 2, "--test-split",
              "trainval"]
    metrics = run(*common, "--out", tmp_path / "a", "--iters", 4)
    run(*common, "--out", tmp_path / "b", "--iters", 2, "--no-eval")
    run("--out", tmp_path / "b", "--iters", 4, "--resume", "--no-eval")
    with np.load(tmp_path / "a" / "checkpoint.npz") as a, np.load(tmp_path / "b" / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert "param/rpn_conv.weight" in a.files and "solver/velocity.rpn_bbox_pred.bias" in a.files
        assert json.loads(str(a["model_config"]))["rpn"]["scales"] == [16.0, 32.0, 64.0, 128.0, 256.0]
        np.testing.assert_allclose(a["bbox_stds"][1], TARGET_STDS)
    with open(tmp_path / "a" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(float(r["loss_rpn_cls"]) > 0 for r in rows)
    assert metrics["proposal_seconds_per_image"] > 0 and 0 <= metrics["map"] <= 1


def test_evaluate_and_detect_use_the_checkpoint_s_rpn(tiny_voc, tmp_path, capsys):
    run("--data", tiny_voc, "--proposals", "rpn", "--scale", 96, "--iters", 2, "--no-eval", "--out", tmp_path)
    metrics = evaluate.main(["--checkpoint", str(tmp_path / "checkpoint.npz"), "--data", str(tiny_voc)])
    assert metrics["proposals"] == "rpn" and metrics["proposal_seconds_per_image"] > 0
    image = VOCDataset(tiny_voc, "test").image_path(0)
    found = detect.main([str(image), "--checkpoint", str(tmp_path / "checkpoint.npz"), "--out", str(tmp_path / "d"),
                         "--show", "0"])
    assert len(found[str(image)][0]) > 0


def test_rpn_proposals_and_an_image_pyramid_are_refused_together():
    with pytest.raises(ValueError, match="one test scale"):
        TrainConfig(proposals="rpn", test_scales=(200, 300))
