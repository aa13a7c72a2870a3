"""The lessons' one yardstick: how two detectors' VOC07 mAPs differ on the same test images, judged by one rule.

:func:`paired_map_difference` measures (a paired bootstrap over the test images, with the spread over training
seeds), :func:`difference_sign` applies the rule, :func:`difference_verdict` writes the sentence. For training runs,
:func:`minircnn.lab.experiments.compare_runs` detects the runs on their test split and calls these.
"""
from __future__ import annotations


def paired_map_difference(dataset, first, second, samples: int = 200, seed: int = 0, iou_thresh: float = 0.5,
                          same_networks: bool = False) -> dict:
    """How two detectors' VOC07 mAPs differ on the same test images: a paired bootstrap over the images, with the
    spread over training seeds. The one yardstick of every lesson's verdict (:func:`compare_runs` wraps it for runs).

    Each side may hold several runs of the same recipe (different ``--seed``); the statistic is the mean mAP of the
    first side's runs minus the mean of the second's. Every resample draws the test images once (with replacement)
    and scores *both* sides on that same draw, so an image that is hard for both cancels out.

    The rule (:func:`difference_verdict`): the sides differ when the 95% interval of the resampled difference
    excludes zero *and* the difference exceeds twice the seed-to-seed standard deviation of a single run's mAP, or
    of a single network's difference when both sides are the same networks (when a side has at least two runs).

    Args:
        dataset: the test split (:class:`~minircnn.data.VOCDataset`), for its ground truth.
        first, second: lists of detections ``(boxes, labels, scores)`` (one entry per image each), one item per run.
        samples: number of resamples.
        seed: seed of the resampling.
        iou_thresh: the IoU a detection needs to count (0.5 for VOC07; 0.7 for a stricter localisation test).
        same_networks: the i-th entries of both sides are the same trained network tested two ways (with and without
            box regression, compressed or not, another test protocol, ...). How far a network moves from seed to
            seed then cancels in each difference, so ``seed_sd`` is the spread of the per-seed differences instead.

    Returns:
        dict: ``difference`` (on the test split itself), ``low``, ``high`` (2.5 and 97.5 percentiles of the
        resampled difference), ``first`` and ``second`` (each run's mAP), ``seed_sd`` (the pooled standard deviation
        of a run's mAP over seeds; with ``same_networks``, that of the per-seed differences; None with one run per
        side).
    """
    import numpy as np

    from ..evaluation import eval_detection_voc
    notes = [dataset.annotation(i) for i in range(len(dataset))]

    def voc_map(found, pick):
        boxes, labels, scores = found
        return eval_detection_voc([boxes[i] for i in pick], [labels[i] for i in pick], [scores[i] for i in pick],
                                  [notes[i].boxes for i in pick], [notes[i].labels for i in pick],
                                  [notes[i].difficult for i in pick], iou_thresh=iou_thresh,
                                  num_classes=dataset.num_classes)["map"]

    def difference(pick):
        return np.mean([voc_map(f, pick) for f in first]) - np.mean([voc_map(f, pick) for f in second])

    everything = np.arange(len(notes))
    maps = {"first": [voc_map(f, everything) for f in first], "second": [voc_map(f, everything) for f in second]}
    rng = np.random.default_rng(seed)
    resampled = [difference(rng.integers(0, len(notes), len(notes))) for _ in range(samples)]
    if same_networks:
        if len(first) != len(second):
            raise ValueError(f"same_networks needs one entry per network on each side, got {len(first)} and "
                             f"{len(second)}")
        per_seed = np.subtract(maps["first"], maps["second"])
        seed_sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
    else:
        deviations = [np.asarray(m) - np.mean(m) for m in maps.values() if len(m) > 1]
        dof = sum(len(d) - 1 for d in deviations)
        seed_sd = float(np.sqrt(sum(float(d @ d) for d in deviations) / dof)) if dof else None
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {"difference": float(np.mean(maps["first"]) - np.mean(maps["second"])), "low": float(low),
            "high": float(high), "first": [float(m) for m in maps["first"]],
            "second": [float(m) for m in maps["second"]], "seed_sd": seed_sd, "same_networks": same_networks}


def difference_sign(result: dict) -> int:
    """The rule of every verdict, on :func:`paired_map_difference`'s numbers: +1 if the first side is better, -1 if
    worse, 0 if they do not differ beyond noise -- the 95% interval holds zero, or the difference is within twice
    the seed-to-seed standard deviation."""
    d, low, high, sd = result["difference"], result["low"], result["high"], result["seed_sd"]
    if low <= 0 <= high or (sd is not None and abs(d) <= 2 * sd):
        return 0
    return 1 if d > 0 else -1


def difference_verdict(result: dict, first: str, second: str) -> str:
    """One sentence from :func:`paired_map_difference`'s numbers, by the rule of :func:`difference_sign`."""
    d, low, high, sd = result["difference"], result["low"], result["high"], result["seed_sd"]
    of = " of the difference" if result.get("same_networks") else ""
    spread = "" if sd is None else f", seed-to-seed sd{of} {sd:.3f}"
    numbers = f"(difference {d:+.3f}, 95% interval over test images [{low:+.3f}, {high:+.3f}]{spread})"
    sign = difference_sign(result)
    if sign == 0:
        return f"{first} and {second} do not differ beyond noise {numbers}."
    return f"{first} is {'better' if sign > 0 else 'worse'} than {second} {numbers}."
