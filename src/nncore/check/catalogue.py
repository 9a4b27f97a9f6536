"""The ready-made checks of every part of nncore, and running them.

:func:`ready_made_checks` builds a :class:`Check` for each derivative of the library
(softmax cross-entropy, softmax regression and the least-squares loss; Dense and the residual
block with every activation, wrt the input and each parameter; whole networks) and the
least-squares demo of SGD; :func:`run_checks` runs them. The builders of one layer kind,
``_dense_checks`` and ``_residual_checks``, take ``(suite, backend, dtype, rng, activation)``.
"""

import dataclasses
import math
from typing import ClassVar

import numpy as np

from .._validation import integer
from ..network import BACKENDS, mlp, resnet, softmax_regression
from .least_squares import least_squares_demo
from .taylor import gradient_test, jacobian_test
from .transpose import jacobian_transpose_test

__all__ = ["ErrorResult", "Check", "TAYLOR_SETTINGS", "ready_made_checks", "run_checks",
           "network_forward_backward", "relu_pattern"]


@dataclasses.dataclass(eq=False)  # compared by identity, as before
class ErrorResult:
    """A check that raised instead of returning a result (counted as a failure)."""

    kind: ClassVar[str] = "error"
    passed: ClassVar[bool] = False
    verdict: ClassVar[str] = "ERROR"

    name: str
    error: Exception
    reason: str = dataclasses.field(init=False)

    def __post_init__(self):
        self.reason = f"{type(self.error).__name__}: {self.error}"

    def summary(self):
        return f"{self.verdict:<12} {self.name}: {self.reason}"

    def __str__(self):
        return f"check {self.name} raised {self.reason}\n  ERROR: counted as a failure"


# --- ready-made checks for every part of the library ---------------------------------------

class Check:
    """A named check that has not run yet; ``check.run()`` returns its result.

    Attributes
    ----------
    group : str
        Checks of one group share a figure in ``nncore gradcheck``.
    name : str
    """

    __slots__ = ("group", "name", "_function")

    def __init__(self, group, name, function):
        self.group, self.name, self._function = group, name, function

    def run(self):
        """The result; an exception inside the check becomes an :class:`ErrorResult`."""
        try:
            return self._function()
        except Exception as error:  # a crash is a failed check, reported with the others
            return ErrorResult(self.name, error)

    def __repr__(self):
        return f"Check({self.group!r}, {self.name!r})"


class _Suite:
    """Collects Check objects that share Taylor settings and an optional ``corrupt``.

    ``corrupt`` is applied to the derivative under test only: the gradient of a gradient
    test, ``J v`` of a Jacobian test, ``J^T u`` (the backward pass) of a transpose test.
    Each ``around`` wraps the run (networks use it to restore their parameters).
    """

    def __init__(self, options, corrupt):
        self.options, self.corrupt, self.checks = options, corrupt, []

    def gradient(self, group, name, f, x, gradient, kinks=None, around=None):
        """``gradient()`` computes the gradient at ``x`` when the check runs."""
        def run():
            return gradient_test(f, x, self.corrupt(gradient()), kinks=kinks, name=name,
                                 **self.options)
        self.checks.append(Check(group, name, around(run) if around else run))

    def jacobian(self, group, name, F, x, jvp, kinks=None, around=None):
        def run():
            return jacobian_test(F, x, lambda v: self.corrupt(jvp(v)), kinks=kinks, name=name,
                                 **self.options)
        self.checks.append(Check(group, name, around(run) if around else run))

    def transpose(self, group, name, jvp, vjp, x, around=None):
        def run():
            return jacobian_transpose_test(jvp, lambda u: self.corrupt(vjp(u)), x, name=name,
                                           seed=self.options["seed"])
        self.checks.append(Check(group, name, around(run) if around else run))


def _draw_away_from_kinks(rng, X, W, b, margin):
    """Redraw entries of ``b`` until every pre-activation ``X W^T + b`` is at least
    ``margin`` from 0, so no ReLU unit sits on its kink at the point under test."""
    for _ in range(200):
        Z = X.astype(np.float64) @ W.T.astype(np.float64) + b
        near = np.any(np.abs(Z) < margin, axis=0)
        if not near.any():
            return b
        b[near] = rng.standard_normal(np.count_nonzero(near))
    raise RuntimeError(f"could not place every pre-activation {margin} away from 0")


