"""minircnn.lab.experiments: the lessons' cached training runs."""
import json
import os
import pathlib

import numpy as np
import pytest

from minircnn.lab import experiments
from minircnn.data import generate_shapes_dataset


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc") / "shapes"
    return generate_shapes_dataset(root, seed=4, trainval=2, test=1, progress=False)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(experiments, "FAST", False)
    return tmp_path / "runs"


SMALL = dict(iters=2, weights="none", scales=(64,), max_size=100, test_scale=64, test_max_size=100,
             proposals="dense", progress=False)


def test_lesson_runs_live_in_the_checkout_s_runs_folder_whatever_the_working_folder(tmp_path, monkeypatch):
    """In a source checkout the lessons' runs go to <checkout>/runs/lessons, also when the lessons run from
    lessons/ (their working folder in Jupyter) or from anywhere else."""
    checkout = pathlib.Path(experiments.__file__).resolve().parents[2]
    assert (checkout / "setup.py").is_file() and (checkout / "lessons").is_dir()
    for cwd in (checkout / "lessons", tmp_path):
        monkeypatch.chdir(cwd)
        assert experiments._runs_root() == checkout / "runs" / "lessons"


def test_a_finished_run_is_read_back_not_repeated(voc, runs, monkeypatch):
    """The second call with the same config returns the first run's metrics without training; a changed config
    trains again into the same folder."""
    first = experiments.train_detector("a", voc, **SMALL)
    assert first.checkpoint.is_file() and first.out == runs / "a" and "map" in first.metrics

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")
    monkeypatch.setattr("minircnn.training.loop.train", no_training)
    again = experiments.train_detector("a", voc, **SMALL)
    assert again.metrics == json.loads((runs / "a" / "metrics.json").read_text())
    with pytest.raises(AssertionError, match="trained again"):
        experiments.train_detector("a", voc, **(SMALL | {"iters": 3}))


def test_an_unfinished_run_is_not_reused(voc, runs):
    """A folder whose checkpoint stopped before the config's last iteration (a crash) is trained again."""
    run = experiments.train_detector("b", voc, evaluate=False, **SMALL)
    with np.load(run.checkpoint) as f:
        arrays = dict(f)
    arrays["iteration"] = np.array(1)
    np.savez(run.checkpoint, **arrays)
    assert not experiments._finished(run.out, run.config, evaluate=False)
    assert experiments._finished(experiments.train_detector("b", voc, evaluate=False, **SMALL).out, run.config,
                                 evaluate=False)


def test_fast_mode_shrinks_the_run_but_keeps_the_lessons_changes(voc, tmp_path, monkeypatch):
    """With MINIRCNN_FAST a run is a few iterations from scratch at a small scale, in a temporary folder; the
    lesson's own changes (here flip=False and bbox_loss_weight=0) are kept, its iteration count is not."""
    monkeypatch.setattr(experiments, "FAST", True)
    run = experiments.train_detector("c", voc, evaluate=False, progress=False, iters=500, flip=False,
                                     bbox_loss_weight=0.0)
    assert run.config.iters == experiments.FAST_CHANGES["iters"] and run.config.weights == "none"
    assert run.config.flip is False and run.config.bbox_loss_weight == 0.0 and run.config.scales == (96,)
    assert experiments.RUNS not in run.out.parents


