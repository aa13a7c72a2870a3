"""The training options behind the ablation lessons: ``--frozen`` (Table 5), ``--bbox-loss-weight`` (lambda of Eq. 1,
Table 6) and ``--train-images`` (more data, Table 1)."""
import numpy as np
import pytest

from minircnn import train
from minircnn.training import minibatches
from minircnn.training.checkpoint import load_checkpoint
from minircnn.training.config import get_preset
from minircnn.data import VOCDataset, generate_shapes_dataset
from minircnn.models import build_model


@pytest.fixture(scope="module")
def voc4(tmp_path_factory):
    """A VOC-format shapes dataset of 4 trainval and 1 test images."""
    root = tmp_path_factory.mktemp("voc") / "shapes"
    return generate_shapes_dataset(root, seed=5, trainval=4, test=1, progress=False)


def run(*argv):
    return train.main([str(a) for a in argv] + ["--quiet", "--no-eval", "--weights", "none", "--scale", "64",
                                                "--proposals", "dense"])


def test_frozen_layers_keep_their_initial_values(voc4, tmp_path):
    """With every layer but bbox_pred frozen, one SGD step leaves those layers exactly at their initial values
    (the same seed builds the same initial model), and with lambda = 0 bbox_pred gets no loss gradient either:
    its weights only shrink by weight decay, w1 = w0 (1 - lr * 0.0005), and its biases (no decay) stay."""
    initial = build_model("tiny", 6, seed=3).state_dict()
    names = sorted({key.split(".")[0] for key in initial} - {"bbox_pred"})
    run("--data", voc4, "--out", tmp_path, "--iters", 1, "--lr", 0.01, "--frozen", ",".join(names),
        "--bbox-loss-weight", 0)
    after = load_checkpoint(tmp_path / "checkpoint.npz").model.state_dict()
    for key, value in initial.items():
        if not key.startswith("bbox_pred."):
            np.testing.assert_array_equal(after[key], value, err_msg=key)
    np.testing.assert_allclose(after["bbox_pred.weight"], initial["bbox_pred.weight"] * (1 - 0.01 * 0.0005),
                               rtol=1e-6)
    np.testing.assert_array_equal(after["bbox_pred.bias"], initial["bbox_pred.bias"])


def test_frozen_empty_trains_every_layer(voc4, tmp_path):
    """``--frozen ''`` freezes nothing: after two steps every conv's weights have moved."""
    initial = build_model("tiny", 6, seed=3).state_dict()
    run("--data", voc4, "--out", tmp_path, "--iters", 2, "--frozen", "")
    after = load_checkpoint(tmp_path / "checkpoint.npz").model.state_dict()
    for name in ("conv1", "conv5", "fc6", "cls_score"):
        assert not np.array_equal(after[f"{name}.weight"], initial[f"{name}.weight"]), name


def test_unknown_frozen_layer_is_named(voc4, tmp_path):
    """A frozen name that is no layer of the model stops the run with that name in the message."""
    with pytest.raises(SystemExit, match="conv9"):
        run("--data", voc4, "--out", tmp_path, "--iters", 1, "--frozen", "conv1,conv9")


def _training_images(root, **changes):
    dataset = VOCDataset(root, "trainval")
    proposals = [np.array([[0, 0, 10, 10]], np.float32)] * len(dataset)   # one box each: the roidb needs some
    config = get_preset("tiny").replace(flip=False, **changes)
    roidb, _, _ = minibatches.build_training_roidb(dataset, proposals, config)
    return [entry.image_index for entry in roidb]


def test_train_images_are_nested_subsets(voc4):
    """--train-images n keeps n distinct images; a smaller subset lies inside a larger one; 0 keeps all 4."""
    one, two, three = (_training_images(voc4, train_images=n) for n in (1, 2, 3))
    assert (len(set(one)), len(set(two)), len(set(three))) == (1, 2, 3)
    assert set(one) <= set(two) <= set(three)
    assert sorted(_training_images(voc4, train_images=0)) == [0, 1, 2, 3]


def test_train_images_larger_than_the_split_is_an_error(voc4):
    with pytest.raises(ValueError, match="train_images=9.*only 4"):
        _training_images(voc4, train_images=9)


def test_negative_options_are_rejected():
    with pytest.raises(ValueError, match="bbox_loss_weight"):
        get_preset("tiny").replace(bbox_loss_weight=-1.0)
