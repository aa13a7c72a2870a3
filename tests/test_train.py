"""``python -m minircnn.train``: overfitting a few images, resume equality, bad input, the vgg16_voc07 preset."""
import csv
import json

import numpy as np
import pytest

from minircnn import train
from minircnn.training.config import TrainConfig, get_preset
from minircnn.data import generate_shapes_dataset


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    """A VOC-format shapes dataset of 2 trainval and 1 test images."""
    root = tmp_path_factory.mktemp("voc") / "shapes"
    return generate_shapes_dataset(root, seed=2, trainval=2, test=1, progress=False)


def run(*argv):
    return train.main([str(a) for a in argv] + ["--quiet"])


def test_tiny_training_overfits_a_few_images(tiny_voc, tmp_path):
    """40 SGD steps from scratch on 2 images: the loss falls and the detector finds those images' objects
    (mAP on them > 0.6). Also checks every output file of a run."""
    out = tmp_path / "run"
    metrics = run("--data", tiny_voc, "--out", out, "--iters", 40, "--weights", "none", "--scale", 128,
                  "--lr", 0.01, "--test-split", "trainval", "--checkpoint-every", 100)
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 41))
    loss_cls = [float(r["loss_cls"]) for r in rows]
    assert np.mean(loss_cls[-10:]) < 0.7 * np.mean(loss_cls[:5])
    assert metrics["map"] > 0.6
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metric"] == "voc07" and set(saved["ap"]) == {"ellipse", "rectangle", "triangle", "diamond",
                                                                "cross"}
    assert saved["map"] == pytest.approx(metrics["map"])
    for name in ("checkpoint.npz", "config.json", "loss.png", "detections.png", "pr_curves.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["iters"] == 40


def test_checkpoint_loads_without_pickle(tiny_voc, tmp_path):
    """checkpoint.npz holds parameters, solver state, RNG seed, iteration, config, classes, target statistics and
    preprocessing, all readable with allow_pickle=False."""
    run("--data", tiny_voc, "--out", tmp_path, "--iters", 2, "--weights", "none", "--scale", 64, "--no-eval",
        "--proposals", "dense")
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as f:
        assert int(f["iteration"]) == 2 and int(f["solver/iteration"]) == 2
        assert "param/conv1.weight" in f.files and "solver/velocity.fc6.weight" in f.files
        assert TrainConfig.from_dict(json.loads(str(f["config"]))).iters == 2
        assert list(f["class_names"]) == ["ellipse", "rectangle", "triangle", "diamond", "cross"]
        assert f["bbox_means"].shape == f["bbox_stds"].shape == (6, 4)
        assert json.loads(str(f["preprocessing"]))["channel_order"] == "RGB"
        assert int(f["rng/seed"]) == 3


def test_resume_gives_the_same_checkpoint(tiny_voc, tmp_path):
    """A run stopped after 3 of 6 iterations and resumed ends with a checkpoint equal, array for array, to that of
    an uninterrupted 6-iteration run (every random draw is a function of seed and iteration)."""
    common = ["--data", tiny_voc, "--weights", "none", "--scale", 64, "--no-eval", "--proposals", "dense",
              "--checkpoint-every", 2]
    run(*common, "--out", tmp_path / "a", "--iters", 6)
    run(*common, "--out", tmp_path / "b", "--iters", 3)
    run("--out", tmp_path / "b", "--iters", 6, "--resume", "--no-eval")
    run("--out", tmp_path / "b", "--resume", "--no-eval")        # no --iters: the checkpoint's total, nothing to do
    with np.load(tmp_path / "a" / "checkpoint.npz") as a, np.load(tmp_path / "b" / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with open(tmp_path / "b" / "log.csv", newline="") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == list(range(1, 7))


def test_resume_without_checkpoint_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint"):
        run("--out", tmp_path, "--resume")


def test_resume_accepts_the_same_command_and_refuses_other_values(tiny_voc, tmp_path):
    """The training command run again with --resume appended continues (its flags repeat the checkpoint's values);
    a flag with another value is refused, naming the flag and both values; --iters may raise the total."""
    same = ("--data", tiny_voc, "--out", tmp_path, "--weights", "none", "--scale", 64, "--no-eval",
            "--proposals", "dense", "--seed", 3, "--checkpoint-every", 1)
    run(*same, "--iters", 1)
    run(*same, "--iters", 2, "--resume")
    with np.load(tmp_path / "checkpoint.npz") as f:
        assert int(f["iteration"]) == 2
    with pytest.raises(SystemExit, match=r"--seed 4 \(the checkpoint has seed=3\)"):
        run(*same[:-4], "--seed", 4, "--resume")
    with pytest.raises(SystemExit, match=r"--lr 0.1 \(the checkpoint has base_lr=0.01\)"):
        run("--out", tmp_path, "--resume", "--lr", "0.1")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_voc, tmp_path):
    """An absurd learning rate makes the loss overflow: training stops naming the iteration, and the checkpoint on
    disk is the last one written before it."""
    with pytest.raises(SystemExit, match=r"loss became nan at iteration \d+") as info:
        run("--data", tiny_voc, "--out", tmp_path, "--iters", 30, "--weights", "none", "--scale", 64, "--no-eval",
            "--proposals", "dense", "--lr", 1e12, "--checkpoint-every", 1)
    failed = int(str(info.value).split("loss became nan at iteration ")[1].split()[0].rstrip(";)"))
    with np.load(tmp_path / "checkpoint.npz") as f:
        assert 1 <= int(f["iteration"]) <= failed
        assert all(np.isfinite(f[k]).all() for k in f.files if k.startswith("param/"))


def test_a_checkpoint_can_be_the_initial_weights(tiny_voc, tmp_path):
    """--weights checkpoint.npz starts a new run from a trained detector's conv and fc layers."""
    run("--data", tiny_voc, "--out", tmp_path / "a", "--iters", 1, "--weights", "none", "--scale", 64, "--no-eval",
        "--proposals", "dense")
    run("--data", tiny_voc, "--out", tmp_path / "b", "--iters", 1, "--weights", tmp_path / "a" / "checkpoint.npz",
        "--scale", 64, "--no-eval", "--proposals", "dense", "--lr", 1e-12)
    with np.load(tmp_path / "a" / "checkpoint.npz") as a, np.load(tmp_path / "b" / "checkpoint.npz") as b:
        np.testing.assert_allclose(a["param/conv3.weight"], b["param/conv3.weight"], atol=1e-9)


def test_a_checkpoint_start_keeps_the_checkpoints_architecture(tiny_voc, tmp_path):
    """A detector whose architecture differs from the preset's (the default tiny run, made from the pretrained
    classifier, pools RoIs to 4x4 where the preset says 7x7) can be the initial weights: the new run builds the
    checkpoint's architecture, not the preset's, and starts from its fc6."""
    run("--data", tiny_voc, "--out", tmp_path / "a", "--iters", 1, "--weights", "none", "--scale", 64, "--no-eval",
        "--proposals", "dense")
    with np.load(tmp_path / "a" / "checkpoint.npz") as f:
        arrays = {k: f[k] for k in f.files}
    architecture = json.loads(str(arrays["model_config"]))
    architecture["spec"]["roi_size"] = 4
    arrays["model_config"] = np.array(json.dumps(architecture))
    fc6 = np.random.default_rng(0).normal(0, 0.01, (512, 128 * 4 * 4)).astype(np.float32)
    arrays["param/fc6.weight"] = fc6
    np.savez(tmp_path / "roi4.npz", **arrays)
    run("--data", tiny_voc, "--out", tmp_path / "b", "--iters", 1, "--weights", tmp_path / "roi4.npz",
        "--scale", 64, "--no-eval", "--proposals", "dense", "--lr", 1e-12)
    with np.load(tmp_path / "b" / "checkpoint.npz") as b:
        assert json.loads(str(b["model_config"]))["spec"]["roi_size"] == 4
        np.testing.assert_allclose(b["param/fc6.weight"], fc6, atol=1e-9)


def test_a_checkpoint_start_keeps_the_heads_and_frozen_layers_stay_put(tiny_voc, tmp_path):
    """Stage-wise training (Table 6): starting from a detector's checkpoint keeps its cls_score and bbox_pred (the
    same classes), and with every layer but bbox_pred frozen, only bbox_pred changes."""
    run("--data", tiny_voc, "--out", tmp_path / "a", "--iters", 2, "--weights", "none", "--scale", 64, "--no-eval",
        "--proposals", "dense", "--bbox-loss-weight", 0)
    frozen = "conv1,conv2,conv3,conv4,conv5,fc6,fc7,cls_score"
    run("--data", tiny_voc, "--out", tmp_path / "b", "--iters", 2, "--weights", tmp_path / "a" / "checkpoint.npz",
        "--scale", 64, "--no-eval", "--proposals", "dense", "--frozen", frozen)
    with np.load(tmp_path / "a" / "checkpoint.npz") as a, np.load(tmp_path / "b" / "checkpoint.npz") as b:
        for key in a.files:
            if key.startswith("param/") and not key.startswith("param/bbox_pred."):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert not np.array_equal(a["param/bbox_pred.weight"], b["param/bbox_pred.weight"])


def test_weights_with_wrong_shapes_name_the_file_and_layer(tiny_voc, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"conv1.weight": np.zeros((16, 3, 5, 5), np.float32)})
    with pytest.raises(SystemExit, match=r"bad\.npz.*conv1"):
        run("--data", tiny_voc, "--out", tmp_path / "r", "--iters", 1, "--weights", bad, "--no-eval")


