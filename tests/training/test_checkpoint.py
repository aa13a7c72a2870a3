"""Training checkpoints (minircnn.training.checkpoint): one .npz without pickle that rebuilds the model, the solver
state and the run's config exactly; a file that is not a checkpoint is refused with its name."""
import json

import numpy as np
import pytest

from minircnn.data import PLAIN
from minircnn.models import build_model
from minircnn.training.checkpoint import load_checkpoint, load_config, save_checkpoint
from minircnn.training.config import get_preset
from minircnn.training.optim import SGD

CLASSES = ("ellipse", "square")


def saved(tmp_path, steps=2):
    """A tiny detector after ``steps`` SGD steps on random gradients, saved; returns (path, model, solver, config)."""
    model = build_model("tiny", len(CLASSES) + 1, seed=0)
    solver = SGD(model.parameters(), base_lr=0.01)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        for p in model.parameters():
            p.module.grads[p.key] = rng.standard_normal(p.value.shape).astype(np.float32)
        solver.step()
    config = get_preset("tiny").replace(seed=7, iters=10)
    means, stds = np.zeros((3, 4)), np.full((3, 4), 0.1)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, model, solver, config, CLASSES, means, stds, PLAIN)
    return path, model, solver, config


def test_round_trip_restores_everything(tmp_path):
    """Parameters, momentum buffers, iteration, seed, config, classes, target statistics and preprocessing come
    back equal; the file opens with NumPy's default allow_pickle=False."""
    path, model, solver, config = saved(tmp_path)
    ckpt = load_checkpoint(path)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(ckpt.model.state_dict()[name], value, err_msg=name)
    for name, value in solver.state_dict().items():
        np.testing.assert_array_equal(ckpt.solver_state[name], value, err_msg=name)
    assert (ckpt.iteration, ckpt.seed, ckpt.config, ckpt.class_names) == (2, 7, config, CLASSES)
    np.testing.assert_array_equal(ckpt.bbox_stds, np.full((3, 4), 0.1))
    assert ckpt.preprocessing == PLAIN
    assert load_config(path) == config
    with np.load(path) as f:
        assert json.loads(str(f["config"]))["seed"] == 7


def test_the_same_state_writes_the_same_bytes(tmp_path):
    """The content is a pure function of the run's state (sorted JSON, no timestamps)."""
    first, _, _, _ = saved(tmp_path / "a")
    second, _, _, _ = saved(tmp_path / "b")
    with np.load(first) as a, np.load(second) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    weights = tmp_path / "weights.npz"
    np.savez(weights, **{"conv1.weight": np.zeros((2, 3, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"weights\.npz is not a minircnn training checkpoint: it lacks"):
        load_checkpoint(weights)
    with pytest.raises(ValueError, match=r"weights\.npz is not a minircnn training checkpoint: it has no config"):
        load_config(weights)
    text = tmp_path / "config.json"
    text.write_text("{}\n")
    with pytest.raises(ValueError, match=r"config\.json: cannot read it as an \.npz file"):
        load_checkpoint(text)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz")
