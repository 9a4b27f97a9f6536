"""The functional API over the Cython kernels: validate, allocate, call.

Every function here has a twin of the same name and signature in :mod:`nncore.reference`
(plain NumPy), and the tests hold the two to the same answers.

Conventions, documented once:

- Arrays are ``(n_samples, n_features)``, C-contiguous float32 or float64. Other layouts
  (Fortran order, strides) are copied, read-only arrays work as they are; all arrays of one
  call must share a dtype.
- A weight ``W`` is ``(n_out, n_in)`` and a layer computes ``A = act(X @ W.T + b)``.
- Labels are integer class indices ``0 <= y < n_classes``.
- ``out=`` arrays, when given, must be C-contiguous, writeable and of the exact shape and
  dtype; the result is written into them. Backward passes need one scratch buffer, which
  the cache allocates on first use and reuses for every later call with the same cache.
  Forward functions take ``cache=``, an earlier cache to refill instead of a new one, so a
  training loop that passes ``out=`` and ``cache=`` allocates nothing in steady state.
- A cache returned by a forward function refers to (does not copy) that call's inputs: do not
  modify them before the backward pass.

Every shape, dtype and contiguity problem raises ``ValueError``/``TypeError`` naming the
argument before any kernel runs.

How many threads a training step's call runs on is :func:`nncore.parallel.step_threads`'s
choice; the step's handle tells it only whether the step is worth two
(:data:`TWO_THREAD_STEP_FLOPS`).
"""

import numpy as np

from . import _kernels
from . import _validation as v
from . import activations, parallel
from ._backend import FUNCTIONS, LinearCache, ResidualCache

__all__ = ["ACTIVATIONS", *FUNCTIONS]

#: The activation names (the registry is :mod:`nncore.activations`; each entry's ``code``
#: is its number in the kernels' enum).
ACTIVATIONS = activations.names()


def _specialisations(fused_function):
    """dtype -> the float or double specialisation of a fused kernel.

    Calling the specialisation directly skips Cython's run-time signature matching, which
    costs more than the kernel itself on small arrays.
    """
    signatures = fused_function.__signatures__
    return {np.dtype(np.float32): signatures["float"], np.dtype(np.float64): signatures["double"]}


_SOFTMAX = _specialisations(_kernels.softmax)
_SOFTMAX_CE = _specialisations(_kernels.softmax_cross_entropy)
_MSE = _specialisations(_kernels.mean_squared_error)
_LINEAR_FORWARD = _specialisations(_kernels.linear_forward)
_LINEAR_BACKWARD = _specialisations(_kernels.linear_backward)
_LINEAR_JVP = _specialisations(_kernels.linear_jvp)
_RESIDUAL_FORWARD = _specialisations(_kernels.residual_forward)
_RESIDUAL_BACKWARD = _specialisations(_kernels.residual_backward)
_RESIDUAL_JVP = _specialisations(_kernels.residual_jvp)
_SGD = _specialisations(_kernels.sgd_momentum)
_ADAM = _specialisations(_kernels.adam)
_LEAST_SQUARES = _specialisations(_kernels.least_squares)


#: An empty (0, 0) array per dtype: the kernels' "no buffer" (its pointer is NULL), passed as
#: the pre-activation buffer of activations whose derivative needs only their output.
_NO_BUFFER = {dtype: np.empty((0, 0), dtype=dtype) for dtype in v.FLOAT_DTYPES}
#: An empty (0,) array per dtype: the loss kernels' "no sample weights" (NULL pointer).
_NO_WEIGHTS = {dtype: np.empty(0, dtype=dtype) for dtype in v.FLOAT_DTYPES}


def _pre_activation_buffer(shape, dtype, cache, output):
    """A buffer for Z, for an activation whose act' needs it: reused from an earlier cache
    when that cache kept one of the right shape."""
    kept = None if cache is None else cache.saved
    if kept is not None and kept is not output and kept.shape == shape and kept.dtype == dtype:
        return kept
    return np.empty(shape, dtype=dtype)


