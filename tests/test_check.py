"""Tests of nncore.check: the Taylor tests, the transpose test, the least-squares demo and
``nncore gradcheck``.

1. Every ready-made check of the library passes in float64, on both backends.
2. Every checker can fail: a gradient scaled by 1.01, a transposed weight gradient, a
   dropped bias term and a sign flip in the residual branch each get ``passed == False``.
3. The fitting is robust: exactly linear and quadratic functions, the round-off floor,
   a noisy function, ReLU kinks, float32 (reports its window, never a false FAIL).
4. The least-squares demos: SGD matches numpy.linalg.lstsq and momentum beats plain SGD;
   Adam matches it, and its steps on a constant gradient show the bias correction.
5. ``nncore gradcheck --quick``: tables, summary, figures, exit status.
6. Bad arguments raise ValueError/TypeError naming the argument.
"""

import math
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import nncore as nc
from nncore import activations, check, ops
from nncore.check import (
    gradient_test,
    jacobian_test,
    jacobian_transpose_test,
    adam_least_squares_demo,
    least_squares_demo,
    ready_made_checks,
)
from nncore.cli import main
from nncore.layers import _draw_away_from_kinks
from nncore.network import mlp, resnet

QUICK_CHECKS = ready_made_checks(quick=True)


def zeros_like_all(*arrays):
    return [np.zeros_like(a) for a in arrays]


# --- fixtures: small problems with their true derivatives ----------------------------------

def softmax_regression_problem(n=8, n_features=4, n_classes=4, seed=0):
    """Square W (n_classes == n_features), so W and W.T have the same shape."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    W = 0.5 * rng.standard_normal((n_classes, n_features))
    b = 0.5 * rng.standard_normal(n_classes)
    labels = rng.integers(0, n_classes, n)

    def loss(X_, W_, b_):
        return ops.softmax_cross_entropy(ops.linear_forward(X_, W_, b_)[0], labels)[0]

    logits, cache = ops.linear_forward(X, W, b)
    _, dlogits = ops.softmax_cross_entropy(logits, labels)
    dX, dW, db = ops.linear_backward(dlogits, cache)
    return X, W, b, loss, dX, dW, db


def dense_problem(activation="tanh", n=6, width=4, seed=1):
    """A square Dense layer at a point away from ReLU kinks, with its cache."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, width))
    W = rng.standard_normal((width, width)) / 2
    b = rng.standard_normal(width)
    # redrawn as for ReLU (a kinked activation) whatever the activation under test
    b = _draw_away_from_kinks(rng, X, W, b, "relu", margin=0.05)
    _, cache = ops.linear_forward(X, W, b, activation)
    return X, W, b, cache


def residual_problem(activation="tanh", n=6, width=4, hidden=5, seed=2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, width))
    W1 = rng.standard_normal((hidden, width)) / 2
    b1 = 0.5 * rng.standard_normal(hidden)
    W2 = rng.standard_normal((width, hidden)) / 2
    _, cache = ops.residual_forward(X, W1, b1, W2, activation)
    return X, W1, b1, W2, cache


def network_problem(builder="mlp", activation="tanh", seed=0):
    rng = np.random.default_rng(seed)
    if builder == "mlp":
        net = mlp(3, [5, 4], 3, activation=activation, dtype="float64", seed=seed)
    else:
        net = resnet(3, width=4, depth=2, n_classes=3, activation=activation, dtype="float64",
                     seed=seed)
    net.params[...] += 0.3 * rng.standard_normal(net.n_params)
    X = rng.standard_normal((7, 3))
    y = rng.integers(0, 3, 7)
    params0 = net.params.copy()

    def loss(params):
        net.params[...] = params
        return net.loss(X, y)

    net.loss_and_grad(X, y)
    return net, X, y, params0, loss, net.grads.copy()


def bias_mask(net):
    """True at the entries of the flat parameter vector that are biases (b, b1)."""
    mask, offset = np.zeros(net.n_params, dtype=bool), 0
    for layer in net.layers:
        for name, shape in layer.param_shapes.items():
            size = math.prod(shape)
            mask[offset:offset + size] = name.startswith("b")
            offset += size
    return mask


