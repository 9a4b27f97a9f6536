"""Shared helpers for the tests of nncore.ops and nncore.reference.

- ``assert_close``: dtype-aware comparison of a result with an expected value, with an
  absolute tolerance scaled by the magnitude of the expected array (or of the summed terms).
- ``*_scale(s)``: those magnitudes for each function, from the same computation run on
  absolute values.
- ``numerical_gradient`` / ``assert_gradient_matches``: central finite differences of a
  scalar function, one entry at a time.
- ``numerical_jvp`` / ``assert_jvp_matches``: central finite differences of an array
  function along a direction.
- ``assert_adjoint``: the identity <u, J v> == <J^T u, v> between a JVP and a VJP.
- data: hypothesis strategies for seeds and small dimensions, ``random_array``, and
  ``draw_linear`` / ``draw_residual`` (pre-activations kept away from 0, the kink of the
  kinked activations: relu, leaky_relu).
- ``interruptible_child``: a subprocess that a test can stop with a real SIGINT.
- ``run_cli``: the ``nncore`` command run in the test's process, with its exit status and
  output.

Test modules import these names directly (``from conftest import assert_close``): pytest
puts this folder on ``sys.path`` because it has no ``__init__.py``.
"""

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from nncore import activations, ops, reference

DTYPES = (np.float32, np.float64)
ACTIVATIONS = activations.names()  # every registered activation is tested
MODULES = (ops, reference)

#: Default relative tolerance per dtype. float64 results differ from the oracle by a few
#: ulps (BLAS summation order); float32 ones also by the kernels' own exp/tanh (a few ulps).
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

#: Multiplies every ``max_examples`` (``NNCORE_EXAMPLES_SCALE=20 pytest ...`` for a long run).
EXAMPLES_SCALE = int(os.environ.get("NNCORE_EXAMPLES_SCALE", "1"))


#: The real course data sets (PeaksData.mat, GMMData.mat, SwissRollData.mat): in
#: ``shared/data/course/`` beside the repository, never copied into it.
COURSE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "course"
#: Marks a test that reads them: it skips, saying where they belong, when they are absent.
needs_course_files = pytest.mark.skipif(
    not COURSE_DIR.is_dir(),
    reason=f"course data folder {COURSE_DIR} is absent (it lives in shared/, beside the repo)",
)


def interruptible_child(command, **popen_options):
    """``subprocess.Popen(command)`` with SIGINT's default action restored in the child, so
    that a SIGINT from the test raises KeyboardInterrupt there. A shell without job control
    starts its background commands with SIGINT ignored, a child inherits that, and Python
    then installs no handler: a suite run in the background would see Ctrl-C ignored."""
    def default_sigint():
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(command, preexec_fn=default_sigint, **popen_options)


def run_cli(argv, capsys):
    """``nncore ARGV`` in this process: ``(exit status, stdout, stderr)`` (argparse's usage
    errors exit through SystemExit)."""
    from nncore import cli

    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def examples(n):
    """``max_examples`` for a hypothesis test: ``n`` by default, more on request."""
    return n * EXAMPLES_SCALE


# --- comparisons ---------------------------------------------------------------------------

def assert_close(actual, expected, dtype, *, rtol=None, scale=None, name="result"):
    """Assert ``|actual - expected| <= rtol * (|expected| + scale)`` element-wise.

    Parameters
    ----------
    actual, expected : array-like or float
        When ``actual`` is an ndarray, its dtype must be ``dtype`` and its shape that of
        ``expected``.
    dtype : the dtype the computation ran in; selects ``rtol`` (1e-5 float32, 1e-12 float64).
    scale : float or array, optional
        The absolute part of the tolerance, in units of ``rtol``. Defaults to
        ``max|expected|``, which absorbs the rounding of small entries of a sum whose other
        entries are large. Pass a bound on the size of the summed terms (e.g. the same
        computation on absolute values) when the result itself can cancel to ~0.
    """
    dtype = np.dtype(dtype)
    rtol = RTOL[dtype] if rtol is None else rtol
    if isinstance(actual, np.ndarray):
        assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {dtype}"
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape}, expected {expected.shape}"
    )
    if expected.size == 0:
        return
    assert np.array_equal(np.isfinite(actual), np.isfinite(expected)), (
        f"{name}: finite entries differ:\n{actual}\nexpected\n{expected}"
    )
    finite = np.isfinite(expected)
    assert np.array_equal(actual[~finite], expected[~finite], equal_nan=True), (
        f"{name}: non-finite entries differ"
    )
    if scale is None:
        scale = np.max(np.abs(expected[finite]), initial=0.0)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), expected.shape)
    error = np.abs(actual - expected)[finite]
    allowed = rtol * (np.abs(expected) + scale)[finite]
    if not np.all(error <= allowed):
        worst = np.argmax(error - allowed)
        raise AssertionError(
            f"{name} differs beyond rtol={rtol:g} (dtype {dtype}): "
            f"{np.count_nonzero(error > allowed)} of {error.size} entries; worst error "
            f"{error[worst]:.3e} where {allowed[worst]:.3e} is allowed "
            f"(got {actual[finite][worst]!r}, expected {expected[finite][worst]!r})\n"
            f"actual:\n{actual}\nexpected:\n{expected}"
        )


