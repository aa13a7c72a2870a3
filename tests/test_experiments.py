"""minircnn.experiments: the lessons' cached training runs."""
import json

import numpy as np
import pytest

from minircnn import experiments
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


def test_a_finished_run_is_read_back_not_repeated(voc, runs, monkeypatch):
    """The second call with the same config returns the first run's metrics without training; a changed config
    trains again into the same folder."""
    first = experiments.train_detector("a", voc, **SMALL)
    assert first.checkpoint.is_file() and first.out == runs / "a" and "map" in first.metrics

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")
    monkeypatch.setattr("minircnn.train.train", no_training)
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
    from minircnn.checkpoint import load_checkpoint
    from minircnn.data import VOCDataset
    from minircnn.data.proposals import proposals_for_split
    from minircnn.evaluate import detect_split
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