# --- 1. every real derivative in the library passes ----------------------------------------

@pytest.mark.parametrize("item", QUICK_CHECKS,
                         ids=[f"{i:02d}-{c.name}" for i, c in enumerate(QUICK_CHECKS)])
def test_every_ready_made_check_passes_in_float64(item):
    result = item.run()
    assert result.passed, str(result)
    assert result.verdict == "PASS"


def test_the_ready_made_checks_cover_every_part_and_argument():
    names = {c.name for c in QUICK_CHECKS}
    for activation in activations.names():
        for arg in ("X", "W", "b"):
            assert f"Dense {activation}: output wrt {arg}" in names
        for arg in ("X", "W1", "b1", "W2"):
            assert f"Residual {activation}: output wrt {arg}" in names
    for arg in ("W", "b", "X"):
        assert f"softmax regression: loss wrt {arg}" in names
    assert any("MLP" in n and "loss wrt parameters" in n for n in names)
    assert any("ResNet" in n and "loss wrt parameters" in n for n in names)
    kinds = {type(c.run()).__name__ for c in QUICK_CHECKS[:8]}
    assert {"TaylorResult", "TransposeResult"} <= kinds


def test_every_ready_made_check_passes_on_the_reference_backend():
    results = check.run_checks(ready_made_checks(quick=True, backend="reference"))
    failed = [r.summary() for r in results if not r.passed]
    assert not failed, "\n".join(failed)


def test_full_settings_pass_and_fit_orders_1_and_2():
    items = [c for c in ready_made_checks() if "tanh" in c.name or "softmax" in c.name]
    for result in check.run_checks(items):
        assert result.passed, str(result)
        if isinstance(result, check.TaylorResult) and not result.exact:
            zero, first = result.orders
            assert abs(zero - 1) < 0.05 and abs(first - 2) < 0.05, str(result)


# --- 2. every checker can fail --------------------------------------------------------------

@pytest.mark.parametrize("corrupt", [lambda g: 1.01 * g, lambda g: -g],
                         ids=["scaled-by-1.01", "sign-flipped"])
def test_every_ready_made_check_fails_when_its_derivative_is_corrupted(corrupt):
    items = ready_made_checks(quick=True, corrupt=corrupt)
    results = check.run_checks(items)
    for item, result in zip(items, results):
        if item.group == "least-squares":
            continue  # the SGD demo takes no derivative to corrupt
        assert not result.passed, str(result)
        assert result.verdict == "FAIL", str(result)


def test_gradient_test_accepts_the_true_gradient_and_rejects_one_scaled_by_1_01():
    X, W, b, loss, dX, dW, db = softmax_regression_problem()
    good = gradient_test(lambda W_: loss(X, W_, b), W, dW)
    bad = gradient_test(lambda W_: loss(X, W_, b), W, 1.01 * dW)
    assert good.passed and not bad.passed
    assert bad.verdict == "FAIL"
    assert abs(bad.orders[1] - 1) < 0.1  # a wrong gradient leaves an order-1 residual
    assert "off by about 1.0e-02" in bad.reason


def test_gradient_test_rejects_a_transposed_weight_gradient():
    X, W, b, loss, dX, dW, db = softmax_regression_problem()
    assert dW.shape == dW.T.shape
    result = gradient_test(lambda W_: loss(X, W_, b), W, np.ascontiguousarray(dW.T))
    assert not result.passed and result.verdict == "FAIL"


def test_gradient_test_rejects_a_dropped_bias_gradient():
    net, X, y, params0, loss, grads = network_problem("mlp", "tanh")
    mask = bias_mask(net)
    assert mask.any() and np.any(grads[mask] != 0)
    assert gradient_test(loss, params0, grads).passed
    dropped = np.where(mask, 0.0, grads)
    result = gradient_test(loss, params0, dropped)
    assert not result.passed and result.verdict == "FAIL"


def test_gradient_test_rejects_network_gradients_scaled_by_1_01():
    for builder in ("mlp", "resnet"):
        _, _, _, params0, loss, grads = network_problem(builder, "tanh")
        assert gradient_test(loss, params0, grads).passed
        assert not gradient_test(loss, params0, 1.01 * grads).passed