def test_apply_protocol_to_outputs_equals_detect_split(voc, runs):
    """The network run once (detector_outputs) and a protocol applied afterwards (apply_protocol) give the
    detections of evaluate.detect_split; with top=k, those of running on each image's first k proposals only
    (the network scores every RoI on its own)."""
    from minircnn.training.checkpoint import load_checkpoint
    from minircnn.data import VOCDataset
    from minircnn.data.proposals import proposals_for_split
    from minircnn.inference import detect_split
    run = experiments.train_detector("d", voc, evaluate=False, **(SMALL | {"proposals": "ss-fast"}))
    ckpt = load_checkpoint(run.checkpoint)
    test = VOCDataset(voc, "test")
    proposals = proposals_for_split(test, progress=False)
    config = ckpt.config.replace(score_thresh=0.0)           # an untrained net: keep every candidate
    outputs = experiments.detector_outputs(ckpt, test, proposals, progress=False)
    for top in (None, 5):
        cut = [p[:top] for p in proposals]
        expected = detect_split(ckpt.model, test, cut, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing, config,
                                progress=False)
        found = experiments.apply_protocol(outputs, ckpt.config, top=top, score_thresh=0.0)
        assert len(found[0]) == len(test)
        for got, want in zip(found, expected):
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_training_minibatch_is_the_one_training_sees(voc, runs):
    """training_minibatch(config, preprocessing, i) equals the mini-batch minircnn.train builds for iteration i
    (same images, flips, RoIs and targets): a lesson looking at one step sees a real one."""
    from minircnn.training.config import get_preset
    from minircnn.data import PLAIN, VOCDataset
    from minircnn.data.proposals import proposals_for_split
    from minircnn.training.minibatches import ImageCache, build_training_roidb
    from minircnn.training.minibatches import training_minibatch
    config = get_preset("tiny").replace(data=str(voc), **{k: v for k, v in SMALL.items()
                                                           if k != "progress"})
    train_set = VOCDataset(voc, "trainval")
    roidb, _, _ = build_training_roidb(train_set, proposals_for_split(train_set, method="dense", progress=False),
                                       config)
    for i in (0, 3):
        expected = training_minibatch(i, roidb, ImageCache(train_set), train_set.num_classes, PLAIN, config)
        got = experiments.training_minibatch(config, PLAIN, i)
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(a, b)


def test_train_seeds_names_the_preset_s_seed_run_by_its_tag_and_the_others_by_their_seed(voc, runs):
    """train_seeds("x", seeds=(3, 7)): the preset's own seed (3) is run "x" (shared with one-run lessons), seed 7 is
    "x_seed7"; each run was trained with its seed."""
    first, second = experiments.train_seeds("x", voc, seeds=(3, 7), evaluate=False, **SMALL)
    assert (first.out, second.out) == (runs / "x", runs / "x_seed7")
    assert experiments.seed_tag("x", 3) == "x" and experiments.seed_tag("x", 7) == "x_seed7"
    assert (first.config.seed, second.config.seed) == (3, 7)
    assert json.loads((runs / "x_seed7" / "config.json").read_text())["seed"] == 7


def test_compare_runs_scores_runs_on_their_test_split_with_the_shared_rule(voc, runs, monkeypatch):
    """compare_runs detects each run on its test split (with or without box regression, per side; once per
    checkpoint file) and judges the sides with paired_map_difference and difference_verdict: a run against itself
    does not differ; against detections that find nothing, its difference is its own mAP."""
    run = experiments.train_detector("c", voc, **(SMALL | {"test_split": "trainval"}))
    same = experiments.compare_runs([run], [run], ("A", "B"))
    assert (same["difference"], same["low"], same["high"]) == (0, 0, 0)
    assert same["verdict"].startswith("A and B do not differ") and same["sign"] == 0
    nothing = ([np.zeros((0, 4))] * 2, [np.zeros(0, int)] * 2, [np.zeros(0)] * 2)
    against = experiments.compare_runs([run], [nothing], samples=5)
    assert against["difference"] == pytest.approx(run.metrics["map"])
    asked = []
    real = experiments.detect_test_split
    monkeypatch.setattr(experiments, "_DETECTIONS", {})
    monkeypatch.setattr(experiments, "detect_test_split",
                        lambda r, bbox_reg: asked.append(bbox_reg) or real(r, bbox_reg=bbox_reg))
    experiments.compare_runs([run], [run], bbox_reg=(True, False), samples=2)
    assert asked == [True, False]
    experiments.compare_runs([run], [run], bbox_reg=(False, True), samples=2)       # detected once per checkpoint
    assert asked == [True, False]
    stat = run.checkpoint.stat()
    os.utime(run.checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))        # as if trained again
    experiments.compare_runs([run], [run], bbox_reg=(True, True), samples=2)
    assert asked == [True, False, True]
    with pytest.raises(ValueError, match="give dataset= or at least one Run"):
        experiments.compare_runs([nothing], [nothing])
    from minircnn.data import VOCDataset
    given = experiments.compare_runs([nothing], [nothing], dataset=VOCDataset(voc, "trainval"), samples=2)
    assert given["difference"] == 0 and given["sign"] == 0