def _result(name, out, shape, dtype, inputs):
    if out is None:
        return np.empty(shape, dtype=dtype)
    return v.out_array(name, out, shape, dtype, inputs)


# --- softmax cross-entropy -----------------------------------------------------------------

def softmax(logits, out=None):
    """Row-wise softmax of ``logits`` ``(n, k)``; the row maximum is subtracted first.

    Parameters
    ----------
    logits : array (n, k), float32 or float64
    out : array (n, k), optional
        Written in place and returned; may be ``logits`` itself (each row is read before
        it is written), but no other array that overlaps it.
    """
    logits = v.float_array("logits", logits, 2)
    probs = _result("out", out, logits.shape, logits.dtype,
                    {} if out is logits else {"logits": logits})
    _SOFTMAX[logits.dtype](logits, probs)
    return probs


def softmax_cross_entropy(logits, labels, out=None, sample_weight=None):
    """Mean cross-entropy of ``softmax(logits)`` against ``labels``, and its gradient.

    Parameters
    ----------
    logits : array (n, k), float32 or float64
    labels : integer array (n,), values in ``[0, k)``
    out : array (n, k), optional
        Receives the gradient.
    sample_weight : array (n,), optional
        Finite weights >= 0 (cast to the logits' dtype): the loss is then the weighted mean
        ``sum_i w_i l_i / sum_i w_i``. Weights all 0 give loss 0 and gradient 0; weights
        all 1 give exactly the unweighted results.

    Returns
    -------
    loss : float
        ``mean_i(logsumexp(logits[i]) - logits[i, labels[i]])``, summed in double; 0.0 for
        an empty batch.
    dlogits : array (n, k)
        ``(softmax(logits) - onehot(labels)) / n``, the gradient of ``loss`` (weighted:
        row ``i`` times ``n w_i / sum(w)``).
    """
    logits = v.float_array("logits", logits, 2)
    n, k = logits.shape
    labels = v.labels_array(labels, n)
    if n and k == 0:
        raise ValueError("logits must have at least one column (class)")
    weights = _weights(sample_weight, n, logits.dtype)
    grad = _result("out", out, logits.shape, logits.dtype, {"logits": logits})
    loss, bad_row = _SOFTMAX_CE[logits.dtype](logits, labels, grad, weights)
    if bad_row >= 0:
        raise v.label_range_error(labels, k)
    return loss, grad


def mean_squared_error(pred, target, out=None, sample_weight=None):
    """Mean over all elements of ``(pred - target)**2`` (PyTorch's ``MSELoss``) and its
    gradient.

    Parameters
    ----------
    pred, target : arrays (n, k), one float dtype
    out : array (n, k), optional
        Receives the gradient.
    sample_weight : array (n,), optional
        Finite weights >= 0 (cast to pred's dtype): the loss is then the weighted mean over
        the rows of each row's mean squared error, ``sum_i w_i sum_j d_ij^2 / (k sum_i
        w_i)``, with gradient ``2 w_i d_ij / (k sum_i w_i)``. Weights all 0 give loss 0
        and gradient 0; weights all 1 give exactly the unweighted results.

    Returns
    -------
    loss : float
        Summed in double (each difference taken in double); 0.0 for an empty batch.
    dpred : array (n, k)
        ``2 (pred - target) / (n k)``, the gradient of ``loss``.
    """
    pred, target = v.squared_error_arguments(pred, target)
    weights = _weights(sample_weight, pred.shape[0], pred.dtype)
    grad = _result("out", out, pred.shape, pred.dtype, {"pred": pred, "target": target})
    if pred.size == 0:
        grad[...] = 0
        return 0.0, grad
    return _MSE[pred.dtype](pred, target, grad, weights), grad


def _weights(sample_weight, n, dtype):
    """The checked weights, or an empty array (the kernels' "unweighted")."""
    if sample_weight is None:
        return _NO_WEIGHTS[dtype]
    return v.sample_weight(sample_weight, n, dtype, allow_all_zero=True)


# --- fused linear layer --------------------------------------------------------------------

