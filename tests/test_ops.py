"""Tests of nncore.ops (the Cython kernels) against nncore.reference and against mathematics.

1. ops == reference on hypothesis-drawn shapes, for both dtypes and every activation.
2. Layouts and buffers: read-only, Fortran-ordered and strided inputs; ``out=``; the cache's
   scratch buffer.
3. Gradients: backward passes and JVPs against central finite differences (float64), and
   the adjoint identity <u, J v> == <J^T u, v> between each JVP and its backward pass.
4. Closed forms: cross-entropy via logsumexp, least squares at the lstsq solution, extreme
   logits, the activations at extreme inputs and the float32 ones' accuracy against
   float64, SGD and Adam against hand-written loops of PyTorch's rules.
5. Bad input: both modules raise the same exception, with a message naming the argument.

Values are drawn by numpy Generators seeded by hypothesis, which chooses (and shrinks) the
shapes and seeds. Shapes include empty batches, single samples and zero-width layers.
"""

from typing import Callable, NamedTuple

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (
    ACTIVATIONS,
    DTYPES,
    MODULES,
    RTOL,
    assert_adjoint,
    assert_all_close,
    assert_close,
    assert_gradient_matches,
    assert_jvp_matches,
    dims,
    draw_linear,
    draw_residual,
    examples,
    least_squares_scales,
    linear_backward_scales,
    linear_forward_scale,
    linear_jvp_scale,
    random_array,
    residual_backward_scales,
    residual_forward_scale,
    residual_jvp_scale,
    seeds,
)
from nncore import ops, reference
from nncore._kernels import SMALL_TRANSPOSE_ELEMENTS

MODULE_IDS = ("ops", "reference")
over_modules = pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
over_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=("float32", "float64"))
over_activations = pytest.mark.parametrize("activation", ACTIVATIONS)

#: (momentum, nesterov, weight_decay): every valid combination of the values under test.
SGD_SETTINGS = [
    pytest.param(momentum, nesterov, weight_decay,
                 id=f"momentum={momentum}-nesterov={nesterov}-weight_decay={weight_decay}")
    for momentum in (0.0, 0.9)
    for nesterov in (False, True)
    for weight_decay in (0.0, 0.01)
    if momentum > 0 or not nesterov
]

#: (beta1, beta2, weight_decay, decoupled): Adam and AdamW, with and without weight decay,
#: and a beta1 <= 0.5, whose lerp weight 1 - beta1 takes torch.lerp's other formula.
ADAM_SETTINGS = [
    pytest.param(beta1, beta2, weight_decay, decoupled,
                 id=f"{'adamw' if decoupled else 'adam'}-beta1={beta1}-beta2={beta2}"
                    f"-weight_decay={weight_decay}")
    for beta1, beta2 in ((0.9, 0.999), (0.3, 0.9))
    for weight_decay in (0.0, 0.05)
    for decoupled in (False, True)
    if weight_decay or not decoupled
]


def rng_from(seed):
    return np.random.default_rng(seed)


# ============================================================================================
# 1. ops against reference
# ============================================================================================

@over_dtypes
@settings(max_examples=examples(30), deadline=None)
@given(n=dims(0, 6), k=dims(0, 6), scale=st.sampled_from([1.0, 50.0]), seed=seeds)
def test_softmax_matches_reference(n, k, scale, seed, dtype):
    logits = random_array(rng_from(seed), (n, k), dtype, scale)
    assert_close(ops.softmax(logits), reference.softmax(logits), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
def test_softmax_in_place_equals_softmax_into_another_array(module, dtype):
    logits = random_array(np.random.default_rng(9), (37, 5), dtype, 30.0)
    expected = module.softmax(logits)
    assert module.softmax(logits, out=logits) is logits
    assert np.array_equal(logits, expected)


@over_dtypes
@settings(max_examples=examples(30), deadline=None)
@given(n=dims(0, 6), k=dims(1, 6), scale=st.sampled_from([1.0, 50.0]),
       label_dtype=st.sampled_from([np.int64, np.int32, np.uint8]), seed=seeds)
def test_softmax_cross_entropy_matches_reference(n, k, scale, label_dtype, seed, dtype):
    rng = rng_from(seed)
    logits = random_array(rng, (n, k), dtype, scale)
    labels = rng.integers(0, k, n).astype(label_dtype)
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    expected_loss, expected_grad = reference.softmax_cross_entropy(logits, labels)
    assert type(loss) is float
    # the loss is a mean of (max + log(sum) - logit): its rounding scales with the logits
    assert_close(loss, expected_loss, dtype, scale=1 + np.max(np.abs(logits), initial=0))
    # gradient entries are (p - onehot) / n with p in [0, 1]
    assert_close(grad, expected_grad, dtype, scale=1 / max(n, 1), name="dlogits")


@over_activations
@over_dtypes
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(), n_in=dims(), n_out=dims(), seed=seeds)
def test_linear_forward_matches_reference(n, n_in, n_out, seed, dtype, activation):
    X, W, b = draw_linear(rng_from(seed), n, n_in, n_out, dtype)
    A, cache = ops.linear_forward(X, W, b, activation)
    expected, _ = reference.linear_forward(X, W, b, activation)
    assert_close(A, expected, dtype, scale=linear_forward_scale(X, W, b), name="A")
    assert cache.A is A and cache.activation == activation


@over_activations
@over_dtypes
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(), n_in=dims(), n_out=dims(), seed=seeds)
def test_linear_backward_matches_reference(n, n_in, n_out, seed, dtype, activation):
    rng = rng_from(seed)
    X, W, b = draw_linear(rng, n, n_in, n_out, dtype)
    dA = random_array(rng, (n, n_out), dtype)
    grads = ops.linear_backward(dA, ops.linear_forward(X, W, b, activation)[1])
    expected = reference.linear_backward(dA, reference.linear_forward(X, W, b, activation)[1])
    assert_all_close(grads, expected, dtype, names=("dX", "dW", "db"),
                     scales=linear_backward_scales(dA, X, W))


@over_activations
@over_dtypes
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(), n_in=dims(), n_out=dims(), seed=seeds)
def test_linear_jvp_matches_reference(n, n_in, n_out, seed, dtype, activation):
    rng = rng_from(seed)
    X, W, b = draw_linear(rng, n, n_in, n_out, dtype)
    tangents = (random_array(rng, X.shape, dtype), random_array(rng, W.shape, dtype),
                random_array(rng, b.shape, dtype))
    dA = ops.linear_jvp(ops.linear_forward(X, W, b, activation)[1], *tangents)
    expected = reference.linear_jvp(reference.linear_forward(X, W, b, activation)[1], *tangents)
    assert_close(dA, expected, dtype, scale=linear_jvp_scale(X, W, *tangents), name="dA")


@over_activations
@over_dtypes
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(), width=dims(), hidden=dims(), seed=seeds)
def test_residual_forward_matches_reference(n, width, hidden, seed, dtype, activation):
    X, W1, b1, W2 = draw_residual(rng_from(seed), n, width, hidden, dtype)
    Y, cache = ops.residual_forward(X, W1, b1, W2, activation)
    expected, expected_cache = reference.residual_forward(X, W1, b1, W2, activation)
    assert_close(cache.H, expected_cache.H, dtype,
                 scale=linear_forward_scale(X, W1, b1), name="H")
    assert_close(Y, expected, dtype, scale=residual_forward_scale(X, W1, b1, W2, cache.H),
                 name="Y")


@over_activations
@over_dtypes
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(), width=dims(), hidden=dims(), seed=seeds)
def test_residual_backward_matches_reference(n, width, hidden, seed, dtype, activation):
    rng = rng_from(seed)
    X, W1, b1, W2 = draw_residual(rng, n, width, hidden, dtype)
    dY = random_array(rng, X.shape, dtype)
    _, cache = ops.residual_forward(X, W1, b1, W2, activation)
    grads = ops.residual_backward(dY, cache)
    _, expected_cache = reference.residual_forward(X, W1, b1, W2, activation)
    expected = reference.residual_backward(dY, expected_cache)
    assert_all_close(grads, expected, dtype, names=("dX", "dW1", "db1", "dW2"),
                     scales=residual_backward_scales(dY, X, W1, b1, W2, expected_cache.H))


@over_activations
@over_dtypes
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(), width=dims(), hidden=dims(), seed=seeds)
def test_residual_jvp_matches_reference(n, width, hidden, seed, dtype, activation):
    rng = rng_from(seed)
    X, W1, b1, W2 = draw_residual(rng, n, width, hidden, dtype)
    tangents = tuple(random_array(rng, a.shape, dtype) for a in (X, W1, b1, W2))
    dY = ops.residual_jvp(ops.residual_forward(X, W1, b1, W2, activation)[1], *tangents)
    _, expected_cache = reference.residual_forward(X, W1, b1, W2, activation)
    expected = reference.residual_jvp(expected_cache, *tangents)
    scale = residual_jvp_scale(X, W1, b1, W2, expected_cache.H, *tangents)
    assert_close(dY, expected, dtype, scale=scale, name="dY")


@pytest.mark.parametrize("momentum, nesterov, weight_decay", SGD_SETTINGS)
@over_dtypes
@settings(max_examples=examples(15), deadline=None)
@given(size=dims(0, 8), lr=st.sampled_from([0.0, 0.01, 0.5]), seed=seeds)
def test_sgd_momentum_matches_reference(size, lr, seed, dtype, momentum, nesterov,
                                        weight_decay):
    rng = rng_from(seed)
    param, grad, velocity = (random_array(rng, size, dtype) for _ in range(3))
    expected_param, expected_velocity = param.copy(), velocity.copy()
    returned = ops.sgd_momentum_(param, grad, velocity, lr, momentum, nesterov, weight_decay)
    reference.sgd_momentum_(expected_param, grad, expected_velocity, lr, momentum, nesterov,
                            weight_decay)
    assert returned is None
    # every entry is a few products of O(1) numbers: scale 1 covers cancellation
    assert_close(velocity, expected_velocity, dtype, scale=1.0, name="velocity")
    assert_close(param, expected_param, dtype, scale=1.0, name="param")


