"""Conv backbones and the fc layers above them: ``tiny`` (CPU, minutes) and the paper's models S, M and L.

A :class:`BackboneSpec` is the whole architecture in a few plain fields (JSON-able, so a checkpoint can carry it),
and :func:`build_backbone` turns it into a chain of layers. Each conv is followed by a ReLU; max pools (Caffe's ceil
rule) and LRN layers sit after some of them. Layer names follow the prototxts: ``conv1``, ``relu1``, ``pool1``,
``norm1``, ... (``conv3_1``, ``relu3_1`` for VGG16).

VGG16, model L (docs/reference.md §2, ``FR:models/VGG16/train.prototxt``)::

    conv1_1 conv1_2 pool1 | conv2_1 conv2_2 pool2 | conv3_1..3_3 pool3 | conv4_1..4_3 pool4 | conv5_1..5_3
      64      64          |  128     128          |  256               |  512               |  512
    all convs 3x3 pad 1 stride 1; pools max 2x2 stride 2
    roi_pool5 7x7 at 1/16 -> fc6 25088->4096 -> fc7 4096->4096  (ReLU + dropout 0.5 each); conv1_x, conv2_x frozen

CaffeNet, model S (``FR:models/CaffeNet/train.prototxt``; LRN *after* the pools, group 2 in conv2, conv4, conv5)::

    layer          conv1       pool1      norm1    conv2        pool2      norm2    conv3   conv4      conv5
    outputs        96          -          -        256          -          -        384     384        256
    kernel/stride  11 s4 p5    3 s2 p1    LRN      5 s1 p2 g2   3 s2 p1    LRN      3 p1    3 p1 g2    3 p1 g2
    LRN: local_size 5, alpha 1e-4, beta 0.75, k 1; total stride 4*2*2 = 16; conv1 frozen
    roi_pool5 6x6 at 1/16 -> fc6 9216->4096 -> fc7 4096->4096  (ReLU + dropout 0.5 each)

VGG_CNN_M_1024, model M (``FR:models/VGG_CNN_M_1024/train.prototxt``; LRN *before* the pools, with k = 2)::

    layer          conv1      norm1    pool1      conv2        norm2    pool2      conv3   conv4   conv5
    outputs        96         -        -          256          -        -          512     512     512
    kernel/stride  7 s2 p0    LRN      3 s2 p0    5 s2 p1      LRN      3 s2 p0    3 p1    3 p1    3 p1
    LRN: local_size 5, alpha 5e-4, beta 0.75, k 2; total stride 2*2*2*2 = 16; conv1 frozen
    roi_pool5 6x6 at 1/16 -> fc6 18432->4096 -> fc7 4096->1024  (ReLU + dropout 0.5 each)

Both S and M fine-tune conv2 and up (paper Sec. 4.5). For a 600-row image conv5 has 39 rows in S, 36 in M and 38 in
L (docs/reference.md §2): M's map is smaller than image/16, and the RoI pool still uses 1/16 as the original does
(docs/reference.md §14.4).

tiny: VGG16's plan with one conv per stage and few channels, ``conv1..conv5`` = 16-32-64-128-128 with four 2x2 pools
(total stride 16, so the same spatial scale 1/16), RoI pool 7x7, fc6 6272->512, fc7 512->512. The default detector
(the ``tiny`` preset) has exactly this head: its classifier is pretrained on 64-pixel crops, whose pool5 grid is 4x4
(fc6 2048->512), and :func:`~minircnn.models.classifier.resize_fc6` resamples fc6 to the 7x7 grid when the detector
is made (``roi_size=7`` in the preset; :mod:`minircnn.pretrain`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import NamedTuple

import numpy as np

from ..nn import LRN, Conv2d, MaxPool2d, ReLU, Sequential, he_normal_

FC_LAYERS = ("fc6", "fc7", "cls_score", "bbox_pred")   # layers above the convs that ``frozen`` may also name
LRN_DEFAULTS = (5, 1e-4, 0.75, 1.0)   # local_size, alpha, beta, k (CaffeNet's)


class ConvLayer(NamedTuple):
    """One conv of a spec with every setting spelled out."""
    name: str
    out: int
    kernel: int = 3
    stride: int = 1
    pad: int = 1
    groups: int = 1


class PoolLayer(NamedTuple):
    """A max pool: its name (``pool1``, ...), the conv it follows, and its window."""
    name: str
    after: str
    kernel: int = 2
    stride: int = 2
    pad: int = 0


CONV_DEFAULTS = tuple(ConvLayer._field_defaults.values())   # kernel, stride, pad, groups of a short (name, out) entry
POOL_DEFAULTS = tuple(PoolLayer._field_defaults.values())   # kernel, stride, pad of a pool named by its conv alone


def _canonical(values: tuple, defaults: tuple) -> tuple:
    """The settings of an entry spelled out in full, or ``()`` when they are all defaults: a spec has one canonical
    form, and old short entries (``("conv1", 16)``, ``"conv1"``) stay as they were."""
    values = tuple(values) + defaults[len(values):]
    return () if values == defaults else values


@dataclass(frozen=True)
class BackboneSpec:
    """The architecture of a backbone and its fc layers.

    Attributes:
        name: ``"tiny"``, ``"vgg16"``, ``"caffenet"``, ``"vgg_cnn_m_1024"`` (or a variant's name).
        convs: convs in forward order, each ``(name, out)`` -- a 3x3 conv with pad 1, stride 1 -- or
            ``(name, out, kernel, stride, pad, groups)`` (given with trailing settings left out, it is stored in
            full). Each is followed by a ReLU named ``relu`` + the conv's suffix (``conv3_1`` -> ``relu3_1``).
        pools: the convs followed by a max pool (after the ReLU): a conv's name (2x2, stride 2) or
            ``(name, kernel, stride, pad)`` (pad may be left out). Pools are named ``pool1``, ``pool2``, ... in
            forward order.
        frozen: names of the layers whose weights stay fixed during fine-tuning: convs, or any of ``FC_LAYERS``
            (e.g. everything but ``bbox_pred`` for the paper's stage-wise ablation, docs/reference.md §2).
        roi_size: the RoI pool grid, ``roi_size x roi_size``.
        fc_width: outputs of fc6 (and of fc7 unless ``fc7_width`` is set).
        dropout: drop probability after relu6 and relu7.
        in_channels: image channels.
        fc7_width: outputs of fc7 when they differ from fc6's (VGG_CNN_M_1024: 1024); None: ``fc_width``.
        lrn: the layers followed by a local response normalisation (named ``norm1``, ``norm2``, ... in order): a
            conv's name puts it right after the conv's ReLU (before any pool, as in VGG_CNN_M), a pool's name right
            after that pool (as in CaffeNet).
        lrn_params: ``(local_size, alpha, beta, k)`` of every LRN layer (Caffe's formula, alpha divided by size).

    Old checkpoints stored only the fields up to ``in_channels``; :meth:`from_dict` reads them with the defaults.
    """
    name: str
    convs: tuple
    pools: tuple
    frozen: tuple = ()
    roi_size: int = 7
    fc_width: int = 4096
    dropout: float = 0.5
    in_channels: int = 3
    fc7_width: int | None = None
    lrn: tuple = ()
    lrn_params: tuple = LRN_DEFAULTS

    def __post_init__(self):
        convs, pools = [], []
        for c in self.convs:
            if not 2 <= len(c) <= 6:
                self._fail(f"a conv entry must be (name, out[, kernel, stride, pad, groups]), got {c!r}")
            convs.append((str(c[0]), int(c[1])) + _canonical(tuple(int(v) for v in c[2:]), CONV_DEFAULTS))
        for p in self.pools:
            p = (p,) if isinstance(p, str) else tuple(p)
            if not 1 <= len(p) <= 4:
                self._fail(f"a pool entry must be a conv's name or (name, kernel, stride[, pad]), got {p!r}")
            window = _canonical(tuple(int(v) for v in p[1:]), POOL_DEFAULTS)
            pools.append((str(p[0]),) + window if window else str(p[0]))
        if len(self.lrn_params) != 4:
            self._fail(f"lrn_params must be (local_size, alpha, beta, k), got {self.lrn_params!r}")
        size, alpha, beta, k = self.lrn_params
        for key, value in (("convs", tuple(convs)), ("pools", tuple(pools)), ("frozen", tuple(self.frozen)),
                           ("lrn", tuple(self.lrn)), ("lrn_params", (int(size), float(alpha), float(beta), float(k)))):
            object.__setattr__(self, key, value)
        self._validate()

    def _fail(self, message):
        raise ValueError(f"backbone {self.name}: {message}")

    def _validate(self):
        names = [c.name for c in self.conv_layers()]
        pool_names = [p.name for p in self.pool_layers()]
        pooled = [p if isinstance(p, str) else p[0] for p in self.pools]
        for field, values in (("convs", names), ("pools", pooled), ("lrn", self.lrn)):
            if len(set(values)) != len(values):
                self._fail(f"{field} names a layer twice: {list(values)}")
        for field, values, known in (("pools", pooled, names),
                                     ("frozen", self.frozen, names + list(FC_LAYERS)),
                                     ("lrn", self.lrn, names + pool_names)):
            unknown = sorted(set(values) - set(known))
            if unknown:
                self._fail(f"{field} names unknown layers {unknown}; known: {known}")
        channels = self.in_channels
        for c in self.conv_layers():
            if c.out < 1 or c.kernel < 1 or c.stride < 1 or c.pad < 0 or c.groups < 1:
                self._fail(f"conv {c.name} needs out, kernel, stride, groups >= 1 and pad >= 0, got {tuple(c)}")
            if channels % c.groups or c.out % c.groups:
                self._fail(f"conv {c.name}: groups={c.groups} must divide its {channels} inputs and {c.out} outputs")
            channels = c.out
        for p in self.pool_layers():
            if p.kernel < 1 or p.stride < 1 or not 0 <= p.pad < p.kernel:
                self._fail(f"{p.name} needs kernel, stride >= 1 and 0 <= pad < kernel, got {tuple(p)[2:]}")
        size, alpha, beta, k = self.lrn_params
        if size < 1 or size % 2 == 0 or alpha < 0 or beta < 0 or k <= 0:
            self._fail(f"lrn_params (local_size, alpha, beta, k) need an odd local_size, alpha, beta >= 0 and k > 0, "
                       f"got {self.lrn_params!r}")
        if self.roi_size < 1 or min(self.fc_widths) < 1:
            self._fail("roi_size and the fc widths must be positive")
        if not 0.0 <= self.dropout < 1.0:
            self._fail(f"dropout must be in [0, 1), got {self.dropout!r}")

    def conv_layers(self) -> list:
        """Every conv as a :class:`ConvLayer` (all settings spelled out), in forward order."""
        return [ConvLayer(*c) for c in self.convs]

    def pool_layers(self) -> list:
        """Every pool as a :class:`PoolLayer`, in forward order (numbered by the convs they follow)."""
        window = dict((p, ()) if isinstance(p, str) else (p[0], p[1:]) for p in self.pools)
        after = [c[0] for c in self.convs if c[0] in window]
        return [PoolLayer(f"pool{i}", name, *window[name]) for i, name in enumerate(after, 1)]

    @property
    def out_channels(self) -> int:
        """Channels of the last conv (the feature map the RoI pool reads)."""
        return self.convs[-1][1]

    @property
    def fc_widths(self) -> tuple:
        """(outputs of fc6, outputs of fc7)."""
        return (self.fc_width, self.fc_width if self.fc7_width is None else self.fc7_width)

    def to_dict(self) -> dict:
        """Plain Python values (lists for tuples), to store in a checkpoint or config.json. Fields added after the
        first release are left out while they hold their defaults, so tiny and vgg16 write the dicts they always
        wrote (and older code can still read them)."""
        d = asdict(self)
        for key in ("fc7_width", "lrn", "lrn_params"):
            if d[key] == next(f.default for f in fields(self) if f.name == key):
                del d[key]
        d["convs"] = [list(c) for c in self.convs]
        d["pools"] = [p if isinstance(p, str) else list(p) for p in self.pools]
        d["frozen"] = list(self.frozen)
        for key in ("lrn", "lrn_params"):
            if key in d:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BackboneSpec":
        """Inverse of :meth:`to_dict` (also reads the dicts of older checkpoints); unknown keys are rejected."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown backbone spec keys {sorted(unknown)}")
        return cls(**d)

    def with_overrides(self, channels=None, **changes) -> "BackboneSpec":
        """A copy with some fields changed; ``channels`` replaces every conv's width, in order (tests use a
        narrow tiny, e.g. ``channels=(2, 2, 3, 3, 3)``)."""
        if channels is not None:
            if len(channels) != len(self.convs):
                self._fail(f"channels needs {len(self.convs)} values, got {channels!r}")
            changes["convs"] = tuple((c[0], int(n)) + tuple(c[2:]) for c, n in zip(self.convs, channels))
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

CAFFENET = BackboneSpec(
    name="caffenet",
    #      (name, out, kernel, stride, pad, groups)
    convs=(("conv1", 96, 11, 4, 5), ("conv2", 256, 5, 1, 2, 2), ("conv3", 384),
           ("conv4", 384, 3, 1, 1, 2), ("conv5", 256, 3, 1, 1, 2)),
    pools=(("conv1", 3, 2, 1), ("conv2", 3, 2, 1)),
    lrn=("pool1", "pool2"), lrn_params=(5, 1e-4, 0.75, 1.0),
    frozen=("conv1",),                                       # S and M fine-tune conv2 and up (Sec. 4.5)
    roi_size=6, fc_width=4096, dropout=0.5)

VGG_CNN_M_1024 = BackboneSpec(
    name="vgg_cnn_m_1024",
    convs=(("conv1", 96, 7, 2, 0), ("conv2", 256, 5, 2, 1), ("conv3", 512), ("conv4", 512), ("conv5", 512)),
    pools=(("conv1", 3, 2), ("conv2", 3, 2)),
    lrn=("conv1", "conv2"), lrn_params=(5, 5e-4, 0.75, 2.0),
    frozen=("conv1",),
    roi_size=6, fc_width=4096, fc7_width=1024, dropout=0.5)

BACKBONES = {"tiny": TINY, "vgg16": VGG16, "caffenet": CAFFENET, "vgg_cnn_m_1024": VGG_CNN_M_1024}


def get_spec(name: str, **overrides) -> BackboneSpec:
    """The registered spec ``name`` (a key of :data:`BACKBONES`) with optional overrides (see
    :meth:`BackboneSpec.with_overrides`)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    return spec.with_overrides(**overrides) if overrides else spec


def _relu_name(conv_name: str) -> str:
    """``conv3_1`` -> ``relu3_1`` (the prototxts' names); other names get a ``_relu`` suffix."""
    return "relu" + conv_name[len("conv"):] if conv_name.startswith("conv") else conv_name + "_relu"


def build_backbone(spec: BackboneSpec, dtype=np.float32, rng=None) -> Sequential:
    """The conv layers of ``spec`` as a :class:`~minircnn.nn.Sequential` (convs, ReLUs, pools, LRNs), on the host.

    Args:
        spec: the architecture.
        dtype: parameter dtype.
        rng: ``numpy.random.Generator`` for He initialisation, layer by layer in forward order; None leaves the
            weights at zero (to be loaded from a file; nothing is written, so no memory is touched yet).

    Returns:
        Sequential whose convs have their frozen flags set from ``spec.frozen``.
    """
    pools = {p.after: p for p in spec.pool_layers()}
    local_size, alpha, beta, k = spec.lrn_params
    layers, channels = [], spec.in_channels

    def add_lrn_after(name):
        if name in spec.lrn:
            layers.append(LRN(f"norm{sum(isinstance(m, LRN) for m in layers) + 1}", local_size, alpha, beta, k))

    for c in spec.conv_layers():
        conv = Conv2d(c.name, channels, c.out, kernel_size=c.kernel, stride=c.stride, pad=c.pad, dtype=dtype,
                      groups=c.groups)
        conv.frozen = c.name in spec.frozen
        if rng is not None:
            he_normal_(conv, rng)
        layers += [conv, ReLU(_relu_name(c.name))]
        add_lrn_after(c.name)                       # VGG_CNN_M: conv, ReLU, LRN, pool
        if c.name in pools:
            p = pools[c.name]
            layers.append(MaxPool2d(p.name, kernel_size=p.kernel, stride=p.stride, pad=p.pad))
            add_lrn_after(p.name)                   # CaffeNet: conv, ReLU, pool, LRN
        channels = c.out
    return Sequential(layers)
