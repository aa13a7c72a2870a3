"""The Fast R-CNN detector (paper Fig. 1): backbone convs -> RoI pool -> fc6 -> fc7 -> two sibling heads.

Forward, for N images and R RoIs::

    images (N, 3, H, W) --convs--> features (N, C, H/16, W/16)
    features, rois (R, 5) --roi_pool5--> (R, C, r, r) --fc6, relu6, drop6, fc7, relu7, drop7--> (R, fc7 width)
        --cls_score--> scores (R, K+1)         class scores (softmax gives p, paper Sec. 2.3)
        --bbox_pred--> deltas (R, 4(K+1))      per-class box regression, class-major [4k + (dx, dy, dw, dh)]

with r the spec's RoI grid (7 for VGG16 and the default tiny detector, 6 for CaffeNet and VGG_CNN_M_1024) and
the fc widths of the spec (``spec.fc_widths``: 4096, 4096 for VGG16; 4096, 1024 for VGG_CNN_M_1024). After
:func:`minircnn.inference.svd.compress`, fc6 and fc7 are each two layers (``fc6_L``, ``fc6_U``) with nothing between.

A detector may also hold a Region Proposal Network on the same feature map (:meth:`FastRCNN.add_rpn`, the
Faster R-CNN of :mod:`minircnn.rpn`): ``rpn_conv``, ``rpn_cls_score`` and ``rpn_bbox_pred`` after the heads. Its
gradient and the RoI pool's meet at the feature map and add.

Loss (paper Eq. 1): ``L = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v)``, lambda = 1 by default (the config's
``bbox_loss_weight``). The backward is written
out below in the reverse order of the forward; the only place two gradients meet is fc7's output, which feeds both
heads, so their input gradients add.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import functional as F
from ..backend import get_array_module
from ..boxes import scatter_classwise
from ..nn import Dropout, Linear, Network, ReLU, RoIPool, gaussian_, he_normal_, plan_backward
from .backbones import FC_LAYERS, BackboneSpec, build_backbone, get_spec

CLS_SCORE_STD = 0.01     # Gaussian init of the heads, biases 0 (docs/reference.md §2)
BBOX_PRED_STD = 0.001


class LossTerms(NamedTuple):
    """The multi-task loss and its two terms (floats)."""
    total: float
    cls: float
    bbox: float


def bbox_loss_weights(labels, num_classes: int, dtype=np.float32):
    """The ``[u >= 1]`` of Eq. 1 as 0/1 weights: 1 on the 4 columns ``4u .. 4u+3`` of each RoI's class u >= 1.

    Args:
        labels: (R,) int, class of each RoI (0 = background).
        num_classes: K + 1.

    Returns:
        (R, 4 * num_classes) array of 0 and 1 (NumPy or CuPy, like labels).
    """
    xp = get_array_module(labels)
    return scatter_classwise(xp.zeros((labels.shape[0], 4), dtype=dtype), labels, num_classes)[1]


def multitask_loss(scores, deltas, labels, bbox_targets, bbox_weights=None, bbox_loss_weight: float = 1.0):
    """Fast R-CNN's loss (paper Eq. 1-3; normalisation of the original layers, docs/reference.md §3 and §14.8).

    ``L_cls`` is the softmax log loss averaged over the R RoIs. ``L_loc`` is smooth L1 over the 4 columns of each
    foreground RoI's class, summed and divided by R (all RoIs, not just the foreground ones).

    Args:
        scores: (R, K+1) floating, class scores.
        deltas: (R, 4(K+1)), predicted regression values.
        labels: (R,) int, class u of each RoI, 0 for background.
        bbox_targets: (R, 4(K+1)), normalised targets in the 4 columns of the RoI's class (others ignored).
        bbox_weights: (R, 4(K+1)) 0/1, or None for :func:`bbox_loss_weights` of ``labels``.
        bbox_loss_weight: lambda.

    Returns:
        terms: :class:`LossTerms` (total, cls, bbox); total = cls + lambda * bbox.
        dscores: (R, K+1) gradient of the total loss with respect to scores.
        ddeltas: (R, 4(K+1)) gradient of the total loss with respect to deltas.
    """
    xp = get_array_module(scores)
    labels = xp.asarray(labels)
    if deltas.shape != (scores.shape[0], 4 * scores.shape[1]):
        raise ValueError(f"deltas must have shape {(scores.shape[0], 4 * scores.shape[1])} (R, 4(K+1)) for scores "
                         f"of shape {tuple(scores.shape)}, got {tuple(deltas.shape)}")
    loss_cls, dscores = F.softmax_cross_entropy(scores, labels)          # also checks the labels
    if bbox_weights is None:
        bbox_weights = bbox_loss_weights(labels, scores.shape[1], deltas.dtype)
    loss_bbox, ddeltas = F.smooth_l1_loss(deltas, xp.asarray(bbox_targets, dtype=deltas.dtype),
                                          xp.asarray(bbox_weights, dtype=deltas.dtype))
    if bbox_loss_weight != 1.0:
        ddeltas *= deltas.dtype.type(bbox_loss_weight)
    return LossTerms(loss_cls + bbox_loss_weight * loss_bbox, loss_cls, loss_bbox), dscores, ddeltas


def softmax(scores):
    """Row-wise softmax of (R, K+1) scores: the class probabilities p of the paper (``cls_prob`` at test time)."""
    xp = get_array_module(scores)
    e = xp.exp(scores - scores.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def _add(a, b):
    """a + b where either may be None (no gradient)."""
    if a is None or b is None:
        return b if a is None else a
    a += b
    return a


class FastRCNN(Network):
    """The detector. Parameter names follow the paper's prototxt: ``conv3_1.weight``, ``fc6.bias``, ``bbox_pred.bias``.

    Args:
        spec: the backbone architecture (:mod:`minircnn.models.backbones`).
        num_classes: number of classes **including background**, K + 1 (21 for PASCAL VOC).
        seed: seeds the initial weights and, separately, the dropout masks.
        dtype: parameter dtype (float32; float64 for gradient checks).
        init: False leaves every weight at zero, to be loaded from a file (no random draws, no memory touched).
        rpn: None, or the RPN's settings ``{"scales": [...], "ratios": [...], "width": C'}`` (:meth:`add_rpn`).

    Attributes:
        backbone: :class:`~minircnn.nn.Sequential` of the convs, ReLUs and pools.
        roi_pool5, fc6, relu6, drop6, fc7, relu7, drop7, cls_score, bbox_pred: the head's layers.
        rpn: the :class:`~minircnn.rpn.head.RPNHead`, or None (proposals come from outside).
        dropout_rng: the ``numpy.random.Generator`` of the dropout masks (its state belongs in a checkpoint).

    A checkpoint needs :meth:`state_dict`, :attr:`config` and ``dropout_rng.bit_generator.state`` (restore it by
    assigning it back: every dropout layer shares that one generator).
    """

    def __init__(self, spec: BackboneSpec, num_classes: int, seed: int = 0, dtype=np.float32, init: bool = True,
                 rpn: dict | None = None):
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes counts background too and must be an integer >= 2, got {num_classes!r}")
        num_classes = int(num_classes)
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(init_seq) if init else None
        self.spec, self.num_classes = spec, num_classes
        self.backbone = build_backbone(spec, dtype, rng)
        fc_in, (fc6_out, fc7_out) = spec.out_channels * spec.roi_size ** 2, spec.fc_widths
        self.roi_pool5 = RoIPool("roi_pool5", spec.roi_size, spatial_scale=1.0 / self.backbone.stride)
        self.fc6, self.relu6, self.drop6 = (Linear("fc6", fc_in, fc6_out, dtype), ReLU("relu6"),
                                            Dropout("drop6", spec.dropout))
        self.fc7, self.relu7, self.drop7 = (Linear("fc7", fc6_out, fc7_out, dtype), ReLU("relu7"),
                                            Dropout("drop7", spec.dropout))
        self.cls_score = Linear("cls_score", fc7_out, num_classes, dtype)
        self.bbox_pred = Linear("bbox_pred", fc7_out, 4 * num_classes, dtype)
        if init:
            he_normal_(self.fc6, rng)
            he_normal_(self.fc7, rng)
            gaussian_(self.cls_score, CLS_SCORE_STD, rng)
            gaussian_(self.bbox_pred, BBOX_PRED_STD, rng)
        self.trunk = [self.roi_pool5, self.fc6, self.relu6, self.drop6, self.fc7, self.relu7, self.drop7]
        self.heads = [self.cls_score, self.bbox_pred]
        super().__init__(self.backbone.layers + self.trunk + self.heads)
        self.freeze(name for name in spec.frozen if name in FC_LAYERS)
        self.set_dropout_rng(np.random.default_rng(dropout_seq))
        self._loss_grads = None
        self.svd_ranks = {}                       # {fc name: rank} once compressed (minircnn.inference.svd)
        self.rpn, self.rpn_settings, self._rpn_grads = None, None, None
        if rpn is not None:
            self.add_rpn(seed=seed if init else None, dtype=dtype, **rpn)

    def add_rpn(self, scales=None, ratios=None, width=None, seed=0, dtype=None):
        """Give the detector a Region Proposal Network on its feature map (:mod:`minircnn.rpn`).

        Args:
            scales, ratios: the anchor shapes (default :data:`~minircnn.rpn.anchors.DEFAULT_SCALES`, ``..._RATIOS``).
            width: channels of the RPN's 3x3 conv (default: the backbone's output channels).
            seed: seeds the RPN's initial weights (a stream of its own: the detector's weights do not change);
                None leaves them at zero, to be loaded.
            dtype: parameter dtype (default: the detector's).
        """
        from ..rpn.anchors import DEFAULT_RATIOS, DEFAULT_SCALES, anchor_shapes
        from ..rpn.head import RPNHead
        if self.rpn is not None:
            raise ValueError("the detector has an RPN already")
        scales = tuple(float(v) for v in (scales or DEFAULT_SCALES))
        ratios = tuple(float(v) for v in (ratios or DEFAULT_RATIOS))
        width = int(width or self.spec.out_channels)
        rng = None if seed is None else np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
        self.rpn = RPNHead(self.spec.out_channels, len(anchor_shapes(scales, ratios)), width,
                           dtype or self.dtype, rng)
        self.rpn_settings = {"scales": list(scales), "ratios": list(ratios), "width": width}
        self.add_layers(self.rpn.layers)
        if self.xp is not np:
            self.to("gpu")
        return self

    @property
    def config(self) -> dict:
        """``{"num_classes": K+1, "spec": {...}}`` with the current frozen flags: enough to rebuild the model.

        A model compressed by :func:`minircnn.inference.svd.compress` also has ``"svd": {"fc6": rank, ...}``.
        """
        frozen = [layer.name for layer in self.layers if layer.params and layer.frozen]
        frozen = tuple(dict.fromkeys(n[:-2] if n[:-2] in self.svd_ranks else n for n in frozen))  # fc6_L -> fc6
        config = {"num_classes": self.num_classes, "spec": self.spec.with_overrides(frozen=frozen).to_dict()}
        if self.svd_ranks:
            config["svd"] = dict(self.svd_ranks)
        if self.rpn is not None:
            config["rpn"] = dict(self.rpn_settings)
        return config

    @classmethod
    def from_config(cls, config: dict, seed: int = 0, dtype=np.float32, init: bool = True) -> "FastRCNN":
        """Rebuild a model from its :attr:`config` (e.g. read back from a checkpoint)."""
        model = cls(BackboneSpec.from_dict(config["spec"]), config["num_classes"], seed=seed, dtype=dtype, init=init,
                    rpn=config.get("rpn"))
        if config.get("svd"):                     # the factored layers' shapes; their values come from the file
            from ..inference.svd import factor_layers
            factor_layers(model, config["svd"])
        return model

    def feature_map_size(self, height: int, width: int) -> tuple:
        """(H, W) of the last conv's map for an image blob of height x width (VGG16: 600x800 -> 38x50)."""
        return self.backbone.output_shape((1, self.spec.in_channels, height, width))[2:]

    def _plan_backward(self):
        """Set every layer's need_dx from the frozen flags (see :func:`~minircnn.nn.plan_backward`)."""
        features_need_grad = plan_backward(self.backbone.layers)
        if self.rpn is not None:
            self.rpn.plan_backward(features_need_grad)
        upstream = plan_backward(self.trunk, features_need_grad)
        for head in self.heads:                  # siblings: each one's input is fc7's output, not the other head's
            head.need_dx = upstream

    # ------------------------------------------------------------------------------------------- forward
    def forward(self, images, rois, train: bool = True):
        """Scores and box deltas of every RoI.

        Args:
            images: (N, 3, H, W) the preprocessed image blob (moved to the model's device and dtype if needed).
            rois: (R, 5) ``(batch_index, x1, y1, x2, y2)`` in blob pixels, 0-based inclusive corners.
            train: training mode (dropout on, caches kept for :meth:`backward`); False for inference. On the CPU a
                training forward runs each image through the convs in its own thread (one slice per image, so the
                numbers do not depend on the number of cores).

        Returns:
            scores: (R, K+1), class scores before the softmax.
            deltas: (R, 4(K+1)), box regression outputs, class-major.
        """
        return self.head_forward(self.features(images, train=train), self.xp.asarray(rois), train=train)

    def features(self, images, train: bool = True):
        """The backbone's feature map (N, C, H/16, W/16) of an image blob (N, 3, H, W) (moved to the model's device
        and dtype if needed). On the CPU a training forward runs each image through the convs in its own thread
        (one slice per image, so the numbers do not depend on the number of cores)."""
        xp = self.xp
        images = xp.asarray(images, dtype=self.dtype)
        self._plan_backward()
        slices = images.shape[0] if train and xp is np else 1
        return self.backbone.forward(images, train=train, slices=slices)

    def head_forward(self, features, rois, train: bool = True):
        """From the conv feature map (N, C, h, w) and the RoIs to (scores, deltas): RoI pool, fc6, fc7, heads.

        The trunk is run as the list :attr:`trunk` (roi_pool5, fc6, relu6, drop6, fc7, relu7, drop7), so that a
        compressed model, whose fc6 is the pair fc6_L, fc6_U (:mod:`minircnn.inference.svd`), runs the same code.
        """
        self._plan_backward()
        x = self.trunk[0].forward(features, rois, train=train)              # roi_pool5
        for layer in self.trunk[1:]:
            x = layer.forward(x, train=train)
        return self.cls_score.forward(x, train=train), self.bbox_pred.forward(x, train=train)

    # ---------------------------------------------------------------------------------------------- the RPN
    def anchors(self, feature_shape):
        """Every anchor of an (h, w) feature map, (h*w*A, 4) float32 in blob pixels (:mod:`minircnn.rpn.anchors`)."""
        from ..rpn.anchors import grid_anchors
        return grid_anchors(feature_shape, self.backbone.stride, self.rpn_settings["scales"],
                            self.rpn_settings["ratios"])

    def propose(self, features, image_sizes, scales, settings=None, train=False):
        """The RPN's proposals for each image of a feature map (N, C, h, w) (:mod:`minircnn.rpn.proposals`).

        Args:
            features: the backbone's output for the blob.
            image_sizes: N ``(height, width)`` of the scaled images inside the blob.
            scales: N scale factors (blob pixels per image pixel).
            settings: :class:`~minircnn.rpn.proposals.ProposalSettings` (default: the test-time ones).
            train: keep the head's caches for :meth:`rpn_loss` and :meth:`backward` (training).

        Returns:
            (rpn_scores (N, M, 2), rpn_deltas (N, M, 4), [boxes (P_b, 4) in blob pixels, ...], [objectness (P_b,),
            ...]); the boxes and objectness on the model's device.
        """
        from ..rpn.head import RPNHead
        from ..rpn.proposals import TEST_PROPOSALS, proposals_from_outputs
        if self.rpn is None:
            raise ValueError("this detector has no RPN: train it with --proposals rpn")
        self._plan_backward()
        scores, deltas = self.rpn.forward(features, train=train)
        anchors = self.xp.asarray(self.anchors(features.shape[2:]))
        found = [proposals_from_outputs(anchors, RPNHead.objectness(scores[b]), deltas[b], image_sizes[b], scales[b],
                                        settings or TEST_PROPOSALS) for b in range(features.shape[0])]
        return scores, deltas, [f[0] for f in found], [f[1] for f in found]

    def rpn_loss(self, scores, deltas, labels, targets):
        """:func:`~minircnn.rpn.head.rpn_loss` of the RPN's outputs (N, M, 2) and (N, M, 4) against the anchor
        targets (N, M) and (N, M, 4); remembers its gradients for :meth:`backward`. Returns the loss terms."""
        from ..rpn.head import rpn_loss
        xp = self.xp
        locations = scores.shape[0] * scores.shape[1] // self.rpn.num_anchors       # N_reg of paper Eq. 1
        terms, dscores, ddeltas = rpn_loss(scores.reshape(-1, 2), deltas.reshape(-1, 4),
                                           xp.asarray(labels).reshape(-1), xp.asarray(targets).reshape(-1, 4),
                                           locations)
        self._rpn_grads = (dscores.reshape(scores.shape), ddeltas.reshape(deltas.shape))
        return terms

    def predict(self, images, rois):
        """Test-time outputs: class probabilities (R, K+1) (softmax, ``cls_prob``) and deltas (R, 4(K+1))."""
        scores, deltas = self.forward(images, rois, train=False)
        return softmax(scores), deltas

    # --------------------------------------------------------------------------------------- loss, backward
    def loss(self, scores, deltas, labels, bbox_targets, bbox_weights=None, bbox_loss_weight: float = 1.0):
        """:func:`multitask_loss` of the outputs; remembers its gradients for :meth:`backward`.

        Returns:
            :class:`LossTerms` (total, cls, bbox).
        """
        xp = self.xp
        terms, dscores, ddeltas = multitask_loss(scores, deltas, xp.asarray(labels), bbox_targets, bbox_weights,
                                                 bbox_loss_weight)
        self._loss_grads = (dscores, ddeltas)
        return terms

    def backward(self, dscores=None, ddeltas=None):
        """Backpropagate through the whole model, filling every trainable layer's ``grads``.

        Args:
            dscores: (R, K+1) gradient of the loss with respect to scores; default: from the last :meth:`loss`.
            ddeltas: (R, 4(K+1)) likewise for deltas.
        """
        if dscores is None and ddeltas is None:
            if self._loss_grads is None:
                raise RuntimeError("backward() without gradients needs a loss() after the forward")
            (dscores, ddeltas), self._loss_grads = self._loss_grads, None
        dfeatures = self.head_backward(dscores, ddeltas)
        if self._rpn_grads is not None:           # the RPN read the same feature map: the gradients add
            (drpn_scores, drpn_deltas), self._rpn_grads = self._rpn_grads, None
            dfeatures = _add(dfeatures, self.rpn.backward(drpn_scores, drpn_deltas))
        self.backbone.backward(dfeatures)

    def head_backward(self, dscores, ddeltas):
        """The head's backward; returns the gradient of the conv feature map (N, C, h, w), or None if not needed."""
        d = _add(self.cls_score.backward(dscores), self.bbox_pred.backward(ddeltas))   # both heads read fc7's output
        for layer in reversed(self.trunk[1:]):    # drop7, relu7, fc7, drop6, relu6, fc6
            d = layer.backward(d)
        return self.roi_pool5.backward(d)         # each cell's gradient goes to the input its bin picked (Eq. 4)


def build_model(name: str, num_classes: int, seed: int = 0, dtype=np.float32, init: bool = True, rpn=None,
                **overrides) -> FastRCNN:
    """A Fast R-CNN detector with a registered backbone.

    Args:
        name: ``"tiny"``, ``"caffenet"``, ``"vgg_cnn_m_1024"`` or ``"vgg16"``.
        num_classes: classes including background (K + 1).
        seed: initialisation and dropout seed.
        dtype: parameter dtype.
        init: False: all-zero weights, to be loaded (cheap even for VGG16's 138M parameters).
        rpn: None, or the settings of a Region Proposal Network to add (``{}`` for the defaults; see
            :meth:`FastRCNN.add_rpn`).
        **overrides: backbone settings, e.g. ``channels=(8, 16, 32, 64, 64)``, ``roi_size=5``, ``fc_width=256``,
            ``frozen=("conv1",)``, ``dropout=0.25`` (see :class:`~minircnn.models.backbones.BackboneSpec`).
    """
    return FastRCNN(get_spec(name, **overrides), num_classes, seed=seed, dtype=dtype, init=init, rpn=rpn)
