"""Modules (minircnn/nn): layers wrap the functional pairs, keep their cache, know whether they are frozen, and
networks name, save and load their parameters."""
import numpy as np
import pytest

from minircnn import functional as F
from minircnn.gradcheck import GRAD_RTOL, check_backward, tie_free
from minircnn.nn import (LRN, Conv2d, Dropout, Linear, MaxPool2d, Network, ReLU, RoIPool, Sequential, StateDictError,
                         he_normal_, plan_backward)


def conv(name="conv", c_in=2, c_out=3, seed=0, dtype=np.float64):
    layer = Conv2d(name, c_in, c_out, kernel_size=3, stride=1, pad=1, dtype=dtype)
    he_normal_(layer, np.random.default_rng(seed))
    layer.params["bias"][...] = 0.1
    return layer


def test_conv_module_is_the_functional_pair():
    """Conv2d.forward/backward compute exactly conv2d_forward/backward with the module's parameters, and store
    dw, db in grads under the parameter keys."""
    rng = np.random.default_rng(0)
    layer, x = conv(), rng.standard_normal((2, 2, 5, 6))
    y = layer.forward(x)
    y_ref, cache = F.conv2d_forward(x, layer.params["weight"], layer.params["bias"], stride=1, pad=1)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    dx_ref, dw_ref, db_ref = F.conv2d_backward(dy, cache)
    np.testing.assert_array_equal(dx, dx_ref)
    np.testing.assert_array_equal(layer.grads["weight"], dw_ref)
    np.testing.assert_array_equal(layer.grads["bias"], db_ref)
    assert layer.output_shape((2, 2, 5, 6)) == y.shape


def test_grouped_conv_and_lrn_modules_are_their_functional_pairs():
    """Conv2d(groups=2) holds (out, in/2, kh, kw) weights and computes conv2d_forward(..., groups=2); LRN computes
    lrn_forward with its settings and passes lrn_backward's dx on; both keep the input's shape rules."""
    rng = np.random.default_rng(1)
    layer = Conv2d("conv2", 4, 6, kernel_size=5, stride=1, pad=2, dtype=np.float64, groups=2)
    assert layer.params["weight"].shape == (6, 2, 5, 5)
    he_normal_(layer, rng)
    x = rng.standard_normal((1, 4, 6, 5))
    y = layer.forward(x)
    y_ref, cache = F.conv2d_forward(x, layer.params["weight"], layer.params["bias"], stride=1, pad=2, groups=2)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(dy), F.conv2d_backward(dy, cache)[0])
    with pytest.raises(ValueError, match="groups"):
        Conv2d("conv4", 3, 4, groups=2)

    norm = LRN("norm1", local_size=5, alpha=5e-4, beta=0.75, k=2.0)
    y = norm.forward(x)
    y_ref, cache = F.lrn_forward(x, local_size=5, alpha=5e-4, beta=0.75, k=2.0)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(norm.backward(np.ones(y.shape)), F.lrn_backward(np.ones(y.shape), cache))
    assert norm.output_shape((1, 4, 6, 5)) == (1, 4, 6, 5) and not norm.params


def test_linear_module_flattens_and_stores_grads():
    """Linear takes (R, C, h, w) like fc6 after roi_pool5 and gives dx back in that shape."""
    rng = np.random.default_rng(0)
    layer = Linear("fc6", 2 * 3 * 3, 4, dtype=np.float64)
    he_normal_(layer, rng)
    x = rng.standard_normal((5, 2, 3, 3))
    y = layer.forward(x)
    assert y.shape == (5, 4)
    dx = layer.backward(np.ones((5, 4)))
    assert dx.shape == x.shape
    np.testing.assert_allclose(layer.grads["bias"], [5, 5, 5, 5])
    np.testing.assert_allclose(layer.grads["weight"], np.tile(x.reshape(5, -1).sum(0), (4, 1)))


def test_caffe_multipliers_by_default():
    """Weights learn at lr x1 with decay x1, biases at lr x2 without decay (the paper's prototxts, docs/reference.md
    §2)."""
    for layer in (Conv2d("c", 1, 1), Linear("f", 1, 1)):
        assert layer.lr_mult == {"weight": 1.0, "bias": 2.0}
        assert layer.decay_mult == {"weight": 1.0, "bias": 0.0}
    assert ReLU("r").params == {} and not ReLU("r").trainable


def test_frozen_conv_computes_dx_but_no_parameter_gradient():
    """A frozen layer between trainable ones passes the gradient on (need_dx) but stores no dw, db."""
    rng = np.random.default_rng(0)
    layer, x = conv(), rng.standard_normal((1, 2, 4, 4))
    layer.frozen = True
    dy = rng.standard_normal(layer.forward(x).shape)
    dx = layer.backward(dy)
    assert layer.grads == {}
    _, cache = F.conv2d_forward(x, layer.params["weight"], layer.params["bias"], pad=1)
    np.testing.assert_array_equal(dx, F.conv2d_backward(dy, cache)[0])