def test_detect_test_split_scores_as_the_runs_own_evaluation(voc, runs):
    """detect_test_split(run) gives the detections behind the run's metrics.json (same mAP); without box regression
    every detected box is one of the test proposals."""
    from minircnn.data.proposals import proposals_for_split
    from minircnn.evaluation import score_detections
    run = experiments.train_detector("e", voc, **(SMALL | {"test_split": "trainval", "proposals": "ss-fast",
                                                           "max_proposals": 100}))
    dataset, found = experiments.detect_test_split(run)
    assert score_detections(dataset, *found, dataset.class_names)[0]["map"] == pytest.approx(run.metrics["map"])
    dataset, (boxes, _, _) = experiments.detect_test_split(run, bbox_reg=False)
    proposals = proposals_for_split(dataset, method="ss-fast", max_boxes=100, progress=False)
    assert sum(len(b) for b in boxes) > 0
    for b, p in zip(boxes, proposals):
        assert {tuple(r) for r in b} <= {tuple(r) for r in p.astype(np.float32)}


def test_test_split_of_gives_the_runs_test_images_and_proposals(voc, runs):
    """test_split_of(run): the run's test split (its ids) and the proposals its evaluation used (the run's method:
    here dense boxes, one array per test image)."""
    from minircnn.data import VOCDataset, dense_boxes
    run = experiments.train_detector("split", voc, evaluate=False, **SMALL)
    dataset, proposals = experiments.test_split_of(run)
    expected = VOCDataset(voc, "test")
    assert list(dataset.ids) == list(expected.ids) and len(proposals) == len(expected)
    np.testing.assert_array_equal(proposals[0], dense_boxes(expected.load_image(0).shape))


def _perfect_and_half(test):
    """Detections equal to the ground truth, and detections of image 0's objects only."""
    notes = [test.annotation(i) for i in range(len(test))]
    perfect = ([a.boxes for a in notes], [a.labels for a in notes], [np.ones(len(a.labels)) for a in notes])
    half = ([notes[0].boxes, np.zeros((0, 4))], [notes[0].labels, np.zeros(0, int)],
            [np.ones(len(notes[0].labels)), np.zeros(0)])
    return notes, perfect, half


def test_paired_map_difference_on_detections_worked_out_by_hand(voc):
    """Perfect detections against none: mAP 1 against 0 on every resample, so the difference and both ends of its
    interval are 1, and the verdict says better. The same detections on both sides: 0 everywhere, no difference.
    Two runs a side, (perfect, perfect) against (perfect, half): the pooled seed sd is sqrt(((1 - m)/2)^2 * 2 / 2)
    = (1 - m) / 2, with m the half detections' mAP."""
    from minircnn.data import VOCDataset
    from minircnn.evaluation import eval_detection_voc
    test = VOCDataset(voc, "trainval")
    notes, perfect, half = _perfect_and_half(test)
    nothing = ([np.zeros((0, 4))] * 2, [np.zeros(0, int)] * 2, [np.zeros(0)] * 2)
    result = experiments.paired_map_difference(test, [perfect], [nothing], samples=30)
    assert (result["difference"], result["low"], result["high"], result["seed_sd"]) == (1, 1, 1, None)
    assert experiments.difference_verdict(result, "A", "B").startswith("A is better than B")
    same = experiments.paired_map_difference(test, [half], [half], samples=30)
    assert (same["difference"], same["low"], same["high"]) == (0, 0, 0)
    assert "do not differ" in experiments.difference_verdict(same, "A", "B")
    m = eval_detection_voc(*half, [a.boxes for a in notes], [a.labels for a in notes],
                           [a.difficult for a in notes], num_classes=test.num_classes)["map"]
    two = experiments.paired_map_difference(test, [perfect, perfect], [perfect, half], samples=10)
    assert two["first"] == [1, 1] and two["second"] == pytest.approx([1, m])
    assert two["difference"] == pytest.approx((1 - m) / 2)
    assert two["seed_sd"] == pytest.approx((1 - m) / 2)