def _softmax_checks(suite, backend, dtype, rng):
    n, n_in, n_classes = 8, 5, 4
    X = rng.standard_normal((n, n_in)).astype(dtype)
    W = (0.5 * rng.standard_normal((n_classes, n_in))).astype(dtype)
    b = (0.5 * rng.standard_normal(n_classes)).astype(dtype)
    labels = rng.integers(0, n_classes, n)
    logits = (2.0 * rng.standard_normal((n, n_classes))).astype(dtype)
    A = rng.standard_normal((12, 6)).astype(dtype)
    x = rng.standard_normal(6).astype(dtype)
    rhs = rng.standard_normal(12).astype(dtype)

    def cross_entropy(logits_):
        return backend.softmax_cross_entropy(logits_, labels)[0]

    suite.gradient("softmax", "softmax cross-entropy: loss wrt logits", cross_entropy, logits,
                   lambda: backend.softmax_cross_entropy(logits, labels)[1])

    def regression_loss(X_, W_, b_):
        return cross_entropy(backend.linear_forward(X_, W_, b_)[0])

    def regression_gradient(index):
        def gradient():
            out, cache = backend.linear_forward(X, W, b)
            _, dlogits = backend.softmax_cross_entropy(out, labels)
            return backend.linear_backward(dlogits, cache)[index]
        return gradient

    suite.gradient("softmax", "softmax regression: loss wrt W",
                   lambda W_: regression_loss(X, W_, b), W, regression_gradient(1))
    suite.gradient("softmax", "softmax regression: loss wrt b",
                   lambda b_: regression_loss(X, W, b_), b, regression_gradient(2))
    suite.gradient("softmax", "softmax regression: loss wrt X",
                   lambda X_: regression_loss(X_, W, b), X, regression_gradient(0))
    suite.gradient("softmax", "least squares: loss wrt x",
                   lambda x_: backend.least_squares(A, x_, rhs)[0], x,
                   lambda: backend.least_squares(A, x, rhs)[1])


def _layer_maps(forward, jvp, backward, point, cache, arg, index, relu, hidden_signs):
    """The maps of one layer with respect to one argument ``arg`` (the others held at
    ``point``): ``F(value)``, ``jvp(v)``, ``vjp(u)`` and the ReLU sign pattern (or None)."""
    zeros = {"d" + name: np.zeros_like(value) for name, value in point.items()}

    def F(value):
        return forward(**{**point, arg: value})[0]

    def jvp_arg(v):
        return jvp(cache, **{**zeros, "d" + arg: v})

    def vjp_arg(u):
        return backward(np.ascontiguousarray(u), cache)[index]

    def kinks(value):
        return hidden_signs(forward(**{**point, arg: value}))

    return F, jvp_arg, vjp_arg, (kinks if relu else None)


def _dense_checks(suite, backend, dtype, rng, activation):
    n, n_in, n_out = 8, 5, 4
    X = rng.standard_normal((n, n_in))
    W = rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)
    b = 0.5 * rng.standard_normal(n_out)
    if activation == "relu":
        b = _draw_away_from_kinks(rng, X, W, b, margin=0.05)
    point = {"X": X.astype(dtype), "W": W.astype(dtype), "b": b.astype(dtype)}

    def forward(X, W, b):
        return backend.linear_forward(X, W, b, activation)

    _, cache = forward(**point)
    group = f"dense-{activation}"
    for index, arg in enumerate(point):
        F, jvp, vjp, kinks = _layer_maps(
            forward, backend.linear_jvp, backend.linear_backward, point, cache, arg, index,
            activation == "relu", hidden_signs=lambda result: result[0] > 0)
        name = f"Dense {activation}: output wrt {arg}"
        suite.jacobian(group, name, F, point[arg], jvp, kinks=kinks)
        suite.transpose(group, name, jvp, vjp, point[arg])


def _residual_checks(suite, backend, dtype, rng, activation):
    n, width, hidden = 8, 4, 6
    X = rng.standard_normal((n, width))
    W1 = rng.standard_normal((hidden, width)) / math.sqrt(width)
    b1 = 0.5 * rng.standard_normal(hidden)
    W2 = rng.standard_normal((width, hidden)) / math.sqrt(hidden)
    if activation == "relu":
        b1 = _draw_away_from_kinks(rng, X, W1, b1, margin=0.05)
    point = {"X": X.astype(dtype), "W1": W1.astype(dtype), "b1": b1.astype(dtype),
             "W2": W2.astype(dtype)}

    def forward(X, W1, b1, W2):
        return backend.residual_forward(X, W1, b1, W2, activation)

    _, cache = forward(**point)
    group = f"residual-{activation}"
    for index, arg in enumerate(point):
        F, jvp, vjp, kinks = _layer_maps(
            forward, backend.residual_jvp, backend.residual_backward, point, cache, arg, index,
            activation == "relu", hidden_signs=lambda result: result[1].H > 0)
        name = f"Residual {activation}: output wrt {arg}"
        suite.jacobian(group, name, F, point[arg], jvp, kinks=kinks)
        suite.transpose(group, name, jvp, vjp, point[arg])


