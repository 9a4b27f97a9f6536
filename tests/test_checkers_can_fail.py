"""The checkers used by test_ops.py can fail: each rejects plausible wrong answers.

A comparison that always passes proves nothing. Each checker from conftest is handed the
right answer (and must pass, so that a rejection is not an artefact of the setup) and then
deliberately wrong ones: a gradient scaled by 1.01, a transposed weight gradient, a dropped
bias, a forgotten activation derivative, a missing 1/n, a wrong VJP. It must raise
AssertionError, with the same tolerances as in test_ops.py.
"""

import numpy as np
import pytest

from conftest import (
    DTYPES,
    assert_adjoint,
    assert_close,
    assert_gradient_matches,
    assert_jvp_matches,
    draw_linear,
    draw_residual,
    linear_backward_scales,
    linear_forward_scale,
    random_array,
)
from nncore import ops, reference

over_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=("float32", "float64"))


def linear_problem(dtype=np.float64, n=5, n_in=4, n_out=4, activation="tanh", seed=0):
    """A square layer (n_in == n_out, so dW and dW.T have the same shape), its cache and
    an upstream gradient, with the reference's gradients."""
    rng = np.random.default_rng(seed)
    X, W, b = draw_linear(rng, n, n_in, n_out, dtype)
    dA = random_array(rng, (n, n_out), dtype)
    A, cache = reference.linear_forward(X, W, b, activation)
    return X, W, b, A, cache, dA, reference.linear_backward(dA, cache)


# --- assert_close --------------------------------------------------------------------------

@over_dtypes
def test_assert_close_accepts_the_kernels_gradient(dtype):
    X, W, b, _, _, dA, (dX, dW, db) = linear_problem(dtype)
    got = ops.linear_backward(dA, ops.linear_forward(X, W, b, "tanh")[1])
    scales = linear_backward_scales(dA, X, W)
    for actual, expected, scale in zip(got, (dX, dW, db), scales):
        assert_close(actual, expected, dtype, scale=scale)


@over_dtypes
def test_assert_close_accepts_rounding_noise(dtype):
    expected = random_array(np.random.default_rng(1), (4, 3), dtype)
    noisy = expected * (1 + np.float64(0.1 * (1e-5 if dtype == np.float32 else 1e-12)))
    assert_close(noisy.astype(dtype), expected, dtype)


@over_dtypes
def test_assert_close_rejects_a_gradient_scaled_by_1_01(dtype):
    X, W, _, _, _, dA, grads = linear_problem(dtype)
    scales = linear_backward_scales(dA, X, W)
    for grad, scale in zip(grads, scales):
        with pytest.raises(AssertionError):
            assert_close((grad * 1.01).astype(dtype), grad, dtype, scale=scale)


@over_dtypes
def test_assert_close_rejects_a_transposed_weight_gradient(dtype):
    X, W, _, _, _, dA, (_, dW, _) = linear_problem(dtype)
    assert dW.shape == dW.T.shape
    with pytest.raises(AssertionError):
        assert_close(np.ascontiguousarray(dW.T), dW, dtype,
                     scale=linear_backward_scales(dA, X, W)[1])


@over_dtypes
def test_assert_close_rejects_a_forward_pass_without_its_bias(dtype):
    X, W, b, A, _, _, _ = linear_problem(dtype)
    without_bias, _ = reference.linear_forward(X, W, np.zeros_like(b), "tanh")
    with pytest.raises(AssertionError):
        assert_close(without_bias, A, dtype, scale=linear_forward_scale(X, W, b))


@over_dtypes
def test_assert_close_rejects_a_backward_pass_without_the_activation_derivative(dtype):
    X, W, b, A, _, dA, (dX, _, _) = linear_problem(dtype)
    with pytest.raises(AssertionError):
        assert_close(dA @ W, dX, dtype, scale=linear_backward_scales(dA, X, W)[0])


@over_dtypes
def test_assert_close_rejects_a_bias_gradient_missing_one_sample(dtype):
    X, W, b, A, cache, dA, (_, _, db) = linear_problem(dtype)
    dZ = dA * (1 - A * A)
    with pytest.raises(AssertionError):
        assert_close(dZ[1:].sum(axis=0), db, dtype, scale=linear_backward_scales(dA, X, W)[2])


def test_assert_close_tolerance_is_tight_in_float64():
    expected = np.linspace(-1.0, 1.0, 7)
    with pytest.raises(AssertionError):
        assert_close(expected * (1 + 1e-10), expected, np.float64)
    with pytest.raises(AssertionError):
        assert_close(0.5 + 1e-10, 0.5, np.float64)  # a scalar loss


def test_assert_close_tolerance_is_tight_in_float32():
    expected = np.linspace(-1.0, 1.0, 7, dtype=np.float32)
    with pytest.raises(AssertionError):
        assert_close((expected * (1 + 1e-4)).astype(np.float32), expected, np.float32)


def test_assert_close_rejects_the_wrong_dtype_shape_or_a_nan():
    expected = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    with pytest.raises(AssertionError, match="dtype"):
        assert_close(expected.astype(np.float32), expected, np.float64)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(expected.T.copy(), expected, np.float64)
    with pytest.raises(AssertionError, match="finite"):
        assert_close(np.where(expected > 0.5, np.nan, expected), expected, np.float64)


# --- finite differences --------------------------------------------------------------------

def linear_loss_and_gradients(activation="tanh", seed=2):
    """The loss <G, A(X, W, b)>, its parameters, and its correct gradients."""
    rng = np.random.default_rng(seed)
    X, W, b = draw_linear(rng, 4, 3, 3)
    G = random_array(rng, (4, 3))

    def loss():
        return float(np.vdot(G, reference.linear_forward(X, W, b, activation)[0]))

    dX, dW, db = reference.linear_backward(G, reference.linear_forward(X, W, b, activation)[1])
    return loss, dict(X=X, W=W, b=b), dict(X=dX, W=dW, b=db), G