def linear_forward(X, W, b, activation="identity", out=None, cache=None):
    """Fused linear layer and activation: ``A = act(X @ W.T + b)``.

    Parameters
    ----------
    X : array (n, n_in)
    W : array (n_out, n_in)
    b : array (n_out,)
    activation : str
        A name in :data:`nncore.activations.ACTIVATIONS`.
    out : array (n, n_out), optional
        Receives A.
    cache : LinearCache, optional
        An earlier cache to refill (keeps its scratch buffer) instead of a new one.

    Returns
    -------
    A : array (n, n_out)
    cache : LinearCache
        For :func:`linear_backward` and :func:`linear_jvp`.
    """
    X, W, b, dtype = v.linear_arguments(X, W, b)
    entry = activations.get(activation)
    A = _result("out", out, (X.shape[0], W.shape[0]), dtype, {"X": X, "W": W, "b": b})
    if cache is not None and not isinstance(cache, LinearCache):
        raise TypeError(f"cache must be a LinearCache from linear_forward, got {type(cache).__name__}")
    if entry.saved == "input":
        Z = saved = _pre_activation_buffer(A.shape, dtype, cache, cache and cache.A)
    else:  # act' comes from A: no Z buffer (the kernel applies the activation in place)
        Z, saved = _NO_BUFFER[dtype], A
    _LINEAR_FORWARD[dtype](X, W, b, Z, A, entry.code)
    if cache is None:
        return A, LinearCache(X, W, A, activation, saved)
    cache.X, cache.W, cache.A, cache.activation, cache.saved = X, W, A, activation, saved
    return A, cache


def linear_backward(dA, cache, out=None):
    """Backward pass of :func:`linear_forward`.

    Parameters
    ----------
    dA : array (n, n_out)
        Gradient of the loss with respect to the layer output A.
    cache : LinearCache
    out : tuple (dX, dW, db) of arrays, optional
        Receive the gradients.

    Returns
    -------
    dX : array (n, n_in)
        ``dZ @ W`` with ``dZ = dA * act'(Z)``.
    dW : array (n_out, n_in)
        ``dZ.T @ X``.
    db : array (n_out,)
        Column sums of dZ, accumulated in double.
    """
    X, W, A, activation = cache
    dA = v.gradient_argument("dA", dA, A, "the forward output A")
    dX, dW, db = v.out_tuple(out, ("dX", "dW", "db"), (X.shape, W.shape, (W.shape[0],)),
                             A.dtype, {"dA": dA, "X": X, "W": W, "A": A})
    _LINEAR_BACKWARD[A.dtype](dA, X, W, cache.saved, cache.scratch(), dX, dW, db,
                              activations.ACTIVATIONS[activation].code)
    return dX, dW, db


def linear_jvp(cache, dX, dW, db, out=None):
    """Jacobian-vector product of :func:`linear_forward` at the cached point.

    Returns ``dA = act'(Z) * (dX @ W.T + X @ dW.T + db)``, the first-order change of A
    for a change ``(dX, dW, db)`` of ``(X, W, b)``.
    """
    X, W, A, activation = cache
    dX, dW, db = v.linear_jvp_arguments(X, W, A, dX, dW, db)
    dA = _result("out", out, A.shape, A.dtype,
                 {"X": X, "W": W, "A": A, "dX": dX, "dW": dW, "db": db})
    _LINEAR_JVP[A.dtype](X, W, cache.saved, dX, dW, db, dA,
                         activations.ACTIVATIONS[activation].code)
    return dA


# --- residual block ------------------------------------------------------------------------