def network_forward_backward(network, X, dlogits):
    """Run ``network`` forward on ``X`` and its backward pass from ``dlogits``.

    Parameters
    ----------
    network : nncore.Network
    X : array (n, n_in)
    dlogits : array (n, n_classes)
        The gradient of some scalar with respect to the logits.

    Returns
    -------
    dX : ndarray (n, n_in)
        The gradient with respect to ``X``.
    dparams : ndarray (n_params,)
        The gradient with respect to ``network.params`` (a copy of ``network.grads``,
        which is overwritten).
    """
    X = network.check_X(X)
    dlogits = np.ascontiguousarray(dlogits, dtype=network.dtype)
    out = X
    for layer in network.layers:
        out = layer.forward(out)
    if dlogits.shape != out.shape:
        raise ValueError(f"dlogits must have shape {out.shape}, got {dlogits.shape}")
    grad = dlogits
    for layer in reversed(network.layers):
        grad = layer.backward(grad)
    return np.array(grad), network.grads.copy()


def relu_pattern(network, X):
    """The sign of every ReLU pre-activation of ``network`` on ``X`` (a flat bool array):
    it changes exactly when a step crosses a kink. Empty for networks without ReLU."""
    from ..layers import Residual

    X = network.check_X(X)
    signs = [np.zeros(0, dtype=bool)]
    out = X
    for layer in network.layers:
        inputs = out
        out = layer.forward(out)
        if layer.activation != "relu":
            continue
        if isinstance(layer, Residual):
            pre_activation = inputs.astype(np.float64) @ layer.W1.T + layer.b1
        else:
            pre_activation = out  # relu(z) > 0 exactly when z > 0
        signs.append((np.asarray(pre_activation) > 0).reshape(-1))
    return np.concatenate(signs)


def _network_checks(suite, backend_name, dtype, rng, builder, activation):
    n_in, n_classes, n = 3, 4, 8
    seed = suite.options["seed"]
    if builder == "softmax-regression":
        network = softmax_regression(n_in, n_classes, dtype=dtype, seed=seed,
                                     backend=backend_name)
        label, group = "softmax regression", "network-softmax-regression"
    elif builder == "mlp":
        network = mlp(n_in, [6, 5], n_classes, activation=activation, dtype=dtype, seed=seed,
                      backend=backend_name)
        label, group = f"MLP 3-6-5-4 {activation}", f"network-mlp-{activation}"
    else:
        network = resnet(n_in, width=5, depth=2, n_classes=n_classes, hidden=4,
                         activation=activation, dtype=dtype, seed=seed, backend=backend_name)
        label, group = f"ResNet width 5 depth 2 {activation}", f"network-resnet-{activation}"
    # move away from the initialisation, so biases are nonzero and every term counts
    network.params[...] += (0.3 * rng.standard_normal(network.n_params)).astype(dtype)
    X = rng.standard_normal((n, n_in)).astype(dtype)
    labels = rng.integers(0, n_classes, n)
    params0 = network.params.copy()
    backend = BACKENDS[backend_name]
    relu = activation == "relu" and builder != "softmax-regression"

    def at(params):
        network.params[...] = params

    def restoring(run):
        def run_and_restore():
            try:
                return run()
            finally:
                at(params0)
        return run_and_restore

    def loss_of_params(params):
        at(params)
        return network.loss(X, labels)

    def loss_of_input(X_):
        at(params0)
        return network.loss(X_, labels)

    def loss_gradients():
        at(params0)
        _, dlogits = backend.softmax_cross_entropy(network.logits(X), labels)
        return network_forward_backward(network, X, dlogits)

    def logits_of_params(params):
        at(params)
        return network.logits(X)

    def jvp(v):
        at(params0)
        return network.jvp(X, v)

    def vjp(u):
        at(params0)
        return network_forward_backward(network, X, u)[1]

    def params_pattern(params):
        at(params)
        return relu_pattern(network, X)

    def input_pattern(X_):
        at(params0)
        return relu_pattern(network, X_)

    suite.gradient(group, f"{label}: loss wrt parameters", loss_of_params, params0,
                   lambda: loss_gradients()[1], kinks=params_pattern if relu else None,
                   around=restoring)
    suite.gradient(group, f"{label}: loss wrt input X", loss_of_input, X,
                   lambda: loss_gradients()[0], kinks=input_pattern if relu else None,
                   around=restoring)
    name = f"{label}: logits wrt parameters"
    suite.jacobian(group, name, logits_of_params, params0, jvp,
                   kinks=params_pattern if relu else None, around=restoring)
    suite.transpose(group, name, jvp, vjp, params0, around=restoring)


