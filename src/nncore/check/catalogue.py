"""The ready-made checks of every part of nncore, and running them.

:func:`ready_made_checks` builds a :class:`Check` for each derivative of the library
(softmax cross-entropy, softmax regression and the least-squares loss; Dense and the residual
block with every activation, wrt the input and each parameter; whole networks) and the
least-squares demos of SGD and Adam; :func:`run_checks` runs them. The checks of a layer kind and an
activation are built from the registries (:data:`nncore.layers.LAYERS`,
:data:`nncore.activations.ACTIVATIONS`): the layer class gives its check point and the
backend functions to test, so a new layer kind or activation is checked with no change here.
"""

import dataclasses
from typing import ClassVar

import numpy as np

from .. import activations, losses
from .._validation import boolean, choice, float_dtype, integer
from ..layers import LAYERS
from ..network import BACKENDS, build
from .least_squares import adam_least_squares_demo, least_squares_demo
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


def _squared_error_checks(suite, backend, dtype, rng):
    pred = rng.standard_normal((8, 3)).astype(dtype)
    target = rng.standard_normal((8, 3)).astype(dtype)
    suite.gradient("mse", "mean squared error: loss wrt predictions",
                   lambda pred_: backend.mean_squared_error(pred_, target)[0], pred,
                   lambda: backend.mean_squared_error(pred, target)[1])


def _layer_maps(forward, jvp, backward, point, cache, arg, index, kinked):
    """The maps of one layer with respect to one argument ``arg`` (the others held at
    ``point``): ``F(value)``, ``jvp(v)``, ``vjp(u)`` and, for a kinked activation, the sign
    pattern of its pre-activations (else None)."""
    zeros = {"d" + name: np.zeros_like(value) for name, value in point.items()}

    def F(value):
        return forward(**{**point, arg: value})[0]

    def jvp_arg(v):
        return jvp(cache, *(v if "d" + arg == name else zero for name, zero in zeros.items()))

    def vjp_arg(u):
        return backward(np.ascontiguousarray(u), cache)[index]

    def kinks(value):
        # the sign of the saved array (the output, or Z) is the sign of z for a kinked
        # activation (see nncore.activations)
        return forward(**{**point, arg: value})[1].saved > 0

    return F, jvp_arg, vjp_arg, (kinks if kinked else None)


def _layer_checks(suite, backend, dtype, rng, layer_class, activation):
    """A Jacobian test of the JVP and a transpose test of the backward pass of one layer kind
    with one activation, wrt its input and each parameter, at the kind's check point."""
    point = {name: value.astype(dtype)
             for name, value in layer_class.check_point(rng, activation).items()}
    forward_name, backward_name, jvp_name = layer_class.functions
    forward_function = getattr(backend, forward_name)

    def forward(**arrays):
        return forward_function(*arrays.values(), activation)

    _, cache = forward(**point)
    group = f"{layer_class.kind}-{activation}"
    kinked = activations.ACTIVATIONS[activation].kinked
    for index, arg in enumerate(point):
        F, jvp, vjp, kinks = _layer_maps(forward, getattr(backend, jvp_name),
                                         getattr(backend, backward_name), point, cache, arg,
                                         index, kinked)
        name = f"{layer_class.__name__} {activation}: output wrt {arg}"
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
    """The sign of every pre-activation of a kinked activation (ReLU) of ``network`` on
    ``X`` (a flat bool array): it changes exactly when a step crosses a kink. Empty for
    networks without one."""
    X = network.check_X(X)
    signs = [np.zeros(0, dtype=bool)]
    out = X
    for layer in network.layers:
        out = layer.forward(out)
        if activations.ACTIVATIONS[layer.activation].kinked:
            signs.append(layer.pre_activation_signs().reshape(-1))
    return np.concatenate(signs)