def test_first_trainable_layer_skips_dx():
    """With need_dx False the layer returns None and computes only its parameter gradients."""
    rng = np.random.default_rng(0)
    layer, x = conv(), rng.standard_normal((1, 2, 4, 4))
    layer.need_dx = False
    assert layer.backward(np.ones(layer.forward(x).shape)) is None
    assert set(layer.grads) == {"weight", "bias"}


def test_cache_is_kept_only_for_training_and_consumed_by_backward():
    """forward(train=False) keeps no cache; a backward without a cache names the layer; backward consumes it."""
    layer, x = conv("conv4_2"), np.ones((1, 2, 4, 4))
    layer.forward(x, train=False)
    assert layer.cache is None
    with pytest.raises(RuntimeError, match="layer conv4_2: backward"):
        layer.backward(np.ones((1, 3, 4, 4)))
    layer.forward(x)
    assert layer.cache is not None
    layer.backward(np.ones((1, 3, 4, 4)))
    assert layer.cache is None


def test_dropout_is_seeded_and_the_identity_at_test_time():
    """The same Generator state gives the same mask; at test time the input itself comes back (no copy)."""
    x = np.ones((64, 32))
    a, b = Dropout("drop6", 0.5, np.random.default_rng(3)), Dropout("drop7", 0.5, np.random.default_rng(3))
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_array_equal(ya, yb)
    assert set(np.unique(ya)) == {0.0, 2.0} and 0.4 < (ya == 0).mean() < 0.6
    np.testing.assert_array_equal(a.backward(np.ones_like(x)), ya)      # same units dropped, same 1/(1-p) scale
    assert a.forward(x, train=False) is x
    zero = Dropout("d", 0.0)
    assert zero.forward(x) is x and zero.backward(x) is x
    with pytest.raises(ValueError, match="dropout d: p must be in"):
        Dropout("d", 1.0)


def test_plan_backward_finds_the_first_trainable_layer():
    """need_dx holds exactly for the layers after the first trainable one (in forward order)."""
    frozen, trainable = conv("a"), conv("b", 3, 3)
    frozen.frozen = True
    chain = [frozen, ReLU("r1"), trainable, ReLU("r2"), MaxPool2d("p")]
    assert plan_backward(chain) is True
    assert [layer.need_dx for layer in chain] == [False, False, False, True, True]
    assert plan_backward([ReLU("r")], upstream_trainable=True) is True
    assert plan_backward([frozen]) is False


def test_sequential_gradient_check():
    """A conv -> ReLU -> max pool -> conv chain, differentiated by hand through the modules, matches the numerical
    derivative (float64; tie-free input so the pool's switches stay put)."""
    rng = np.random.default_rng(0)
    layers = [conv("c1", 2, 3), ReLU("r1"), MaxPool2d("p1"), conv("c2", 3, 2, seed=1)]
    chain = Sequential(layers)

    def forward(x, w1, w2):                  # w1, w2 are the layers' own arrays, perturbed in place by the check
        return chain.forward(x), None

    def backward(dy, _):
        return chain.backward(dy), layers[0].grads["weight"], layers[3].grads["weight"]

    x = tie_free((2, 2, 6, 7), rng)
    errors = check_backward(forward, backward, [x, layers[0].params["weight"], layers[3].params["weight"]],
                            wrt=[0, 1, 2])
    assert max(errors) <= GRAD_RTOL
    assert chain.output_shape((2, 2, 6, 7)) == (2, 2, 3, 4) and chain.stride == 2


def test_roi_pool_module():
    """RoIPool takes two inputs and returns d(features) only."""
    rng = np.random.default_rng(0)
    layer = RoIPool("roi_pool5", 2, spatial_scale=0.5)
    x, rois = tie_free((1, 2, 6, 6), rng), np.array([[0, 0, 0, 9, 9], [0, 2, 2, 7, 5]], np.float64)
    y = layer.forward(x, rois)
    assert y.shape == (2, 2, 2, 2) and not layer.params
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    _, cache = F.roi_pool_forward(x, rois, output_size=(2, 2), spatial_scale=0.5)
    np.testing.assert_array_equal(dx, F.roi_pool_backward(dy, cache))


# ------------------------------------------------------------------------------------------------ networks

def small_network(seed=0):
    return Network([conv("conv1", seed=seed), ReLU("relu1"), Linear("fc6", 12, 2, dtype=np.float64)])