def test_paired_map_difference_at_a_stricter_iou(voc):
    """Boxes cut to 60% of their objects' width (IoU about 0.6) find every object at IoU 0.5 and none at 0.7: against
    no detections, a difference of 1 at 0.5 and 0 at 0.7."""
    from minircnn.data import VOCDataset
    test = VOCDataset(voc, "trainval")
    notes, _, _ = _perfect_and_half(test)
    cut = [a.boxes.astype(np.float64).copy() for a in notes]
    for b in cut:
        b[:, 2] = b[:, 0] + 0.6 * (b[:, 2] - b[:, 0] + 1) - 1
    narrow = (cut, [a.labels for a in notes], [np.ones(len(a.labels)) for a in notes])
    nothing = ([np.zeros((0, 4))] * 2, [np.zeros(0, int)] * 2, [np.zeros(0)] * 2)
    assert experiments.paired_map_difference(test, [narrow], [nothing], samples=5)["difference"] == 1
    assert experiments.paired_map_difference(test, [narrow], [nothing], samples=5, iou_thresh=0.7)["difference"] == 0


def test_same_networks_take_the_spread_of_their_per_seed_differences(voc):
    """Two networks tested two ways: (perfect, half) against (half, half). Independent recipes would pool each side's
    spread; the same networks cancel theirs, leaving the spread of the per-seed differences (1 - m, 0): sd
    (1 - m) / sqrt(2). Unequal sides are refused."""
    from minircnn.data import VOCDataset
    from minircnn.evaluation import eval_detection_voc
    test = VOCDataset(voc, "trainval")
    notes, perfect, half = _perfect_and_half(test)
    m = eval_detection_voc(*half, [a.boxes for a in notes], [a.labels for a in notes],
                           [a.difficult for a in notes], num_classes=test.num_classes)["map"]
    result = experiments.paired_map_difference(test, [perfect, half], [half, half], samples=5, same_networks=True)
    assert result["seed_sd"] == pytest.approx((1 - m) / np.sqrt(2)) and result["same_networks"]
    assert "seed-to-seed sd of the difference" in experiments.difference_verdict(result, "A", "B")
    with pytest.raises(ValueError, match="one entry per network"):
        experiments.paired_map_difference(test, [perfect], [half, half], same_networks=True)


@pytest.mark.parametrize("difference, low, high, sd, verdict", [
    (0.05, 0.01, 0.09, 0.01, "A is better than B"),      # interval above 0 and 0.05 > 2 x 0.01
    (-0.05, -0.09, -0.01, None, "A is worse than B"),    # one run a side: the interval alone decides
    (0.05, 0.01, 0.09, 0.03, "do not differ"),           # 0.05 <= 2 x 0.03: within the seed spread
    (0.05, -0.01, 0.09, 0.0, "do not differ"),           # the interval holds 0
])
def test_difference_verdict_follows_its_rule(difference, low, high, sd, verdict):
    result = {"difference": difference, "low": low, "high": high, "seed_sd": sd}
    assert verdict in experiments.difference_verdict(result, "A", "B")
    assert experiments.difference_sign(result) == {"A is better than B": 1, "A is worse than B": -1,
                                                          "do not differ": 0}[verdict]


def test_split_rpn_proposals_are_the_ones_detection_uses(voc, runs):
    """A run trained with --proposals rpn: its test split comes without proposals (the RPN makes them);
    split_rpn_proposals gives, per test image, the boxes detect_proposals classifies (at most 300, inside the image,
    by descending objectness) and a positive time."""
    from minircnn.inference import detect_proposals
    from minircnn.training.checkpoint import load_checkpoint
    run = experiments.train_detector("rpn", voc, evaluate=False, **(SMALL | {"proposals": "rpn"}))
    ckpt = load_checkpoint(run.checkpoint)
    dataset, proposals = experiments.test_split_of(run)
    assert proposals == [None] * len(dataset)
    boxes, scores, seconds = experiments.split_rpn_proposals(ckpt, dataset, progress=False)
    image = dataset.load_image(0)
    used = detect_proposals(ckpt.model, image, None, ckpt.bbox_means, ckpt.bbox_stds, ckpt.preprocessing,
                            ckpt.config.test_scale, ckpt.config.test_max_size)[2]
    np.testing.assert_array_equal(boxes[0], used)
    assert 0 < len(boxes[0]) <= 300 and len(scores[0]) == len(boxes[0]) and seconds[0] > 0
    assert np.all(np.diff(scores[0]) <= 0)
    assert boxes[0][:, 2].max() <= image.shape[1] - 1 and boxes[0][:, 3].max() <= image.shape[0] - 1
