"""Kernel vs NumPy reference, float32, timed in the same run.

    pytest benchmarks/test_kernels.py --benchmark-json=benchmarks/kernels.json
    python benchmarks/ratios.py benchmarks/kernels.json

Each benchmark group holds one function at one size, timed once through ``nncore.ops``
(the kernels) and once through ``nncore.reference``; ``ratios.py`` prints reference / kernel
per group. Inputs are made once per benchmark, outside the timed call; outputs are
allocated by the call, as a user calling the API without ``out=`` would (except in the
activation groups, which measure the activations alone; ``ratios.py`` also prints those per
element and against tanh).
"""

import numpy as np
import pytest

from nncore import ops, reference

IMPLEMENTATIONS = {"kernel": ops, "reference": reference}
LINEAR_SIZES = [(32, 2, 32), (64, 64, 64), (256, 512, 512), (4096, 64, 64)]
DTYPE = np.float32


def _array(rng, *shape):
    return rng.standard_normal(shape).astype(DTYPE)


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request):
    return request.param


@pytest.mark.parametrize("n,k", [(256, 5), (256, 100), (4096, 5), (4096, 100)])
def test_softmax_cross_entropy(benchmark, impl, n, k):
    rng = np.random.default_rng(0)
    logits, labels = _array(rng, n, k) * 3, rng.integers(0, k, n)
    module = IMPLEMENTATIONS[impl]
    benchmark.group = f"softmax_cross_entropy n={n} k={k}"
    benchmark(module.softmax_cross_entropy, logits, labels)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("n,n_in,n_out", LINEAR_SIZES)
def test_linear_forward_backward(benchmark, impl, n, n_in, n_out, activation):
    rng = np.random.default_rng(0)
    X, W, b = _array(rng, n, n_in), _array(rng, n_out, n_in) * 0.2, _array(rng, n_out)
    dA = _array(rng, n, n_out)
    module = IMPLEMENTATIONS[impl]

    def step():
        _, cache = module.linear_forward(X, W, b, activation)
        return module.linear_backward(dA, cache)

    benchmark.group = f"linear fwd+bwd {activation} (n, n_in, n_out)=({n}, {n_in}, {n_out})"
    benchmark(step)


ACTIVATION_SHAPE = (4096, 256)


@pytest.mark.parametrize("activation", ops.ACTIVATIONS)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_activation(benchmark, impl, direction, activation):
    """One activation's cost, forward (bias and activation) or backward (act'): a Dense
    layer of ACTIVATION_SHAPE with a single input, so that its products (X W^T, dZ^T X,
    dZ W: 4096 x 1 x 256 each) cost little beside the elementwise passes. The output,
    cache and gradient buffers are reused, as the layers reuse theirs. The identity
    gives the floor (products, bias, column sums) under the others."""
    n, n_out = ACTIVATION_SHAPE
    rng = np.random.default_rng(0)
    X, W, b = _array(rng, n, 1), _array(rng, n_out, 1), _array(rng, n_out)
    dA = _array(rng, n, n_out)
    module = IMPLEMENTATIONS[impl]
    A = np.empty((n, n_out), dtype=DTYPE)
    _, cache = module.linear_forward(X, W, b, activation, out=A)
    grads = (np.empty_like(X), np.empty_like(W), np.empty_like(b))
    benchmark.group = f"activation {direction} {activation} {ACTIVATION_SHAPE}"
    if direction == "forward":
        benchmark(module.linear_forward, X, W, b, activation, out=A, cache=cache)
    else:
        benchmark(module.linear_backward, dA, cache, out=grads)


@pytest.mark.parametrize("n,width", [(32, 32), (64, 64), (256, 512)])
def test_residual_forward_backward(benchmark, impl, n, width):
    rng = np.random.default_rng(0)
    X, dY = _array(rng, n, width), _array(rng, n, width)
    W1, b1, W2 = _array(rng, width, width) * 0.1, _array(rng, width), _array(rng, width, width) * 0.1
    module = IMPLEMENTATIONS[impl]

    def step():
        _, cache = module.residual_forward(X, W1, b1, W2, "tanh")
        return module.residual_backward(dY, cache)

    benchmark.group = f"residual fwd+bwd tanh n={n} width=hidden={width}"
    benchmark(step)


@pytest.mark.parametrize("size", [1_000, 1_000_000])
def test_sgd_momentum(benchmark, impl, size):
    rng = np.random.default_rng(0)
    param, grad, velocity = _array(rng, size), _array(rng, size), _array(rng, size)
    module = IMPLEMENTATIONS[impl]
    benchmark.group = f"sgd_momentum_ size={size:.0e}"
    benchmark(module.sgd_momentum_, param, grad, velocity, 1e-6, 0.9, False, 1e-4)


@pytest.mark.parametrize("size", [1_000, 1_000_000])
def test_adam(benchmark, impl, size):
    rng = np.random.default_rng(0)
    param, grad, exp_avg = _array(rng, size), _array(rng, size), _array(rng, size)
    exp_avg_sq = np.abs(_array(rng, size))
    module = IMPLEMENTATIONS[impl]
    benchmark.group = f"adam_ size={size:.0e}"
    benchmark(module.adam_, param, grad, exp_avg, exp_avg_sq, 10, 1e-6, 0.9, 0.999, 1e-8, 1e-4,
              False)
