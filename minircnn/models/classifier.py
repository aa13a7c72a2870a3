"""An image classifier with the detector's backbone, and the paper's three transformations that turn it into one.

The paper never trains a detector from scratch (Sec. 2.2, "Initializing from pre-trained networks"): it takes an
ImageNet classifier -- convs, a last max pool, fc6, fc7, and a final fc + softmax over 1000 classes -- and

1. replaces the last max pooling layer by a RoI pooling layer whose grid H x W matches what fc6 was trained on
   (7 x 7 for VGG16);
2. replaces the last fc layer and the softmax by the two sibling layers: a fc + softmax over K + 1 categories and
   the category-specific bounding-box regressors;
3. makes the network take two inputs: a list of images and a list of RoIs in those images.

:class:`Classifier` is that starting point for our backbones (pretraining trains it on a stand-in for ImageNet),
and :func:`from_classifier` is the three transformations, in one function.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..nn import Dropout, Linear, MaxPool2d, Network, ReLU, gaussian_, he_normal_, plan_backward
from .backbones import BackboneSpec, build_backbone, get_spec
from .fast_rcnn import BBOX_PRED_STD, CLS_SCORE_STD, FastRCNN, softmax

FC8_STD = 0.01


class Classifier(Network):
    """convs -> pool5 (max, k x k, stride k) -> fc6, relu6, drop6 -> fc7, relu7, drop7 -> fc8 -> softmax.

    Args:
        spec: backbone architecture (its ``roi_size`` sets the default input size).
        num_classes: M, the classes of the classification task.
        input_size: side of the square input crops; default ``stride * pool_kernel * spec.roi_size`` (224 for both
            backbones), so that pool5's output grid equals ``spec.roi_size``.
        pool_kernel: pool5's kernel and stride (2 in VGG16).
        seed: seeds the initial weights and the dropout masks.
        dtype: parameter dtype.
        init: False: zero weights, to be loaded.

    Attributes:
        grid: pool5's output size for ``input_size`` inputs: the RoI pool grid of the detector made from this
            classifier.
    """

    def __init__(self, spec: BackboneSpec, num_classes: int, input_size: int | None = None, pool_kernel: int = 2,
                 seed: int = 0, dtype=np.float32, init: bool = True):
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(init_seq) if init else None
        self.spec, self.num_classes = spec, int(num_classes)
        self.backbone = build_backbone(spec, dtype, rng)
        self.input_size = int(input_size or self.backbone.stride * pool_kernel * spec.roi_size)
        self.pool5 = MaxPool2d("pool5", kernel_size=pool_kernel, stride=pool_kernel)
        _, c, gh, gw = self.pool5.output_shape(self.backbone.output_shape((1, spec.in_channels, self.input_size,
                                                                           self.input_size)))
        self.grid = gh
        fc6_out, fc7_out = spec.fc_widths
        self.fc6, self.relu6, self.drop6 = (Linear("fc6", c * gh * gw, fc6_out, dtype), ReLU("relu6"),
                                            Dropout("drop6", spec.dropout))
        self.fc7, self.relu7, self.drop7 = (Linear("fc7", fc6_out, fc7_out, dtype), ReLU("relu7"),
                                            Dropout("drop7", spec.dropout))
        self.fc8 = Linear("fc8", fc7_out, self.num_classes, dtype)
        if init:
            he_normal_(self.fc6, rng)
            he_normal_(self.fc7, rng)
            gaussian_(self.fc8, FC8_STD, rng)
        self.top = [self.pool5, self.fc6, self.relu6, self.drop6, self.fc7, self.relu7, self.drop7, self.fc8]
        super().__init__(self.backbone.layers + self.top)
        self.freeze(name for name in spec.frozen if name in ("fc6", "fc7"))
        self.set_dropout_rng(np.random.default_rng(dropout_seq))
        self.pool_kernel = pool_kernel
        self._dscores = None

    @property
    def config(self) -> dict:
        """Enough to rebuild the classifier (:meth:`from_config`): classes, input size, pool5 kernel, spec."""
        return {"num_classes": self.num_classes, "input_size": self.input_size, "pool_kernel": self.pool_kernel,
                "spec": self.spec.to_dict()}

    @classmethod
    def from_config(cls, config: dict, seed: int = 0, dtype=np.float32, init: bool = True) -> "Classifier":
        return cls(BackboneSpec.from_dict(config["spec"]), config["num_classes"], input_size=config["input_size"],
                   pool_kernel=config["pool_kernel"], seed=seed, dtype=dtype, init=init)

    def forward(self, images, train: bool = True, slices: int = 1):
        """Class scores (N, M) of (N, 3, input_size, input_size) images (before the softmax); the convs run the
        batch in ``slices`` parallel slices (:meth:`~minircnn.nn.Sequential.forward`)."""
        images = self.xp.asarray(images, dtype=self.dtype)
        if images.ndim != 4 or images.shape[2:] != (self.input_size, self.input_size):
            raise ValueError(f"the classifier takes (N, {self.spec.in_channels}, {self.input_size}, "
                             f"{self.input_size}) images (fc6 is sized for them), got {tuple(images.shape)}")
        plan_backward(self.top, plan_backward(self.backbone.layers))
        x = self.backbone.forward(images, train=train, slices=slices)
        for layer in self.top:
            x = layer.forward(x, train=train)
        return x

    def predict(self, images):
        """Class probabilities (N, M)."""
        return softmax(self.forward(images, train=False))

    def loss(self, scores, labels) -> float:
        """Mean softmax log loss of (N, M) scores for (N,) int labels; remembers the gradient for :meth:`backward`."""
        loss, self._dscores = F.softmax_cross_entropy(scores, self.xp.asarray(labels))
        return loss

    def backward(self, dscores=None):
        """Backpropagate (N, M) score gradients (default: those of the last :meth:`loss`) through the whole net."""
        if dscores is None:
            if self._dscores is None:
                raise RuntimeError("backward() without gradients needs a loss() after the forward")
            dscores, self._dscores = self._dscores, None
        d = dscores
        for layer in reversed(self.top):
            d = layer.backward(d)
        self.backbone.backward(d)


def build_classifier(name: str, num_classes: int, seed: int = 0, dtype=np.float32, init: bool = True,
                     input_size: int | None = None, pool_kernel: int = 2, **overrides) -> Classifier:
    """A :class:`Classifier` with a registered backbone (``"tiny"``, ``"vgg16"``) and optional overrides."""
    return Classifier(get_spec(name, **overrides), num_classes, input_size=input_size, pool_kernel=pool_kernel,
                      seed=seed, dtype=dtype, init=init)


def resize_fc6(weight, channels: int, grid: int, roi_size: int):
    """fc6's weights for a ``roi_size`` x ``roi_size`` RoI grid, from weights trained on a ``grid`` x ``grid`` one.

    fc6 sees its input as ``channels`` maps of ``grid x grid`` cells. Each output's weights are resampled as such
    maps (bilinear, cell centres aligned, :func:`skimage.transform.resize`) and scaled by ``(grid / roi_size)**2``:
    a finer grid puts about ``(roi_size / grid)**2`` cells where one was, holding about the same max-pooled values,
    so the scaling keeps fc6's outputs where pretraining left them.

    Args:
        weight: (out, channels * grid * grid) array, fc6's weight in :class:`~minircnn.nn.Linear`'s layout.
        channels, grid: the input layout it was trained for.
        roi_size: the new grid.

    Returns:
        (out, channels * roi_size * roi_size) array of the same dtype.
    """
    from skimage.transform import resize
    out = weight.shape[0]
    if weight.shape != (out, channels * grid * grid):
        raise ValueError(f"fc6 weight of shape {weight.shape} does not fit {channels} channels of {grid}x{grid}")
    maps = np.asarray(weight, dtype=np.float64).reshape(out * channels, grid, grid).transpose(1, 2, 0)
    resized = resize(maps, (roi_size, roi_size), order=1, mode="edge", anti_aliasing=False)
    resized = resized.transpose(2, 0, 1).reshape(out, channels * roi_size * roi_size)
    return (resized * (grid / roi_size) ** 2).astype(weight.dtype)


def from_classifier(classifier: Classifier, num_classes: int, seed: int = 0, roi_size: int | None = None,
                    dropout: float | None = None) -> FastRCNN:
    """The paper's three transformations (Sec. 2.2): a pretrained classifier becomes a Fast R-CNN detector.

    Args:
        classifier: the pretrained :class:`Classifier` (left unchanged).
        num_classes: the detector's classes including background, K + 1.
        seed: seeds the new heads' Gaussian initialisation and the detector's dropout masks.
        roi_size: the RoI grid; None: pool5's output grid (the paper's rule). Another size keeps the convs and fc7
            and resamples fc6's weights to the new grid (:func:`resize_fc6`): our classifier is pretrained on
            64-pixel crops (a 4x4 grid), and a 7x7 grid of the same RoI sees its object in finer cells.
        dropout: drop probability of drop6 and drop7; None: the spec's.

    Returns:
        A :class:`~minircnn.models.fast_rcnn.FastRCNN` on the classifier's device and dtype, with the classifier's
        conv, fc6 and fc7 weights, the spec's frozen flags, and freshly initialised heads.
    """
    # 1. The last max pool becomes a RoI pool with pool5's output grid, so fc6 sees inputs of the size it was
    #    trained on: the RoI pool divides each RoI into grid x grid bins wherever it lies and however large it is.
    roi_size = classifier.grid if roi_size is None else int(roi_size)
    changes = {} if dropout is None else {"dropout": float(dropout)}
    spec = classifier.spec.with_overrides(roi_size=roi_size, **changes)
    detector = FastRCNN(spec, num_classes, seed=seed, dtype=classifier.dtype, init=False)
    pretrained = classifier.state_dict()
    kept = {name: value for name, value in pretrained.items() if not name.startswith("fc8.")}
    if roi_size != classifier.grid:
        kept["fc6.weight"] = resize_fc6(kept["fc6.weight"], spec.out_channels, classifier.grid, roi_size)
    missing, _ = detector.load_state_dict(kept, strict=False, source="the classifier")
    assert set(missing) == {f"{head.name}.{key}" for head in detector.heads for key in head.params}, missing

    # 2. fc8 and the softmax over the classifier's M classes give way to the two sibling heads: cls_score, a fc with
    #    K + 1 outputs followed by a softmax, and bbox_pred, the 4(K + 1) class-specific box regressors; both start
    #    from Gaussian noise (std 0.01 and 0.001), biases 0 (docs/reference.md §2).
    rng = np.random.default_rng(seed)
    gaussian_(detector.cls_score, CLS_SCORE_STD, rng)
    gaussian_(detector.bbox_pred, BBOX_PRED_STD, rng)

    # 3. Two inputs: FastRCNN.forward(images, rois) takes the image batch and the RoIs, (batch index, x1, y1, x2, y2).
    if classifier.xp is not np:
        detector.to("gpu")
    return detector