def residual_forward(X, W1, b1, W2, activation="tanh", out=None, cache=None):
    """Residual block ``Y = X + act(X @ W1.T + b1) @ W2.T``.

    Parameters
    ----------
    X : array (n, d)
    W1 : array (h, d)
    b1 : array (h,)
    W2 : array (d, h)
    activation : str
        A name in :data:`nncore.activations.ACTIVATIONS`.
    out : array (n, d), optional
        Receives Y; must not overlap X.
    cache : ResidualCache, optional
        An earlier cache to refill (its H and scratch buffers are reused when the shapes
        match) instead of a new one.

    Returns
    -------
    Y : array (n, d)
    cache : ResidualCache
    """
    X, W1, b1, W2, dtype = v.residual_arguments(X, W1, b1, W2)
    entry = activations.get(activation)
    Y = _result("out", out, X.shape, dtype, {"X": X, "W1": W1, "b1": b1, "W2": W2})
    if cache is not None and not isinstance(cache, ResidualCache):
        raise TypeError(f"cache must be a ResidualCache from residual_forward, got {type(cache).__name__}")
    H_shape = (X.shape[0], W1.shape[0])
    if cache is not None and cache.H.shape == H_shape and cache.H.dtype == dtype:
        H = cache.H
    else:
        H = np.empty(H_shape, dtype=dtype)
    if entry.saved == "input":
        Z = saved = _pre_activation_buffer(H_shape, dtype, cache, cache and cache.H)
    else:
        Z, saved = _NO_BUFFER[dtype], H
    _RESIDUAL_FORWARD[dtype](X, W1, b1, W2, Z, H, Y, entry.code)
    if cache is None:
        return Y, ResidualCache(X, W1, W2, H, activation, saved)
    cache.X, cache.W1, cache.W2, cache.H, cache.activation, cache.saved = \
        X, W1, W2, H, activation, saved
    return Y, cache


def residual_backward(dY, cache, out=None):
    """Backward pass of :func:`residual_forward`.

    Returns ``(dX, dW1, db1, dW2)`` given ``dY`` ``(n, d)``, with ``dH = dY @ W2``,
    ``dZ = dH * act'(Z)``: ``dW2 = dY.T @ H``, ``dW1 = dZ.T @ X``, ``db1 = sum_i dZ`` and
    ``dX = dY + dZ @ W1``. ``out`` is an optional tuple of the four arrays.
    """
    X, W1, W2, H, activation = cache
    dY = v.gradient_argument("dY", dY, X, "the block input X")
    dX, dW1, db1, dW2 = v.out_tuple(
        out, ("dX", "dW1", "db1", "dW2"), (X.shape, W1.shape, (W1.shape[0],), W2.shape), X.dtype,
        {"dY": dY, "X": X, "W1": W1, "W2": W2, "H": H},
    )
    _RESIDUAL_BACKWARD[X.dtype](dY, X, W1, W2, H, cache.saved, cache.scratch(), dX, dW1,
                                db1, dW2, activations.ACTIVATIONS[activation].code)
    return dX, dW1, db1, dW2


def residual_jvp(cache, dX, dW1, db1, dW2, out=None):
    """Jacobian-vector product of :func:`residual_forward` at the cached point:
    ``dY = dX + dH @ W2.T + H @ dW2.T`` with ``dH = act'(Z) * (dX @ W1.T + X @ dW1.T + db1)``.
    """
    X, W1, W2, H, activation = cache
    dX, dW1, db1, dW2 = v.residual_jvp_arguments(X, W1, W2, dX, dW1, db1, dW2)
    dY = _result("out", out, X.shape, X.dtype, {"X": X, "W1": W1, "W2": W2, "H": H, "dX": dX,
                                                 "dW1": dW1, "db1": db1, "dW2": dW2})
    _RESIDUAL_JVP[X.dtype](X, W1, W2, H, cache.saved, dX, dW1, db1, dW2, cache.scratch(),
                           dY, activations.ACTIVATIONS[activation].code)
    return dY


# --- optimiser and least squares -----------------------------------------------------------