#: The settings of the Taylor tests by (dtype, quick). The quick float64 run quarters eps
#: (12 steps reach 2e-7); float32 meets round-off near eps ~ 1e-2, so it keeps halving to
#: have as many steps as possible in its short window.
TAYLOR_SETTINGS = {
    ("float64", False): {"eps0": 1.0, "factor": 0.5, "steps": 20},
    ("float64", True): {"eps0": 1.0, "factor": 0.25, "steps": 12},
    ("float32", False): {"eps0": 1.0, "factor": 0.5, "steps": 20},
    ("float32", True): {"eps0": 1.0, "factor": 0.5, "steps": 14},
}


def ready_made_checks(dtype="float64", quick=False, seed=0, backend="kernels", corrupt=None):
    """Checks of every part of the library, each with respect to the input and every
    parameter.

    - softmax cross-entropy (wrt the logits), softmax regression's loss (wrt W, b and X)
      and the least-squares loss (wrt x): gradient tests;
    - Dense with every activation and the residual block with every activation, wrt X and
      each parameter: a Jacobian test of the JVP and a Jacobian-transpose test of the
      backward pass against it;
    - softmax regression, MLPs and ResNets (tanh, ReLU, sigmoid): gradient tests of the loss
      wrt the flat parameter vector and wrt the input, a Jacobian test of the logits wrt
      the parameters (``Network.jvp``) and its transpose test (the backward pass);
    - SGD with momentum on least squares against ``numpy.linalg.lstsq``.

    ReLU points are drawn with every pre-activation at least 0.05 from 0, and each step's
    sign pattern is compared with the point's: steps that cross a kink are not used.

    Parameters
    ----------
    dtype : {"float64", "float32"}
        float64 verifies; float32 reports how far its precision lets the tests see: a
        float32 PASS only says the derivative is right to within the resolution the
        verdict states (about 1e-2), so it cannot tell a gradient from 1.01 times it.
    quick : bool
        Fewer steps (see ``TAYLOR_SETTINGS``): 12 with factor 1/4 instead of 20 with factor
        1/2 in float64, 14 halvings instead of 20 in float32.
    seed : int >= 0
    backend : {"kernels", "reference"}
    corrupt : callable, optional
        For testing the checks themselves: applied to every derivative under test (the
        gradient, ``J v``, ``J^T u``) before it is checked, e.g. ``lambda g: 1.01 * g``.
        In float64 every check but the least-squares demo must then fail; in float32 an
        error below the stated resolution can still pass (see ``dtype``).

    Returns
    -------
    list of Check
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if not isinstance(quick, (bool, np.bool_)):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    seed = integer("seed", seed, minimum=0)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {tuple(BACKENDS)}, got {backend!r}")
    if corrupt is not None and not callable(corrupt):
        raise TypeError(f"corrupt must be None or a callable, got {corrupt!r}")
    module = BACKENDS[backend]
    suite = _Suite({**TAYLOR_SETTINGS[dtype.name, bool(quick)], "seed": seed},
                   corrupt or (lambda derivative: derivative))
    rng = np.random.default_rng(seed)
    _softmax_checks(suite, module, dtype, rng)
    for activation in ("identity", "tanh", "relu", "sigmoid"):
        _dense_checks(suite, module, dtype, rng, activation)
    for activation in ("identity", "tanh", "relu", "sigmoid"):
        _residual_checks(suite, module, dtype, rng, activation)
    _network_checks(suite, backend, dtype, rng, "softmax-regression", None)
    for builder in ("mlp", "resnet"):
        for activation in ("tanh", "relu", "sigmoid"):
            _network_checks(suite, backend, dtype, rng, builder, activation)
    suite.checks.append(Check("least-squares", "least squares: SGD + momentum vs lstsq",
                              lambda: least_squares_demo(seed=seed)))
    return suite.checks


def run_checks(checks):
    """Run each check in order.

    Parameters
    ----------
    checks : iterable of Check

    Returns
    -------
    list
        One result per check (TaylorResult, TransposeResult, LeastSquaresResult, or an
        ErrorResult for a check that raised), each with ``.passed``, ``.verdict`` and
        ``.summary()``.
    """
    return [check.run() for check in checks]
