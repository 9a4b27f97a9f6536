"""The contract both backends (:mod:`nncore.ops`, :mod:`nncore.reference`) implement: the
names of their functions, and what a forward pass keeps for its backward pass and its
Jacobian-vector product.

The two modules define every function of :data:`FUNCTIONS` with the same signature
(``tests/test_architecture.py`` checks it). One cache class per layer function is shared by
both, so that a cache looks the same whichever computed it. A cache refers to (does not
copy) the forward call's inputs and outputs.

``saved`` is what the activation's derivative is computed from (see
:mod:`nncore.activations`): the output itself for activations whose derivative is a
function of their output (tanh, ReLU, sigmoid, identity, ELU, softplus, ...), else the
pre-activation ``Z`` (GELU, SiLU), kept in a buffer of its own.
"""

import numpy as np

__all__ = ["FUNCTIONS", "LinearCache", "ResidualCache"]

#: The functions of the backend API, in the order the modules document them.
FUNCTIONS = (
    "softmax",
    "softmax_cross_entropy",
    "mean_squared_error",
    "linear_forward",
    "linear_backward",
    "linear_jvp",
    "residual_forward",
    "residual_backward",
    "residual_jvp",
    "sgd_momentum_",
    "adam_",
    "least_squares",
    "train_step",
    "forward_plan",
)


class _Cache:
    __slots__ = ()
    #: the fields a cache unpacks to, in order (``__iter__`` of each class)
    FIELDS = ()

    def scratch(self):
        """A scratch buffer shaped like ``saved``, allocated on first use and then reused
        by every backward pass or JVP with this cache (the kernels need one)."""
        buffer = self._scratch
        if buffer is None or buffer.shape != self.saved.shape or buffer.dtype != self.saved.dtype:
            buffer = self._scratch = np.empty_like(self.saved)
        return buffer

    def __repr__(self):
        shapes = ", ".join(f"{name}={getattr(self, name).shape}" for name in self.FIELDS[:-1])
        return f"{type(self).__name__}({shapes}, activation={self.activation!r})"


class LinearCache(_Cache):
    """What :func:`linear_forward` keeps: X, W, the output A, the activation name, and
    ``saved`` (A, or the pre-activation Z when the activation's derivative needs it)."""

    __slots__ = ("X", "W", "A", "activation", "saved", "_scratch")
    FIELDS = ("X", "W", "A", "activation")

    def __init__(self, X, W, A, activation, saved):
        self.X, self.W, self.A, self.activation, self.saved = X, W, A, activation, saved
        self._scratch = None

    def __iter__(self):
        return iter((self.X, self.W, self.A, self.activation))


class ResidualCache(_Cache):
    """What :func:`residual_forward` keeps: X, W1, W2, the hidden activation H, the
    activation name, and ``saved`` (H, or the hidden pre-activation when needed)."""

    __slots__ = ("X", "W1", "W2", "H", "activation", "saved", "_scratch")
    FIELDS = ("X", "W1", "W2", "H", "activation")

    def __init__(self, X, W1, W2, H, activation, saved):
        self.X, self.W1, self.W2, self.H, self.activation = X, W1, W2, H, activation
        self.saved = saved
        self._scratch = None

    def __iter__(self):
        return iter((self.X, self.W1, self.W2, self.H, self.activation))