def assert_all_close(actuals, expecteds, dtype, *, names, scales=None, rtol=None):
    """``assert_close`` over parallel tuples of results (e.g. the gradients of a backward)."""
    assert len(actuals) == len(expecteds) == len(names)
    scales = (None,) * len(names) if scales is None else scales
    for actual, expected, name, scale in zip(actuals, expecteds, names, scales):
        assert_close(actual, expected, dtype, rtol=rtol, scale=scale, name=name)


# --- finite differences --------------------------------------------------------------------

def numerical_gradient(f, x, h=1e-6):
    """Central differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every entry i of ``x``.

    ``f`` takes no argument and reads ``x``, a C-contiguous float64 array that is perturbed
    in place one entry at a time and restored exactly afterwards.
    """
    assert x.dtype == np.float64 and x.flags.c_contiguous
    flat = x.reshape(-1)  # a view, since x is contiguous
    grad = np.empty(x.size)
    for i in range(x.size):
        original = flat[i]
        flat[i] = original + h
        f_plus = f()
        flat[i] = original - h
        f_minus = f()
        flat[i] = original
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad.reshape(x.shape)


def assert_gradient_matches(f, params, grads, *, h=1e-6, rtol=1e-6):
    """Compare analytic gradients with central differences of the scalar function ``f``.

    ``params`` and ``grads`` are dicts keyed by argument name; each gradient must agree with
    the finite differences to ``rtol * (|g| + max(1, max|g|))``: the absolute part covers
    the O(eps / h) rounding of the difference quotient.
    """
    for name, x in params.items():
        numeric = numerical_gradient(f, x, h)
        analytic = np.asarray(grads[name], dtype=np.float64)
        scale = max(1.0, np.max(np.abs(analytic), initial=0.0))
        assert_close(analytic, numeric, np.float64, rtol=rtol, scale=scale,
                     name=f"gradient with respect to {name}")


def numerical_jvp(F, params, directions, h=1e-6):
    """``(F(p + h v) - F(p - h v)) / 2h`` with every array in ``params`` moved at once
    along its direction in ``directions`` (dicts keyed by name). ``F`` returns an array and
    reads the arrays of ``params``, which are restored exactly afterwards."""
    originals = {name: p.copy() for name, p in params.items()}
    try:
        for name, p in params.items():
            p[...] = originals[name] + h * directions[name]
        plus = np.array(F(), dtype=np.float64)
        for name, p in params.items():
            p[...] = originals[name] - h * directions[name]
        minus = np.array(F(), dtype=np.float64)
    finally:
        for name, p in params.items():
            p[...] = originals[name]
    return (plus - minus) / (2 * h)


def assert_jvp_matches(F, params, directions, analytic, *, h=1e-6, rtol=1e-6):
    """Compare an analytic JVP with :func:`numerical_jvp` of the array function ``F``
    (tolerance as in :func:`assert_gradient_matches`)."""
    numeric = numerical_jvp(F, params, directions, h)
    analytic = np.asarray(analytic, dtype=np.float64)
    scale = max(1.0, np.max(np.abs(analytic), initial=0.0))
    assert_close(analytic, numeric, np.float64, rtol=rtol, scale=scale,
                 name="Jacobian-vector product")


def assert_adjoint(u, Jv, JTu, v, *, rtol=1e-12):
    """Assert ``<u, J v> == <J^T u, v>``: ``u`` and ``Jv`` are arrays, ``JTu`` and ``v``
    tuples of arrays paired in order. The tolerance is relative to the sum of the absolute
    products, so a result that cancels to ~0 is judged by the size of its terms."""
    assert len(JTu) == len(v)
    lhs = float(np.vdot(u, Jv))
    rhs = sum(float(np.vdot(a, b)) for a, b in zip(JTu, v))
    scale = float(np.vdot(np.abs(u), np.abs(Jv))) + sum(
        float(np.vdot(np.abs(a), np.abs(b))) for a, b in zip(JTu, v)
    )
    assert abs(lhs - rhs) <= rtol * scale, (
        f"<u, J v> = {lhs!r} but <J^T u, v> = {rhs!r} (difference {abs(lhs - rhs):.3e}, "
        f"allowed {rtol * scale:.3e})"
    )


