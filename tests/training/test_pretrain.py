"""The ImageNet stand-in and the pretrained tiny classifier that ``train`` starts from."""
import json

import numpy as np
import pytest


from minircnn.training import initialization
from minircnn.training import pretrain as pretraining
from minircnn.training.config import get_preset
from minircnn.models import resize_fc6
from minircnn.data.imagenet_standin import KINDS, make_batch, render_crop
from minircnn.training.pretrain import PretrainConfig


def test_crops_are_reproducible_and_varied():
    """Batch b depends only on (seed, b); the batch holds crops of many kinds, each uint8 RGB of the input size."""
    config = PretrainConfig(batch_size=8)
    x1, y1 = make_batch(config, 3)
    x2, y2 = make_batch(config, 3)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (8, 3, config.input_size, config.input_size) and x1.dtype == np.float32
    assert not np.array_equal(x1, make_batch(config, 4)[0])
    rng = np.random.default_rng(0)
    for label in range(len(KINDS)):                       # every kind renders, objects differ from background
        crop = render_crop(label, 64, rng)
        assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8


def test_pretrained_file_initialises_the_detector(tmp_path):
    """A (very short) pretraining writes an .npz that loads without pickle; train's initial_model turns it into a
    detector by the paper's three transformations: same conv/fc6/fc7 weights, new heads, the file's preprocessing."""
    path = pretraining.pretrain(PretrainConfig(iters=2, batch_size=4), tmp_path / "w.npz", progress=False)
    with np.load(path, allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}
    assert json.loads(str(saved["classifier_config"]))["num_classes"] == len(KINDS)
    config = get_preset("tiny").replace(weights=str(path), roi_size=None)       # the paper's rule: pool5's grid
    model, preprocessing = initialization.initial_model(config, num_classes=6)
    np.testing.assert_array_equal(model["conv3"].params["weight"], saved["conv3.weight"])
    np.testing.assert_array_equal(model["fc7"].params["weight"], saved["fc7.weight"])
    assert model.cls_score.params["weight"].shape[0] == 6 and model.spec.roi_size == 4      # pool5 grid of 64-px crops
    assert preprocessing.channel_order == "RGB"
    # the tiny preset's 7x7 grid: the same convs and fc7, fc6 resampled from the 4x4 grid
    model, _ = initialization.initial_model(get_preset("tiny").replace(weights=str(path)), num_classes=6)
    assert model.spec.roi_size == 7 and model.spec.dropout == 0.0
    np.testing.assert_array_equal(model["fc6"].params["weight"], resize_fc6(saved["fc6.weight"], 128, 4, 7))
    np.testing.assert_array_equal(model["fc7"].params["weight"], saved["fc7.weight"])


def test_cache_path_depends_on_the_config():
    assert pretraining.cache_path(PretrainConfig(), "d") != pretraining.cache_path(PretrainConfig(seed=1), "d")
    assert pretraining.cache_path(PretrainConfig(), "d").parent.name == "pretrained"


def test_pretrained_weights_only_for_tiny():
    with pytest.raises(ValueError, match="tiny"):
        get_preset("vgg16_voc07").replace(weights="pretrained")