def test_data_folder_that_is_not_voc_shaped(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(SystemExit, match="pictures"):
        run("--data", tmp_path / "pictures", "--out", tmp_path / "r", "--iters", 1, "--weights", "none")


def test_unknown_config_key_is_rejected():
    with pytest.raises(ValueError, match="unknown config keys"):
        get_preset("tiny").replace(learning_rate=0.1)


def test_vgg16_voc07_preset_has_the_paper_settings():
    c = get_preset("vgg16_voc07")
    assert (c.backbone, c.scales, c.max_size, c.ims_per_batch, c.batch_size) == ("vgg16", (600,), 1000, 2, 128)
    assert (c.base_lr, c.stepsize, c.iters, c.momentum, c.weight_decay, c.flip) == (0.001, 30000, 40000, 0.9,
                                                                                    0.0005, True)
    assert c.preprocessing == "caffe_vgg16"


def test_vgg16_voc07_preset_runs_two_iterations_at_a_small_scale(tiny_voc, tmp_path):
    """The paper's model and settings, on 64-pixel images: 2 SGD steps run and the frozen conv1_x/conv2_x keep
    their weights."""
    run("--preset", "vgg16_voc07", "--data", tiny_voc, "--out", tmp_path, "--iters", 2, "--scale", 64,
        "--no-eval", "--proposals", "dense", "--checkpoint-every", 1)
    with np.load(tmp_path / "checkpoint.npz") as f:
        assert int(f["iteration"]) == 2
        assert f["param/fc6.weight"].shape == (4096, 25088)
        assert "solver/velocity.conv1_1.weight" not in f.files and "solver/velocity.conv3_1.weight" in f.files


def test_resume_after_sigkill_gives_the_same_checkpoint(tiny_voc, tmp_path):
    """A training process killed with SIGKILL as soon as its first checkpoint is on disk (wherever it then is: in
    a step, or writing the next checkpoint) resumes to the same final checkpoint as an uninterrupted run: the file
    is replaced atomically, so what is on disk is always a whole checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time
    common = ["--data", str(tiny_voc), "--weights", "none", "--scale", "64", "--no-eval", "--proposals", "dense",
              "--checkpoint-every", "2", "--iters", "8", "--quiet"]
    run(*common[:-1], "--out", tmp_path / "a")
    killed = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "minircnn.train", *common, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.getcwd())
    deadline = time.monotonic() + 60
    while not (killed / "checkpoint.npz").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run("--out", killed, "--iters", 8, "--resume", "--no-eval")
    with np.load(tmp_path / "a" / "checkpoint.npz") as a, np.load(killed / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with open(killed / "log.csv", newline="") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == list(range(1, 9))


def test_scale_and_protocol_flags_reach_the_config():
    """--scales (multi-scale training), --test-scales (pyramid at test), --max-size (both sides' cap) and
    --protocol land in the config; --scale and --scales together are refused."""
    config = train.resolve_config(train.parse_args(["--scales", "480,576,688,864,1200", "--max-size", "2000",
                                                    "--test-scales", "480,576", "--protocol", "paper"]))
    assert (config.scales, config.max_size, config.test_max_size) == ((480, 576, 688, 864, 1200), 2000, 2000)
    assert (config.test_scales, config.protocol) == ((480, 576), "paper")
    assert train.resolve_config(train.parse_args([])).test_scales == ()
    with pytest.raises(ValueError, match="--scale .* or --scales"):
        train.resolve_config(train.parse_args(["--scale", "64", "--scales", "64,96"]))


def test_a_config_saved_before_the_test_fields_still_loads():
    """Checkpoints written before test_scales and protocol existed read back with the defaults (single scale,
    simple); bad values are refused."""
    old = get_preset("tiny").to_dict()
    del old["test_scales"], old["protocol"]
    config = TrainConfig.from_dict(old)
    assert (config.test_scales, config.protocol) == ((), "simple")
    assert TrainConfig.from_dict(json.loads(get_preset("tiny").replace(test_scales=[96, 128]).to_json())
                                 ).test_scales == (96, 128)
    with pytest.raises(ValueError, match="protocol"):
        get_preset("tiny").replace(protocol="voc")
    with pytest.raises(ValueError, match="test_scales"):
        get_preset("tiny").replace(test_scales=(0,))


def test_dropout_and_roi_size_flags_reach_the_model(tiny_voc, tmp_path):
    """--dropout and --roi-size land in the config and in the detector the run trains (its RoI pool grid, fc6's
    input width and the dropout layers); out-of-range values are refused with the field's name."""
    run("--data", tiny_voc, "--out", tmp_path, "--iters", 1, "--weights", "none", "--scale", 64, "--no-eval",
        "--proposals", "dense", "--dropout", 0.25, "--roi-size", 3)
    from minircnn.training.checkpoint import load_checkpoint
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert (ckpt.config.dropout, ckpt.config.roi_size) == (0.25, 3)
    model = ckpt.model
    assert model.roi_pool5.output_size == (3, 3) and model.spec.dropout == 0.25
    assert model.fc6.params["weight"].shape[1] == model.spec.out_channels * 9
    with pytest.raises(ValueError, match="dropout"):
        get_preset("tiny").replace(dropout=1.0)
    with pytest.raises(ValueError, match="roi_size"):
        get_preset("tiny").replace(roi_size=0)


def test_a_config_saved_before_dropout_and_roi_size_reads_them_as_the_model_s_own():
    """Checkpoints written before the dropout and roi_size fields existed read back with None: the detector keeps
    the architecture the checkpoint itself stores (a 4x4 grid and dropout 0.5 for the old default)."""
    old = get_preset("tiny").to_dict()
    del old["dropout"], old["roi_size"]
    config = TrainConfig.from_dict(old)
    assert (config.dropout, config.roi_size) == (None, None)