# --- error scales --------------------------------------------------------------------------
# Rounding error in a sum is relative to the size of its terms, not of its result, which may
# cancel to ~0. Running the same computation on absolute values (and with act' replaced by
# 1) gives, entry by entry, the sum of the absolute terms: the natural ``scale`` of the
# absolute tolerance in ``assert_close``. |act'| <= 1 for every activation but GELU (at most
# 1.13) and SiLU (1.10): for those the scales are within 13% of the bound.

def _abs64(*arrays):
    return [np.abs(np.asarray(a, dtype=np.float64)) for a in arrays]


def linear_forward_scale(X, W, b):
    X, W, b = _abs64(X, W, b)
    return X @ W.T + b


def linear_backward_scales(dA, X, W):
    dA, X, W = _abs64(dA, X, W)
    return dA @ W, dA.T @ X, dA.sum(axis=0)


def linear_jvp_scale(X, W, dX, dW, db):
    X, W, dX, dW, db = _abs64(X, W, dX, dW, db)
    return dX @ W.T + X @ dW.T + db


def _hidden_scale(X, W1, b1, H):
    """|H| plus the bound on its rounding error (|X| |W1|^T + |b1|)."""
    X, W1, b1, H = _abs64(X, W1, b1, H)
    return H + X @ W1.T + b1


def residual_forward_scale(X, W1, b1, W2, H):
    hidden = _hidden_scale(X, W1, b1, H)
    X, W2 = _abs64(X, W2)
    return X + hidden @ W2.T


def residual_backward_scales(dY, X, W1, b1, W2, H):
    hidden = _hidden_scale(X, W1, b1, H)
    dY, X, W1, W2 = _abs64(dY, X, W1, W2)
    dZ = dY @ W2
    return dY + dZ @ W1, dZ.T @ X, dZ.sum(axis=0), dY.T @ hidden


def residual_jvp_scale(X, W1, b1, W2, H, dX, dW1, db1, dW2):
    hidden = _hidden_scale(X, W1, b1, H)
    X, W1, W2, dX, dW1, db1, dW2 = _abs64(X, W1, W2, dX, dW1, db1, dW2)
    return dX + (dX @ W1.T + X @ dW1.T + db1) @ W2.T + hidden @ dW2.T


def least_squares_scales(A, x, b):
    """(loss, gradient) of the problem on |A|, |x| and -|b|: residuals |A| |x| + |b|."""
    A, x, b = _abs64(A, x, b)
    return reference.least_squares(A, x, -b)


# --- data ----------------------------------------------------------------------------------

#: Seeds for numpy Generators; hypothesis picks (and shrinks) the seed, numpy the values.
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def dims(min_value=0, max_value=5):
    """A small array dimension; hypothesis favours the ends of the range (0, 1, max)."""
    return st.integers(min_value=min_value, max_value=max_value)


def random_array(rng, shape, dtype=np.float64, scale=1.0):
    """Standard normal values times ``scale``, as a C-contiguous array of ``dtype``."""
    return (scale * rng.standard_normal(shape)).astype(dtype)


def draw_linear(rng, n, n_in, n_out, dtype=np.float64, margin=1e-3):
    """``X (n, n_in), W (n_out, n_in), b (n_out,)`` with every pre-activation
    ``X W^T + b`` at least ``margin`` away from 0: the bias of a column that has one closer
    is redrawn until none has.

    At the kink of a kinked activation (relu, leaky_relu) act'(z) is decided by rounding
    (the kernel and the oracle could disagree on the sign of a z ~ 1e-17), and a finite
    difference would straddle it. Every activation gets the same draw.
    """
    X = random_array(rng, (n, n_in), dtype)
    W = random_array(rng, (n_out, n_in), dtype)
    b = random_array(rng, n_out, dtype)
    for _ in range(100):
        Z = X.astype(np.float64) @ W.T.astype(np.float64) + b
        near_kink = np.any(np.abs(Z) <= margin, axis=0)
        if not near_kink.any():
            return X, W, b
        b[near_kink] = random_array(rng, np.count_nonzero(near_kink), dtype)
    raise AssertionError(f"no pre-activations at least {margin} from 0 in 100 draws")


def draw_residual(rng, n, width, hidden, dtype=np.float64, margin=1e-3):
    """``X (n, width), W1 (hidden, width), b1 (hidden,), W2 (width, hidden)``, with the
    hidden pre-activations away from 0 as in :func:`draw_linear`."""
    X, W1, b1 = draw_linear(rng, n, width, hidden, dtype, margin)
    W2 = random_array(rng, (width, hidden), dtype)
    return X, W1, b1, W2
