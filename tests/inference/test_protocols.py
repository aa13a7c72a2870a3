"""The test protocols (minircnn.inference.protocols; docs/reference.md §8, §14.12) on hand-made score arrays, without a
network."""
import numpy as np
import pytest

from minircnn.inference.protocols import PaperProtocol, SimpleProtocol, candidates, make_protocol, top_per_class


def grid_boxes(n):
    """n disjoint 10x10 boxes, 20 px apart on rows of 25: no two overlap, so NMS never removes one."""
    i = np.arange(n)
    x, y = 20.0 * (i % 25), 20.0 * (i // 25)
    return np.stack([x, y, x + 9, y + 9], axis=1)


def image(*class_scores):
    """probs (P, K+1) and boxes (P, K+1, 4) for P proposals; class k's scores are ``class_scores[k - 1]`` (one
    value per proposal); every class's box of proposal i is grid box i."""
    scores = np.array(class_scores, dtype=np.float32).T.reshape(-1, len(class_scores))
    probs = np.concatenate([np.zeros((len(scores), 1), np.float32), scores], axis=1)
    boxes = np.repeat(grid_boxes(len(scores))[:, None, :], probs.shape[1], axis=1).astype(np.float32)
    return probs, boxes


def test_adaptive_threshold_by_hand():
    """max_per_set = 1 x 3 images = 3 for class 1.
    Image 1 (0.9, 0.8, 0.7): the heap holds 3, no overflow, thresh stays -inf.
    Image 2 (0.95, 0.6, 0.5): 6 scores > 3 -> pop 0.5, 0.6, 0.7; thresh = heap min = 0.8.
    Image 3 (0.85, 0.75): only 0.85 > 0.8 enters; 4 > 3 -> pop 0.8; thresh = 0.85.
    At the end every image keeps scores > 0.85 (strictly): image 1 (0.9), image 2 (0.95), image 3 nothing."""
    protocol = PaperProtocol(num_classes=2, num_images=3, mean_per_class=1)
    seen = []
    for scores in ([0.9, 0.8, 0.7], [0.95, 0.6, 0.5], [0.85, 0.75]):
        protocol.add(*image(scores))
        seen.append(float(protocol.thresh[1]))
    assert seen == [-np.inf, pytest.approx(0.8), pytest.approx(0.85)]
    boxes, labels, scores = protocol.results()
    assert [s.tolist() for s in scores] == [[pytest.approx(0.9)], [pytest.approx(0.95)], []]
    np.testing.assert_array_equal(boxes[0], [[0, 0, 9, 9]])       # image 1's proposal 0
    assert [lab.tolist() for lab in labels] == [[1], [1], []]


def test_top_per_class_before_the_threshold_and_no_fixed_score_threshold():
    """With max_per_class = 2, each class keeps its 2 best candidates of the image, however low they score:
    class 1 (0.9, 0.8, 0.7) -> 0.9, 0.8; class 2 (0.03, 0.02, 0.01) -> 0.03, 0.02 (the simple protocol's 0.05
    would drop them all). Class 1's and class 2's boxes of a proposal coincide but never suppress each other."""
    protocol = PaperProtocol(num_classes=3, num_images=1, max_per_class=2)
    protocol.add(*image([0.9, 0.8, 0.7], [0.03, 0.02, 0.01]))
    (boxes,), (labels,), (scores,) = protocol.results()
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.03, 0.02], rtol=1e-6)
    np.testing.assert_array_equal(labels, [1, 1, 2, 2])
    np.testing.assert_array_equal(boxes, grid_boxes(2)[[0, 1, 0, 1]])
    simple = SimpleProtocol()
    simple.add(*image([0.9, 0.8, 0.7], [0.03, 0.02, 0.01]))
    assert simple.results()[1][0].tolist() == [1, 1, 1]