def test_gradient_test_rejects_a_residual_backward_with_its_branch_sign_flipped():
    X, W1, b1, W2, cache = residual_problem("tanh")
    upstream = np.random.default_rng(3).standard_normal(X.shape)

    def scalar(X_):
        return float(np.vdot(upstream, ops.residual_forward(X_, W1, b1, W2, "tanh")[0]))

    dX, _, _, _ = ops.residual_backward(upstream, cache)
    flipped = 2 * upstream - dX  # dY - (branch) instead of dY + (branch)
    assert gradient_test(scalar, X, dX).passed
    assert not gradient_test(scalar, X, flipped).passed


@pytest.mark.parametrize("activation", activations.names())
def test_jacobian_test_rejects_wrong_jvps(activation):
    X, W, b, cache = dense_problem(activation)
    zX, zW, zb = zeros_like_all(X, W, b)
    kinked = activations.ACTIVATIONS[activation].kinked
    kinks = (lambda W_: ops.linear_forward(X, W_, b, activation)[0] > 0) if kinked else None

    def forward_W(W_):
        return ops.linear_forward(X, W_, b, activation)[0]

    def jvp_W(dW):
        return ops.linear_jvp(cache, zX, dW, zb)

    assert jacobian_test(forward_W, W, jvp_W, kinks=kinks).passed
    scaled = jacobian_test(forward_W, W, lambda dW: 1.01 * jvp_W(dW), kinks=kinks)
    transposed = jacobian_test(forward_W, W, lambda dW: jvp_W(np.ascontiguousarray(dW.T)),
                               kinks=kinks)
    assert not scaled.passed and not transposed.passed

    def forward_b(b_):
        return ops.linear_forward(X, W, b_, activation)[0]

    kinks_b = (lambda b_: forward_b(b_) > 0) if kinked else None
    assert jacobian_test(forward_b, b, lambda db: ops.linear_jvp(cache, zX, zW, db),
                         kinks=kinks_b).passed
    # the joint JVP with the bias term dropped
    dropped = jacobian_test(forward_b, b, lambda db: ops.linear_jvp(cache, zX, zW, zb),
                            kinks=kinks_b)
    assert not dropped.passed


def test_jacobian_test_rejects_a_residual_jvp_with_its_branch_sign_flipped():
    for activation in ("tanh", "relu", "leaky_relu", "identity"):
        X, W1, b1, W2, cache = residual_problem(activation)
        zX, zW1, zb1, zW2 = zeros_like_all(X, W1, b1, W2)

        def forward(X_):
            return ops.residual_forward(X_, W1, b1, W2, activation)[0]

        def jvp(dX):
            return ops.residual_jvp(cache, dX, zW1, zb1, zW2)

        kinks = (lambda X_: ops.residual_forward(X_, W1, b1, W2, activation)[1].H > 0) \
            if activations.ACTIVATIONS[activation].kinked else None
        assert jacobian_test(forward, X, jvp, kinks=kinks).passed
        flipped = jacobian_test(forward, X, lambda dX: 2 * dX - jvp(dX), kinks=kinks)
        assert not flipped.passed, activation


def test_transpose_test_rejects_wrong_backward_passes():
    X, W, b, cache = dense_problem("tanh")
    zX, zW, zb = zeros_like_all(X, W, b)

    def jvp_W(dW):
        return ops.linear_jvp(cache, zX, dW, zb)

    def vjp_W(u):
        return ops.linear_backward(u, cache)[1]

    good = jacobian_transpose_test(jvp_W, vjp_W, W)
    assert good.passed and good.discrepancy < 1e-14
    for wrong in (lambda u: 1.01 * vjp_W(u),
                  lambda u: np.ascontiguousarray(vjp_W(u).T),
                  lambda u: -vjp_W(u)):
        result = jacobian_transpose_test(jvp_W, wrong, W)
        assert not result.passed and result.verdict == "FAIL"
        assert result.discrepancy > 1e-3

    # the bias: a backward pass that drops db (returns zeros)
    def jvp_b(db):
        return ops.linear_jvp(cache, zX, zW, db)

    assert jacobian_transpose_test(jvp_b, lambda u: ops.linear_backward(u, cache)[2], b).passed
    assert not jacobian_transpose_test(jvp_b, lambda u: np.zeros_like(b), b).passed


