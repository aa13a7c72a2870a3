"""The solver (minircnn/training/optim.py): Caffe's SGD with momentum, weight decay on weights only, biases at 2x lr,
frozen layers untouched, and the step schedule (docs/reference.md §3, §14.9)."""
import numpy as np
import pytest

from minircnn.gradcheck import EXACT_ATOL
from minircnn.nn import Linear, Network
from minircnn.training.optim import SGD


def one_layer(frozen=False):
    """A 2 -> 1 fc layer with weight [[1, -2]] and bias [0.5], gradients [[0.5, 0.25]] and [1.0]."""
    fc = Linear("fc", 2, 1, dtype=np.float64)
    fc.params["weight"][...] = [[1.0, -2.0]]
    fc.params["bias"][...] = [0.5]
    fc.frozen = frozen
    set_grads(fc)
    return fc


def set_grads(fc):
    if not fc.frozen:
        fc.grads = {"weight": np.array([[0.5, 0.25]]), "bias": np.array([1.0])}


def assert_exact(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=0, atol=EXACT_ATOL)


def test_three_steps_by_hand():
    """v = m v + lr * lr_mult * (g + wd * decay_mult * w); w -= v, with base_lr 0.1, momentum 0.9, weight decay 0.01,
    stepsize 2 (lr 0.1, 0.1, then 0.01). The gradients are the same at every step: g_w = [0.5, 0.25], g_b = 1.

    Step 1 (lr 0.1): v_w = 0.1 * ([0.5, 0.25] + 0.01 * [1, -2]) = [0.051, 0.023]      w = [0.949, -2.023]
                     v_b = 0.1 * 2 * 1 = 0.2   (lr x2, no decay)                          b = 0.3
    Step 2 (lr 0.1): v_w = 0.9 * [0.051, 0.023] + 0.1 * ([0.5, 0.25] + 0.01 * [0.949, -2.023])
                         = [0.0459, 0.0207] + [0.050949, 0.022977] = [0.096849, 0.043677]
                     w = [0.852151, -2.066677]
                     v_b = 0.9 * 0.2 + 0.2 = 0.38                                          b = -0.08
    Step 3 (lr 0.01): v_w = 0.9 * [0.096849, 0.043677] + 0.01 * ([0.5, 0.25] + 0.01 * [0.852151, -2.066677])
                         = [0.0871641, 0.0393093] + [0.0050852151, 0.0022933323]
                         = [0.0922493151, 0.0416026323]
                     w = [0.7599016849, -2.1082796323]
                     v_b = 0.9 * 0.38 + 0.01 * 2 = 0.362                                   b = -0.442
    """
    fc = one_layer()
    solver = SGD(Network([fc]).parameters(), base_lr=0.1, momentum=0.9, weight_decay=0.01, stepsize=2)
    expected = [([[0.949, -2.023]], [0.3], 0.1),
                ([[0.852151, -2.066677]], [-0.08], 0.1),
                ([[0.7599016849, -2.1082796323]], [-0.442], 0.01)]
    for w, b, lr in expected:
        assert solver.step() == pytest.approx(lr, rel=1e-15)
        assert_exact(fc.params["weight"], w)
        assert_exact(fc.params["bias"], b)
        set_grads(fc)
    assert_exact(solver.velocity["fc.weight"], [[0.0922493151, 0.0416026323]])
    assert_exact(solver.velocity["fc.bias"], [0.362])
    assert solver.iteration == 3


def test_decay_shrinks_weights_not_biases():
    """With zero gradients only weight decay acts: w -= lr * wd * w on weights; biases (decay_mult 0) stay."""
    fc = one_layer()
    fc.grads = {"weight": np.zeros((1, 2)), "bias": np.zeros(1)}
    SGD(Network([fc]).parameters(), base_lr=0.1, weight_decay=0.5).step()
    assert_exact(fc.params["weight"], [[1 - 0.05, -2 + 0.1]])
    assert_exact(fc.params["bias"], [0.5])


def test_frozen_parameters_are_untouched():
    """A frozen layer keeps its values exactly, gets no velocity, and needs no gradient."""
    frozen, trainable = one_layer(frozen=True), one_layer()
    trainable.name = "fc7"
    before = frozen.params["weight"].copy()
    solver = SGD(Network([frozen, trainable]).parameters())
    solver.step()
    np.testing.assert_array_equal(frozen.params["weight"], before)
    assert frozen.params["bias"][0] == 0.5
    assert sorted(solver.velocity) == ["fc7.bias", "fc7.weight"]


def test_paper_defaults_and_schedule():
    """base_lr 0.001, momentum 0.9, weight decay 0.0005, lr x0.1 every 30000 iterations (docs/reference.md §3)."""
    solver = SGD([])
    assert (solver.base_lr, solver.momentum, solver.weight_decay, solver.gamma, solver.stepsize) == \
        (0.001, 0.9, 0.0005, 0.1, 30000)
    assert solver.lr_at(0) == solver.lr_at(29999) == 0.001
    assert solver.lr_at(30000) == pytest.approx(0.0001) and solver.lr_at(39999) == pytest.approx(0.0001)
    assert solver.lr_at(60000) == pytest.approx(0.00001)
    assert SGD([], base_lr=0.01, stepsize=None).lr_at(10 ** 6) == 0.01


def test_missing_gradient_is_an_error():
    fc = one_layer()
    fc.grads = {}
    with pytest.raises(RuntimeError, match="parameter fc.weight is trainable but has no gradient"):
        SGD(Network([fc]).parameters()).step()


def test_state_dict_resume_equals_uninterrupted_run():
    """Saving the solver after 2 steps and loading it into a fresh solver (over the saved weights) continues
    exactly like the uninterrupted run: velocities and the iteration (hence the lr schedule) are restored."""
    def run(steps, solver_state=None, net_state=None):
        net = Network([one_layer()])
        if net_state is not None:
            net.load_state_dict(net_state)
        solver = SGD(net.parameters(), base_lr=0.1, stepsize=3)
        if solver_state is not None:
            solver.load_state_dict(solver_state)
        for _ in range(steps):
            set_grads(net["fc"])
            solver.step()
        return net, solver

    straight, _ = run(5)
    first, solver = run(2)
    state = solver.state_dict()
    assert sorted(state) == ["iteration", "velocity.fc.bias", "velocity.fc.weight"] and int(state["iteration"]) == 2
    resumed, _ = run(3, state, first.state_dict())
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value)


def test_load_errors():
    solver = SGD(Network([one_layer()]).parameters())
    with pytest.raises(ValueError, match="ckpt.npz: solver entry 'velocity.fc9.weight' names no trainable"):
        solver.load_state_dict({"iteration": np.int64(1), "velocity.fc9.weight": np.zeros((1, 2))}, source="ckpt.npz")
    with pytest.raises(ValueError, match=r"layer fc: the velocity of fc.weight has shape \(2, 2\)"):
        solver.load_state_dict({"iteration": np.int64(1), "velocity.fc.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="has no solver 'iteration'"):
        solver.load_state_dict({})