def adam_scales(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
                decoupled):
    """Entry by entry, the size of the terms each output of one Adam update is made of (in
    float64): rounding errors are relative to these, not to the outputs, which can cancel.
    The parameter's step ``s m / denom`` carries the error of m, amplified by 1 / denom."""
    p, g, m, v = (np.abs(a.astype(np.float64)) for a in (param, grad, exp_avg, exp_avg_sq))
    g = g + (0.0 if decoupled else weight_decay * p)
    m_scale = m + g
    v_scale = v + g * g
    denom = np.sqrt(beta2 * v + (1 - beta2) * g * g) / np.sqrt(1 - beta2 ** step) + eps
    step_size = lr / (1 - beta1 ** step)
    return p + step_size * (m_scale + v_scale) / denom, m_scale, v_scale


@pytest.mark.parametrize("beta1, beta2, weight_decay, decoupled", ADAM_SETTINGS)
@over_dtypes
@settings(max_examples=examples(15), deadline=None)
@given(size=dims(0, 8), lr=st.sampled_from([0.0, 0.01, 0.5]), step=st.sampled_from([1, 2, 10]),
       seed=seeds)
def test_adam_matches_reference(size, lr, step, seed, dtype, beta1, beta2, weight_decay,
                                decoupled):
    rng = rng_from(seed)
    param, grad, exp_avg = (random_array(rng, size, dtype) for _ in range(3))
    exp_avg_sq = np.abs(random_array(rng, size, dtype))
    grad.setflags(write=False)  # grad is only read
    arguments = (step, lr, beta1, beta2, 1e-8, weight_decay, decoupled)
    scales = adam_scales(param, grad, exp_avg, exp_avg_sq, *arguments)
    expected = [param.copy(), exp_avg.copy(), exp_avg_sq.copy()]
    returned = ops.adam_(param, grad, exp_avg, exp_avg_sq, *arguments)
    reference.adam_(expected[0], grad, expected[1], expected[2], *arguments)
    assert returned is None
    for name, actual, wanted, scale in zip(("param", "exp_avg", "exp_avg_sq"),
                                           (param, exp_avg, exp_avg_sq), expected, scales):
        assert_close(actual, wanted, dtype, scale=scale, name=name)


@over_dtypes
@settings(max_examples=examples(30), deadline=None)
@given(m=dims(0, 6), n=dims(0, 5), seed=seeds)
def test_least_squares_matches_reference(m, n, seed, dtype):
    rng = rng_from(seed)
    A = random_array(rng, (m, n), dtype)
    x, b = random_array(rng, n, dtype), random_array(rng, m, dtype)
    loss, grad = ops.least_squares(A, x, b)
    expected_loss, expected_grad = reference.least_squares(A, x, b)
    loss_scale, grad_scale = least_squares_scales(A, x, b)
    assert type(loss) is float
    assert_close(loss, expected_loss, dtype, scale=loss_scale, name="loss")
    assert_close(grad, expected_grad, dtype, scale=grad_scale, name="grad")


def assert_linear_layer_matches_reference(rng, n, n_in, n_out, dtype, activation):
    """linear_forward, linear_backward and linear_jvp of ops against reference."""
    X, W, b = draw_linear(rng, n, n_in, n_out, dtype)
    dA = random_array(rng, (n, n_out), dtype)
    A, cache = ops.linear_forward(X, W, b, activation)
    expected_A, expected_cache = reference.linear_forward(X, W, b, activation)
    assert_close(A, expected_A, dtype, scale=linear_forward_scale(X, W, b), name="A")
    assert_all_close(ops.linear_backward(dA, cache),
                     reference.linear_backward(dA, expected_cache), dtype,
                     names=("dX", "dW", "db"), scales=linear_backward_scales(dA, X, W))
    tangents = tuple(random_array(rng, a.shape, dtype) for a in (X, W, b))
    assert_close(ops.linear_jvp(cache, *tangents),
                 reference.linear_jvp(expected_cache, *tangents), dtype, name="linear JVP",
                 scale=linear_jvp_scale(X, W, *tangents))


def assert_residual_block_matches_reference(rng, n, width, hidden, dtype, activation):
    """residual_forward, residual_backward and residual_jvp of ops against reference."""
    X, W1, b1, W2 = draw_residual(rng, n, width, hidden, dtype)
    dY = random_array(rng, X.shape, dtype)
    Y, cache = ops.residual_forward(X, W1, b1, W2, activation)
    expected_Y, expected_cache = reference.residual_forward(X, W1, b1, W2, activation)
    assert_close(Y, expected_Y, dtype, name="Y",
                 scale=residual_forward_scale(X, W1, b1, W2, expected_cache.H))
    assert_all_close(ops.residual_backward(dY, cache),
                     reference.residual_backward(dY, expected_cache), dtype,
                     names=("dX", "dW1", "db1", "dW2"),
                     scales=residual_backward_scales(dY, X, W1, b1, W2, expected_cache.H))
    tangents = tuple(random_array(rng, a.shape, dtype) for a in (X, W1, b1, W2))
    assert_close(ops.residual_jvp(cache, *tangents),
                 reference.residual_jvp(expected_cache, *tangents), dtype, name="residual JVP",
                 scale=residual_jvp_scale(X, W1, b1, W2, expected_cache.H, *tangents))


# Widths around the vector lengths of the activation loops (8 and 16 lanes) and beyond the
# kernels' 256-column block for bias-gradient sums; the hypothesis tests stay below 6.
@over_activations
@over_dtypes
@pytest.mark.parametrize("n, n_in, n_out", [(3, 2, 7), (9, 8, 16), (17, 33, 15),
                                            (2, 3, 300), (40, 5, 513)])
def test_wide_layers_match_reference(n, n_in, n_out, dtype, activation):
    rng = rng_from(n * n_out)
    assert_linear_layer_matches_reference(rng, n, n_in, n_out, dtype, activation)
    # the same width as the hidden layer of a residual block
    assert_residual_block_matches_reference(rng, n, n_in, n_out, dtype, activation)


# _gemm computes X @ W.T (every forward and JVP product; W is (rows, cols), so B^T has
# rows * cols elements) in one of two ways: up to SMALL_TRANSPOSE_ELEMENTS it copies W.T
# into a stack buffer and calls BLAS without transposing; above it, BLAS transposes itself.
# The shapes above stay on the first path, so these put W, W1, W2 and their tangents on
# both sides of the threshold. (The backward passes transpose only A; they run here too.)
SMALL_TRANSPOSE = SMALL_TRANSPOSE_ELEMENTS


def _gemm_path(rows, cols):
    return "stack-copy" if rows * cols <= SMALL_TRANSPOSE else "blas-transposed"