def test_transpose_test_rejects_a_residual_backward_with_its_branch_sign_flipped():
    X, W1, b1, W2, cache = residual_problem("tanh")
    zX, zW1, zb1, zW2 = zeros_like_all(X, W1, b1, W2)

    def jvp(dX):
        return ops.residual_jvp(cache, dX, zW1, zb1, zW2)

    def vjp(u):
        return ops.residual_backward(u, cache)[0]

    assert jacobian_transpose_test(jvp, vjp, X).passed
    assert not jacobian_transpose_test(jvp, lambda u: 2 * u - vjp(u), X).passed


def test_transpose_test_of_a_network_rejects_dropped_bias_gradients():
    net, X, y, params0, _, _ = network_problem("resnet", "tanh")
    mask = bias_mask(net)

    def jvp(v):
        return net.jvp(X, v)

    def vjp(u):
        return check.network_forward_backward(net, X, u)[1]

    assert jacobian_transpose_test(jvp, vjp, params0).passed
    assert not jacobian_transpose_test(jvp, lambda u: np.where(mask, 0.0, vjp(u)),
                                       params0).passed


# --- 3. robust fitting ----------------------------------------------------------------------

def test_an_exactly_linear_function_passes_with_an_explanation_and_a_wrong_slope_fails():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 3))
    x = rng.standard_normal(3)
    result = jacobian_test(lambda x_: A @ x_, x, lambda v: A @ v)
    assert result.passed and result.exact
    assert "exactly linear" in result.reason and "Taylor remainder vanishes" in result.reason
    assert result.resolution < 1e-10
    assert not jacobian_test(lambda x_: A @ x_, x, lambda v: 1.01 * (A @ v)).passed
    assert not jacobian_test(lambda x_: A @ x_, x, lambda v: A @ v + 1e-6 * v.sum()).passed


def test_an_exact_quadratic_has_order_2_throughout():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((12, 4))
    rhs = rng.standard_normal(12)
    x = rng.standard_normal(4)
    loss, grad = ops.least_squares(A, x, rhs)
    result = gradient_test(lambda x_: ops.least_squares(A, x_, rhs)[0], x, grad)
    assert result.passed and not result.exact
    local_zero, local_first = result.local_orders
    assert np.allclose(local_first[1:], 2.0, atol=0.02)


def test_a_constant_function_is_inconclusive_not_a_pass():
    x = np.ones(4)
    result = gradient_test(lambda x_: 3.0, x, np.zeros(4))
    assert result.verdict == "INCONCLUSIVE" and not result.passed


def test_reaching_the_round_off_floor_does_not_spoil_the_fit():
    X, W, b, loss, dX, dW, db = softmax_regression_problem()
    # 45 halvings: eps down to 3e-14, far into round-off for both residuals
    result = gradient_test(lambda W_: loss(X, W_, b), W, dW, steps=45)
    assert result.passed, str(result)
    at_roundoff = result.first <= check.ROUNDOFF_MARGIN * result.noise
    assert at_roundoff[-10:].all()  # the floor was reached ...
    assert not at_roundoff[result.window_first].any()  # ... and kept out of the fit
    assert abs(result.orders[1] - 2) < 0.05
    assert "~" in str(result)
    wrong = gradient_test(lambda W_: loss(X, W_, b), W, 1.01 * dW, steps=45)
    assert not wrong.passed


def test_a_noisy_function_is_fitted_above_its_measured_noise():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(6)

    def noisy(x_):  # a smooth function plus deterministic noise of relative size ~1e-9
        value = float(np.sum(np.sin(x_)) + np.sum(x_ ** 2))
        jitter = np.random.default_rng(zlib.crc32(x_.tobytes())).standard_normal()
        return value + 1e-9 * jitter

    grad = np.cos(x) + 2 * x
    result = gradient_test(noisy, x, grad)
    assert result.passed, str(result)
    assert np.median(result.noise) > 1e-10  # the noise was measured, not assumed
    assert not gradient_test(noisy, x, 1.01 * grad).passed


