"""Truncated-SVD compression of fc6/fc7 (minircnn.inference.svd; paper Sec. 3.1, docs/reference.md §11).

Exercise: ``python -m pytest tests/inference/test_svd.py --impl my_svd.py`` runs the ``truncated_svd`` tests (those
taking the ``exercise`` fixture) on a learner's version (the skeleton is ``exercises/truncated_svd.py``).
"""
import argparse

import numpy as np
import pytest

from minircnn.models import FastRCNN, build_model
from minircnn.inference.svd import compress
from minircnn.cli import parse_ranks


def small_model(dtype=np.float64):
    """conv5 has 4 channels: fc6 is 196 -> 8, fc7 8 -> 8."""
    return build_model("tiny", 3, seed=1, channels=(2, 2, 3, 3, 4), fc_width=8, dtype=dtype)


def inputs(xp, dtype=np.float64):
    rng = np.random.default_rng(0)
    images = xp.asarray(rng.uniform(-1, 1, (1, 3, 64, 64)).astype(dtype))
    rois = xp.asarray(np.array([[0, 0, 0, 40, 40], [0, 8, 4, 63, 50], [0, 20, 30, 50, 60]], np.float32))
    return images, rois


def with_singular_values(rng, out, inp, s):
    """An (out, inp) matrix whose singular values are exactly ``s`` (random orthonormal bases)."""
    q1, _ = np.linalg.qr(rng.normal(size=(out, len(s))))
    q2, _ = np.linalg.qr(rng.normal(size=(inp, len(s))))
    return (q1 * np.asarray(s, dtype=np.float64)) @ q2.T


def test_rank_one_factors_by_hand(exercise):
    """W = [[2, 0, 0], [0, 1, 0]] has singular values 2 and 1. Rank 1 keeps the first: U L = [[2, 0, 0],
    [0, 0, 0]], and the singular value sits in L (its row has norm 2; U's column has norm 1), as in
    compress_net.py. With bias b = (0.5, -1) and x = (1, 1, 1): the layer gives (2.5, 0), the rank-1 pair
    (2.5, -1)."""
    w = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    low, up = exercise.truncated_svd(w, 1)
    assert low.shape == (1, 3) and up.shape == (2, 1)
    np.testing.assert_allclose(up @ low, [[2, 0, 0], [0, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), [2.0])
    np.testing.assert_allclose(np.linalg.norm(up, axis=0), [1.0])
    x, b = np.ones(3), np.array([0.5, -1.0])
    np.testing.assert_allclose(up @ (low @ x) + b, [2.5, -1.0], atol=1e-12)


def test_factors_miss_by_exactly_the_discarded_singular_values(exercise):
    """Eckart-Young on the factors themselves: a 6 x 9 float32 matrix with singular values 5, 4, 3, 2, 1 factored at
    rank 2 misses by ||W - U L||_F^2 = 9 + 4 + 1 = 14; U's columns are orthonormal, L's rows have norms 5 and 4, and
    both keep float32."""
    w = with_singular_values(np.random.default_rng(5), 6, 9, [5, 4, 3, 2, 1]).astype(np.float32)
    low, up = exercise.truncated_svd(w, 2)
    assert low.shape == (2, 9) and up.shape == (6, 2) and low.dtype == up.dtype == np.float32
    assert float(((w.astype(np.float64) - up.astype(np.float64) @ low) ** 2).sum()) == pytest.approx(14, rel=1e-5)
    np.testing.assert_allclose(up.T @ up, np.eye(2), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), [5, 4], rtol=1e-5)


def test_compressed_layers_are_named_and_shaped_like_the_original_prototxt():
    """fc6 (8 x 196) at rank 3 becomes fc6_L (3 x 196, no bias) then fc6_U (8 x 3, fc6's bias), in the place of
    fc6; model.fc6 is gone and the parameter count goes from 8*196 + 8 to 3*(8 + 196) + 8."""
    model = small_model()
    bias = model.fc6.params["bias"].copy()
    compress(model, {"fc6": 3})
    names = [layer.name for layer in model.layers]
    assert names[names.index("roi_pool5"):names.index("relu6") + 1] == ["roi_pool5", "fc6_L", "fc6_U", "relu6"]
    assert set(model["fc6_L"].params) == {"weight"} and model["fc6_L"].params["weight"].shape == (3, 196)
    assert model["fc6_U"].params["weight"].shape == (8, 3)
    np.testing.assert_array_equal(model["fc6_U"].params["bias"], bias)
    assert not hasattr(model, "fc6")
    assert sum(v.size for k, v in model.state_dict().items() if k.startswith("fc6")) == 3 * (8 + 196) + 8


