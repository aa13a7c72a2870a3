"""Writing a generated dataset in VOC layout: the built-in shapes set (:mod:`minircnn.data.shapes`) and the photos
set (:mod:`minircnn.data.photos`) render images differently and write them the same way.

The layout is what :class:`~minircnn.data.voc.VOCDataset` reads: ``Annotations/<id>.xml`` (1-based inclusive
corners, like the devkit's files), ``JPEGImages/<id>.jpg``, ``ImageSets/Main/<split>.txt``. Image ids are
``000000``, ``000001``, ... in split order. Image ``i`` of a split is rendered from
``numpy.random.default_rng((seed, split key, i))`` alone, so the same seed writes byte-identical files and a split
does not depend on the size of the others.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

JPEG_QUALITY = 90
SPLIT_KEYS = {"trainval": 0, "test": 1}


def annotation_xml(image_id: str, item, class_names, name: str) -> str:
    """The VOC XML of one image.

    Args:
        image_id: the file stem.
        item: has ``image`` (H, W, 3), ``boxes`` (n, 4) 0-based inclusive, ``labels`` (n,) in 1..K, ``difficult``
            (n,) bool and, optionally, ``truncated`` (n,) bool.
        class_names: label k is ``class_names[k - 1]``.
        name: the dataset's name (the ``folder`` and ``database`` fields).
    """
    height, width = item.image.shape[:2]
    truncated = getattr(item, "truncated", np.zeros(len(item.boxes), bool))
    objects = "".join(
        f"\t<object>\n\t\t<name>{class_names[label - 1]}</name>\n\t\t<pose>Unspecified</pose>\n"
        f"\t\t<truncated>{int(trunc)}</truncated>\n\t\t<difficult>{int(diff)}</difficult>\n\t\t<bndbox>\n"
        + "".join(f"\t\t\t<{tag}>{int(c) + 1}</{tag}>\n" for tag, c in zip(("xmin", "ymin", "xmax", "ymax"), box))
        + "\t\t</bndbox>\n\t</object>\n"
        for box, label, diff, trunc in zip(item.boxes, item.labels, item.difficult, truncated))
    return (f"<annotation>\n\t<folder>{name}</folder>\n\t<filename>{image_id}.jpg</filename>\n"
            f"\t<source>\n\t\t<database>minircnn {name}</database>\n\t</source>\n"
            f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
            f"\t<segmented>0</segmented>\n{objects}</annotation>\n")


def write_generated_dataset(out, seed: int, counts: dict, render, class_names, name: str, manifest: tuple,
                            progress: bool = True) -> Path:
    """Render and write every image of every split into the (empty or new) folder ``out``.

    Args:
        out: destination folder.
        seed: the random seed.
        counts: ``{split: number of images}``, in writing order (keys of :data:`SPLIT_KEYS`).
        render: ``render(rng, split, i)`` -> the item of image ``i`` of ``split`` (see :func:`annotation_xml`).
        class_names: the foreground names (label k is ``class_names[k - 1]``).
        name: the dataset's name, for the XML and the progress bar.
        manifest: ``(file name, dict)`` written as JSON at the end (what generated the folder).
        progress: show a tqdm progress bar.

    Returns:
        ``Path(out)``.
    """
    out = Path(out)
    if min(counts.values()) < 1:
        raise ValueError(f"need at least one image per split, got {', '.join(f'{k}={v}' for k, v in counts.items())}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} is not an empty folder; generate into a new folder")
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=sum(counts.values()), desc=f"{name} dataset (seed {seed})", unit="img", disable=not progress)
    next_id = 0
    for split, count in counts.items():
        ids = []
        for i in range(count):
            item = render(np.random.default_rng([int(seed), SPLIT_KEYS[split], i]), split, i)
            image_id = f"{next_id:06d}"
            next_id += 1
            # Fixed quality and subsampling, no EXIF/ICC: the bytes depend on the pixels only.
            Image.fromarray(item.image).save(out / "JPEGImages" / f"{image_id}.jpg", format="JPEG",
                                             quality=JPEG_QUALITY, subsampling="4:2:0", optimize=False)
            (out / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(image_id, item, class_names, name),
                                                                 encoding="utf-8")
            ids.append(image_id)
            bar.update()
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{x}\n" for x in ids), encoding="utf-8")
    bar.close()
    file_name, content = manifest
    (out / file_name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return out


def add_generator_arguments(parser, splits: dict) -> None:
    """The ``--seed``, ``--trainval`` and ``--test`` flags of a generator's command line (defaults from ``splits``)."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--trainval", type=int, default=splits["trainval"], metavar="N",
                        help=f"number of trainval images (default: {splits['trainval']})")
    parser.add_argument("--test", type=int, default=splits["test"], metavar="M",
                        help=f"number of test images (default: {splits['test']})")