def test_relu_steps_that_cross_a_kink_are_flagged_and_not_used():
    X, W, b, cache = dense_problem("relu")
    Z = X @ W.T + b
    # move one bias so that a unit sits 0.02 from its kink: only large steps cross it
    column = int(np.argmin(np.abs(Z).min(axis=0)))
    row = int(np.argmin(np.abs(Z[:, column])))
    b = b.copy()
    b[column] += 0.02 * np.sign(Z[row, column]) - Z[row, column]
    _, cache = ops.linear_forward(X, W, b, "relu")
    zX, zW, zb = zeros_like_all(X, W, b)

    def forward(b_):
        return ops.linear_forward(X, W, b_, "relu")[0]

    direction = np.zeros_like(b)
    direction[column] = -np.sign(Z[row, column])  # straight towards the kink
    result = jacobian_test(forward, b, lambda db: ops.linear_jvp(cache, zX, zW, db),
                           direction=direction, kinks=lambda b_: forward(b_) > 0)
    assert result.crossed.any() and not result.crossed.all()
    assert result.passed and result.exact
    assert "crossed a kink" in str(result)
    # without the kink pattern the same steps produce a false order-1 verdict
    blind = jacobian_test(forward, b, lambda db: ops.linear_jvp(cache, zX, zW, db),
                          direction=direction)
    assert not blind.passed


def test_a_unit_on_its_kink_is_inconclusive_not_a_false_verdict():
    X, W, b, cache = dense_problem("relu")
    b = b.copy()
    Z = X @ W.T + b
    b[0] -= Z[0, 0]  # unit (0, 0) at (round-off distance of) its kink
    forward = lambda b_: ops.linear_forward(X, W, b_, "relu")[0]  # noqa: E731
    _, cache = ops.linear_forward(X, W, b, "relu")
    zX, zW, zb = zeros_like_all(X, W, b)
    direction = np.zeros_like(b)
    direction[0] = -1.0 if forward(b)[0, 0] > 0 else 1.0  # across the kink, whichever side
    result = jacobian_test(forward, b, lambda db: ops.linear_jvp(cache, zX, zW, db),
                           direction=direction, kinks=lambda b_: forward(b_) > 0)
    assert result.verdict == "INCONCLUSIVE" and not result.passed
    assert "kink" in result.reason


def test_float32_reports_its_window_and_never_fails_a_true_derivative():
    results = check.run_checks(ready_made_checks(dtype="float32", quick=True))
    verdicts = {r.verdict for r in results}
    assert verdicts <= {"PASS", "INCONCLUSIVE"}, [r.summary() for r in results
                                                  if r.verdict not in ("PASS", "INCONCLUSIVE")]
    for result in results:
        if isinstance(result, check.TaylorResult) and result.verdict == "INCONCLUSIVE":
            assert "float32" in result.reason or "kink" in result.reason
    # the float32 window stops well before the float64 one: round-off comes sooner
    X, W, b, loss, dX, dW, db = softmax_regression_problem()
    single = gradient_test(lambda W_: loss(X.astype(np.float32), W_, b.astype(np.float32)),
                           W.astype(np.float32), dW.astype(np.float32))
    double = gradient_test(lambda W_: loss(X, W_, b), W, dW)
    assert single.dtype == np.float32
    assert single.eps[single.window_first].min() > 100 * double.eps[double.window_first].min()
    assert single.resolution > 100 * double.resolution
    assert "float32" in str(single)


# --- results and their presentation ---------------------------------------------------------

