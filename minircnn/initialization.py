"""Where fine-tuning starts (paper Sec. 2.2, "Initializing from pre-trained networks"): the detector built from a
pretrained classifier, from converted ImageNet weights, from one of our checkpoints, or from random weights; and
which of its layers stay frozen.

Used by :mod:`minircnn.train` (``--weights``, ``--frozen``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def initial_model(config, num_classes, progress: bool = True):
    """The detector before fine-tuning, and its preprocessing.

    ``pretrained`` / a classifier file: :func:`~minircnn.models.from_classifier` (the paper's three
    transformations). Backbone weights (an ``.npz``): its conv, fc6 and fc7 parameters are loaded by name into a
    fresh detector (the heads stay random). A ``checkpoint.npz`` of ours: every parameter, the heads ``cls_score``
    and ``bbox_pred`` included when they fit this dataset's number of classes (stage-wise training, Table 6, trains
    bbox_pred on top of a classification-only detector; its targets are normalised with this run's statistics, the
    same as the checkpoint's when the data and config are). ``none``: random initialisation.
    """
    from .checkpoint import detector_state
    from .data import PREPROCESSING_PRESETS, Preprocessing
    from .models import Classifier, FastRCNN, build_model, from_classifier
    from .nn.network import StateDictError
    preprocessing = PREPROCESSING_PRESETS[config.preprocessing]
    if config.weights == "none":
        if config.backbone != "tiny":
            print(f"warning: {config.backbone} from random weights: with {config.preprocessing} pixels (0-255) the "
                  f"first loss is far above ln(K+1) and lr {config.base_lr} diverges within a few steps; the paper "
                  "starts from ImageNet weights (python -m minircnn.weights convert, README 'Using ImageNet weights')",
                  file=sys.stderr)
        return build_model(config.backbone, num_classes, seed=config.seed, **_head_overrides(config)), preprocessing
    if config.weights == "pretrained":
        from .pretrain import ensure_pretrained
        path = ensure_pretrained(progress=progress)
    else:
        path = Path(config.weights)
        if not path.is_file():
            raise SystemExit(f"--weights {path}: no such file")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if "checksum" in arrays:               # ImageNet weights from `python -m minircnn.weights convert`
        from .weights import WeightsError, verify_checksum
        try:
            verify_checksum(arrays, str(path))
        except WeightsError as e:
            raise SystemExit(str(e)) from None
        if "arch" in arrays and str(arrays["arch"]) != config.backbone:
            raise SystemExit(f"{path}: ImageNet weights of {arrays['arch']}, but the config's backbone is "
                             f"{config.backbone} (pick the matching --preset)")
    from_detector = "model_config" in arrays
    if from_detector:                      # a detector checkpoint of ours: start from its parameters
        architecture, arrays, preprocessing = detector_state(arrays)
    elif "preprocessing" in arrays:
        preprocessing = Preprocessing.from_dict(json.loads(str(arrays.pop("preprocessing"))))
    try:
        if "classifier_config" in arrays:
            classifier = Classifier.from_config(json.loads(str(arrays.pop("classifier_config"))), init=False)
            params = {k: v for k, v in arrays.items() if "." in k}
            classifier.load_state_dict(params, source=str(path))
            if classifier.spec.name != config.backbone:
                raise SystemExit(f"{path}: a {classifier.spec.name} classifier, but the config's backbone is "
                                 f"{config.backbone}")
            return (from_classifier(classifier, num_classes, seed=config.seed, roi_size=config.roi_size,
                                    dropout=config.dropout), preprocessing)
        if from_detector:                  # its own architecture (grid, dropout), e.g. an older 4x4 tiny detector
            if architecture["spec"]["name"] != config.backbone:
                raise SystemExit(f"{path}: a {architecture['spec']['name']} detector, but the config's backbone "
                                 f"is {config.backbone}")
            model = FastRCNN.from_config({**architecture, "num_classes": num_classes}, seed=config.seed)
        else:
            model = build_model(config.backbone, num_classes, seed=config.seed, **_head_overrides(config))
        # transformation 2 (Sec. 2.2): an ImageNet classifier's last layer (fc8) gives way to the two new heads;
        # a detector's heads are kept unless they were made for another number of classes
        own = {p.name: p.value.shape for p in model.parameters()}
        params = {k: v for k, v in arrays.items() if "." in k and not k.startswith("fc8.") and (
            not k.startswith(("cls_score.", "bbox_pred.")) or (from_detector and own.get(k) == v.shape))}
        _, unexpected = model.load_state_dict(params, strict=False, source=str(path))
        if unexpected or not params:
            raise SystemExit(f"{path}: parameters {unexpected[:5] or 'none'} do not belong to a {config.backbone} "
                             "Fast R-CNN")
        return model, preprocessing
    except StateDictError as e:
        raise SystemExit(str(e)) from None


def _head_overrides(config) -> dict:
    """The config's RoI grid and dropout as backbone-spec overrides (only those it sets)."""
    return {key: value for key, value in (("roi_size", config.roi_size), ("dropout", config.dropout))
            if value is not None}


def apply_frozen(model, names):
    """Freeze exactly the layers ``names`` (every other layer with parameters trains)."""
    unknown = sorted(set(names) - {layer.name for layer in model.layers if layer.params})
    if unknown:
        raise SystemExit(f"frozen names {unknown}, which are not layers with parameters of this model; known: "
                         + ", ".join(layer.name for layer in model.layers if layer.params))
    model.freeze([layer.name for layer in model.layers if layer.params], False)
    model.freeze(names)
