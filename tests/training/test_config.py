"""Training configuration (minircnn/training/config.py): the presets of the paper's three models and the backbone
names."""
import numpy as np
import pytest

from minircnn import train
from minircnn.training.config import BACKBONE_NAMES, PRESETS, TrainConfig, configure, get_preset
from minircnn.data import PREPROCESSING_PRESETS, generate_shapes_dataset
from minircnn.models import BACKBONES


def test_backbone_names_are_the_registered_backbones():
    """The config accepts exactly the backbones that minircnn.models can build; anything else is refused."""
    assert set(BACKBONE_NAMES) == set(BACKBONES)
    for name in BACKBONE_NAMES:
        TrainConfig(backbone=name, weights="none")
    with pytest.raises(ValueError, match="backbone must be one of"):
        TrainConfig(backbone="alexnet", weights="none")


@pytest.mark.parametrize("preset, backbone", [("caffenet_voc07", "caffenet"), ("vgg_cnn_m_voc07", "vgg_cnn_m_1024")])
def test_small_model_presets_share_the_vgg16_settings(preset, backbone):
    """Models S and M train with VGG16's solver and data settings (one solver.prototxt and ``--iters 40000`` for all
    three, docs/reference.md §3): lr 0.001 -> 0.0001 after 30k of 40k iterations, scale 600 capped at 1000, N = 2, R =
    128, and the BGR pixel means 102.98, 115.95, 122.77 that FR subtracts for every net (docs/reference.md §4)."""
    c = get_preset(preset)
    assert (c.preset, c.backbone) == (preset, backbone)
    assert c.replace(preset="vgg16_voc07", backbone="vgg16") == PRESETS["vgg16_voc07"]
    assert (c.base_lr, c.stepsize, c.iters, c.scales, c.max_size, c.ims_per_batch, c.batch_size) == (
        0.001, 30000, 40000, (600,), 1000, 2, 128)
    p = PREPROCESSING_PRESETS[c.preprocessing]
    assert p.channel_order == "BGR" and p.value_range == 255.0
    np.testing.assert_allclose(p.mean, (102.9801, 115.9465, 122.7717))


def test_caffenet_preset_runs_two_iterations_at_a_small_scale(tmp_path):
    """The paper's model S with its preset on 64-pixel images: 2 SGD steps run, conv1 stays frozen (no solver
    state), the grouped conv2 and fc6 (9216 inputs) train."""
    data = generate_shapes_dataset(tmp_path / "shapes", seed=2, trainval=2, test=1, progress=False)
    train.main([str(a) for a in ("--preset", "caffenet_voc07", "--data", data, "--out", tmp_path / "run",
                                 "--iters", 2, "--scale", 64, "--no-eval", "--proposals", "dense",
                                 "--checkpoint-every", 1, "--quiet")])
    with np.load(tmp_path / "run" / "checkpoint.npz") as f:
        assert int(f["iteration"]) == 2
        assert f["param/fc6.weight"].shape == (4096, 9216) and f["param/conv2.weight"].shape == (256, 48, 5, 5)
        assert "solver/velocity.conv1.weight" not in f.files and "solver/velocity.conv2.weight" in f.files


def test_rpn_proposals_lengthen_the_schedule_unless_it_is_given():
    """--proposals rpn trains 1.75x the preset's schedule, rounded to tens: 3000/2250 -> 5250/3940 for the tiny
    preset, 40000/30000 -> 70000/52500 for VGG16 (the released end-to-end solver's 70k); an explicit --iters or
    --stepsize is taken as given, and other proposals keep the preset's schedule."""
    def schedule(*argv):
        config = train.resolve_config(train.parse_args(list(argv)))
        return config.iters, config.stepsize

    assert schedule("--proposals", "rpn") == (5250, 3940)
    assert schedule("--preset", "vgg16_voc07", "--proposals", "rpn") == (70000, 52500)
    assert schedule("--proposals", "rpn", "--iters", "100") == (100, 2250)
    assert schedule("--proposals", "rpn", "--stepsize", "50") == (3000, 50)
    assert schedule("--proposals", "dense") == (3000, 2250)
    assert schedule() == (3000, 2250)
    assert configure("tiny", proposals="rpn", seed=4).replace(seed=3) == configure("tiny", proposals="rpn")
