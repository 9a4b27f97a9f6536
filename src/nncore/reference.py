"""The plain-NumPy oracle: the same functions as :mod:`nncore.ops`, written for clarity.

Every kernel in :mod:`nncore.ops` is tested against its twin here. This module never imports
the compiled kernels, so a bug there cannot hide itself here. It favours the obvious formula
over speed; where precision matters (the softmax) it computes in float64 and casts back.

Layout, documented once: arrays are ``(n_samples, n_features)``; a weight ``W`` is
``(n_out, n_in)`` and a layer computes ``A = act(X @ W.T + b)``; labels are integer class
indices.
"""

import math

import numpy as np

from . import _validation as v
from . import activations, status
from ._backend import FUNCTIONS, LinearCache, ResidualCache

__all__ = ["ACTIVATIONS", *FUNCTIONS]

#: The activation names (the registry is :mod:`nncore.activations`).
ACTIVATIONS = activations.names()


def _activate(Z, activation, out=None):
    """``(A, saved)``: ``A = act(Z)`` (written into ``out`` if given) and what the
    derivative will be computed from (A itself, or Z when the activation needs it)."""
    entry = activations.ACTIVATIONS[activation]
    A = _write(out, entry.function(Z))
    return A, (Z if entry.keeps_input else A)


def _derivative(saved, activation):
    """act'(Z), from what the forward pass saved (A or Z, as the activation's entry says)."""
    return activations.ACTIVATIONS[activation].derivative(saved)


def _write(out, value):
    if out is None:
        return np.ascontiguousarray(value)
    np.copyto(out, value)
    return out


# --- softmax cross-entropy -----------------------------------------------------------------

def softmax(logits, out=None):
    """Row-wise softmax of ``logits`` ``(n, k)``; ``out`` may be ``logits`` itself."""
    logits = v.float_array("logits", logits, 2)
    if out is not None:
        v.out_array("out", out, logits.shape, logits.dtype,
                    {} if out is logits else {"logits": logits})
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True) if z.size else z
    e = np.exp(z)
    return _write(out, (e / e.sum(axis=1, keepdims=True)).astype(logits.dtype))


def softmax_cross_entropy(logits, labels, out=None, sample_weight=None):
    """Mean cross-entropy of ``softmax(logits)`` against ``labels`` and its gradient.

    Returns ``(loss, dlogits)`` with ``dlogits = (softmax(logits) - onehot(labels)) / n``.
    The loss of an empty batch is 0.0. With ``sample_weight`` ``w`` (n,): the weighted mean
    ``sum_i w_i l_i / sum_i w_i`` and row ``i`` of the gradient scaled by ``w_i / sum(w)``
    instead of ``1 / n`` (loss 0 and gradient 0 if the weights are all 0).
    """
    logits = v.float_array("logits", logits, 2)
    n, k = logits.shape
    labels = v.labels_array(labels, n)
    if n and k == 0:
        raise ValueError("logits must have at least one column (class)")
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise v.label_range_error(labels, k)
    weights = v.sample_weight(sample_weight, n, logits.dtype, allow_all_zero=True)
    if out is not None:
        v.out_array("out", out, logits.shape, logits.dtype, {"logits": logits})
    if n == 0 or (weights is not None and not weights.any()):
        return 0.0, _write(out, np.zeros_like(logits))
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    rows = np.arange(n)
    grad = np.exp(z - log_norm[:, None])
    grad[rows, labels] -= 1.0
    if weights is None:
        loss = float(np.mean(log_norm - z[rows, labels]))
        grad /= n
    else:
        w = weights.astype(np.float64)
        kept = w > 0  # a weight of 0 removes the sample, NaN or not
        losses = (log_norm - z[rows, labels])[kept]
        loss = float(np.sum(w[kept] * losses) / w.sum())
        # written so that weights of 1 give the unweighted formulas' exact results
        grad = np.where(kept[:, None], grad, 0.0) * w[:, None] / w.sum()
    return loss, _write(out, grad.astype(logits.dtype))


