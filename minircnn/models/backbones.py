"""Conv backbones and the fc layers above them: ``tiny`` (CPU, minutes) and ``vgg16`` (the paper's model L).

A :class:`BackboneSpec` is the whole architecture in a few plain fields (JSON-able, so a checkpoint can carry it):
the 3x3 convs (pad 1, stride 1, each followed by a ReLU), the 2x2 stride-2 max pools with Caffe's ceil rule after
some of them, the frozen convs, the RoI pool grid and the width of fc6 and fc7.

VGG16 (spec §2, ``FR:models/VGG16/train.prototxt``)::

    conv1_1 conv1_2 pool1 | conv2_1 conv2_2 pool2 | conv3_1..3_3 pool3 | conv4_1..4_3 pool4 | conv5_1..5_3
      64      64          |  128     128          |  256               |  512               |  512
    roi_pool5 7x7 at 1/16 -> fc6 25088->4096 -> fc7 4096->4096  (ReLU + dropout 0.5 each); conv1_x, conv2_x frozen

tiny: the same plan with one conv per stage and few channels, ``conv1..conv5`` = 16-32-64-128-128 with four pools
(total stride 16, so the same spatial scale 1/16), RoI pool 7x7, fc6 6272->512, fc7 512->512.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from ..nn import Conv2d, MaxPool2d, ReLU, Sequential, he_normal_


FC_LAYERS = ("fc6", "fc7", "cls_score", "bbox_pred")   # layers above the convs that ``frozen`` may also name


@dataclass(frozen=True)
class BackboneSpec:
    """The architecture of a backbone and its fc layers.

    Attributes:
        name: ``"tiny"`` or ``"vgg16"`` (or a variant's name).
        convs: ``((name, out_channels), ...)``, 3x3 convs with pad 1 in forward order, each followed by a ReLU
            named ``relu`` + the conv's suffix (``conv3_1`` -> ``relu3_1``).
        pools: names of the convs followed by a 2x2 stride-2 max pool (named ``pool1``, ``pool2``, ... in order).
        frozen: names of the layers whose weights stay fixed during fine-tuning: convs, or any of ``FC_LAYERS``
            (e.g. everything but ``bbox_pred`` for the paper's stage-wise ablation, spec §2).
        roi_size: the RoI pool grid, ``roi_size x roi_size``.
        fc_width: outputs of fc6 and fc7.
        dropout: drop probability after relu6 and relu7.
        in_channels: image channels.
    """
    name: str
    convs: tuple
    pools: tuple
    frozen: tuple = ()
    roi_size: int = 7
    fc_width: int = 4096
    dropout: float = 0.5
    in_channels: int = 3

    def __post_init__(self):
        convs = tuple((str(n), int(c)) for n, c in self.convs)
        object.__setattr__(self, "convs", convs)
        object.__setattr__(self, "pools", tuple(self.pools))
        object.__setattr__(self, "frozen", tuple(self.frozen))
        names = [n for n, _ in convs]
        for field, values, known in (("pools", self.pools, names), ("frozen", self.frozen, names + list(FC_LAYERS))):
            unknown = sorted(set(values) - set(known))
            if unknown:
                raise ValueError(f"backbone {self.name}: {field} names unknown layers {unknown}; known: {known}")
        if any(c < 1 for _, c in convs) or self.roi_size < 1 or self.fc_width < 1:
            raise ValueError(f"backbone {self.name}: channels, roi_size and fc_width must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"backbone {self.name}: dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def out_channels(self) -> int:
        """Channels of the last conv (the feature map the RoI pool reads)."""
        return self.convs[-1][1]

    def to_dict(self) -> dict:
        """Plain Python values (lists for tuples), to store in a checkpoint or config.json."""
        d = asdict(self)
        d["convs"] = [list(c) for c in self.convs]
        d["pools"], d["frozen"] = list(self.pools), list(self.frozen)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BackboneSpec":
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown backbone spec keys {sorted(unknown)}")
        return cls(**d)

    def with_overrides(self, channels=None, **changes) -> "BackboneSpec":
        """A copy with some fields changed; ``channels`` replaces every conv's width, in order (tests use a
        narrow tiny, e.g. ``channels=(2, 2, 3, 3, 3)``)."""
        if channels is not None:
            if len(channels) != len(self.convs):
                raise ValueError(f"backbone {self.name}: channels needs {len(self.convs)} values, got {channels!r}")
            changes["convs"] = tuple((n, int(c)) for (n, _), c in zip(self.convs, channels))
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown backbone settings {sorted(unknown)}; known: channels, "
                             + ", ".join(f.name for f in fields(self) if f.name != "name"))
        return replace(self, **changes)


TINY = BackboneSpec(
    name="tiny",
    convs=(("conv1", 16), ("conv2", 32), ("conv3", 64), ("conv4", 128), ("conv5", 128)),
    pools=("conv1", "conv2", "conv3", "conv4"),
    frozen=(), roi_size=7, fc_width=512, dropout=0.5)

VGG16 = BackboneSpec(
    name="vgg16",
    convs=(("conv1_1", 64), ("conv1_2", 64),
           ("conv2_1", 128), ("conv2_2", 128),
           ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256),
           ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512),
           ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512)),
    pools=("conv1_2", "conv2_2", "conv3_3", "conv4_3"),
    frozen=("conv1_1", "conv1_2", "conv2_1", "conv2_2"),     # the paper fine-tunes conv3_1 and up (Sec. 4.5)
    roi_size=7, fc_width=4096, dropout=0.5)

BACKBONES = {"tiny": TINY, "vgg16": VGG16}


def get_spec(name: str, **overrides) -> BackboneSpec:
    """The registered spec ``name`` (``"tiny"``, ``"vgg16"``) with optional overrides (see
    :meth:`BackboneSpec.with_overrides`)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    return spec.with_overrides(**overrides) if overrides else spec


def build_backbone(spec: BackboneSpec, dtype=np.float32, rng=None) -> Sequential:
    """The conv layers of ``spec`` as a :class:`~minircnn.nn.Sequential` (conv, ReLU, and pools), on the host.

    Args:
        spec: the architecture.
        dtype: parameter dtype.
        rng: ``numpy.random.Generator`` for He initialisation, layer by layer in forward order; None leaves the
            weights at zero (to be loaded from a file; nothing is written, so no memory is touched yet).

    Returns:
        Sequential whose convs have their frozen flags set from ``spec.frozen``.
    """
    layers, channels, n_pools = [], spec.in_channels, 0
    for name, out in spec.convs:
        conv = Conv2d(name, channels, out, kernel_size=3, stride=1, pad=1, dtype=dtype)
        conv.frozen = name in spec.frozen
        if rng is not None:
            he_normal_(conv, rng)
        layers += [conv, ReLU("relu" + name[len("conv"):] if name.startswith("conv") else name + "_relu")]
        if name in spec.pools:
            n_pools += 1
            layers.append(MaxPool2d(f"pool{n_pools}", kernel_size=2, stride=2))
        channels = out
    return Sequential(layers)
