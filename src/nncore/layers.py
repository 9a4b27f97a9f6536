"""Layers: a fused Dense layer and the residual block.

Weight layout, documented once: ``W`` is ``(n_out, n_in)`` and a layer computes
``A = act(X @ W.T + b)``. A layer owns no parameter memory: the network hands it views into
its one flat parameter buffer and its one flat gradient buffer (:meth:`bind`), so a single
momentum-kernel call updates every layer at once.

Each layer calls a *backend*: :mod:`nncore.ops` (the Cython kernels) or
:mod:`nncore.reference` (plain NumPy), which share one API. Output and scratch buffers are
kept per batch size, so repeated steps of one batch size allocate nothing.
"""

import math

import numpy as np

from . import _validation as v

__all__ = ["Dense", "Residual"]


def _init_weight(rng, W, activation, scale=1.0):
    """Glorot-uniform for tanh/sigmoid/identity, He-normal for ReLU, times ``scale``."""
    n_out, n_in = W.shape
    if activation == "relu":
        W[...] = rng.standard_normal(W.shape) * (scale * math.sqrt(2.0 / n_in))
    else:
        limit = scale * math.sqrt(6.0 / (n_in + n_out))
        W[...] = rng.uniform(-limit, limit, W.shape)


class _BatchBuffers:
    """Output, input-gradient and cache of one layer for one batch size."""

    __slots__ = ("out", "dX", "cache")

    def __init__(self, out, dX):
        self.out, self.dX, self.cache = out, dX, None


class _Layer:
    """What Dense and Residual share: parameter views, per-batch-size buffers."""

    #: how many batch sizes keep their buffers (a training run uses two: full and last)
    MAX_BUFFERED_SIZES = 4

    def __init__(self):
        self.backend = None
        self._buffers = {}
        self._current = None

    @property
    def n_params(self):
        return sum(math.prod(shape) for shape in self.param_shapes.values())

    def bind(self, params, grads, backend):
        """Point the parameters and gradients at slices of the network's flat buffers."""
        offset = 0
        for name, shape in self.param_shapes.items():
            size = math.prod(shape)
            setattr(self, name, params[offset:offset + size].reshape(shape))
            setattr(self, "d" + name, grads[offset:offset + size].reshape(shape))
            offset += size
        self.backend = backend
        self._buffers = {}
        self._current = None

    def _buffers_for(self, n, dtype):
        buffers = self._buffers.get(n)
        if buffers is None or buffers.out.dtype != dtype:
            if len(self._buffers) >= self.MAX_BUFFERED_SIZES:
                self._buffers.clear()
            buffers = self._buffers[n] = _BatchBuffers(
                np.empty((n, self.n_out), dtype=dtype), np.empty((n, self.n_in), dtype=dtype)
            )
        self._current = buffers
        return buffers

    def _cache(self):
        if self._current is None or self._current.cache is None:
            raise RuntimeError("backward/jvp called before forward")
        return self._current.cache

    def param_views(self):
        """``{name: array}`` of this layer's parameters (views into the network buffer)."""
        return {name: getattr(self, name) for name in self.param_shapes}

    def grad_views(self):
        return {name: getattr(self, "d" + name) for name in self.param_shapes}

    def describe(self):
        return {"kind": self.kind, **{k: getattr(self, k) for k in self.config_keys}}

    def step_spec(self):
        """This layer for :func:`nncore.ops.train_step`: sizes and parameter/gradient views."""
        spec = {"kind": self.kind, "activation": self.activation, "n_in": self.n_in,
                "n_out": self.n_out, "hidden": getattr(self, "hidden", 0)}
        # the fused step calls a residual block's W1, b1 "W", "b"
        for key, name in zip(("W", "b", "W2"), self.param_shapes):
            spec[key], spec["d" + key] = getattr(self, name), getattr(self, "d" + name)
        return spec


class Dense(_Layer):
    """Fused linear layer and activation, ``A = act(X @ W.T + b)``.

    Parameters
    ----------
    n_in, n_out : int
    activation : {"identity", "tanh", "relu", "sigmoid"}
    """

    kind = "dense"
    config_keys = ("n_in", "n_out", "activation")

    def __init__(self, n_in, n_out, activation="tanh"):
        super().__init__()
        self.n_in = v.integer("n_in", n_in)
        self.n_out = v.integer("n_out", n_out)
        self.activation = v.activation_name(activation)
        self.param_shapes = {"W": (self.n_out, self.n_in), "b": (self.n_out,)}

    def init(self, rng):
        _init_weight(rng, self.W, self.activation)
        self.b[...] = 0

    def forward(self, X):
        buffers = self._buffers_for(X.shape[0], X.dtype)
        A, buffers.cache = self.backend.linear_forward(
            X, self.W, self.b, self.activation, out=buffers.out, cache=buffers.cache
        )
        return A

    def backward(self, dA):
        """Write dW, db into the gradient buffer; return dX."""
        buffers = self._current
        dX, _, _ = self.backend.linear_backward(dA, self._cache(),
                                                out=(buffers.dX, self.dW, self.db))
        return dX

    def jvp(self, dX, dparams):
        """Change of the output for a change dX of the input and ``dparams`` (dict W, b)."""
        return self.backend.linear_jvp(self._cache(), dX, dparams["W"], dparams["b"])


class Residual(_Layer):
    """Residual block ``Y = X + act(X @ W1.T + b1) @ W2.T``.

    Parameters
    ----------
    width : int
        Features in and out (``W1`` is ``(hidden, width)``, ``W2`` is ``(width, hidden)``).
    hidden : int
    activation : {"identity", "tanh", "relu", "sigmoid"}
    branch_scale : float
        Scales the initial W2, so a deep stack starts close to the identity.
    """

    kind = "residual"
    config_keys = ("width", "hidden", "activation")

    def __init__(self, width, hidden, activation="tanh", branch_scale=1.0):
        super().__init__()
        self.width = v.integer("width", width)
        self.hidden = v.integer("hidden", hidden)
        self.activation = v.activation_name(activation)
        self.branch_scale = v.real_number("branch_scale", branch_scale, minimum=0.0)
        self.n_in = self.n_out = self.width
        self.param_shapes = {
            "W1": (self.hidden, self.width),
            "b1": (self.hidden,),
            "W2": (self.width, self.hidden),
        }

    def init(self, rng):
        _init_weight(rng, self.W1, self.activation)
        self.b1[...] = 0
        _init_weight(rng, self.W2, "identity", scale=self.branch_scale)

    def forward(self, X):
        buffers = self._buffers_for(X.shape[0], X.dtype)
        Y, buffers.cache = self.backend.residual_forward(
            X, self.W1, self.b1, self.W2, self.activation, out=buffers.out, cache=buffers.cache
        )
        return Y

    def backward(self, dY):
        buffers = self._current
        dX, _, _, _ = self.backend.residual_backward(
            dY, self._cache(), out=(buffers.dX, self.dW1, self.db1, self.dW2)
        )
        return dX

    def jvp(self, dX, dparams):
        return self.backend.residual_jvp(self._cache(), dX, dparams["W1"], dparams["b1"],
                                         dparams["W2"])