#: (n_in, n_out) of a dense layer: W is (n_out, n_in).
GEMM_LINEAR_SHAPES = [
    (SMALL_TRANSPOSE // 128, 128),        # 64 x 128 = 8192, exactly the threshold: stack copy
    (SMALL_TRANSPOSE // 64, 64),          # 128 x 64 = 8192, k > n: stack copy
    (SMALL_TRANSPOSE // 128 + 1, 128),    # 65 x 128 = 8320: BLAS transposes
    (SMALL_TRANSPOSE // 64 + 1, 65),      # 129 x 65 = 8385, k > n: BLAS transposes
]
#: (width, hidden) of a residual block: W1 is (hidden, width), W2 (width, hidden).
GEMM_RESIDUAL_SHAPES = [
    (SMALL_TRANSPOSE // 128, 128),        # 64 x 128 = 8192: stack copy
    (96, SMALL_TRANSPOSE // 96 + 1),      # 96 x 86 = 8256: BLAS transposes
    (SMALL_TRANSPOSE // 64 + 1, 64),      # 129 x 64 = 8256, width > hidden: BLAS transposes
]


@over_activations
@over_dtypes
@pytest.mark.parametrize("n_in, n_out", [
    pytest.param(n_in, n_out, id=f"{n_in}x{n_out}-{_gemm_path(n_in, n_out)}")
    for n_in, n_out in GEMM_LINEAR_SHAPES])
def test_linear_layer_matches_reference_on_both_gemm_paths(n_in, n_out, dtype, activation):
    assert [_gemm_path(*shape) for shape in GEMM_LINEAR_SHAPES] == (
        ["stack-copy"] * 2 + ["blas-transposed"] * 2)
    assert_linear_layer_matches_reference(rng_from(n_in * n_out), 7, n_in, n_out, dtype,
                                          activation)


@over_activations
@over_dtypes
@pytest.mark.parametrize("width, hidden", [
    pytest.param(width, hidden, id=f"{width}x{hidden}-{_gemm_path(width, hidden)}")
    for width, hidden in GEMM_RESIDUAL_SHAPES])
def test_residual_block_matches_reference_on_both_gemm_paths(width, hidden, dtype,
                                                             activation):
    assert [_gemm_path(*shape) for shape in GEMM_RESIDUAL_SHAPES] == (
        ["stack-copy"] + ["blas-transposed"] * 2)
    assert_residual_block_matches_reference(rng_from(width * hidden), 7, width, hidden, dtype,
                                            activation)


@over_dtypes
@pytest.mark.parametrize("k", [1, 7, 8, 17, 300])
def test_wide_softmax_cross_entropy_matches_reference(k, dtype):
    rng = rng_from(k)
    logits = random_array(rng, (5, k), dtype, scale=5.0)
    labels = rng.integers(0, k, 5)
    assert_close(ops.softmax(logits), reference.softmax(logits), dtype, name="softmax")
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    expected_loss, expected_grad = reference.softmax_cross_entropy(logits, labels)
    assert_close(loss, expected_loss, dtype, scale=1 + np.abs(logits).max(), name="loss")
    assert_close(grad, expected_grad, dtype, scale=1 / 5, name="dlogits")


# ============================================================================================
# 2. Layouts, read-only inputs, out=, the scratch buffer
# ============================================================================================
# Each case builds the inputs of one function (make) and calls it through a module (call).
# ``out`` says what ``out=`` receives: the index of a result, "all" (a tuple, for backward
# passes), or None (no out= argument).

class Case(NamedTuple):
    make: Callable
    call: Callable
    out: object


def _linear(rng, dtype):
    X, W, b = draw_linear(rng, 5, 4, 3, dtype)
    return dict(X=X, W=W, b=b)


def _residual(rng, dtype):
    X, W1, b1, W2 = draw_residual(rng, 5, 4, 3, dtype)
    return dict(X=X, W1=W1, b1=b1, W2=W2)


def _with(make, **extra_shapes):
    """``make`` plus random arrays of the given shapes (a string names an input to copy)."""
    def build(rng, dtype):
        inputs = make(rng, dtype)
        for name, shape in extra_shapes.items():
            shape = inputs[shape].shape if isinstance(shape, str) else shape
            inputs[name] = random_array(rng, shape, dtype)
        return inputs
    return build


def _sgd_step(m, param, grad, velocity):
    param, velocity = param.copy(), velocity.copy()  # updated in place: keep the inputs
    m.sgd_momentum_(param, grad, velocity, 0.1, momentum=0.9, nesterov=True,
                    weight_decay=0.01)
    return param, velocity


def _adam_step(m, param, grad, exp_avg, exp_avg_sq):
    param, exp_avg, exp_avg_sq = param.copy(), exp_avg.copy(), exp_avg_sq.copy()
    m.adam_(param, grad, exp_avg, np.abs(exp_avg_sq), 3, 0.1, weight_decay=0.01)
    return param, exp_avg


CASES = {
    "softmax": Case(
        lambda rng, dtype: dict(logits=random_array(rng, (5, 4), dtype, 3.0)),
        lambda m, logits, out=None: (m.softmax(logits, out=out),),
        out=0),
    "softmax_cross_entropy": Case(
        lambda rng, dtype: dict(logits=random_array(rng, (5, 4), dtype, 3.0),
                                labels=rng.integers(0, 4, 5)),
        lambda m, logits, labels, out=None: m.softmax_cross_entropy(logits, labels, out=out),
        out=1),
    "linear_forward": Case(
        _linear,
        lambda m, X, W, b, out=None: (m.linear_forward(X, W, b, "sigmoid", out=out)[0],),
        out=0),
    "linear_backward": Case(
        _with(_linear, dA=(5, 3)),
        lambda m, X, W, b, dA, out=None: m.linear_backward(
            dA, m.linear_forward(X, W, b, "tanh")[1], out=out),
        out="all"),
    "linear_jvp": Case(
        _with(_linear, dX="X", dW="W", db="b"),
        lambda m, X, W, b, dX, dW, db, out=None: (m.linear_jvp(
            m.linear_forward(X, W, b, "relu")[1], dX, dW, db, out=out),),
        out=0),
    "residual_forward": Case(
        _residual,
        lambda m, X, W1, b1, W2, out=None: (m.residual_forward(X, W1, b1, W2, "tanh",
                                                               out=out)[0],),
        out=0),
    "residual_backward": Case(
        _with(_residual, dY="X"),
        lambda m, X, W1, b1, W2, dY, out=None: m.residual_backward(
            dY, m.residual_forward(X, W1, b1, W2, "sigmoid")[1], out=out),
        out="all"),
    "residual_jvp": Case(
        _with(_residual, dX="X", dW1="W1", db1="b1", dW2="W2"),
        lambda m, X, W1, b1, W2, dX, dW1, db1, dW2, out=None: (m.residual_jvp(
            m.residual_forward(X, W1, b1, W2, "tanh")[1], dX, dW1, db1, dW2, out=out),),
        out=0),
    "sgd_momentum_": Case(
        lambda rng, dtype: {name: random_array(rng, 6, dtype)
                            for name in ("param", "grad", "velocity")},
        _sgd_step,
        out=None),
    "adam_": Case(
        lambda rng, dtype: {name: random_array(rng, 6, dtype)
                            for name in ("param", "grad", "exp_avg", "exp_avg_sq")},
        _adam_step,
        out=None),
    "least_squares": Case(
        lambda rng, dtype: dict(A=random_array(rng, (5, 3), dtype),
                                x=random_array(rng, 3, dtype), b=random_array(rng, 5, dtype)),
        lambda m, A, x, b: m.least_squares(A, x, b),
        out=None),
}
CASES_WITH_OUT = [name for name, case in CASES.items() if case.out is not None]


def fortran_order(a):
    return np.asfortranarray(a)


def every_other_element(a):
    """A view with stride 2 in every dimension, holding the values of ``a``."""
    big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def negative_strides(a):
    """A view with negative strides in every dimension, holding the values of ``a``."""
    return np.flip(np.flip(a).copy())


def read_only(a):
    a = a.copy()
    a.setflags(write=False)
    return a


@over_modules
@over_dtypes
@pytest.mark.parametrize("layout", [fortran_order, every_other_element, negative_strides,
                                    read_only])
@pytest.mark.parametrize("name", list(CASES))
def test_input_layout_does_not_change_the_result(name, layout, dtype, module):
    case = CASES[name]
    inputs = case.make(rng_from(0), dtype)
    expected = case.call(module, **inputs)
    transformed = {k: layout(v) for k, v in inputs.items()}
    if layout is read_only:
        assert not any(a.flags.writeable for a in transformed.values())
    elif layout is not fortran_order:
        assert not any(a.flags.c_contiguous for a in transformed.values() if a.ndim == 2)
    results = case.call(module, **transformed)
    assert len(results) == len(expected)
    for i, (got, want) in enumerate(zip(results, expected)):
        assert_close(got, want, dtype, name=f"result {i}")
    for k, v in transformed.items():  # the inputs were not written to
        np.testing.assert_array_equal(v, inputs[k], err_msg=f"input {k} changed")


@over_modules
@over_dtypes
@pytest.mark.parametrize("name", CASES_WITH_OUT)
def test_out_receives_the_result_and_is_returned(name, dtype, module):
    case = CASES[name]
    inputs = case.make(rng_from(1), dtype)
    expected = case.call(module, **inputs)
    targets = range(len(expected)) if case.out == "all" else [case.out]
    buffers = [np.full_like(expected[i], np.nan) for i in targets]
    out = tuple(buffers) if case.out == "all" else buffers[0]
    results = case.call(module, **inputs, out=out)
    for i, buffer in zip(targets, buffers):
        assert results[i] is buffer
        assert np.shares_memory(results[i], buffer)
    for i, (got, want) in enumerate(zip(results, expected)):
        assert_close(got, want, dtype, name=f"result {i}")


@over_modules
@over_dtypes
@pytest.mark.parametrize("name", list(CASES))
def test_results_without_out_are_new_arrays(name, dtype, module):
    case = CASES[name]
    inputs = case.make(rng_from(2), dtype)
    results = case.call(module, **inputs)
    arrays = [r for r in results if isinstance(r, np.ndarray)]
    assert arrays
    for r in arrays:
        assert r.dtype == dtype and r.flags.c_contiguous and r.flags.writeable
        for k, v in inputs.items():
            assert not np.shares_memory(r, v), f"a result shares memory with input {k}"
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)


@over_dtypes
def test_forward_cache_refers_to_contiguous_inputs_without_copying(dtype):
    X, W, b = draw_linear(rng_from(3), 4, 3, 2, dtype)
    A, cache = ops.linear_forward(X, W, b, "tanh")
    assert cache.X is X and cache.W is W and cache.A is A
    cached_X, cached_W, cached_A, activation = cache  # unpacks like the reference's tuple
    assert cached_X is X and cached_W is W and cached_A is A and activation == "tanh"
    X, W1, b1, W2 = draw_residual(rng_from(3), 4, 3, 2, dtype)
    _, cache = ops.residual_forward(X, W1, b1, W2, "relu")
    assert cache.X is X and cache.W1 is W1 and cache.W2 is W2


@over_activations
@over_dtypes
def test_linear_backward_reuses_the_cache_scratch_buffer(dtype, activation):
    rng = rng_from(4)
    X, W, b = draw_linear(rng, 5, 4, 3, dtype)
    dA1, dA2 = random_array(rng, (5, 3), dtype), random_array(rng, (5, 3), dtype)
    _, cache = ops.linear_forward(X, W, b, activation)
    first = ops.linear_backward(dA1, cache)
    first_values = [g.copy() for g in first]
    scratch = cache._scratch
    assert isinstance(scratch, np.ndarray) and scratch.shape == (5, 3)
    scratch_id = id(scratch)
    out = tuple(np.empty_like(g) for g in first)
    second = ops.linear_backward(dA2, cache)
    third = ops.linear_backward(dA2, cache, out=out)
    assert cache._scratch is scratch and id(cache._scratch) == scratch_id
    # reuse changes nothing: earlier results are intact, later ones match a fresh cache
    for g, value in zip(first, first_values):
        np.testing.assert_array_equal(g, value)
    fresh = ops.linear_backward(dA2, ops.linear_forward(X, W, b, activation)[1])
    for g2, g3, want in zip(second, third, fresh):
        np.testing.assert_array_equal(g2, want)
        np.testing.assert_array_equal(g3, want)
        assert not np.shares_memory(g2, scratch)


@over_activations
@over_dtypes
def test_residual_backward_and_jvp_reuse_the_cache_scratch_buffer(dtype, activation):
    rng = rng_from(5)
    X, W1, b1, W2 = draw_residual(rng, 5, 4, 3, dtype)
    dY1, dY2 = random_array(rng, X.shape, dtype), random_array(rng, X.shape, dtype)
    tangents = tuple(random_array(rng, a.shape, dtype) for a in (X, W1, b1, W2))
    _, cache = ops.residual_forward(X, W1, b1, W2, activation)
    first = ops.residual_backward(dY1, cache)
    first_values = [g.copy() for g in first]
    scratch = cache._scratch
    assert isinstance(scratch, np.ndarray) and scratch.shape == cache.H.shape
    scratch_id = id(scratch)
    second = ops.residual_backward(dY2, cache)
    jvp = ops.residual_jvp(cache, *tangents)
    assert cache._scratch is scratch and id(cache._scratch) == scratch_id
    for g, value in zip(first, first_values):
        np.testing.assert_array_equal(g, value)
    fresh_cache = ops.residual_forward(X, W1, b1, W2, activation)[1]
    for g, want in zip(second, ops.residual_backward(dY2, fresh_cache)):
        np.testing.assert_array_equal(g, want)
        assert not np.shares_memory(g, scratch)
    fresh_cache = ops.residual_forward(X, W1, b1, W2, activation)[1]
    np.testing.assert_array_equal(jvp, ops.residual_jvp(fresh_cache, *tangents))


@over_modules
def test_array_likes_are_read_as_float64(module):
    A, _ = module.linear_forward([[1, 2], [3, 4]], [[1.0, -1.0]], [0.5], "identity")
    assert A.dtype == np.float64
    np.testing.assert_array_equal(A, [[-0.5], [-0.5]])
    loss, grad = module.softmax_cross_entropy([[0, 0], [0, 0]], [0, 1])
    assert loss == pytest.approx(np.log(2), rel=1e-15) and grad.dtype == np.float64


# ============================================================================================
# 3. Gradients against finite differences; JVP/VJP adjoint identity
# ============================================================================================

@over_modules
@over_activations
@settings(max_examples=examples(10), deadline=None)
@given(n=dims(1, 4), n_in=dims(0, 4), n_out=dims(1, 4), seed=seeds)
def test_linear_backward_matches_finite_differences(n, n_in, n_out, seed, activation, module):
    rng = rng_from(seed)
    X, W, b = draw_linear(rng, n, n_in, n_out)
    G = random_array(rng, (n, n_out))  # the loss <G, A> has dloss/dA = G

    def loss():
        return float(np.vdot(G, module.linear_forward(X, W, b, activation)[0]))

    dX, dW, db = module.linear_backward(G, module.linear_forward(X, W, b, activation)[1])
    assert_gradient_matches(loss, dict(X=X, W=W, b=b), dict(X=dX, W=dW, b=db))


@over_modules
@over_activations
@settings(max_examples=examples(10), deadline=None)
@given(n=dims(1, 4), n_in=dims(0, 4), n_out=dims(1, 4), seed=seeds)
def test_linear_jvp_matches_finite_differences(n, n_in, n_out, seed, activation, module):
    rng = rng_from(seed)
    X, W, b = draw_linear(rng, n, n_in, n_out)
    params = dict(X=X, W=W, b=b)
    directions = {k: random_array(rng, v.shape) for k, v in params.items()}
    dA = module.linear_jvp(module.linear_forward(X, W, b, activation)[1],
                           directions["X"], directions["W"], directions["b"])
    assert_jvp_matches(lambda: module.linear_forward(X, W, b, activation)[0],
                       params, directions, dA)


@over_modules
@over_activations
@settings(max_examples=examples(10), deadline=None)
@given(n=dims(1, 4), width=dims(1, 4), hidden=dims(0, 4), seed=seeds)
def test_residual_backward_matches_finite_differences(n, width, hidden, seed, activation,
                                                      module):
    rng = rng_from(seed)
    X, W1, b1, W2 = draw_residual(rng, n, width, hidden)
    G = random_array(rng, X.shape)

    def loss():
        return float(np.vdot(G, module.residual_forward(X, W1, b1, W2, activation)[0]))

    _, cache = module.residual_forward(X, W1, b1, W2, activation)
    dX, dW1, db1, dW2 = module.residual_backward(G, cache)
    assert_gradient_matches(loss, dict(X=X, W1=W1, b1=b1, W2=W2),
                            dict(X=dX, W1=dW1, b1=db1, W2=dW2))


@over_modules
@over_activations
@settings(max_examples=examples(10), deadline=None)
@given(n=dims(1, 4), width=dims(1, 4), hidden=dims(0, 4), seed=seeds)
def test_residual_jvp_matches_finite_differences(n, width, hidden, seed, activation, module):
    rng = rng_from(seed)
    X, W1, b1, W2 = draw_residual(rng, n, width, hidden)
    params = dict(X=X, W1=W1, b1=b1, W2=W2)
    directions = {k: random_array(rng, v.shape) for k, v in params.items()}
    _, cache = module.residual_forward(X, W1, b1, W2, activation)
    dY = module.residual_jvp(cache, *directions.values())
    assert_jvp_matches(lambda: module.residual_forward(X, W1, b1, W2, activation)[0],
                       params, directions, dY)


@over_modules
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(1, 5), k=dims(1, 5), scale=st.sampled_from([1.0, 10.0]), seed=seeds)
def test_softmax_cross_entropy_gradient_matches_finite_differences(n, k, scale, seed, module):
    rng = rng_from(seed)
    logits = random_array(rng, (n, k), scale=scale)
    labels = rng.integers(0, k, n)
    _, grad = module.softmax_cross_entropy(logits, labels)
    # one logit at a time
    assert_gradient_matches(lambda: module.softmax_cross_entropy(logits, labels)[0],
                            dict(logits=logits), dict(logits=grad))


@over_modules
@settings(max_examples=examples(20), deadline=None)
@given(m=dims(1, 6), n=dims(1, 5), seed=seeds)
def test_least_squares_gradient_matches_finite_differences(m, n, seed, module):
    rng = rng_from(seed)
    A, x, b = random_array(rng, (m, n)), random_array(rng, n), random_array(rng, m)
    _, grad = module.least_squares(A, x, b)
    assert_gradient_matches(lambda: module.least_squares(A, x, b)[0], dict(x=x), dict(x=grad))


@over_modules
@over_activations
@over_dtypes
@settings(max_examples=examples(10), deadline=None)
@given(n=dims(0, 5), n_in=dims(0, 5), n_out=dims(0, 5), seed=seeds)
def test_linear_jvp_is_the_adjoint_of_linear_backward(n, n_in, n_out, seed, dtype,
                                                      activation, module):
    rng = rng_from(seed)
    X, W, b = draw_linear(rng, n, n_in, n_out, dtype)
    _, cache = module.linear_forward(X, W, b, activation)
    u = random_array(rng, (n, n_out), dtype)
    v = tuple(random_array(rng, a.shape, dtype) for a in (X, W, b))
    assert_adjoint(u, module.linear_jvp(cache, *v), module.linear_backward(u, cache), v,
                   rtol=RTOL[np.dtype(dtype)])


@over_modules
@over_activations
@over_dtypes
@settings(max_examples=examples(10), deadline=None)
@given(n=dims(0, 5), width=dims(0, 5), hidden=dims(0, 5), seed=seeds)
def test_residual_jvp_is_the_adjoint_of_residual_backward(n, width, hidden, seed, dtype,
                                                          activation, module):
    rng = rng_from(seed)
    X, W1, b1, W2 = draw_residual(rng, n, width, hidden, dtype)
    _, cache = module.residual_forward(X, W1, b1, W2, activation)
    u = random_array(rng, X.shape, dtype)
    v = tuple(random_array(rng, a.shape, dtype) for a in (X, W1, b1, W2))
    assert_adjoint(u, module.residual_jvp(cache, *v), module.residual_backward(u, cache), v,
                   rtol=RTOL[np.dtype(dtype)])


# ============================================================================================
# 4. Closed forms
# ============================================================================================

@over_modules
@over_dtypes
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(1, 6), k=dims(1, 6), scale=st.sampled_from([1.0, 100.0]), seed=seeds)
def test_softmax_cross_entropy_is_mean_logsumexp_minus_label_logit(n, k, scale, seed, dtype,
                                                                   module):
    rng = rng_from(seed)
    logits = random_array(rng, (n, k), dtype, scale)
    labels = rng.integers(0, k, n)
    z = logits.astype(np.float64)
    expected_loss = np.mean(scipy.special.logsumexp(z, axis=1) - z[np.arange(n), labels])
    expected_grad = (scipy.special.softmax(z, axis=1) - np.eye(k)[labels]) / n
    loss, grad = module.softmax_cross_entropy(logits, labels)
    assert_close(loss, expected_loss, dtype, scale=1 + np.abs(z).max(), name="loss")
    assert_close(grad, expected_grad, dtype, scale=1 / n, name="dlogits")


@over_modules
@over_dtypes
@settings(max_examples=examples(20), deadline=None)
@given(n=dims(0, 6), k=dims(1, 6), scale=st.sampled_from([1.0, 100.0]), seed=seeds)
def test_softmax_rows_are_probability_distributions(n, k, scale, seed, dtype, module):
    logits = random_array(rng_from(seed), (n, k), dtype, scale)
    probs = module.softmax(logits)
    assert np.all((probs >= 0) & (probs <= 1))
    assert_close(probs.sum(axis=1), np.ones(n), dtype, scale=1.0,
                 name="row sums")
    # rows offset by up to 5000: the row maximum is subtracted before exp
    shifted = (logits.astype(np.float64) + 1000.0 * np.arange(n)[:, None]).astype(dtype)
    expected = scipy.special.softmax(shifted.astype(np.float64), axis=1)
    assert_close(module.softmax(shifted), expected, dtype, scale=1.0)


@over_modules
@over_dtypes
def test_single_class_has_probability_one_and_zero_loss(dtype, module):
    logits = random_array(rng_from(6), (4, 1), dtype, 100.0)
    np.testing.assert_array_equal(module.softmax(logits), np.ones((4, 1), dtype))
    loss, grad = module.softmax_cross_entropy(logits, np.zeros(4, dtype=int))
    assert loss == 0.0
    np.testing.assert_array_equal(grad, np.zeros((4, 1), dtype))


@over_modules
@over_dtypes
@pytest.mark.parametrize("k", [0, 3])
def test_empty_batch_has_zero_loss(k, dtype, module):
    loss, grad = module.softmax_cross_entropy(np.zeros((0, k), dtype), [])
    assert loss == 0.0 and type(loss) is float
    assert grad.shape == (0, k) and grad.dtype == dtype


@over_modules
@over_dtypes
def test_least_squares_of_an_empty_system_is_zero(dtype, module):
    loss, grad = module.least_squares(np.zeros((0, 3), dtype), np.ones(3, dtype),
                                      np.zeros(0, dtype))
    assert loss == 0.0
    np.testing.assert_array_equal(grad, np.zeros(3, dtype))
    assert grad.dtype == dtype


@over_modules
@over_dtypes
@settings(max_examples=examples(20), deadline=None)
@given(m=dims(1, 7), n=dims(1, 5), seed=seeds)
def test_least_squares_gradient_vanishes_at_the_lstsq_solution(m, n, seed, dtype, module):
    rng = rng_from(seed)
    A, b = random_array(rng, (m, n), dtype), random_array(rng, m, dtype)
    A64, b64 = A.astype(np.float64), b.astype(np.float64)
    x_star = np.linalg.lstsq(A64, b64, rcond=None)[0]
    x = x_star.astype(dtype)
    loss, grad = module.least_squares(A, x, b)
    loss_scale, grad_scale = least_squares_scales(A, x, b)
    assert_close(grad, np.zeros(n), dtype, scale=grad_scale, name="gradient at the minimum")
    residual = A64 @ x_star - b64
    assert_close(loss, residual @ residual / (2 * m), dtype, scale=loss_scale, name="loss")


def _extreme_logits(dtype):
    """Rows mixing +-1e4: ties, the label at the maximum, the label at -1e4."""
    logits = np.array([
        [1e4, -1e4, 1e4, -1e4],
        [1e4, 1e4, 1e4, 1e4],
        [-1e4, -1e4, -1e4, -1e4],
        [-1e4, 1e4, 0.0, 1.0],
        [1e4, -1e4, 0.5, -0.5],
        [-1e4, -1e4, 1e4, -1e4],
    ], dtype=dtype)
    labels = np.array([1, 2, 0, 0, 0, 2])
    return logits, labels


@over_modules
@over_dtypes
def test_extreme_logits_give_finite_loss_and_gradient(dtype, module):
    logits, labels = _extreme_logits(dtype)
    n = len(labels)
    loss, grad = module.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert_close(grad.sum(axis=1), np.zeros(n), dtype, scale=1 / n,
                 name="row sums of the gradient")
    z = logits.astype(np.float64)
    expected_loss = np.mean(scipy.special.logsumexp(z, axis=1) - z[np.arange(n), labels])
    assert_close(loss, expected_loss, dtype, scale=1.0, name="loss")
    expected_grad = (scipy.special.softmax(z, axis=1) - np.eye(4)[labels]) / n
    assert_close(grad, expected_grad, dtype, scale=1 / n, name="dlogits")
    probs = module.softmax(logits)
    assert np.all(np.isfinite(probs))
    assert_close(probs, scipy.special.softmax(z, axis=1), dtype, scale=1.0, name="softmax")


#: Pre-activations at the ends of every activation's range: where exp overflows in float32
#: (+-88) and in float64 (+-1e4), either side of softplus's threshold 20, around 0, and NaN.
EXTREME_Z = [-1e4, -88.0, -20.0, -1.0, -1e-30, 0.0, 1e-30, 1.0, 20.0, 20.5, 88.0, 1e4, np.nan]


def _activation_at(module, Z, activation):
    """A Dense layer whose pre-activation is exactly ``Z`` (n, m): X = Z, W = the identity
    (a product of exact terms and zeros), b = 0. Returns act(Z), act'(Z) through the
    backward pass (dX with dA = 1) and act'(Z) through the JVP (its bias term, db = 1)."""
    n, m = Z.shape
    W, b = np.eye(m, dtype=Z.dtype), np.zeros(m, dtype=Z.dtype)
    A, cache = module.linear_forward(Z, W, b, activation)
    dX, _, _ = module.linear_backward(np.ones_like(A), cache)
    jvp = module.linear_jvp(cache, np.zeros_like(Z), np.zeros_like(W), np.ones_like(b))
    return A, dX, jvp


@over_activations
@over_dtypes
def test_activations_at_extreme_inputs_match_the_reference(dtype, activation):
    # one value per row, 16 times (the vectorised loops), so that dX = dZ W mixes a NaN
    # only into its own row
    Z = np.repeat(np.array(EXTREME_Z, dtype=dtype)[:, None], 16, axis=1)
    with np.errstate(invalid="ignore"):  # NaN in, NaN out: the reference's NumPy says so
        expected = _activation_at(reference, Z, activation)
    actual = _activation_at(ops, Z, activation)
    # elementwise: relative to each value, plus rtol in absolute terms (the float32 kernels
    # stop at exp's floor 1.6e-38 or flush to 0 where the reference has a tinier value)
    for value, wanted, name in zip(actual, expected, ("act", "act' (backward)", "act' (JVP)")):
        assert_close(value, wanted, dtype, scale=1.0, name=name)
    A, dX, _ = actual
    assert np.all(np.isnan(A[-1])), "NaN must propagate"
    assert np.all(np.isfinite(A[:-1])) and np.all(np.isfinite(dX[:-1]))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@over_dtypes
def test_bounded_activations_stay_in_range_with_nonnegative_derivatives(dtype, activation):
    """tanh within [-1, 1] and sigmoid within [0, 1] on a fine grid through saturation, with
    act' >= 0 (taken from the output: 1 - a^2, a (1 - a)). The float32 tanh once rounded to
    1.0000002 near its clamp, and its derivative to -4.8e-7."""
    Z = np.linspace(-12, 12, 48_000, dtype=dtype).reshape(-1, 16)
    A, dX, jvp = _activation_at(ops, Z, activation)
    low = -1.0 if activation == "tanh" else 0.0
    assert A.min() >= low and A.max() <= 1.0
    assert dX.min() >= 0 and jvp.min() >= 0


#: The float32 kernels' measured accuracy against float64 (docs/extending.md, and _simd.h
#: beside each helper; benchmarks/activation_accuracy.py measures it on 1e7 points): act
#: within ``relative`` of its value (where that is above 1e-36 in magnitude: tiny tails may be
#: flushed to 0), act' within ``absolute`` (it crosses 0 for gelu and silu).
FLOAT32_ACCURACY = {
    "leaky_relu": dict(relative=1.2e-7, absolute=1e-9),
    "elu": dict(relative=1.2e-7, absolute=2e-7),
    "gelu": dict(relative=5e-7, absolute=2e-7),
    "silu": dict(relative=2.5e-7, absolute=3e-7),
    "softplus": dict(relative=3e-7, absolute=2e-7),
}


@pytest.mark.parametrize("activation", list(FLOAT32_ACCURACY))
def test_float32_activations_stay_within_their_documented_error(activation):
    """act and act' of the float32 kernels on 1e6 points of [-100, 100] and [-10, 10]
    against the registry's float64 math at the same float32 inputs (GELU's erfc-based
    approximation among them)."""
    from nncore import activations

    grid = np.concatenate([np.linspace(-100, 100, 2**19), np.linspace(-10, 10, 2**19)])
    Z = grid.astype(np.float32).reshape(-1, 64)
    A, dX, _ = _activation_at(ops, Z, activation)
    entry = activations.ACTIVATIONS[activation]
    Z64 = Z.astype(np.float64)
    exact = entry.function(Z64)
    # act' of the float64 pre-activation; from the output, act' sees the float32 output's
    # own rounding too, which the absolute bound allows for
    exact_derivative = entry.derivative(Z64 if entry.keeps_input else exact)
    bound = FLOAT32_ACCURACY[activation]
    error = np.abs(A - exact)
    assert np.all(error <= bound["relative"] * np.abs(exact) + 1e-36), (
        f"act: largest relative error {np.max(error / np.maximum(np.abs(exact), 1e-36)):.3g}")
    assert np.max(np.abs(dX - exact_derivative)) <= bound["absolute"]


def pytorch_sgd(param, grads, lr, momentum, nesterov, weight_decay):
    """PyTorch's documented SGD update (dampening 0), one tensor, written out as a loop:
    the momentum buffer starts as the first step's gradient. Returns (param, buffer)."""
    param = param.astype(np.float64)
    buffer = None
    for grad in grads:
        d_p = grad.astype(np.float64)
        if weight_decay != 0:
            d_p = d_p + weight_decay * param
        if momentum != 0:
            buffer = d_p.copy() if buffer is None else momentum * buffer + d_p
            d_p = d_p + momentum * buffer if nesterov else buffer
        param = param - lr * d_p
    return param, buffer


@over_modules
@over_dtypes
@pytest.mark.parametrize("momentum, nesterov, weight_decay", SGD_SETTINGS)
def test_sgd_momentum_follows_pytorch_rule_for_three_steps(momentum, nesterov, weight_decay,
                                                           dtype, module):
    rng = rng_from(7)
    param = random_array(rng, 10, dtype)
    grads = [random_array(rng, 10, dtype) for _ in range(3)]
    expected_param, expected_buffer = pytorch_sgd(param, grads, 0.1, momentum, nesterov,
                                                  weight_decay)
    velocity = np.zeros_like(param)
    for grad in grads:
        module.sgd_momentum_(param, grad, velocity, 0.1, momentum=momentum, nesterov=nesterov,
                             weight_decay=weight_decay)
    assert_close(param, expected_param, dtype, scale=1.0, name="param")
    if momentum:
        assert_close(velocity, expected_buffer, dtype, scale=1.0, name="velocity")


def pytorch_adam(param, grads, lr, beta1, beta2, eps, weight_decay, decoupled):
    """PyTorch's documented Adam / AdamW update (amsgrad off), one tensor, written out as a
    loop in float64 from zero moments, with the bias corrections of step t = 1, 2, ...
    Returns (param, exp_avg, exp_avg_sq)."""
    param = param.astype(np.float64)
    m = np.zeros_like(param)
    v = np.zeros_like(param)
    for t, grad in enumerate(grads, start=1):
        g = grad.astype(np.float64)
        if decoupled:
            param = param * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * param
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        param = param - lr * m_hat / (np.sqrt(v_hat) + eps)
    return param, m, v


@over_modules
@over_dtypes
@pytest.mark.parametrize("beta1, beta2, weight_decay, decoupled", ADAM_SETTINGS)
def test_adam_follows_pytorch_rule_for_three_steps(beta1, beta2, weight_decay, decoupled,
                                                   dtype, module):
    """Against the textbook form (m / bias correction, v / bias correction): the kernels
    use PyTorch's arrangement of the same formula, equal to rounding."""
    rng = rng_from(7)
    param = random_array(rng, 10, dtype)
    grads = [random_array(rng, 10, dtype) for _ in range(3)]
    expected = pytorch_adam(param, grads, 0.1, beta1, beta2, 1e-8, weight_decay, decoupled)
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)
    for step, grad in enumerate(grads, start=1):
        module.adam_(param, grad, exp_avg, exp_avg_sq, step, 0.1, beta1, beta2, 1e-8,
                     weight_decay, decoupled)
    # each step moves a parameter by about lr; float32 rounds the ratio m / sqrt(v) too
    for name, actual, wanted in zip(("param", "exp_avg", "exp_avg_sq"),
                                    (param, exp_avg, exp_avg_sq), expected):
        assert_close(actual, wanted, dtype, scale=1.0, name=name,
                     rtol=1e-4 if dtype == np.float32 else 1e-11)


@over_modules
def test_adam_check_rejects_a_wrong_bias_correction(module):
    """The test above can fail: one step without the second moment's bias correction
    (as if step were 1 at step 3) is far from PyTorch's rule."""
    rng = rng_from(7)
    param = random_array(rng, 10, np.float64)
    grads = [random_array(rng, 10, np.float64) for _ in range(3)]
    expected, _, _ = pytorch_adam(param, grads, 0.1, 0.9, 0.999, 1e-8, 0.0, False)
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)
    for step, grad in zip((1, 2, 2), grads):
        module.adam_(param, grad, exp_avg, exp_avg_sq, step, 0.1)
    with pytest.raises(AssertionError):
        assert_close(param, expected, np.float64, scale=1.0, name="param", rtol=1e-11)


# ============================================================================================
# 5. Bad input
# ============================================================================================
# ``call(module, function, **overrides)`` calls ``function`` with small valid float64
# arguments, some replaced by ``overrides``. The arguments of a backward pass or JVP include
# those of its forward pass, which ``call`` runs first to get the cache.

def _a(*shape):
    return np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)


def valid_arguments(function):
    linear = dict(X=_a(3, 4), W=_a(2, 4), b=_a(2), activation="tanh")
    residual = dict(X=_a(3, 4), W1=_a(5, 4), b1=_a(5), W2=_a(4, 5), activation="tanh")
    return {
        "softmax": lambda: dict(logits=_a(3, 4)),
        "softmax_cross_entropy": lambda: dict(logits=_a(3, 4), labels=np.array([0, 3, 1])),
        "linear_forward": lambda: linear,
        "linear_backward": lambda: dict(linear, dA=_a(3, 2)),
        "linear_jvp": lambda: dict(linear, dX=_a(3, 4), dW=_a(2, 4), db=_a(2)),
        "residual_forward": lambda: residual,
        "residual_backward": lambda: dict(residual, dY=_a(3, 4)),
        "residual_jvp": lambda: dict(residual, dX=_a(3, 4), dW1=_a(5, 4), db1=_a(5),
                                     dW2=_a(4, 5)),
        "sgd_momentum_": lambda: dict(param=_a(6), grad=_a(6), velocity=_a(6), lr=0.1,
                                      momentum=0.9, nesterov=False, weight_decay=0.0),
        "adam_": lambda: dict(param=_a(6), grad=_a(6), exp_avg=_a(6), exp_avg_sq=_a(6) ** 2,
                              step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                              weight_decay=0.0, decoupled=False),
        "least_squares": lambda: dict(A=_a(5, 3), x=_a(3), b=_a(5)),
    }[function]()


FORWARD_OF = {
    "linear_backward": ("linear_forward", ("X", "W", "b", "activation")),
    "linear_jvp": ("linear_forward", ("X", "W", "b", "activation")),
    "residual_backward": ("residual_forward", ("X", "W1", "b1", "W2", "activation")),
    "residual_jvp": ("residual_forward", ("X", "W1", "b1", "W2", "activation")),
}


def call(module, function, overrides=None):
    """``overrides`` is a dict, or a function of the valid arguments returning one (to
    refer to an input, e.g. ``out`` overlapping it)."""
    args = valid_arguments(function)
    if callable(overrides):
        overrides = overrides(args)
    args.update(overrides or {})
    if function in FORWARD_OF:
        forward, names = FORWARD_OF[function]
        _, cache = getattr(module, forward)(**{k: args.pop(k) for k in names})
        if function.endswith("_backward"):
            gradient = args.pop("dA" if function == "linear_backward" else "dY")
            return getattr(module, function)(gradient, cache, **args)
        return getattr(module, function)(cache, **args)
    return getattr(module, function)(**args)


FLOAT_ARGUMENTS = [
    ("softmax", "logits"), ("softmax_cross_entropy", "logits"),
    ("linear_forward", "X"), ("linear_forward", "W"), ("linear_forward", "b"),
    ("linear_backward", "dA"),
    ("linear_jvp", "dX"), ("linear_jvp", "dW"), ("linear_jvp", "db"),
    ("residual_forward", "X"), ("residual_forward", "W1"), ("residual_forward", "b1"),
    ("residual_forward", "W2"),
    ("residual_backward", "dY"),
    ("residual_jvp", "dX"), ("residual_jvp", "dW1"), ("residual_jvp", "db1"),
    ("residual_jvp", "dW2"),
    ("sgd_momentum_", "param"), ("sgd_momentum_", "grad"), ("sgd_momentum_", "velocity"),
    ("adam_", "param"), ("adam_", "grad"), ("adam_", "exp_avg"), ("adam_", "exp_avg_sq"),
    ("least_squares", "A"), ("least_squares", "x"), ("least_squares", "b"),
]
FLOAT_ARGUMENT_IDS = [f"{f}-{a}" for f, a in FLOAT_ARGUMENTS]


@over_modules
@pytest.mark.parametrize("bad_dtype", [np.int64, np.bool_, np.complex128, object, np.float16],
                         ids=["int64", "bool", "complex128", "object", "float16"])
@pytest.mark.parametrize("function, argument", FLOAT_ARGUMENTS, ids=FLOAT_ARGUMENT_IDS)
def test_non_float_dtype_raises_type_error_naming_the_argument(function, argument, bad_dtype,
                                                               module):
    value = valid_arguments(function)[argument].astype(bad_dtype)
    with pytest.raises(TypeError, match=rf"^{argument} must have dtype float32 or float64"):
        call(module, function, {argument: value})


@over_modules
@pytest.mark.parametrize("function, argument", FLOAT_ARGUMENTS, ids=FLOAT_ARGUMENT_IDS)
def test_wrong_number_of_dimensions_raises_value_error_naming_the_argument(function, argument,
                                                                           module):
    value = valid_arguments(function)[argument]
    wrong = value.ravel() if value.ndim == 2 else value[None, :]
    with pytest.raises(ValueError, match=rf"^{argument} must be {value.ndim}-D"):
        call(module, function, {argument: wrong})


@over_modules
@pytest.mark.parametrize(
    "function, argument",
    [fa for fa in FLOAT_ARGUMENTS if fa[0] not in ("softmax", "softmax_cross_entropy")],
    ids=[i for i in FLOAT_ARGUMENT_IDS if not i.startswith("softmax")])
def test_mixed_dtypes_raise_type_error_naming_the_argument(function, argument, module):
    value = valid_arguments(function)[argument].astype(np.float32)
    with pytest.raises(TypeError, match=rf"share one dtype: .*\b{argument} is float32"):
        call(module, function, {argument: value})


def _read_only(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def _contiguous_view(a, shape):
    """A C-contiguous view of the first entries of ``a``: it overlaps ``a``."""
    return a.reshape(-1)[:int(np.prod(shape))].reshape(shape)


# (id, function, overrides, exception, message pattern)
BAD_INPUTS = [
    # shapes
    ("X-W-feature-mismatch", "linear_forward", dict(W=_a(2, 5)), ValueError,
     r"X has 4 features but W expects 5"),
    ("b-length", "linear_forward", dict(b=_a(3)), ValueError, r"^b must have shape \(2,\)"),
    ("residual-W1-columns", "residual_forward", dict(W1=_a(5, 3)), ValueError,
     r"^W1 must be \(n_hidden, 4\)"),
    ("residual-b1-length", "residual_forward", dict(b1=_a(4)), ValueError,
     r"^b1 must have shape \(5,\)"),
    ("residual-W2-shape", "residual_forward", dict(W2=_a(5, 4)), ValueError,
     r"^W2 must have shape \(4, 5\)"),
    ("linear-dA-shape", "linear_backward", dict(dA=_a(3, 3)), ValueError,
     r"^dA must have shape \(3, 2\)"),
    ("residual-dY-shape", "residual_backward", dict(dY=_a(2, 4)), ValueError,
     r"^dY must have shape \(3, 4\)"),
    ("linear-jvp-dX-shape", "linear_jvp", dict(dX=_a(3, 5)), ValueError,
     r"^dX must have shape \(3, 4\)"),
    ("linear-jvp-dW-shape", "linear_jvp", dict(dW=_a(4, 2)), ValueError,
     r"^dW must have shape \(2, 4\)"),
    ("linear-jvp-db-shape", "linear_jvp", dict(db=_a(4)), ValueError,
     r"^db must have shape \(2,\)"),
    ("residual-jvp-dW1-shape", "residual_jvp", dict(dW1=_a(4, 5)), ValueError,
     r"^dW1 must have shape \(5, 4\)"),
    ("residual-jvp-db1-shape", "residual_jvp", dict(db1=_a(4)), ValueError,
     r"^db1 must have shape \(5,\)"),
    ("residual-jvp-dW2-shape", "residual_jvp", dict(dW2=_a(5, 4)), ValueError,
     r"^dW2 must have shape \(4, 5\)"),
    ("least-squares-x-length", "least_squares", dict(x=_a(4)), ValueError,
     r"^x must have shape \(3,\)"),
    ("least-squares-b-length", "least_squares", dict(b=_a(3)), ValueError,
     r"^b must have shape \(5,\)"),
    ("sgd-grad-length", "sgd_momentum_", dict(grad=_a(5)), ValueError,
     r"^grad must have shape \(6,\)"),
    ("sgd-velocity-length", "sgd_momentum_", dict(velocity=_a(7)), ValueError,
     r"^velocity must have shape \(6,\)"),
    ("X-3-D", "linear_forward", dict(X=_a(3, 4, 1)), ValueError, r"^X must be 2-D"),
    ("X-None", "linear_forward", dict(X=None), TypeError, r"^X must be an array"),
    # labels
    ("label-too-large", "softmax_cross_entropy", dict(labels=np.array([0, 4, 1])), ValueError,
     r"^labels must lie in \[0, 4\) .* got 4"),
    ("label-negative", "softmax_cross_entropy", dict(labels=np.array([0, -1, 1])), ValueError,
     r"^labels must lie in \[0, 4\) .* got -1"),
    ("labels-float", "softmax_cross_entropy", dict(labels=np.array([0.0, 1.0, 2.0])),
     TypeError, r"^labels must be integer class indices"),
    ("labels-bool", "softmax_cross_entropy", dict(labels=np.array([True, False, True])),
     TypeError, r"^labels must be integer class indices"),
    ("labels-too-short", "softmax_cross_entropy", dict(labels=np.array([0, 1])), ValueError,
     r"^labels has 2 entries but logits has 3 rows"),
    ("labels-too-long", "softmax_cross_entropy", dict(labels=np.array([0, 1, 2, 3])),
     ValueError, r"^labels has 4 entries"),
    ("labels-2-D", "softmax_cross_entropy", dict(labels=np.array([[0, 1, 2]])), ValueError,
     r"^labels must be 1-D"),
    ("no-classes", "softmax_cross_entropy",
     dict(logits=np.zeros((3, 0)), labels=np.array([0, 0, 0])), ValueError,
     r"^logits must have at least one column"),
    # activation
    ("linear-unknown-activation", "linear_forward", dict(activation="mish"), ValueError,
     r"^activation must be one of .* got 'mish'"),
    ("residual-unknown-activation", "residual_forward", dict(activation="Tanh"), ValueError,
     r"^activation must be one of .* got 'Tanh'"),
    ("activation-None", "linear_forward", dict(activation=None), ValueError, r"^activation"),
    # out=
    ("out-shape", "softmax", dict(out=np.empty((3, 5))), ValueError,
     r"^out must have shape \(3, 4\)"),
    ("out-dtype", "softmax", dict(out=np.empty((3, 4), np.float32)), ValueError,
     r"^out must have shape \(3, 4\) and dtype float64"),
    ("out-not-array", "softmax", dict(out=[[0.0] * 4] * 3), TypeError,
     r"^out must be a NumPy array"),
    ("out-strided", "softmax", dict(out=np.empty((3, 8))[:, ::2]), ValueError,
     r"^out must be C-contiguous"),
    ("out-fortran", "linear_forward", dict(out=np.empty((3, 2), order="F")), ValueError,
     r"^out must be C-contiguous"),
    ("out-read-only", "softmax_cross_entropy", dict(out=_read_only(np.empty((3, 4)))),
     ValueError, r"^out must be writeable"),
    ("jvp-out-shape", "linear_jvp", dict(out=np.empty((3, 4))), ValueError,
     r"^out must have shape \(3, 2\)"),
    ("residual-out-read-only", "residual_forward", dict(out=_read_only(np.empty((3, 4)))),
     ValueError, r"^out must be writeable"),
    ("residual-jvp-out-dtype", "residual_jvp", dict(out=np.empty((3, 4), np.float32)),
     ValueError, r"^out must have shape \(3, 4\) and dtype float64"),
    ("backward-out-not-tuple", "linear_backward",
     dict(out=[np.empty((3, 4)), np.empty((2, 4)), np.empty(2)]), TypeError,
     r"^out must be a tuple of 3 arrays \(dX, dW, db\)"),
    ("backward-out-too-short", "residual_backward",
     dict(out=(np.empty((3, 4)), np.empty((5, 4)), np.empty(5))), TypeError,
     r"^out must be a tuple of 4 arrays \(dX, dW1, db1, dW2\)"),
    ("backward-out-element-shape", "linear_backward",
     dict(out=(np.empty((3, 4)), np.empty((4, 2)), np.empty(2))), ValueError,
     r"^out\[1\] \(dW\) must have shape \(2, 4\)"),
    ("backward-out-element-read-only", "residual_backward",
     dict(out=(np.empty((3, 4)), np.empty((5, 4)), _read_only(np.empty(5)),
               np.empty((4, 5)))), ValueError, r"^out\[2\] \(db1\) must be writeable"),
    ("backward-out-element-strided", "linear_backward",
     dict(out=(np.empty((3, 4)), np.empty((2, 8))[:, ::2], np.empty(2))), ValueError,
     r"^out\[1\] \(dW\) must be C-contiguous"),
    # out= overlapping an input
    ("softmax-out-overlaps-logits", "softmax",
     lambda a: dict(logits=(rows := np.zeros((4, 4)))[:3], out=rows[1:]), ValueError,
     r"^out must not overlap the input logits"),
    ("cross-entropy-out-is-logits", "softmax_cross_entropy", lambda a: dict(out=a["logits"]),
     ValueError, r"^out must not overlap the input logits"),
    ("linear-out-overlaps-X", "linear_forward",
     lambda a: dict(out=_contiguous_view(a["X"], (3, 2))), ValueError,
     r"^out must not overlap the input X"),
    ("linear-backward-out-dX-is-X", "linear_backward",
     lambda a: dict(out=(a["X"], np.empty((2, 4)), np.empty(2))), ValueError,
     r"^out\[0\] \(dX\) must not overlap the input X"),
    ("linear-jvp-out-overlaps-dX", "linear_jvp",
     lambda a: dict(out=_contiguous_view(a["dX"], (3, 2))), ValueError,
     r"^out must not overlap the input dX"),
    ("residual-out-is-X", "residual_forward", lambda a: dict(out=a["X"]), ValueError,
     r"^out must not overlap the input X"),
    ("residual-backward-out-dX-is-dY", "residual_backward",
     lambda a: dict(out=(a["dY"], np.empty((5, 4)), np.empty(5), np.empty((4, 5)))),
     ValueError, r"^out\[0\] \(dX\) must not overlap the input dY"),
    ("residual-jvp-out-is-dX", "residual_jvp", lambda a: dict(out=a["dX"]), ValueError,
     r"^out must not overlap the input dX"),
    # sgd_momentum_
    ("sgd-negative-lr", "sgd_momentum_", dict(lr=-0.1), ValueError, r"^lr must be >= 0"),
    ("sgd-nan-lr", "sgd_momentum_", dict(lr=float("nan")), ValueError, r"^lr must be finite"),
    ("sgd-infinite-lr", "sgd_momentum_", dict(lr=float("inf")), ValueError,
     r"^lr must be finite"),
    ("sgd-string-lr", "sgd_momentum_", dict(lr="0.1"), TypeError, r"^lr must be a real number"),
    ("sgd-bool-lr", "sgd_momentum_", dict(lr=True), TypeError, r"^lr must be a real number"),
    ("sgd-negative-momentum", "sgd_momentum_", dict(momentum=-0.5), ValueError,
     r"^momentum must be >= 0"),
    ("sgd-nan-momentum", "sgd_momentum_", dict(momentum=float("nan")), ValueError,
     r"^momentum must be finite"),
    ("sgd-negative-weight-decay", "sgd_momentum_", dict(weight_decay=-0.01), ValueError,
     r"^weight_decay must be >= 0"),
    ("sgd-nesterov-without-momentum", "sgd_momentum_", dict(nesterov=True, momentum=0.0),
     ValueError, r"^nesterov=True needs momentum > 0"),
    ("sgd-nesterov-not-bool", "sgd_momentum_", dict(nesterov="yes"), TypeError,
     r"^nesterov must be True or False"),
    ("sgd-param-strided", "sgd_momentum_", dict(param=np.zeros(12)[::2]), ValueError,
     r"^param must be C-contiguous"),
    ("sgd-velocity-strided", "sgd_momentum_", dict(velocity=np.zeros(12)[::2]), ValueError,
     r"^velocity must be C-contiguous"),
    ("sgd-param-read-only", "sgd_momentum_", dict(param=_read_only(np.zeros(6))), ValueError,
     r"^param must be writeable"),
    ("sgd-velocity-read-only", "sgd_momentum_", dict(velocity=_read_only(np.zeros(6))),
     ValueError, r"^velocity must be writeable"),
    ("sgd-param-list", "sgd_momentum_", dict(param=[0.0] * 6), TypeError,
     r"^param must be a NumPy array"),
    ("sgd-velocity-is-param", "sgd_momentum_", lambda a: dict(velocity=a["param"]),
     ValueError, r"^param and velocity must not overlap"),
    # adam_
    ("adam-grad-length", "adam_", dict(grad=_a(5)), ValueError, r"^grad must have shape \(6,\)"),
    ("adam-exp-avg-length", "adam_", dict(exp_avg=_a(7)), ValueError,
     r"^exp_avg must have shape \(6,\)"),
    ("adam-exp-avg-sq-length", "adam_", dict(exp_avg_sq=_a(5)), ValueError,
     r"^exp_avg_sq must have shape \(6,\)"),
    ("adam-negative-lr", "adam_", dict(lr=-0.1), ValueError, r"^lr must be >= 0"),
    ("adam-nan-lr", "adam_", dict(lr=float("nan")), ValueError, r"^lr must be finite"),
    ("adam-string-lr", "adam_", dict(lr="0.1"), TypeError, r"^lr must be a real number"),
    ("adam-beta1-one", "adam_", dict(beta1=1.0), ValueError, r"^beta1 must be < 1"),
    ("adam-beta1-negative", "adam_", dict(beta1=-0.1), ValueError, r"^beta1 must be >= 0"),
    ("adam-beta2-one", "adam_", dict(beta2=1.0), ValueError, r"^beta2 must be < 1"),
    ("adam-beta2-above-one", "adam_", dict(beta2=1.5), ValueError, r"^beta2 must be < 1"),
    ("adam-beta2-infinite", "adam_", dict(beta2=float("inf")), ValueError,
     r"^beta2 must be finite"),
    ("adam-eps-zero", "adam_", dict(eps=0.0), ValueError, r"^eps must be > 0"),
    ("adam-eps-negative", "adam_", dict(eps=-1e-8), ValueError, r"^eps must be > 0"),
    ("adam-negative-weight-decay", "adam_", dict(weight_decay=-0.01), ValueError,
     r"^weight_decay must be >= 0"),
    ("adam-decoupled-not-bool", "adam_", dict(decoupled=1), TypeError,
     r"^decoupled must be True or False"),
    ("adam-step-zero", "adam_", dict(step=0), ValueError, r"^step must be >= 1"),
    ("adam-step-float", "adam_", dict(step=1.0), TypeError, r"^step must be an integer"),
    ("adam-step-bool", "adam_", dict(step=True), TypeError, r"^step must be an integer"),
    ("adam-param-read-only", "adam_", dict(param=_read_only(np.zeros(6))), ValueError,
     r"^param must be writeable"),
    ("adam-exp-avg-sq-strided", "adam_", dict(exp_avg_sq=np.zeros(12)[::2]), ValueError,
     r"^exp_avg_sq must be C-contiguous"),
    ("adam-exp-avg-list", "adam_", dict(exp_avg=[0.0] * 6), TypeError,
     r"^exp_avg must be a NumPy array"),
    ("adam-exp-avg-is-param", "adam_", lambda a: dict(exp_avg=a["param"]), ValueError,
     r"^param and exp_avg must not overlap"),
    ("adam-moments-overlap", "adam_", lambda a: dict(exp_avg_sq=a["exp_avg"]), ValueError,
     r"^exp_avg and exp_avg_sq must not overlap"),
]


@over_modules
@pytest.mark.parametrize("function, overrides, error, pattern",
                         [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS])
def test_bad_input_raises_naming_the_argument(function, overrides, error, pattern, module):
    with pytest.raises(error, match=pattern):
        call(module, function, overrides)


@over_modules
def test_valid_arguments_are_accepted(module):
    """The baseline of the bad-input tests: without overrides, every call succeeds."""
    for function in ("softmax", "softmax_cross_entropy", "linear_forward", "linear_backward",
                     "linear_jvp", "residual_forward", "residual_backward", "residual_jvp",
                     "sgd_momentum_", "adam_", "least_squares"):
        call(module, function)


# The one-pass SGD kernel reads grad[i] after it has written param[j] and velocity[j] for
# j < i. A grad that overlaps param or velocity at an offset must therefore be rejected (as
# param/velocity overlap is), or read before the update, as the reference does; it must not
# silently use already-updated entries. The exact alias (grad is param) is harmless.
GRAD_ALIASES = {
    # name: (buffer of 5) -> (param, grad, velocity)
    "grad-is-param": lambda buf: (buf[:4], buf[:4], np.zeros(4)),
    "grad-overlaps-param-one-entry-behind": lambda buf: (buf[1:], buf[:-1], np.zeros(4)),
    "grad-overlaps-velocity-one-entry-behind": lambda buf: (np.ones(4), buf[:-1], buf[1:]),
}


@over_modules
@pytest.mark.parametrize("alias", list(GRAD_ALIASES))
def test_sgd_grad_overlapping_param_or_velocity_is_rejected_or_read_before_update(alias,
                                                                                  module):
    buffer = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    param, grad, velocity = GRAD_ALIASES[alias](buffer)
    expected_param, expected_velocity = param.copy(), velocity.copy()
    reference.sgd_momentum_(expected_param, grad.copy(), expected_velocity, 0.5, momentum=0.9)
    try:
        module.sgd_momentum_(param, grad, velocity, 0.5, momentum=0.9)
    except ValueError as error:
        assert "grad" in str(error)
        return
    np.testing.assert_array_equal(param, expected_param, err_msg="param")
    np.testing.assert_array_equal(velocity, expected_velocity, err_msg="velocity")


# Adam's one-pass kernel reads all four inputs of element i before writing element i: grad
# may be any of the three updated arrays exactly; at an offset it must be rejected.
ADAM_GRAD_ALIASES = {
    # name: (buffer of 5) -> (param, grad, exp_avg, exp_avg_sq)
    "grad-is-param": lambda buf: (buf[:4], buf[:4], np.zeros(4), np.ones(4)),
    "grad-is-exp-avg": lambda buf: (np.ones(4), buf[:4], buf[:4], np.ones(4)),
    "grad-is-exp-avg-sq": lambda buf: (np.ones(4), buf[:4], np.zeros(4), buf[:4]),
    "grad-overlaps-param-one-entry-behind": lambda buf: (buf[1:], buf[:-1], np.zeros(4),
                                                         np.ones(4)),
    "grad-overlaps-exp-avg-sq-one-entry-behind": lambda buf: (np.ones(4), buf[:-1],
                                                              np.zeros(4), buf[1:]),
}


@over_modules
@pytest.mark.parametrize("alias", list(ADAM_GRAD_ALIASES))
def test_adam_grad_aliasing_an_updated_array_is_exact_or_rejected(alias, module):
    buffer = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    param, grad, exp_avg, exp_avg_sq = ADAM_GRAD_ALIASES[alias](buffer)
    expected = [param.copy(), exp_avg.copy(), exp_avg_sq.copy()]
    reference.adam_(expected[0], grad.copy(), expected[1], expected[2], 2, 0.5,
                    weight_decay=0.1)
    try:
        module.adam_(param, grad, exp_avg, exp_avg_sq, 2, 0.5, weight_decay=0.1)
    except ValueError as error:
        assert "grad must not partly overlap" in str(error) and "behind" in alias
        return
    assert "behind" not in alias
    for name, actual, wanted in zip(("param", "exp_avg", "exp_avg_sq"),
                                    (param, exp_avg, exp_avg_sq), expected):
        np.testing.assert_array_equal(actual, wanted, err_msg=name)


# --- the pre-activation path of the kernels ---------------------------------------------------
# An activation whose derivative needs Z (nncore.activations: saved="input") makes the layer
# kernels keep Z in a buffer of its own and apply the activation from it. The activations
# registered today all take the in-place path, so these tests drive the level-3 kernels with
# a Z buffer directly: Z must be X W^T + b, and the output the in-place path's (to rounding:
# the in-place float32 loops are compiled per CPU, with fused multiply-adds where there are).

@over_activations
@over_dtypes
def test_linear_kernel_keeps_the_pre_activation_when_given_a_buffer(dtype, activation):
    from nncore import _kernels, activations

    rng = rng_from(11)
    X, W, b = draw_linear(rng, 7, 5, 4, dtype)
    Z, A = np.full((7, 4), np.nan, dtype=dtype), np.full((7, 4), np.nan, dtype=dtype)
    _kernels.linear_forward(X, W, b, Z, A, activations.ACTIVATIONS[activation].code)
    assert_close(Z, X.astype(np.float64) @ W.T.astype(np.float64) + b, dtype, name="Z")
    assert_close(A, ops.linear_forward(X, W, b, activation)[0], dtype, name="A")


@over_activations
@over_dtypes
def test_residual_kernel_keeps_the_pre_activation_when_given_a_buffer(dtype, activation):
    from nncore import _kernels, activations

    rng = rng_from(12)
    X, W1, b1, W2 = draw_residual(rng, 6, 4, 5, dtype)
    Z, H = (np.full((6, 5), np.nan, dtype=dtype) for _ in range(2))
    Y = np.full((6, 4), np.nan, dtype=dtype)
    _kernels.residual_forward(X, W1, b1, W2, Z, H, Y, activations.ACTIVATIONS[activation].code)
    assert_close(Z, X.astype(np.float64) @ W1.T.astype(np.float64) + b1, dtype, name="Z")
    expected_Y, expected_cache = ops.residual_forward(X, W1, b1, W2, activation)
    assert_close(H, expected_cache.H, dtype, name="H")
    assert_close(Y, expected_Y, dtype, name="Y")
