"""Training checkpoints: one ``.npz`` with everything needed to resume a run or to use the detector.

Arrays in the file (all plain arrays: it loads with ``np.load(path)``, whose default is ``allow_pickle=False``):

=======================  ==========================================================================================
``param/<name>``         every model parameter, e.g. ``param/conv1.weight`` (float32)
``solver/iteration``     SGD steps taken (int64)
``solver/velocity.<n>``  the momentum buffer of every trained parameter
``iteration``            the same step count, at the top level for readers (int64)
``rng/seed``             the run's seed (int64). Every random draw of iteration i -- the images of the step, their
                         scales, the sampled RoIs, the dropout masks -- comes from a generator seeded with
                         ``(seed, stream, i)`` (:mod:`minircnn.data.sampler`), so ``(seed, iteration)`` *is* the whole
                         RNG state: resuming reproduces the uninterrupted run exactly.
``config``               the resolved :class:`~minircnn.training.config.TrainConfig` as JSON (a 0-d string array)
``model_config``         the architecture, JSON (:attr:`FastRCNN.config`)
``class_names``          the foreground class names (class k is ``class_names[k - 1]``)
``bbox_means/stds``      (K+1, 4) float64 target normalisation (docs/reference.md §5); test time undoes it
``preprocessing``        the weights' pixel convention, JSON (:class:`~minircnn.data.transforms.Preprocessing`)
=======================  ==========================================================================================

The content is a pure function of the run's state (no timestamps, sorted JSON), and the file is written to a
temporary name and renamed, so a run killed at any moment leaves either the previous checkpoint or the new one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..data.transforms import Preprocessing
from ..io import atomic_save_npz, read_npz
from ..models import FastRCNN
from .config import TrainConfig


class Checkpoint(NamedTuple):
    """A checkpoint read back (:func:`load_checkpoint`)."""
    model: FastRCNN
    solver_state: dict
    iteration: int
    seed: int
    config: TrainConfig
    class_names: tuple
    bbox_means: np.ndarray
    bbox_stds: np.ndarray
    preprocessing: Preprocessing


def _json_array(obj) -> np.ndarray:
    return np.array(json.dumps(obj, sort_keys=True))


def save_checkpoint(path, model, solver, config, class_names, bbox_means, bbox_stds, preprocessing) -> None:
    """Write the checkpoint of a run atomically (see the module docstring for the contents)."""
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"solver/{k}": v for k, v in solver.state_dict().items()})
    arrays.update(iteration=np.asarray(solver.iteration, dtype=np.int64),
                  **{"rng/seed": np.asarray(config.seed, dtype=np.int64)},
                  config=np.array(config.to_json()), model_config=_json_array(model.config),
                  class_names=np.array(list(class_names), dtype=str),
                  bbox_means=np.asarray(bbox_means, dtype=np.float64),
                  bbox_stds=np.asarray(bbox_stds, dtype=np.float64),
                  preprocessing=_json_array(preprocessing.to_dict()))
    atomic_save_npz(path, **arrays)


def detector_state(data: dict):
    """The detector inside a checkpoint's arrays (as ``np.load`` gives them): its architecture (``model_config``,
    :attr:`FastRCNN.config`), its parameters by name (the ``param/<name>`` arrays) and its
    :class:`~minircnn.data.transforms.Preprocessing`."""
    return (json.loads(str(data["model_config"])),
            {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")},
            Preprocessing.from_dict(json.loads(str(data["preprocessing"]))))


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` and rebuild its model (on the host, float32).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a minircnn checkpoint, or its parameters do not fit its architecture (the
            message names the file and the layer).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = read_npz(path)
    missing = {"model_config", "config", "class_names", "bbox_means", "bbox_stds", "preprocessing",
               "iteration"} - set(data)
    if missing:
        raise ValueError(f"{path} is not a minircnn training checkpoint: it lacks {sorted(missing)}")
    architecture, params, preprocessing = detector_state(data)
    model = FastRCNN.from_config(architecture, init=False)
    model.load_state_dict(params, source=str(path))
    solver_state = {k[len("solver/"):]: v for k, v in data.items() if k.startswith("solver/")}
    return Checkpoint(model, solver_state, int(data["iteration"]), int(data["rng/seed"]),
                      TrainConfig.from_dict(json.loads(str(data["config"]))),
                      tuple(str(c) for c in data["class_names"]), data["bbox_means"], data["bbox_stds"], preprocessing)


def load_config(path) -> TrainConfig:
    """Only the training config stored in a checkpoint (cheaper than :func:`load_checkpoint`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a minircnn checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = read_npz(path)
    if "config" not in data:
        raise ValueError(f"{path} is not a minircnn training checkpoint: it has no config")
    return TrainConfig.from_dict(json.loads(str(data["config"])))
