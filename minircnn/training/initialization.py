"""Where fine-tuning starts (paper Sec. 2.2, "Initializing from pre-trained networks"), and which layers stay frozen.

``--weights`` names the source; each kind of file has one loader:

============================  ========================================================================================
source                        loader
============================  ========================================================================================
``pretrained``                the tiny classifier pretrained on the generated stand-in (:mod:`.pretrain`, made on first
                              use), then :func:`from_classifier_file`
a classifier ``.npz``         :func:`from_classifier_file`: the paper's three transformations
                              (:func:`~minircnn.models.from_classifier`)
ImageNet weights ``.npz``     :func:`from_imagenet_file`: converted by ``python -m minircnn.weights``; checksum and
                              architecture checked, conv/fc6/fc7 loaded by name, fc8 replaced by the two new heads
a checkpoint of ours          :func:`from_detector_file`: every parameter; the heads too when they fit this dataset's
                              classes (stage-wise training, Table 6, trains bbox_pred on a classification-only
                              detector)
a plain parameters ``.npz``   :func:`from_parameters_file`: parameters loaded by name into a fresh detector
``none``                      random initialisation (:func:`~minircnn.models.build_model`)
============================  ========================================================================================

Every loader raises ``ValueError`` naming the file when it does not fit the config's backbone.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..data import PREPROCESSING_PRESETS, Preprocessing
from ..io import read_npz
from ..models import Classifier, FastRCNN, build_model, from_classifier


def initial_model(config, num_classes, progress: bool = True):
    """The detector before fine-tuning, and its preprocessing, from ``config.weights`` (see the module table).

    Args:
        config: a :class:`~minircnn.training.config.TrainConfig` (``weights``, ``backbone``, ``seed``, ``roi_size``,
            ``dropout``, ``preprocessing``).
        num_classes: K + 1, background included.
        progress: show a progress bar if the pretrained classifier has to be made first.

    Returns:
        (:class:`~minircnn.models.FastRCNN`, :class:`~minircnn.data.transforms.Preprocessing`).

    Raises:
        FileNotFoundError: the weights file is missing.
        ValueError: the file is not one of the kinds above, or does not fit ``config.backbone``.
    """
    if config.weights == "none":
        if config.backbone != "tiny":
            warnings.warn(f"{config.backbone} from random weights: with {config.preprocessing} pixels (0-255) the "
                          f"first loss is far above ln(K+1) and lr {config.base_lr} diverges within a few steps; the "
                          "paper starts from ImageNet weights (python -m minircnn.weights convert, README 'Using "
                          "ImageNet weights')", stacklevel=2)
        return (build_model(config.backbone, num_classes, seed=config.seed, **_head_overrides(config)),
                PREPROCESSING_PRESETS[config.preprocessing])
    if config.weights == "pretrained":
        from .pretrain import ensure_pretrained
        path = ensure_pretrained(progress=progress)
    else:
        path = Path(config.weights)
        if not path.is_file():
            raise FileNotFoundError(f"--weights {path}: no such file")
    arrays = read_npz(path)
    return LOADERS[weights_kind(arrays)](arrays, path, config, num_classes)


def weights_kind(arrays) -> str:
    """Which loader reads a weights file: ``"classifier"``, ``"imagenet"``, ``"detector"`` or ``"parameters"``, from
    the metadata entries each writer puts in (``classifier_config``, ``checksum``, ``model_config``)."""
    for key, kind in (("classifier_config", "classifier"), ("model_config", "detector"), ("checksum", "imagenet")):
        if key in arrays:
            return kind
    return "parameters"


def from_classifier_file(arrays, path, config, num_classes):
    """A classifier of ours (``minircnn.pretrain``) turned into a detector by the paper's three transformations."""
    classifier = Classifier.from_config(json.loads(str(arrays["classifier_config"])), init=False)
    classifier.load_state_dict(_params(arrays), source=str(path))
    _check_backbone(path, "classifier", classifier.spec.name, config)
    model = from_classifier(classifier, num_classes, seed=config.seed, roi_size=config.roi_size,
                            dropout=config.dropout)
    return model, _preprocessing(arrays, config)