def mean_squared_error(pred, target, out=None, sample_weight=None):
    """Mean over all elements of ``(pred - target)**2`` and its gradient
    ``2 (pred - target) / (n k)``; returns ``(loss, dpred)``. The loss of an empty batch is
    0.0. With ``sample_weight`` ``w`` (n,): the weighted mean over rows of each row's mean
    squared error, ``sum_i w_i mean_j d_ij^2 / sum_i w_i``, and its gradient
    ``2 w_i d_ij / (k sum_i w_i)`` (loss 0 and gradient 0 if the weights are all 0)."""
    pred, target = v.squared_error_arguments(pred, target)
    weights = v.sample_weight(sample_weight, pred.shape[0], pred.dtype, allow_all_zero=True)
    if out is not None:
        v.out_array("out", out, pred.shape, pred.dtype, {"pred": pred, "target": target})
    if pred.size == 0 or (weights is not None and not weights.any()):
        return 0.0, _write(out, np.zeros_like(pred))
    diff = pred.astype(np.float64) - target.astype(np.float64)
    if weights is None:
        return float(np.mean(diff * diff)), _write(out, (2 * diff / diff.size).astype(pred.dtype))
    w = weights.astype(np.float64)
    kept = w > 0  # a weight of 0 removes the sample, NaN or not
    diff = np.where(kept[:, None], diff, 0.0)
    total = w.sum() * diff.shape[1]
    # written so that weights of 1 give the unweighted formulas' exact results
    loss = float(np.sum(w[:, None] * (diff * diff)) / total)
    return loss, _write(out, (2 * diff * w[:, None] / total).astype(pred.dtype))


# --- fused linear layer --------------------------------------------------------------------

def linear_forward(X, W, b, activation="identity", out=None, cache=None):
    """``A = act(X @ W.T + b)``; returns ``(A, cache)``.

    X is ``(n, n_in)``, W ``(n_out, n_in)``, b ``(n_out,)``; A is ``(n, n_out)``. ``cache``
    is accepted for parity with :mod:`nncore.ops` and ignored: the reference always makes
    a new one.
    """
    X, W, b, dtype = v.linear_arguments(X, W, b)
    activations.get(activation)
    if out is not None:
        v.out_array("out", out, (X.shape[0], W.shape[0]), dtype, {"X": X, "W": W, "b": b})
    A, saved = _activate(X @ W.T + b, activation, out)
    return A, LinearCache(X, W, A, activation, saved)


def linear_backward(dA, cache, out=None):
    """Gradients ``(dX, dW, db)`` of a loss, given ``dA`` = dloss/dA ``(n, n_out)``."""
    X, W, A, activation = cache
    dA = v.gradient_argument("dA", dA, A, "the forward output A")
    dX, dW, db = v.out_tuple(out, ("dX", "dW", "db"), (X.shape, W.shape, (W.shape[0],)),
                             A.dtype, {"dA": dA, "X": X, "W": W, "A": A})
    dZ = dA * _derivative(cache.saved, activation)
    _write(dX, dZ @ W)
    _write(dW, dZ.T @ X)
    _write(db, dZ.astype(np.float64).sum(axis=0).astype(A.dtype))
    return dX, dW, db


def linear_jvp(cache, dX, dW, db, out=None):
    """Jacobian-vector product: the change of A for a change ``(dX, dW, db)`` of the inputs."""
    X, W, A, activation = cache
    dX, dW, db = v.linear_jvp_arguments(X, W, A, dX, dW, db)
    if out is not None:
        v.out_array("out", out, A.shape, A.dtype,
                    {"X": X, "W": W, "A": A, "dX": dX, "dW": dW, "db": db})
    dZ = dX @ W.T + X @ dW.T + db
    return _write(out, _derivative(cache.saved, activation) * dZ)


# --- residual block ------------------------------------------------------------------------