def sgd_momentum_(param, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """One step of SGD with momentum, in place, in one pass (PyTorch's rule)::

        g = grad + weight_decay * param
        velocity = momentum * velocity + g
        param -= lr * (g + momentum * velocity if nesterov else velocity)

    Parameters
    ----------
    param, velocity : 1-D C-contiguous writeable arrays, modified in place
    grad : 1-D array of the same shape and dtype
    lr, momentum, weight_decay : finite floats >= 0
    nesterov : bool (needs momentum > 0)
    """
    param, grad, velocity, lr, momentum, nesterov, weight_decay = v.sgd_arguments(
        param, grad, velocity, lr, momentum, nesterov, weight_decay
    )
    _SGD[param.dtype](param, grad, velocity, lr, momentum, nesterov, weight_decay)


def adam_(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
          weight_decay=0.0, decoupled=False):
    """Update number ``step`` of Adam (or AdamW), in place, in one pass (PyTorch's rule,
    amsgrad and maximize off, in its order of operations)::

        if decoupled: param *= 1 - lr * weight_decay; g = grad       # AdamW
        else:         g = grad + weight_decay * param                 # Adam
        exp_avg += (g - exp_avg) * (1 - beta1)                        # torch.lerp
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        denom = sqrt(exp_avg_sq) / sqrt(1 - beta2 ** step) + eps
        param -= lr / (1 - beta1 ** step) * exp_avg / denom

    Parameters
    ----------
    param, exp_avg, exp_avg_sq : 1-D C-contiguous writeable arrays, modified in place
        The parameters and the first and second moments (zeros before the first update).
    grad : 1-D array of the same shape and dtype (may be read-only; may be ``param``)
    step : int >= 1
        The number of this update (1 for the first): the bias corrections use it.
    lr, weight_decay : finite floats >= 0
    beta1, beta2 : floats in [0, 1)
    eps : float > 0
    decoupled : bool
        AdamW's decoupled weight decay instead of Adam's L2 term.
    """
    (param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
     decoupled) = v.adam_arguments(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2,
                                   eps, weight_decay, decoupled)
    _ADAM[param.dtype](param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                       weight_decay, decoupled)


def least_squares(A, x, b):
    """Least-squares objective ``||A x - b||^2 / (2 m)`` and its gradient ``A.T (A x - b) / m``.

    A is ``(m, n)``, x ``(n,)``, b ``(m,)``. Returns ``(loss, grad)``; the loss is summed in
    double, and an empty system (m = 0) has loss 0 and gradient 0.
    """
    A, x, b = v.least_squares_arguments(A, x, b)
    if A.shape[0] == 0:
        return 0.0, np.zeros_like(x)
    residual = np.empty(A.shape[0], dtype=A.dtype)
    grad = np.empty_like(x)
    loss = _LEAST_SQUARES[A.dtype](A, x, b, residual, grad)
    return loss, grad


# --- a whole training step ------------------------------------------------------------------

def train_step(layers, n, params, grads, state, optimizer="sgd", loss="softmax_cross_entropy"):
    """Build a fused training step for batches of ``n`` rows: one nogil call per step.

    Parameters
    ----------
    layers : list of dict
        One per layer, in order: ``kind`` ("dense" or "residual"), ``activation``,
        ``n_in``, ``n_out`` (and ``hidden`` for residual), and the parameter and gradient
        views ``W``, ``b``, ``dW``, ``db`` (residual: ``W`` is W1, ``b`` is b1, plus ``W2``,
        ``dW2``), each a C-contiguous view into ``params`` / ``grads``.
    n : int >= 1
    params, grads : 1-D arrays of one float dtype
        The flat buffers: ``run`` writes ``grads`` and updates ``params``.
    state : tuple of 1-D arrays like ``params``
        The optimizer's state, updated in place: ``(velocity,)`` for SGD,
        ``(exp_avg, exp_avg_sq)`` for Adam (``optimizer.step_state()``).
    optimizer : {"sgd", "adam"}
        The kind of update (:data:`nncore._validation.UPDATE_KINDS`; AdamW is "adam" with
        ``decoupled``).
    loss : {"softmax_cross_entropy", "mean_squared_error"}
        What the step minimises: ``targets`` are then integer labels ``(n,)`` (intp), or
        values ``(n, n_outputs)`` of the buffers' dtype.

    Returns
    -------
    TrainStep
        ``step.run(X, targets, update)`` returns ``(loss, n_correct, status)``: ``update``
        is a dict from ``optimizer.step_update()``, ``{"kind": "sgd", "lr", "momentum",
        "nesterov", "weight_decay"}`` or ``{"kind": "adam", "lr", "beta1", "beta2", "eps",
        "weight_decay", "decoupled", "step"}`` (``step``: the 1-based number of the next
        update). The update is skipped when the loss is not finite, and also when it would
        make a weight or a state value non-finite (then ``status`` is
        :data:`nncore.status.UPDATE_NOT_FINITE`; otherwise :data:`nncore.status.OK`, or the
        row of an out-of-range label).
        ``step.run_many(X, targets, n_steps, update, losses, n_correct, weights=None)``
        runs ``n_steps`` steps on consecutive row blocks without returning to Python (Adam's
        step number
        counting up from ``update["step"]``; the dict is not changed), stopping after a
        non-finite loss or a skipped update; it returns ``(steps_done, status)``. The
        updates applied are ``steps_done``, less one if the last step's loss was not finite
        or its update was skipped.
        ``weights`` (also ``run``'s fourth argument) is None, or the samples' weights: a
        C-contiguous 1-D array of the buffers' dtype, finite and >= 0
        (:func:`nncore._validation.sample_weight`), read in blocks of ``n`` alongside the
        targets; each step's loss is then its batch's weighted mean ``sum_i w_i l_i /
        sum_i w_i`` (all-ones weights give exactly the unweighted step). A batch whose
        weights are all 0 has loss 0 and gradient 0, and the optimizer still takes its step
        with that zero gradient: SGD's momentum and weight decay and Adam's moments still
        move the weights, and Adam counts the update.
        ``step.outputs`` lists each layer's output buffer (the last holds the logits).
        ``step.threads`` is None (each call picks one thread or two: a step of
        :data:`TWO_THREAD_STEP_FLOPS` or more runs on two when two are free), or 1 or 2 to
        force that count (any other is refused when the step runs); the results agree to
        rounding.
    """
    n, dtype, state = v.train_step_arguments(layers, n, params, grads, state, optimizer,
                                              loss)
    specs, outputs = [], []
    for i, layer in enumerate(layers):
        spec = _forward_spec(layer, n, dtype)
        for name in v.step_shapes(layer):
            spec["d" + name] = layer["d" + name]
        spec["dX"] = np.empty((n, layer["n_in"]), dtype=dtype) if i > 0 else None
        spec["scratch"] = np.empty((n, _inner_width(layer)), dtype=dtype)
        specs.append(spec)
        outputs.append(spec["out"])
    dlogits = np.empty((n, layers[-1]["n_out"]), dtype=dtype)
    step = _kernels.TrainStep(specs, n, params, grads, state, dlogits, optimizer,
                              _kernels.LOSS_CODES[loss])
    return _TrainStepHandle(step, outputs, flops=6 * n * params.size, optimizer=optimizer)


def _inner_width(layer):
    """The width a layer applies its activation at: its output, or a residual block's
    hidden units."""
    return layer.get("hidden", 0) or layer["n_out"]


def _forward_spec(layer, n, dtype):
    """A layer of a compiled plan with its parameter views and the buffers of its forward
    pass for blocks of ``n`` rows: ``out``, a residual block's ``H``, and ``Z`` (the
    pre-activation) for an activation whose derivative needs it."""
    n_in, n_out, hidden = layer["n_in"], layer["n_out"], layer.get("hidden", 0)
    entry = activations.get(layer["activation"])
    spec = {"kind": layer["kind"], "activation": entry.code,
            "n_in": n_in, "n_out": n_out, "hidden": hidden,
            "out": np.empty((n, n_out), dtype=dtype),
            "H": np.empty((n, hidden), dtype=dtype) if hidden else None,
            "Z": np.empty((n, _inner_width(layer)), dtype=dtype) if entry.keeps_input
            else None}
    for name in v.step_shapes(layer):
        spec[name] = layer[name]
    return spec


#: A training step is worth two threads (which it takes when two are free:
#: parallel.step_threads) when its matrix products take about this many floating-point
#: operations or more (6 n per parameter: the forward product and the two of the backward
#: pass): where OpenBLAS would split the products over two threads anyway. Smaller steps
#: gain little or lose (the default ResNet's 13 MFLOP: +10% and -12% in two measurements)
#: and lose more than half when another process keeps a CPU busy (BENCHMARKS.md, the
#: performance issue's fourth round; benchmarks/two_threads.py).
TWO_THREAD_STEP_FLOPS = 30e6


class _TrainStepHandle:
    """A TrainStep with its layer outputs at hand (for finding where values went NaN), which
    runs each call on the threads :func:`nncore.parallel.step_threads` gives it.

    ``worth_two``: whether the step would gain from two threads (the kernels can share a
    step, _kernels.TEAM_STEP, and it takes TWO_THREAD_STEP_FLOPS or more). ``threads``:
    None (the default) lets each call take two threads if the step is worth them and two
    are free, else one; 1 or 2 forces that count (the tests force both), and the kernels
    refuse any other when the step runs.
    """

    __slots__ = ("step", "outputs", "n", "flops", "worth_two", "threads", "optimizer")

    def __init__(self, step, outputs, flops, optimizer):
        self.step, self.outputs, self.n = step, outputs, outputs[0].shape[0]
        self.flops, self.threads, self.optimizer = flops, None, optimizer
        self.worth_two = _kernels.TEAM_STEP and flops >= TWO_THREAD_STEP_FLOPS

    def run(self, X, targets, update, weights=None):
        v.step_update(update, self.optimizer)
        return self._call(self.step.run, X, targets, update, weights)

    def run_many(self, X, targets, n_steps, update, losses, n_correct, weights=None):
        v.step_update(update, self.optimizer)
        return self._call(self.step.run_many, X, targets, n_steps, update, losses, n_correct,
                          weights)

    def _call(self, method, *args):
        """``method(*args, threads)`` of the TrainStep, on the thread count of this call."""
        with parallel.step_threads(self.threads, self.worth_two) as threads:
            return method(*args, threads)


def forward_plan(layers, n, params):
    """Build a network's forward pass over any number of rows, run in blocks of ``n`` rows
    through buffers of its own: one nogil call per ``run`` (what ``predict`` uses).

    Parameters
    ----------
    layers : list of dict
        As for :func:`train_step` (the gradient views are not read).
    n : int >= 1
        The rows of a block: the buffers hold one block per layer.
    params : 1-D array
        The flat parameter buffer the layers' views lie in. The plan reads the live
        parameters, so it stays valid while they are trained.

    Returns
    -------
    ForwardPlan
        ``plan.run(X, out=None) -> out``: the last layer's outputs ``(r, n_out)`` for the
        rows of ``X`` ``(r, n_in)`` (C-contiguous of the parameters' dtype; read-only is
        fine). Each block is computed exactly as a batch of its rows would be, so the
        outputs do not depend on how the rows are later split among plans. One plan runs
        one call at a time; parallel callers each build their own.
    """
    n, dtype = v.forward_plan_arguments(layers, n, params)
    specs = []
    for i, layer in enumerate(layers):
        spec = _forward_spec(layer, n, dtype)
        if i == len(layers) - 1:
            spec["out"] = None  # the last layer writes into the caller's array
        specs.append(spec)
    return _ForwardPlan(_kernels.Forward(specs, n, dtype), layers[0]["n_in"],
                        layers[-1]["n_out"], dtype, n)


class _ForwardPlan:
    """A compiled forward pass with its input checks (see :func:`forward_plan`)."""

    __slots__ = ("_forward", "n_in", "n_out", "dtype", "n")

    def __init__(self, forward, n_in, n_out, dtype, n):
        self._forward, self.n_in, self.n_out, self.dtype, self.n = (
            forward, n_in, n_out, dtype, n)

    def run(self, X, out=None):
        X = v.plan_input(X, self.n_in, self.dtype)
        out = _result("out", out, (X.shape[0], self.n_out), self.dtype, {"X": X})
        return self._forward.run(X, out)