def test_finite_differences_accept_the_right_gradient():
    loss, params, grads, _ = linear_loss_and_gradients()
    assert_gradient_matches(loss, params, grads)


@pytest.mark.parametrize("wrong", [
    pytest.param(lambda g, G, p: dict(g, W=g["W"] * 1.01), id="dW-scaled-by-1.01"),
    pytest.param(lambda g, G, p: dict(g, W=g["W"].T.copy()), id="dW-transposed"),
    pytest.param(lambda g, G, p: dict(g, b=-g["b"]), id="db-sign-flipped"),
    pytest.param(lambda g, G, p: dict(g, b=G.sum(axis=0)), id="db-without-activation"),
    pytest.param(lambda g, G, p: dict(g, X=G @ p["W"]), id="dX-without-activation"),
])
def test_finite_differences_reject_a_wrong_gradient(wrong):
    loss, params, grads, G = linear_loss_and_gradients()
    with pytest.raises(AssertionError):
        assert_gradient_matches(loss, params, wrong(grads, G, params))


def test_finite_differences_reject_a_cross_entropy_gradient_without_the_mean():
    rng = np.random.default_rng(3)
    logits, labels = random_array(rng, (4, 3)), np.array([0, 2, 1, 2])
    _, grad = reference.softmax_cross_entropy(logits, labels)
    loss = lambda: reference.softmax_cross_entropy(logits, labels)[0]  # noqa: E731
    assert_gradient_matches(loss, dict(logits=logits), dict(logits=grad))
    with pytest.raises(AssertionError):
        assert_gradient_matches(loss, dict(logits=logits), dict(logits=grad * len(labels)))


def test_finite_differences_reject_a_least_squares_gradient_without_the_mean():
    rng = np.random.default_rng(4)
    A, x, b = random_array(rng, (6, 3)), random_array(rng, 3), random_array(rng, 6)
    _, grad = reference.least_squares(A, x, b)
    loss = lambda: reference.least_squares(A, x, b)[0]  # noqa: E731
    assert_gradient_matches(loss, dict(x=x), dict(x=grad))
    with pytest.raises(AssertionError):
        assert_gradient_matches(loss, dict(x=x), dict(x=A.T @ (A @ x - b)))


def test_finite_difference_jvp_check_rejects_a_wrong_jvp():
    rng = np.random.default_rng(5)
    X, W, b = draw_linear(rng, 4, 3, 2)
    params = dict(X=X, W=W, b=b)
    directions = {k: random_array(rng, v.shape) for k, v in params.items()}
    A, cache = reference.linear_forward(X, W, b, "sigmoid")
    forward = lambda: reference.linear_forward(X, W, b, "sigmoid")[0]  # noqa: E731
    right = reference.linear_jvp(cache, directions["X"], directions["W"], directions["b"])
    assert_jvp_matches(forward, params, directions, right)
    without_bias = reference.linear_jvp(cache, directions["X"], directions["W"],
                                        np.zeros_like(b))
    without_derivative = directions["X"] @ W.T + X @ directions["W"].T + directions["b"]
    for wrong in (without_bias, without_derivative, right * 1.01):
        with pytest.raises(AssertionError):
            assert_jvp_matches(forward, params, directions, wrong)


# --- adjoint identity ----------------------------------------------------------------------

@over_dtypes
def test_adjoint_check_rejects_a_wrong_linear_vjp(dtype):
    rng = np.random.default_rng(6)
    X, W, b = draw_linear(rng, 5, 3, 3, dtype)
    _, cache = ops.linear_forward(X, W, b, "tanh")
    u = random_array(rng, (5, 3), dtype)
    v = tuple(random_array(rng, a.shape, dtype) for a in (X, W, b))
    Jv = ops.linear_jvp(cache, *v)
    dX, dW, db = ops.linear_backward(u, cache)
    assert_adjoint(u, Jv, (dX, dW, db), v, rtol=1e-12 if dtype == np.float64 else 1e-5)
    _, identity_cache = ops.linear_forward(X, W, b, "identity")
    wrong_vjps = {
        "dW scaled by 1.01": (dX, dW * 1.01, db),
        "dW transposed": (dX, np.ascontiguousarray(dW.T), db),
        "db dropped": (dX, dW, np.zeros_like(db)),
        "VJP of another activation": ops.linear_backward(u, identity_cache),
    }
    for name, wrong in wrong_vjps.items():
        with pytest.raises(AssertionError):
            assert_adjoint(u, Jv, wrong, v, rtol=1e-12 if dtype == np.float64 else 1e-5)


def test_adjoint_check_rejects_a_residual_vjp_without_the_skip_connection():
    rng = np.random.default_rng(7)
    X, W1, b1, W2 = draw_residual(rng, 4, 3, 5)
    _, cache = ops.residual_forward(X, W1, b1, W2, "relu")
    u = random_array(rng, X.shape)
    v = tuple(random_array(rng, a.shape) for a in (X, W1, b1, W2))
    Jv = ops.residual_jvp(cache, *v)
    dX, dW1, db1, dW2 = ops.residual_backward(u, cache)
    assert_adjoint(u, Jv, (dX, dW1, db1, dW2), v)
    with pytest.raises(AssertionError):
        assert_adjoint(u, Jv, (dX - u, dW1, db1, dW2), v)
    with pytest.raises(AssertionError):
        assert_adjoint(u, Jv, (dX, dW1, db1, dW2 * (1 + 1e-9)), v)