def residual_forward(X, W1, b1, W2, activation="tanh", out=None, cache=None):
    """``Y = X + act(X @ W1.T + b1) @ W2.T``; returns ``(Y, cache)``.

    ``cache`` is accepted for parity with :mod:`nncore.ops` and ignored.
    """
    X, W1, b1, W2, dtype = v.residual_arguments(X, W1, b1, W2)
    activations.get(activation)
    if out is not None:
        v.out_array("out", out, X.shape, dtype, {"X": X, "W1": W1, "b1": b1, "W2": W2})
    H, saved = _activate(X @ W1.T + b1, activation)
    Y = _write(out, X + H @ W2.T)
    return Y, ResidualCache(X, W1, W2, H, activation, saved)


def residual_backward(dY, cache, out=None):
    """Gradients ``(dX, dW1, db1, dW2)`` given ``dY`` = dloss/dY ``(n, n_features)``."""
    X, W1, W2, H, activation = cache
    dY = v.gradient_argument("dY", dY, X, "the block input X")
    dX, dW1, db1, dW2 = v.out_tuple(
        out, ("dX", "dW1", "db1", "dW2"), (X.shape, W1.shape, (W1.shape[0],), W2.shape), X.dtype,
        {"dY": dY, "X": X, "W1": W1, "W2": W2, "H": H},
    )
    dZ = (dY @ W2) * _derivative(cache.saved, activation)
    _write(dW2, dY.T @ H)
    _write(dW1, dZ.T @ X)
    _write(db1, dZ.astype(np.float64).sum(axis=0).astype(X.dtype))
    _write(dX, dY + dZ @ W1)
    return dX, dW1, db1, dW2


def residual_jvp(cache, dX, dW1, db1, dW2, out=None):
    """Jacobian-vector product of the block for a change ``(dX, dW1, db1, dW2)``."""
    X, W1, W2, H, activation = cache
    dX, dW1, db1, dW2 = v.residual_jvp_arguments(X, W1, W2, dX, dW1, db1, dW2)
    if out is not None:
        v.out_array("out", out, X.shape, X.dtype, {"X": X, "W1": W1, "W2": W2, "H": H, "dX": dX,
                                                   "dW1": dW1, "db1": db1, "dW2": dW2})
    dH = _derivative(cache.saved, activation) * (dX @ W1.T + X @ dW1.T + db1)
    return _write(out, dX + dH @ W2.T + H @ dW2.T)


# --- optimiser and least squares -----------------------------------------------------------