def test_full_rank_compression_gives_the_same_outputs(xp):
    """Rank = min(out, in) keeps every singular value: U L = W up to rounding, so the detector's probabilities
    and deltas are unchanged (float64, NumPy and CuPy)."""
    model = small_model()
    if xp is not np:
        model.to("gpu")
    images, rois = inputs(xp)
    probs, deltas = model.predict(images, rois)
    compress(model, {"fc6": 8, "fc7": 8})
    probs_c, deltas_c = model.predict(images, rois)
    xp.testing.assert_allclose(probs_c, probs, rtol=1e-10, atol=1e-12)
    xp.testing.assert_allclose(deltas_c, deltas, rtol=1e-10, atol=1e-12)


def test_truncation_error_is_the_discarded_singular_values(xp):
    """Eckart-Young: with singular values 5, 4, 3, 2, 1, the rank-2 pair misses W by exactly
    ||W - U L||_F^2 = 3^2 + 2^2 + 1^2 = 14, and rank 4 by 1^2 = 1."""
    rng = np.random.default_rng(3)
    w = with_singular_values(rng, 8, 8, [5, 4, 3, 2, 1])
    for rank, expected in ((2, 14.0), (4, 1.0)):
        model = small_model()
        model.fc7.params["weight"][...] = w
        if xp is not np:
            model.to("gpu")
        compress(model, {"fc7": rank})
        approx = model["fc7_U"].params["weight"] @ model["fc7_L"].params["weight"]
        assert float(((xp.asarray(w) - approx) ** 2).sum()) == pytest.approx(expected, rel=1e-9)


def test_bad_names_and_ranks_leave_the_model_untouched():
    """A rank above min(out, in) or below 1, a non-integer rank, a layer that is not fc6/fc7 of the model, or a
    second compression of the same layer: one ValueError naming the problem, and nothing changed -- not even
    the valid entries of the same call."""
    model = small_model()
    before = model.state_dict()
    cases = [({"fc6": 9}, r"rank of fc6 must be an integer in \[1, 8\].*8 x 196"),
             ({"fc7": 0}, r"rank of fc7"), ({"fc7": 2.5}, r"rank of fc7"), ({"fc7": True}, r"rank of fc7"),
             ({"fc6": 4, "cls_score": 2}, r"'cls_score' is not an fc layer this model can compress"),
             ({"conv5": 2}, r"'conv5'"), ({"fc8": 2}, r"'fc8'")]
    for ranks, message in cases:
        with pytest.raises(ValueError, match=message):
            compress(model, ranks)
        assert model.state_dict().keys() == before.keys() and model.svd_ranks == {}
    compress(model, {"fc7": 4})
    with pytest.raises(ValueError, match="fc7 is already compressed"):
        compress(model, {"fc7": 2})


def test_a_compressed_model_saves_and_loads():
    """config records the ranks, so from_config rebuilds the factored layers and the state dict fits them."""
    model = compress(small_model(np.float32), {"fc6": 5, "fc7": 3})
    assert model.config["svd"] == {"fc6": 5, "fc7": 3}
    again = FastRCNN.from_config(model.config, init=False)
    again.load_state_dict(model.state_dict())
    images, rois = inputs(np, np.float32)
    np.testing.assert_array_equal(again.predict(images, rois)[0], model.predict(images, rois)[0])


def test_a_compressed_model_trains():
    """Backward runs through the pair: fc6_L gets a weight gradient and no bias gradient (it has no bias)."""
    model = compress(small_model(), {"fc6": 4})
    images, rois = inputs(np)
    scores, deltas = model.forward(images, rois)
    model.loss(scores, deltas, np.array([1, 0, 2]), np.zeros_like(deltas))
    model.backward()
    assert set(model["fc6_L"].grads) == {"weight"} and model["fc6_L"].grads["weight"].shape == (4, 196)
    assert set(model["fc6_U"].grads) == {"weight", "bias"}


def test_parse_ranks():
    assert parse_ranks("fc6=1024,fc7=256") == {"fc6": 1024, "fc7": 256}
    assert parse_ranks(" fc7 = 64 ") == {"fc7": 64}
    for bad in ("fc6", "fc6=", "fc6=-3", "fc6=1.5", "=4", "fc6=2,fc6=3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_ranks(bad)