def _network_checks(suite, backend_name, dtype, rng, builder, activation,
                    loss="softmax_cross_entropy"):
    entry = losses.get(loss)
    regression = entry.task == "regression"
    n_in, n_outputs, n = 3, 2 if regression else 4, 8
    suffix = f" ({entry.name})" if regression else ""
    common = {"seed": suite.options["seed"], "dtype": dtype, "backend": backend_name,
              "loss": entry.name}
    if builder == "softmax_regression":
        network = build(n_in, n_outputs, architecture=builder, **common)
        label, group = "softmax regression", "network-softmax-regression"
    elif builder == "mlp":
        network = build(n_in, n_outputs, architecture=builder, layers=[6, 5],
                        activation=activation, **common)
        label = f"MLP 3-6-5-{n_outputs} {activation}{suffix}"
        group = f"network-mlp-{activation}" + ("-mse" if regression else "")
    else:
        network = build(n_in, n_outputs, architecture=builder, width=5, depth=2, hidden=4,
                        activation=activation, **common)
        label = f"ResNet width 5 depth 2 {activation}{suffix}"
        group = f"network-resnet-{activation}" + ("-mse" if regression else "")
    # move away from the initialisation, so biases are nonzero and every term counts
    network.params[...] += (0.3 * rng.standard_normal(network.n_params)).astype(dtype)
    X = rng.standard_normal((n, n_in)).astype(dtype)
    labels = (rng.standard_normal((n, n_outputs)).astype(dtype) if regression
              else rng.integers(0, n_outputs, n))
    params0 = network.params.copy()
    backend = BACKENDS[backend_name]
    relu = builder != "softmax_regression" and activations.ACTIVATIONS[activation].kinked

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
        _, dlogits = getattr(backend, entry.function)(network.logits(X), labels)
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
    - softmax regression, MLPs and ResNets (every activation but the identity): gradient
      tests of the loss wrt the flat parameter vector and wrt the input, a Jacobian test
      of the logits wrt the parameters (``Network.jvp``) and its transpose test (the
      backward pass); a tanh MLP and ResNet with a squared-error head likewise, and a
      gradient test of the squared error;
    - SGD with momentum, and Adam, on least squares against ``numpy.linalg.lstsq`` (Adam's
      bias correction checked too).

    Points of a kinked activation (ReLU, leaky ReLU) are drawn with every pre-activation at
    least 0.05 from 0, and each step's sign pattern is compared with the point's: steps
    that cross a kink are not used.

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
        In float64 every check but the least-squares demos must then fail; in float32 an
        error below the stated resolution can still pass (see ``dtype``).

    Returns
    -------
    list of Check
    """
    dtype = float_dtype("dtype", dtype)
    quick = boolean("quick", quick)
    seed = integer("seed", seed, minimum=0)
    choice("backend", backend, BACKENDS)
    if corrupt is not None and not callable(corrupt):
        raise TypeError(f"corrupt must be None or a callable, got {corrupt!r}")
    module = BACKENDS[backend]
    suite = _Suite({**TAYLOR_SETTINGS[dtype.name, bool(quick)], "seed": seed},
                   corrupt or (lambda derivative: derivative))
    rng = np.random.default_rng(seed)
    _softmax_checks(suite, module, dtype, rng)
    for layer_class in LAYERS.values():
        for activation in activations.names():
            _layer_checks(suite, module, dtype, rng, layer_class, activation)
    _network_checks(suite, backend, dtype, rng, "softmax_regression", None)
    # whole networks with every nonlinear activation (an identity network is one linear map,
    # which softmax regression covers)
    for builder in ("mlp", "resnet"):
        for activation in activations.names():
            if activation != "identity":
                _network_checks(suite, backend, dtype, rng, builder, activation)
    # regression: the squared-error loss and networks trained with it
    _squared_error_checks(suite, module, dtype, rng)
    for builder in ("mlp", "resnet"):
        _network_checks(suite, backend, dtype, rng, builder, "tanh", "mean_squared_error")
    suite.checks.append(Check("least-squares", "least squares: SGD + momentum vs lstsq",
                              lambda: least_squares_demo(seed=seed)))
    suite.checks.append(Check("least-squares", "least squares: Adam vs lstsq",
                              lambda: adam_least_squares_demo(seed=seed)))
    return suite.checks


def run_checks(checks):
    """Run each check in order.

    Parameters
    ----------
    checks : iterable of Check

    Returns
    -------
    list
        One result per check (TaylorResult, TransposeResult, LeastSquaresResult,
        AdamLeastSquaresResult, or an ErrorResult for a check that raised), each with
        ``.passed``, ``.verdict`` and ``.summary()``.
    """
    return [check.run() for check in checks]