def sgd_momentum_(param, grad, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """One SGD step in place, PyTorch's rule::

        g = grad + weight_decay * param
        velocity = momentum * velocity + g
        param -= lr * (g + momentum * velocity if nesterov else velocity)

    ``param`` and ``velocity`` are 1-D, contiguous and modified in place. Returns None.
    """
    param, grad, velocity, lr, momentum, nesterov, weight_decay = v.sgd_arguments(
        param, grad, velocity, lr, momentum, nesterov, weight_decay
    )
    g = grad + weight_decay * param
    velocity[:] = momentum * velocity + g
    step = g + momentum * velocity if nesterov else velocity
    param -= lr * step


def adam_(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
          weight_decay=0.0, decoupled=False):
    """Update number ``step`` of Adam (AdamW if ``decoupled``) in place, PyTorch's rule in
    its order of operations (``torch.optim.Adam``, single-tensor path, amsgrad off)::

        if decoupled: param *= 1 - lr * weight_decay; g = grad
        else:         g = grad + weight_decay * param
        exp_avg = torch.lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        denom = sqrt(exp_avg_sq) / sqrt(1 - beta2 ** step) + eps
        param -= lr / (1 - beta1 ** step) * exp_avg / denom

    ``param``, ``exp_avg`` and ``exp_avg_sq`` are 1-D, contiguous and modified in place.
    Scalars are rounded to the arrays' dtype where PyTorch rounds them to the tensor's.
    Returns None.
    """
    (param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
     decoupled) = v.adam_arguments(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2,
                                   eps, weight_decay, decoupled)
    real = param.dtype.type
    g = grad.copy()  # every input is read before anything is written: grad may be param
    p = param * real(1 - lr * weight_decay) if decoupled else param.copy()
    if not decoupled:
        g = g + real(weight_decay) * param
    # torch.lerp(start, end, w): start + w (end - start) if |w| < 0.5, else
    # end - (end - start) (1 - w), with w (and 1 - w) in the tensor's dtype
    weight = real(1 - beta1)
    if abs(weight) < 0.5:
        m = exp_avg + weight * (g - exp_avg)
    else:
        m = g - (g - exp_avg) * (real(1) - weight)
    v_new = exp_avg_sq * real(beta2) + real(1 - beta2) * g * g
    step_size = lr / (1 - beta1 ** step)
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    denom = np.sqrt(v_new) / real(bias_correction2_sqrt) + real(eps)
    param[...] = p + real(-step_size) * m / denom
    exp_avg[...] = m
    exp_avg_sq[...] = v_new


def least_squares(A, x, b):
    """``loss = ||A x - b||^2 / (2 m)`` and its gradient ``A^T (A x - b) / m``.

    A is ``(m, n)``, x ``(n,)``, b ``(m,)``. Returns ``(loss, grad)``; an empty system has loss 0.
    """
    A, x, b = v.least_squares_arguments(A, x, b)
    m = A.shape[0]
    if m == 0:
        return 0.0, np.zeros_like(x)
    r = A.astype(np.float64) @ x.astype(np.float64) - b
    return float(r @ r / (2 * m)), (A.T.astype(np.float64) @ r / m).astype(x.dtype)


# --- a whole training step ------------------------------------------------------------------

#: The forward and backward function of each layer kind of the fused step
#: (``_validation.STEP_SHAPES`` lists the kinds and their slots).
_STEP_FUNCTIONS = {"dense": (linear_forward, linear_backward),
                   "residual": (residual_forward, residual_backward)}


#: The update of each optimizer kind of the fused step, from the flat buffers, the state
#: arrays and the update dict (``_validation.UPDATE_KINDS`` lists the kinds).
_UPDATES = {
    "sgd": lambda params, grads, state, u: sgd_momentum_(
        params, grads, *state, u["lr"], u["momentum"], u["nesterov"], u["weight_decay"]),
    "adam": lambda params, grads, state, u: adam_(
        params, grads, *state, u["step"], u["lr"], u["beta1"], u["beta2"], u["eps"],
        u["weight_decay"], u["decoupled"]),
}


def train_step(layers, n, params, grads, state, optimizer="sgd", loss="softmax_cross_entropy"):
    """A training step for batches of ``n`` rows, as plain NumPy calls layer by layer.

    The same contract as :func:`nncore.ops.train_step` (see there): ``state`` is the tuple
    of the optimizer's state arrays, ``optimizer`` the kind of update, ``loss`` what it
    minimises; ``step.run(X, targets, update) -> (loss, n_correct, status)`` and
    ``step.run_many(X, targets, n_steps, update, losses, n_correct, weights=None) ->
    (steps_done, status)`` (``weights``: the samples' weights, read in blocks of ``n``:
    each step's loss is its batch's weighted mean), with the same status codes
    (:mod:`nncore.status`) and the same rule that an update which would make a weight or a
    state value non-finite is not applied.
    """
    n, _, state = v.train_step_arguments(layers, n, params, grads, state, optimizer, loss)
    return _TrainStep(layers, n, params, grads, state, optimizer, loss)


def _slots(layer):
    """The step's slots of ``layer`` (``W``, ``b``, ...), in its functions' order."""
    return tuple(v.step_shapes(layer))


def _layers_forward(layers, X, outputs=None):
    """``X`` through the step layers' forward functions, each writing into its entry of
    ``outputs`` if given; returns the last output and the layers' caches."""
    caches = []
    for i, layer in enumerate(layers):
        forward = _STEP_FUNCTIONS[layer["kind"]][0]
        X, cache = forward(X, *(layer[slot] for slot in _slots(layer)), layer["activation"],
                           None if outputs is None else outputs[i])
        caches.append(cache)
    return X, caches


class _TrainStep:
    __slots__ = ("layers", "n", "params", "grads", "state", "kind", "loss", "outputs")

    def __init__(self, layers, n, params, grads, state, kind, loss):
        self.layers, self.n, self.loss = layers, n, loss
        self.params, self.grads, self.state, self.kind = params, grads, state, kind
        self.outputs = [np.empty((n, layer["n_out"]), dtype=params.dtype) for layer in layers]

    def _forward(self, X):
        return _layers_forward(self.layers, X, self.outputs)

    def _backward(self, grad, caches):
        for layer, cache in zip(reversed(self.layers), reversed(caches)):
            backward = _STEP_FUNCTIONS[layer["kind"]][1]
            grad, *grads = backward(grad, cache)
            for slot, value in zip(_slots(layer), grads):
                layer["d" + slot][...] = value

    def run(self, X, targets, update, weights=None):
        v.step_update(update, self.kind)
        logits, caches = self._forward(X)
        if self.loss == "mean_squared_error":
            (loss, dlogits), n_correct = mean_squared_error(logits, targets, None, weights), 0
        else:
            bad = np.flatnonzero((targets < 0) | (targets >= logits.shape[1]))
            if bad.size:
                return 0.0, 0, int(bad[0])
            loss, dlogits = softmax_cross_entropy(logits, targets, None, weights)
            n_correct = int(np.count_nonzero(logits.argmax(axis=1) == targets))
        self._backward(dlogits, caches)
        if not math.isfinite(loss):
            return loss, n_correct, status.OK
        # update copies first, so weights that would go non-finite are never written
        params, state = self.params.copy(), tuple(array.copy() for array in self.state)
        _UPDATES[self.kind](params, self.grads, state, update)
        if not all(np.isfinite(array).all() for array in (params, *state)):
            return loss, n_correct, status.UPDATE_NOT_FINITE
        self.params[...] = params
        for array, value in zip(self.state, state):
            array[...] = value
        return loss, n_correct, status.OK

    def run_many(self, X, targets, n_steps, update, losses, n_correct, weights=None):
        v.step_update(update, self.kind)
        update, n = dict(update), self.n  # Adam's step counts up; the caller's dict stays
        for s in range(n_steps):
            rows = slice(s * n, (s + 1) * n)
            loss, correct, code = self.run(X[rows], targets[rows], update,
                                           None if weights is None else weights[rows])
            if code >= 0:  # a bad label: nothing was computed for this step
                return s, code
            losses[s], n_correct[s] = loss, correct
            if not math.isfinite(loss) or code != status.OK:
                return s + 1, code
            if "step" in update:
                update["step"] += 1
        return n_steps, status.OK


def forward_plan(layers, n, params):
    """A network's forward pass over any number of rows in blocks of ``n`` rows, as plain
    NumPy calls layer by layer; the same contract as :func:`nncore.ops.forward_plan`."""
    n, dtype = v.forward_plan_arguments(layers, n, params)
    return _ForwardPlan(layers, n, dtype)


class _ForwardPlan:
    __slots__ = ("layers", "n", "dtype")

    def __init__(self, layers, n, dtype):
        self.layers, self.n, self.dtype = layers, n, dtype

    def run(self, X, out=None):
        X = v.plan_input(X, self.layers[0]["n_in"], self.dtype)
        shape = (X.shape[0], self.layers[-1]["n_out"])
        out = np.empty(shape, dtype=self.dtype) if out is None else \
            v.out_array("out", out, shape, self.dtype, {"X": X})
        for start in range(0, X.shape[0], self.n):
            out[start:start + self.n] = _layers_forward(self.layers, X[start:start + self.n])[0]
        return out
