"""Backbone architectures (minircnn/models/backbones.py): VGG16 exactly as the paper's model L (spec §2), and tiny.

VGG16 is built once, with ``init=False``: its 138M parameters are zeros that cost no time and no memory until
written (``np.zeros``), so the shape and flag checks are cheap.
"""
import numpy as np
import pytest

from minircnn.models import TINY, VGG16, BackboneSpec, build_classifier, build_model, get_spec


@pytest.fixture(scope="module")
def vgg16():
    return build_model("vgg16", 21, init=False)


VGG16_CONVS = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
               ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
               ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
               ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)]


def test_vgg16_layers_in_order(vgg16):
    """13 3x3 convs (pad 1, stride 1), each followed by a ReLU; 2x2 stride-2 max pools after conv1_2, conv2_2,
    conv3_3 and conv4_3; roi_pool5 (7x7 at 1/16) on conv5_3 instead of pool5; fc6, fc7 with ReLU and dropout 0.5;
    the two sibling heads."""
    names = [layer.name for layer in vgg16.layers]
    assert names == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1", "conv2_2", "relu2_2",
                     "pool2", "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3",
                     "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
                     "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3",
                     "roi_pool5", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "cls_score", "bbox_pred"]
    for name, c_in, c_out in VGG16_CONVS:
        conv = vgg16[name]
        assert conv.params["weight"].shape == (c_out, c_in, 3, 3) and conv.params["bias"].shape == (c_out,)
        assert (conv.stride, conv.pad) == (1, 1)
    for i in range(1, 5):
        assert (vgg16[f"pool{i}"].kernel_size, vgg16[f"pool{i}"].stride) == (2, 2)
    assert vgg16.roi_pool5.output_size == (7, 7) and vgg16.roi_pool5.spatial_scale == 1 / 16
    assert vgg16.fc6.params["weight"].shape == (4096, 25088)
    assert vgg16.fc7.params["weight"].shape == (4096, 4096)
    assert vgg16.cls_score.params["weight"].shape == (21, 4096)
    assert vgg16.bbox_pred.params["weight"].shape == (84, 4096)
    assert vgg16.drop6.p == vgg16.drop7.p == 0.5


def test_vgg16_frozen_layers_and_multipliers(vgg16):
    """conv1_1..conv2_2 are frozen, conv3_1 and up train (paper Sec. 4.5); weights lr 1 decay 1, biases lr 2
    decay 0 (spec §14.9)."""
    frozen = [p.name for p in vgg16.parameters() if p.frozen]
    assert frozen == [f"{n}.{k}" for n in ("conv1_1", "conv1_2", "conv2_1", "conv2_2") for k in ("weight", "bias")]
    for p in vgg16.parameters():
        assert (p.lr_mult, p.decay_mult) == ((1.0, 1.0) if p.key == "weight" else (2.0, 0.0))


def test_vgg16_conv5_size_and_parameter_count(vgg16):
    """Caffe's ceil pooling gives conv5_3 maps of 38x50 for 600x800 and 38x63 for 600x1000 (spec §2); the
    ImageNet classifier with pool5 and fc8 has VGG16's well-known 138,357,544 parameters."""
    assert vgg16.feature_map_size(600, 800) == (38, 50)
    assert vgg16.feature_map_size(600, 1000) == (38, 63)
    assert vgg16.feature_map_size(601, 1001) == (38, 63)        # 601 -> 301 -> 151 -> 76 -> 38
    assert vgg16.backbone.stride == 16
    classifier = build_classifier("vgg16", 1000, init=False)
    assert classifier.num_parameters() == 138_357_544 and classifier.grid == 7


def test_vgg16_forward_backward_at_reduced_scale(vgg16):
    """The real layer shapes run on a 64x64 image: (R, 21) scores and (R, 84) deltas. In the backward, conv3_1 is
    the first trainable layer: it computes its weight gradient but no input gradient, and nothing below it runs
    (no cache kept there, no gradients for the frozen convs)."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    rois = np.array([[0, 0, 0, 63, 63], [0, 8, 8, 40, 50]], dtype=np.float32)
    scores, deltas = vgg16.forward(images, rois)
    assert scores.shape == (2, 21) and deltas.shape == (2, 84)
    assert vgg16["conv3_1"].need_dx is False and vgg16["relu3_1"].need_dx is True
    assert all(vgg16[n].cache is None for n in ("conv1_1", "relu1_2", "pool1", "conv2_2", "pool2"))
    vgg16.loss(scores, deltas, np.array([0, 3]), np.zeros((2, 84), np.float32))
    vgg16.backward()
    grads = vgg16.gradients()
    assert "conv3_1.weight" in grads and not any(name.startswith(("conv1", "conv2")) for name in grads)
    assert len(grads) == 2 * (9 + 4)                       # conv3_1..conv5_3, fc6, fc7, cls_score, bbox_pred


def test_tiny_architecture():
    """tiny: convs 16-32-64-128-128 with four pools (total stride 16, RoI pool 7x7 at 1/16), fc6 6272->512,
    fc7 512->512; nothing frozen."""
    model = build_model("tiny", 21)
    assert [(n, model[n].params["weight"].shape[0]) for n, _ in TINY.convs] == list(TINY.convs)
    assert model.backbone.stride == 16 and model.roi_pool5.spatial_scale == 1 / 16
    assert model.fc6.params["weight"].shape == (512, 128 * 7 * 7)
    assert not any(p.frozen for p in model.parameters())
    assert model.feature_map_size(288, 384) == (18, 24)


def test_spec_round_trip_and_overrides():
    """A spec survives to_dict/from_dict (what a checkpoint stores); overrides are checked."""
    for spec in (TINY, VGG16):
        assert BackboneSpec.from_dict(spec.to_dict()) == spec
    narrow = get_spec("tiny", channels=(4, 4, 8, 8, 8), roi_size=3, fc_width=16)
    assert narrow.convs[-1] == ("conv5", 8) and narrow.roi_size == 3
    with pytest.raises(ValueError, match="channels needs 5 values"):
        get_spec("tiny", channels=(4, 4))
    with pytest.raises(ValueError, match=r"unknown backbone settings \['width'\]"):
        get_spec("tiny", width=3)
    with pytest.raises(ValueError, match="frozen names unknown layers"):
        get_spec("tiny", frozen=("conv9",))
    with pytest.raises(ValueError, match="unknown backbone spec keys"):
        BackboneSpec.from_dict({**TINY.to_dict(), "depth": 3})
