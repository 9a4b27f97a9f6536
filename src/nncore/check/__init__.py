"""Derivative checks with verdicts: the gradient test, the Jacobian test, the
Jacobian-transpose test, and SGD and Adam validated on a least-squares problem with a known
answer.

The gradient and Jacobian tests are Taylor tests. Along a direction ``d``, for
``eps = eps0 * factor**i``, they record the zero-order residual ``||F(x + eps d) - F(x)||``,
which shrinks like ``eps`` (order 1), and the first-order residual
``||F(x + eps d) - F(x) - eps J d||``, which shrinks like ``eps**2`` (order 2) if and only if
``J d`` is the true derivative; a wrong derivative leaves an ``eps * (error)`` term, order 1.
The orders are fitted on a log-log scale over the *window*: the smallest steps whose
residuals still stand clear of the measured round-off level of ``F``. The verdict:

- PASS: the fitted zero-order order is ``1 +- ORDER_TOLERANCE`` and the first-order one is at
  least ``2 - ORDER_TOLERANCE``; or the first-order residual is at round-off level at every
  step while the zero-order residual is not (``F`` is linear along ``d``: the Taylor remainder
  vanishes, and an error in ``J d`` would have shown as an order-1 residual).
- FAIL: a fitted order outside those bounds, except:
- INCONCLUSIVE: too few usable steps between the nonlinearity and round-off (typical of
  float32 with a strongly curved ``F``), every step crossed a ReLU kink, or a zero-order
  order off 1 (``d`` nearly stationary) with a first-order order that is not too low. Not
  a pass.

The Jacobian-transpose test checks a vector-Jacobian product (a backward pass) against the
Jacobian-vector product: ``|u^T (J v) - v^T (J^T u)| / (||u|| ||J v||)`` for random ``u``,
``v`` must be below ``TRANSPOSE_TOLERANCE`` units of round-off.

:func:`ready_made_checks` builds these checks for every part of the library (softmax
cross-entropy, Dense with every activation, the residual block, whole networks) and
:func:`least_squares_demo` validates SGD with momentum, and :func:`adam_least_squares_demo`
Adam, against ``numpy.linalg.lstsq``.
``nncore gradcheck`` runs them all. See docs/verification.md.
"""

# The parts: taylor (gradient and Jacobian tests) and transpose (Jacobian-transpose test),
# pure NumPy; least_squares (SGD and Adam against lstsq); catalogue (the ready-made checks of every
# part of nncore, run_checks); figures (every matplotlib drawing; matplotlib itself is
# imported when the first figure is drawn). MIN_WINDOW, TAYLOR_SETTINGS,
# network_forward_backward and relu_pattern are re-exported too, outside __all__ as before.
from .catalogue import (
    TAYLOR_SETTINGS,
    Check,
    ErrorResult,
    network_forward_backward,
    ready_made_checks,
    relu_pattern,
    run_checks,
)
from .figures import plot_results
from .least_squares import (
    AdamLeastSquaresResult,
    LeastSquaresResult,
    adam_least_squares_demo,
    least_squares_demo,
)
from .taylor import (
    MIN_WINDOW,
    ORDER_TOLERANCE,
    ROUNDOFF_MARGIN,
    TaylorResult,
    gradient_test,
    jacobian_test,
)
from .transpose import TRANSPOSE_TOLERANCE, TransposeResult, jacobian_transpose_test

__all__ = [
    "ORDER_TOLERANCE",
    "ROUNDOFF_MARGIN",
    "TRANSPOSE_TOLERANCE",
    "TaylorResult",
    "TransposeResult",
    "LeastSquaresResult",
    "AdamLeastSquaresResult",
    "ErrorResult",
    "Check",
    "gradient_test",
    "jacobian_test",
    "jacobian_transpose_test",
    "least_squares_demo",
    "adam_least_squares_demo",
    "ready_made_checks",
    "run_checks",
    "plot_results",
]