def test_paper_protocol_has_no_cap_per_image_but_nms():
    """130 disjoint boxes of class 1 plus a shifted copy of box 0 (IoU 0.68 >= 0.3, lower score): after NMS the
    copy is gone and all 130 others stay -- more than the simple protocol's 100 per image."""
    probs, boxes = image(np.linspace(0.9, 0.5, 130))
    probs = np.concatenate([probs, [[0, 0.4]]]).astype(np.float32)
    boxes = np.concatenate([boxes, [[[1, 1, 10, 10], [1, 1, 10, 10]]]]).astype(np.float32)
    protocol = PaperProtocol(num_classes=2, num_images=10, max_per_class=1000)
    protocol.add(probs, boxes)
    assert len(protocol.results()[2][0]) == 130
    simple = SimpleProtocol()
    simple.add(probs, boxes)
    assert len(simple.results()[2][0]) == 100


def test_about_40_per_class_per_image_over_the_set():
    """10 images x 300 proposals with distinct random scores, default settings: each class's heap holds
    40 x 10 = 400 scores and the final filter (> its minimum) keeps 399 per class over the set, however they are
    spread over the images. The threshold equals the 400th largest of the per-image top-100 scores (computed here by
    sorting, without a heap)."""
    rng = np.random.default_rng(7)
    protocol = PaperProtocol(num_classes=3, num_images=10)
    top100 = {1: [], 2: []}
    for _ in range(10):
        s = rng.permutation(np.linspace(0.001, 0.999, 600)).reshape(300, 2) ** rng.uniform(0.5, 3)
        protocol.add(*image(s[:, 0], s[:, 1]))
        for k in (1, 2):
            top100[k] += sorted(s[:, k - 1].astype(np.float32).tolist(), reverse=True)[:100]
    _, labels, scores = protocol.results()
    labels = np.concatenate(labels)
    for k in (1, 2):
        assert np.sum(labels == k) == 399
        assert protocol.thresh[k] == sorted(top100[k], reverse=True)[399]
    assert all(np.all(s[:-1] >= s[1:]) for s in protocol.results()[2])


def test_simple_protocol_threshold_nms_cap_and_degenerate_boxes():
    """Scores must exceed 0.05 (0.04 is out, 0.06 in); a box the regression turned inside out (x2 < x1) is no
    candidate; NMS 0.3 removes the lower of two boxes with IoU 0.68; then the best max_per_image survive."""
    probs, boxes = image([0.9, 0.04, 0.06, 0.8, 0.7])
    boxes[3, 1] = [30, 0, 20, 9]                           # proposal 3 shrank below one pixel
    boxes[4, 1] = [1, 1, 10, 10]                           # proposal 4 duplicates proposal 0
    chosen = SimpleProtocol(max_per_image=100)
    chosen.add(probs, boxes)
    np.testing.assert_allclose(chosen.results()[2][0], [0.9, 0.06], rtol=1e-6)
    capped = SimpleProtocol(max_per_image=1)
    capped.add(probs, boxes)
    np.testing.assert_allclose(capped.results()[2][0], [0.9], rtol=1e-6)


def test_candidates_and_top_per_class_by_hand():
    """candidates: class columns 1..K only (background never), per-class thresholds; top_per_class: ties keep
    the earlier candidate."""
    probs = np.array([[0.9, 0.5, 0.2], [0.1, 0.5, 0.6]], np.float32)
    boxes = np.zeros((2, 3, 4), np.float32)
    _, labels, scores = candidates(probs, boxes, np.array([-np.inf, 0.4, 0.3]))
    assert labels.tolist() == [1, 1, 2] and np.allclose(scores, [0.5, 0.5, 0.6])
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    kept_boxes, kept_labels, kept_scores = top_per_class(b, np.array([1, 1, 1]), np.array([0.5, 0.7, 0.5]), 2)
    np.testing.assert_array_equal(kept_boxes, b[[1, 0]])
    assert kept_labels.tolist() == [1, 1] and kept_scores.tolist() == [0.7, 0.5]


def test_make_protocol_rejects_unknown_names():
    assert isinstance(make_protocol("paper", 3, 5), PaperProtocol)
    with pytest.raises(ValueError, match="simple, paper"):
        make_protocol("voc", 3, 5)
