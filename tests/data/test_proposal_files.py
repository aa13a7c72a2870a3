"""--proposals FILE: precomputed proposal files (the original release's .mat, our .npz) for each split."""
import numpy as np
import pytest
import scipy.io

from minircnn import train
from minircnn.training.config import get_preset
from minircnn.data import VOCDataset, generate_shapes_dataset
from minircnn.data.proposal_files import is_proposal_file, save_proposals, split_proposal_file
from minircnn.data.proposals import proposals_for_split


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """2 trainval and 1 test shapes images."""
    root = tmp_path_factory.mktemp("voc") / "shapes"
    return generate_shapes_dataset(root, seed=6, trainval=2, test=1, progress=False)


def write_original_mat(path, dataset, boxes_xyxy0):
    """A file laid out like selective_search_data/voc_2007_<split>.mat: rows [y1 x1 y2 x2], 1-based, uint16."""
    cell = np.empty(len(boxes_xyxy0), dtype=object)
    for i, b in enumerate(boxes_xyxy0):
        cell[i] = (np.asarray(b)[:, [1, 0, 3, 2]] + 1).astype(np.uint16)
    images = np.empty(len(dataset.ids), dtype=object)
    images[:] = list(dataset.ids)
    scipy.io.savemat(path, {"boxes": cell, "images": images})


def test_is_proposal_file_tells_methods_from_files(tmp_path):
    assert not any(is_proposal_file(m) for m in ("ss-fast", "ss-quality", "dense"))
    assert all(is_proposal_file(f) for f in ("a/voc_{split}.mat", "x.npz", "x.mat", str(tmp_path)))


def test_a_template_and_a_folder_resolve_to_the_split_file(tmp_path):
    for name in ("voc_2007_trainval.mat", "voc_2007_test.mat", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert split_proposal_file(str(tmp_path / "voc_2007_{split}.mat"), "test") == tmp_path / "voc_2007_test.mat"
    assert split_proposal_file(tmp_path, "trainval") == tmp_path / "voc_2007_trainval.mat"
    with pytest.raises(FileNotFoundError, match="voc_2007_val.mat"):
        split_proposal_file(str(tmp_path / "voc_2007_{split}.mat"), "val")
    with pytest.raises(FileNotFoundError, match="no <prefix>_val.mat.*voc_2007_test.mat"):
        split_proposal_file(tmp_path, "val")
    (tmp_path / "test.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="several files for split 'test'"):
        split_proposal_file(tmp_path, "test")


def test_original_mat_files_are_read_for_each_split(voc, tmp_path):
    """The boxes [x1 y1 x2 y2] 0-based written as [y1 x1 y2 x2] 1-based come back as written, per split, and
    nothing is cached beside the dataset."""
    expected = {}
    for split, n in (("trainval", 2), ("test", 1)):
        dataset = VOCDataset(voc, split)
        expected[split] = [np.array([[0, 1, 20, 30], [5 + i, 6, 40, 50]], np.float32) for i in range(n)]
        write_original_mat(tmp_path / f"voc_2007_{split}.mat", dataset, expected[split])
    for split in ("trainval", "test"):
        got = proposals_for_split(VOCDataset(voc, split), method=str(tmp_path / "voc_2007_{split}.mat"))
        assert len(got) == len(expected[split])
        for a, b in zip(got, expected[split]):
            np.testing.assert_array_equal(a, b)
    assert not (voc / "proposals").exists()


def test_a_file_for_other_images_names_the_file(voc, tmp_path):
    dataset = VOCDataset(voc, "trainval")
    save_proposals(tmp_path / "trainval.npz", [np.zeros((1, 4))] * 2, ["a", "b"])
    with pytest.raises(ValueError, match="trainval.npz: image 0 is 'a'"):
        proposals_for_split(dataset, method=str(tmp_path))


def test_training_runs_on_precomputed_files(voc, tmp_path):
    """python -m minircnn.train --proposals '<folder>/voc_2007_{split}.mat' trains and evaluates on the files'
    boxes (here the ground truth boxes plus shifted copies), and the config records the template."""
    for split in ("trainval", "test"):
        dataset = VOCDataset(voc, split)
        boxes = []
        for i in range(len(dataset)):
            gt = dataset.annotation(i).boxes.astype(np.float32)
            boxes.append(np.concatenate([gt, gt + 3, np.array([[0, 0, 30, 30]], np.float32)]))
        write_original_mat(tmp_path / f"voc_2007_{split}.mat", dataset, boxes)
    template = str(tmp_path / "voc_2007_{split}.mat")
    metrics = train.main(["--data", str(voc), "--out", str(tmp_path / "run"), "--iters", "2", "--weights", "none",
                          "--scale", "64", "--proposals", template, "--quiet"])
    assert "map" in metrics
    assert get_preset("tiny").replace(proposals=template).proposals == template


def test_a_missing_file_stops_training_with_its_path(voc, tmp_path):
    with pytest.raises((SystemExit, FileNotFoundError), match="voc_2007_trainval.mat"):
        train.main(["--data", str(voc), "--out", str(tmp_path / "run"), "--iters", "1", "--weights", "none",
                    "--proposals", str(tmp_path / "voc_2007_{split}.mat"), "--quiet"])
