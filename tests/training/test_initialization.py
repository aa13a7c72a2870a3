"""Where fine-tuning starts (minircnn.training.initialization): one loader per kind of weights file, each refusing a
file that does not fit the config's backbone with the file's name; which layers stay frozen."""
import json

import numpy as np
import pytest

from minircnn.data import PLAIN
from minircnn.io import atomic_save_npz
from minircnn.models import build_model
from minircnn.training import initialization
from minircnn.training.config import get_preset

TINY = get_preset("tiny")


@pytest.mark.parametrize("keys, kind", [({"classifier_config": 0, "conv1.weight": 0}, "classifier"),
                                        ({"model_config": 0, "param/conv1.weight": 0}, "detector"),
                                        ({"checksum": 0, "arch": 0, "conv1_1.weight": 0}, "imagenet"),
                                        ({"conv1.weight": 0, "fc6.bias": 0}, "parameters")])
def test_weights_kind_comes_from_the_writers_metadata(keys, kind):
    """Each writer marks its files (classifier_config, model_config, checksum); a file without a mark is plain
    parameters. The kind picks the loader."""
    assert initialization.weights_kind(keys) == kind
    assert kind in initialization.LOADERS


def test_plain_parameters_load_by_name_and_the_heads_stay_random(tmp_path):
    """A plain .npz of backbone parameters: every conv/fc parameter is loaded by name, fc8 is dropped and the two
    heads keep their fresh initialisation."""
    donor = build_model("tiny", 6, seed=1, roi_size=7, dropout=0.0)
    state = donor.state_dict()
    params = {k: v for k, v in state.items() if not k.startswith(("cls_score", "bbox_pred"))}
    params["fc8.weight"] = np.ones((3, 512), np.float32)
    path = tmp_path / "backbone.npz"
    atomic_save_npz(path, **params)
    model, preprocessing = initialization.initial_model(TINY.replace(weights=str(path), seed=5), 6)
    got = model.state_dict()
    for name in ("conv1.weight", "conv5.bias", "fc6.weight", "fc7.bias"):
        np.testing.assert_array_equal(got[name], state[name], err_msg=name)
    assert not np.array_equal(got["cls_score.weight"], state["cls_score.weight"])
    assert preprocessing.channel_order == "RGB"


def test_parameters_of_another_network_name_the_file(tmp_path):
    path = tmp_path / "odd.npz"
    atomic_save_npz(path, **{"conv9.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match=r"odd\.npz: parameters \['conv9.weight'\] do not belong to a tiny"):
        initialization.initial_model(TINY.replace(weights=str(path)), 6)


def test_a_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="--weights .*nothing.npz: no such file"):
        initialization.initial_model(TINY.replace(weights=str(tmp_path / "nothing.npz")), 6)


def test_a_detector_checkpoint_of_another_backbone_is_refused(tmp_path):
    """A checkpoint of ours for one backbone cannot start another: both names are in the message."""
    model = build_model("tiny", 3, seed=0)
    path = tmp_path / "ckpt.npz"
    atomic_save_npz(path, model_config=np.array(json.dumps({**model.config, "spec": {**model.config["spec"],
                                                                                     "name": "caffenet"}})),
                    preprocessing=np.array(json.dumps(PLAIN.to_dict())),
                    **{f"param/{k}": v for k, v in model.state_dict().items()})
    with pytest.raises(ValueError, match=r"ckpt\.npz: a caffenet detector checkpoint, but the config's backbone "
                                         r"is tiny"):
        initialization.initial_model(TINY.replace(weights=str(path)), 3)


def test_apply_frozen_freezes_exactly_the_named_layers():
    model = build_model("tiny", 3, seed=0)
    initialization.apply_frozen(model, ("conv1", "conv2"))
    frozen = {layer.name for layer in model.layers if layer.params and layer.frozen}
    assert frozen == {"conv1", "conv2"}
    with pytest.raises(ValueError, match=r"frozen: \['conv9'\] are not layers with parameters.*known: conv1"):
        initialization.apply_frozen(model, ("conv9",))


def test_vgg16_from_random_weights_warns(recwarn):
    """The paper's VGG16 preset from random weights diverges (0-255 pixels, lr 0.001): building it warns and points
    to the weight conversion; the tiny backbone from scratch does not warn."""
    initialization.initial_model(get_preset("tiny").replace(weights="none"), 6)
    assert not recwarn.list
    with pytest.warns(UserWarning, match="vgg16 from random weights.*minircnn.weights convert"):
        initialization.initial_model(get_preset("vgg16_voc07").replace(weights="none"), 6)


def test_weights_of_another_architecture_name_both(tmp_path):
    """Converted ImageNet weights say which network they are for; starting another backbone from them stops with
    both names (before any shape check could give a less direct message)."""
    from minircnn.data import PREPROCESSING_PRESETS
    from minircnn.models.imagenet_weights import save_weights
    path = tmp_path / "vgg16_imagenet.npz"
    save_weights(path, {"conv1_1.weight": np.zeros((2, 3, 3, 3), np.float32)}, PREPROCESSING_PRESETS["caffe_vgg16"],
                 arch="vgg16", source="test")
    with pytest.raises(ValueError,
                       match="vgg16_imagenet.npz: a vgg16 ImageNet weights file, but the config's backbone is tiny"):
        initialization.initial_model(get_preset("tiny").replace(weights=str(path)), 6)