def from_imagenet_file(arrays, path, config, num_classes):
    """Converted ImageNet weights: checksum and architecture checked, then loaded by name (fc8 dropped)."""
    from ..models.imagenet_weights import verify_checksum
    verify_checksum(arrays, str(path))
    if "arch" in arrays:
        _check_backbone(path, "ImageNet weights file", str(arrays["arch"]), config)
    return from_parameters_file(arrays, path, config, num_classes)


def from_detector_file(arrays, path, config, num_classes):
    """A checkpoint of ours: its own architecture (grid, dropout; e.g. an older 4x4 tiny detector) and every
    parameter, the heads included when they were made for this number of classes."""
    from .checkpoint import detector_state
    architecture, params, preprocessing = detector_state(arrays)
    _check_backbone(path, "detector checkpoint", architecture["spec"]["name"], config)
    model = FastRCNN.from_config({**architecture, "num_classes": num_classes}, seed=config.seed)
    own = {p.name: p.value.shape for p in model.parameters()}
    _load_by_name(model, {k: v for k, v in params.items()
                          if not k.startswith(("cls_score.", "bbox_pred.")) or own.get(k) == v.shape}, path, config)
    return model, preprocessing


def from_parameters_file(arrays, path, config, num_classes):
    """Backbone parameters by name into a fresh detector; the heads stay random (transformation 2 of Sec. 2.2: an
    ImageNet classifier's last layer, fc8, gives way to the two new heads)."""
    model = build_model(config.backbone, num_classes, seed=config.seed, **_head_overrides(config))
    _load_by_name(model, {k: v for k, v in _params(arrays).items()
                          if not k.startswith(("fc8.", "cls_score.", "bbox_pred."))}, path, config)
    return model, _preprocessing(arrays, config)


LOADERS = {"classifier": from_classifier_file, "imagenet": from_imagenet_file, "detector": from_detector_file,
           "parameters": from_parameters_file}


def _params(arrays) -> dict:
    """The parameter arrays of a weights file (dotted names such as ``conv1.weight``; metadata has no dot)."""
    return {k: v for k, v in arrays.items() if "." in k}


def _preprocessing(arrays, config) -> Preprocessing:
    """The file's own pixel convention when it carries one, else the config's."""
    if "preprocessing" in arrays:
        return Preprocessing.from_dict(json.loads(str(arrays["preprocessing"])))
    return PREPROCESSING_PRESETS[config.preprocessing]


def _check_backbone(path, what, name, config) -> None:
    if name != config.backbone:
        raise ValueError(f"{path}: a {name} {what}, but the config's backbone is {config.backbone} (pick the "
                         "matching --preset)")


def _load_by_name(model, params, path, config) -> None:
    _, unexpected = model.load_state_dict(params, strict=False, source=str(path))
    if unexpected or not params:
        raise ValueError(f"{path}: parameters {unexpected[:5] or 'none'} do not belong to a {config.backbone} "
                         "Fast R-CNN")


def _head_overrides(config) -> dict:
    """The config's RoI grid and dropout as backbone-spec overrides (only those it sets)."""
    return {key: value for key, value in (("roi_size", config.roi_size), ("dropout", config.dropout))
            if value is not None}


def apply_frozen(model, names):
    """Freeze exactly the layers ``names`` (every other layer with parameters trains).

    Raises:
        ValueError: a name is not a layer with parameters of this model (the message lists the known ones).
    """
    known = [layer.name for layer in model.layers if layer.params]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"frozen: {unknown} are not layers with parameters of this model; known: "
                         + ", ".join(known))
    model.freeze(known, False)
    model.freeze(names)