def test_taylor_result_table_str_and_plot(tmp_path):
    X, W, b, loss, dX, dW, db = softmax_regression_problem()
    result = gradient_test(lambda W_: loss(X, W_, b), W, dW, steps=10, name="softmax W")
    assert len(result.table) == 10 and all(len(row) == 3 for row in result.table)
    eps, zero, first = result.table[1]
    assert eps == 0.5 and zero > first > 0
    assert len(result.orders) == 2
    text = str(result)
    assert "softmax W" in text and "PASS" in text and "order" in text
    assert result.summary().startswith("PASS")
    path = result.plot(str(tmp_path / "taylor.png"))
    assert os.path.getsize(path) > 10_000
    with pytest.raises(ValueError, match="path"):
        result.plot()
    assert check.plot_results([result, result], str(tmp_path / "two.png"), title="t")
    assert check.plot_results([], str(tmp_path / "none.png")) is None


def test_a_check_that_raises_becomes_an_error_result():
    def broken():
        raise RuntimeError("boom")

    result = check.Check("group", "broken check", broken).run()
    assert isinstance(result, check.ErrorResult)
    assert not result.passed and result.verdict == "ERROR" and "boom" in str(result)


def test_networks_keep_their_parameters_after_the_checks():
    items = [c for c in QUICK_CHECKS if c.group.startswith("network-mlp-tanh")]
    for item in items:
        item.run()
    # run again: same verdicts and orders (nothing was left perturbed)
    first = [item.run() for item in items]
    second = [item.run() for item in items]
    for a, b in zip(first, second):
        assert a.verdict == b.verdict
        if isinstance(a, check.TaylorResult):
            np.testing.assert_array_equal(a.first, b.first)


# --- 4. least squares -----------------------------------------------------------------------

def test_least_squares_demo_matches_lstsq_and_momentum_is_faster(tmp_path):
    result = least_squares_demo(m=500, n=20, seed=0)
    assert result.passed, str(result)
    assert result.relative_error < 1e-6
    assert np.linalg.norm(result.x - result.x_lstsq) <= 1e-6 * np.linalg.norm(result.x_lstsq)
    fast = result.runs["momentum"]["iterations_to_tolerance"]
    slow = result.runs["plain"]["iterations_to_tolerance"]
    assert fast is not None and slow is not None and 2 * fast < slow
    objective = result.runs["momentum"]["objective"]
    assert objective[-1] < 1e-12 * objective[0]
    assert result.table[0][0] == "momentum"
    assert "lstsq" in str(result)
    assert os.path.getsize(result.plot(str(tmp_path / "ls.png"))) > 10_000


def test_least_squares_demo_fails_when_it_cannot_converge():
    result = least_squares_demo(m=100, n=10, max_epochs=2)
    assert not result.passed and "above" in result.reason


def test_adam_least_squares_demo_matches_lstsq_and_its_bias_correction(tmp_path):
    result = adam_least_squares_demo(m=500, n=20, seed=0)
    assert result.passed, str(result)
    assert result.relative_error < 1e-6
    assert np.linalg.norm(result.x - result.x_lstsq) <= 1e-6 * np.linalg.norm(result.x_lstsq)
    assert result.run["iterations_to_tolerance"] is not None
    assert result.run["objective"][-1] < 1e-12 * result.run["objective"][0]
    assert result.bias_correction_error < 1e-13
    # the same system as the SGD demo's
    assert np.array_equal(result.x_lstsq, least_squares_demo(m=500, n=20, seed=0).x_lstsq)
    assert result.table[0][0] == "adam" and "lstsq" in str(result) and "bias" in str(result)
    assert os.path.getsize(result.plot(str(tmp_path / "adam.png"))) > 10_000


def test_adam_least_squares_demo_fails_when_it_cannot_converge():
    result = adam_least_squares_demo(m=100, n=10, max_epochs=2)
    assert not result.passed and "above" in result.reason


def _adam_step_with(step_number):
    """Adam.step with the bias corrections of another update number: a plausible bug."""
    def step(self, params, grads, backend=nc.ops):
        backend.adam_(params, grads, self.exp_avg, self.exp_avg_sq,
                      step_number(self.step_count), self.current_lr, *self.step_arguments())
        self.step_count += 1
    return step


@pytest.mark.parametrize("step_number", [lambda count: 1, lambda count: count + 2],
                         ids=["count-stuck-at-1", "count-off-by-one"])