def test_parameter_names_and_lookup():
    net = small_network()
    assert [p.name for p in net.parameters()] == ["conv1.weight", "conv1.bias", "fc6.weight", "fc6.bias"]
    assert net["fc6"].name == "fc6"
    with pytest.raises(KeyError, match="no layer named 'fc7'; layers: conv1, relu1, fc6"):
        net["fc7"]
    with pytest.raises(ValueError, match="two layers are named 'a'"):
        Network([ReLU("a"), ReLU("a")])
    net.freeze(["conv1"])
    assert [p.frozen for p in net.parameters()] == [True, True, False, False]
    assert net.num_parameters() == 3 * 2 * 9 + 3 + 24 + 2 and net.num_parameters(trainable_only=True) == 26


def test_state_dict_round_trip():
    """state_dict gives host copies (later training does not change them); load_state_dict writes the values into
    the existing arrays (the solver's references stay valid) and casts the dtype."""
    a, b = small_network(seed=0), small_network(seed=1)
    state = a.state_dict()
    a["conv1"].params["weight"] += 1                       # the saved copy must not follow
    assert not np.array_equal(state["conv1.weight"], a["conv1"].params["weight"])
    target = b["conv1"].params["weight"]
    missing, unexpected = b.load_state_dict({k: v.astype(np.float32) for k, v in state.items()})
    assert (missing, unexpected) == ([], [])
    assert b["conv1"].params["weight"] is target and target.dtype == np.float64
    for name, value in state.items():
        np.testing.assert_allclose(b.state_dict()[name], value, rtol=1e-7)


def test_load_errors_name_the_source_layer_and_shapes():
    net, state = small_network(), small_network().state_dict()
    bad = {**state, "fc6.weight": np.zeros((2, 10))}
    with pytest.raises(StateDictError, match=r"tiny\.npz does not fit the model: layer fc6: fc6\.weight has shape "
                                             r"\(2, 10\) in tiny\.npz but \(2, 12\) in the model"):
        net.load_state_dict(bad, source="tiny.npz")
    with pytest.raises(StateDictError, match=r"it lacks 1 parameter\(s\) of this model: fc6\.bias; it has 1 "
                                             r"parameter\(s\) this model does not: fc8\.bias"):
        net.load_state_dict({**{k: v for k, v in state.items() if k != "fc6.bias"}, "fc8.bias": np.zeros(2)})
    missing, unexpected = net.load_state_dict({"conv1.weight": state["conv1.weight"], "fc8.bias": np.zeros(2)},
                                              strict=False)
    assert missing == ["conv1.bias", "fc6.bias", "fc6.weight"] and unexpected == ["fc8.bias"]


def test_param_references_follow_dtype_changes():
    """Param reads the layer live: after astype the solver sees the new arrays."""
    net = small_network()
    ref = net.parameters()[0]
    net.astype(np.float32)
    assert ref.value.dtype == np.float32 and net.dtype == np.float32


@pytest.mark.gpu
def test_to_gpu_and_back(cupy):
    net = small_network()
    state = net.state_dict()
    net.to("gpu")
    assert net.xp is cupy
    x = cupy.ones((1, 2, 2, 2))
    assert net["conv1"].forward(x).shape == (1, 3, 2, 2)
    net.to("cpu")
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, state[name])


def test_sequential_in_slices_equals_one_batch():
    """Three images in two slices (1 + 2, each in its own thread): the output and dx are the one-batch ones, each
    parameter gradient is the sum of the slices' (equal up to rounding), a frozen conv gets no gradient, a layer's
    cache holds its slices' caches and the backward consumes them. The slices share the layers' parameter arrays."""
    rng = np.random.default_rng(3)

    def chain():
        return Sequential([conv("conv1", 2, 3, seed=1), ReLU("relu1"), MaxPool2d("pool1", 2, 2),
                           conv("conv2", 3, 4, seed=2), ReLU("relu2")])

    whole, sliced = chain(), chain()
    for net in (whole, sliced):
        net.layers[3].frozen = True
        plan_backward(net.layers, upstream_trainable=True)          # as if a trainable layer lay before: dx needed
    x = rng.standard_normal((3, 2, 8, 10))
    y = whole.forward(x)
    y_sliced = sliced.forward(x, slices=2)
    np.testing.assert_allclose(y_sliced, y, rtol=1e-12)
    assert len(sliced.layers[0].cache) == 2
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(sliced.backward(dy), whole.backward(dy), rtol=1e-12)
    assert sliced.layers[3].grads == {} and all(layer.cache is None for layer in sliced.layers)
    for key in ("weight", "bias"):
        np.testing.assert_allclose(sliced.layers[0].grads[key], whole.layers[0].grads[key], rtol=1e-12)
    assert sliced.layers[0].params["weight"] is not whole.layers[0].params["weight"]
    assert sliced.forward(x[:1], slices=4).shape == (1, 4, 4, 5)      # never more slices than images