def test_adam_least_squares_demo_fails_with_a_wrong_bias_correction(monkeypatch, step_number):
    """The bias-correction check can fail: with the count stuck at the first update (or one
    ahead), a step on a constant gradient is no longer lr g / (|g| + eps), though Adam may
    still converge to lstsq."""
    monkeypatch.setattr(nc.optim.Adam, "step", _adam_step_with(step_number))
    result = adam_least_squares_demo(m=500, n=20, seed=0)
    assert not result.passed and result.verdict == "FAIL"
    assert "bias correction is wrong" in result.reason
    assert result.bias_correction_error > 0.01


# --- 5. nncore gradcheck --------------------------------------------------------------------

def test_gradcheck_quick_runs_every_check_and_writes_figures(tmp_path, capsys):
    out = tmp_path / "gradcheck"
    assert main(["gradcheck", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    n = len(QUICK_CHECKS)
    assert f"gradcheck: {n} checks, {n} passed, 0 failed, 0 inconclusive" in printed
    assert printed.count("PASS:") == n
    assert "|f(x+eps d)-f(x)-eps d'g|" in printed and "order" in printed
    assert "u^T (J v)" in printed
    assert sorted(os.listdir(out)) == ["least_squares.png", "least_squares_adam.png",
                                       "overview.png"]


def test_gradcheck_exits_1_when_a_check_fails(tmp_path, capsys, monkeypatch):
    X, W, b, loss, dX, dW, db = softmax_regression_problem()
    wrong = check.Check("softmax", "wrong gradient", lambda: gradient_test(
        lambda W_: loss(X, W_, b), W, 1.01 * dW, name="wrong gradient"))
    monkeypatch.setattr(check, "ready_made_checks", lambda **kwargs: [wrong])
    assert main(["gradcheck", "--brief", "--no-plots", "--out", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert "1 failed" in printed and "not passed" in printed and "wrong gradient" in printed
    assert os.listdir(tmp_path) == []


def test_gradcheck_exits_0_when_checks_are_only_inconclusive_unless_strict(tmp_path, capsys,
                                                                          monkeypatch):
    """An inconclusive check is listed but is no failure (a user trial ran the float32
    gradcheck: 0 failed, 11 inconclusive, exit status 1); --strict counts it as one."""
    flat = check.Check("softmax", "flat", lambda: gradient_test(
        lambda w: np.float64(1.0), np.ones(3), np.zeros(3), name="flat function"))
    monkeypatch.setattr(check, "ready_made_checks", lambda **kwargs: [flat])
    argv = ["gradcheck", "--brief", "--no-plots", "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "0 failed, 1 inconclusive" in printed and "not passed" in printed
    assert main(argv + ["--strict"]) == 1


def test_gradcheck_counts_one_thing_in_the_singular(tmp_path, capsys):
    """It printed '1 figures' (and '1 checks')."""
    assert main(["gradcheck", "--quick", "--only", "softmax cross-entropy", "--brief",
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("nncore gradcheck: 1 check (float64")
    assert "gradcheck: 1 check, 1 passed, 0 failed, 0 inconclusive, 0 errors" in printed
    assert f"; 1 figure in {tmp_path}{os.sep}" in printed
    assert os.listdir(tmp_path) == ["overview.png"]


def test_gradcheck_only_and_bad_arguments(tmp_path, capsys):
    assert main(["gradcheck", "--only", "residual tanh", "--brief", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "gradcheck: 8 checks, 8 passed" in printed
    assert main(["gradcheck", "--only", "no such check"]) == 2
    assert "matches no check" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["gradcheck", "--quick", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and len(err.strip().splitlines()) == 1
    for argv in (["gradcheck", "--dtype", "float16"], ["gradcheck", "--seed", "-1"],
                 ["gradcheck", "--bogus"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("nncore gradcheck: error")


def test_importing_check_does_not_import_matplotlib():
    code = "import sys, nncore.check, nncore; nncore.check; print('matplotlib' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                            check=True).stdout
    assert output.strip() == "False"


# --- 6. bad arguments -----------------------------------------------------------------------

def test_bad_arguments_name_the_argument():
    x = np.ones(3)
    f = lambda x_: float(np.sum(x_ ** 2))  # noqa: E731
    with pytest.raises(ValueError, match="grad"):
        gradient_test(f, x, np.ones(4))
    with pytest.raises(TypeError, match="x"):
        gradient_test(f, np.array([True, False]), np.ones(2))
    with pytest.raises(ValueError, match="x"):
        gradient_test(f, np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="factor"):
        gradient_test(f, x, 2 * x, factor=1.5)
    with pytest.raises(ValueError, match="eps0"):
        gradient_test(f, x, 2 * x, eps0=0.0)
    with pytest.raises(ValueError, match="steps"):
        gradient_test(f, x, 2 * x, steps=2)
    with pytest.raises(TypeError, match="steps"):
        gradient_test(f, x, 2 * x, steps=2.5)
    with pytest.raises(ValueError, match="direction"):
        gradient_test(f, x, 2 * x, direction=np.ones(2))
    with pytest.raises(ValueError, match="direction"):
        gradient_test(f, x, 2 * x, direction=np.zeros(3))
    with pytest.raises(TypeError, match="kinks"):
        gradient_test(f, x, 2 * x, kinks="relu")
    with pytest.raises(TypeError, match="jvp"):
        jacobian_test(lambda x_: x_, x, jvp=None)
    with pytest.raises(ValueError, match="vjp"):
        jacobian_transpose_test(lambda v: v, lambda u: np.ones(5), x)
    with pytest.raises(ValueError, match="trials"):
        jacobian_transpose_test(lambda v: v, lambda u: u, x, trials=0)
    with pytest.raises(TypeError, match="dtype"):
        ready_made_checks(dtype="int32")
    with pytest.raises(ValueError, match="backend"):
        ready_made_checks(backend="gpu")
    with pytest.raises(TypeError, match="corrupt"):
        ready_made_checks(corrupt=1.01)
    with pytest.raises(ValueError, match="m must be >= n"):
        least_squares_demo(m=5, n=10)
    with pytest.raises(ValueError, match="momentum"):
        least_squares_demo(momentum=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        least_squares_demo(batch_size=0)
    with pytest.raises(ValueError, match=r"betas\[0\] must be < 1"):
        adam_least_squares_demo(betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="eps must be > 0"):
        adam_least_squares_demo(eps=0.0)
    with pytest.raises(ValueError, match="bias_steps must be >= 1"):
        adam_least_squares_demo(bias_steps=0)
    with pytest.raises(ValueError, match="m must be >= n"):
        adam_least_squares_demo(m=5, n=10)


def test_an_unsettled_float32_window_is_inconclusive_with_advice():
    """A zero-order residual whose local orders never agree before round-off (recorded from a
    float32 gradient test of a GELU ResNet, where eps d'g and the curvature term cross near
    the fourth step) gives no order to fit: the verdict is INCONCLUSIVE, says why, and says
    what to try; with round-off 100 times lower the same residuals pass."""
    from nncore.check.taylor import _verdict

    eps = 0.5 ** np.arange(14)
    zero = np.array([4.762e-02, 7.391e-03, 9.210e-04, 9.209e-05, 1.681e-04, 1.127e-04,
                     6.343e-05, 3.320e-05, 1.719e-05, 9.039e-06, 4.318e-06, 2.530e-06,
                     1.180e-06, 5.456e-07])
    first = np.array([5.21e-02, 9.63e-03, 2.04e-03, 4.69e-04, 1.13e-04, 2.75e-05, 6.79e-06,
                      1.76e-06, 2.98e-07, 2.02e-07, 2.85e-08, 2.40e-07, 5.56e-08, 2.20e-08])
    crossed = np.zeros(14, dtype=bool)
    unit = float(np.finfo(np.float32).eps)

    def verdict(noise):
        return _verdict(eps, zero, first, np.full(14, noise), crossed, 5, unit, None, "d'g")

    result, reason, *_ = verdict(3.78e-07)
    assert result == "INCONCLUSIVE"
    assert "zero-order residual does not settle" in reason
    assert "too short in float32 (try float64" in reason
    # with round-off 100x lower the window reaches the steps where the order is 1
    assert verdict(3.78e-09)[0] == "PASS"
