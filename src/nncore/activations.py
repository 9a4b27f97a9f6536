"""The activation functions: one registry entry each, owning everything about it.

An entry holds the activation's name, its one-line description, the code the compiled
kernels know it by, its math in plain NumPy (the reference's, and the oracle's), the
initialisation that suits it, and what its derivative is computed from:

- ``saved = "output"``: ``act'(z)`` is a function of ``a = act(z)`` (tanh: ``1 - a**2``), so a
  layer keeps only its output;
- ``saved = "input"``: ``act'(z)`` needs ``z`` itself (GELU, SiLU), so a layer also keeps the
  pre-activation ``Z``.

The layers never look at an activation's name: they ask the entry what to keep, and the
backend computes ``act`` and ``act'`` from it. Adding an activation is one entry here plus
its loop in the kernels (``docs/extending.md``).

This module imports only NumPy and SciPy: the reference uses it, and the reference never
reaches the compiled module.
"""

import dataclasses
from typing import Callable

import numpy as np
from scipy.special import expit

from . import _validation as v

__all__ = ["Activation", "ACTIVATIONS", "get", "names"]


@dataclasses.dataclass(frozen=True)
class Activation:
    """One activation function.

    Attributes
    ----------
    name : str
    code : int
        Its number in the kernels' activation enum (``_kernels.pyx``).
    function : callable
        ``act(Z)`` in NumPy, elementwise (the reference's math).
    derivative : callable
        ``act'`` as a function of the saved array (``A`` or ``Z``, see ``saved``).
    saved : {"output", "input"}
        What the derivative is computed from: the layer's output ``A = act(Z)`` or its
        pre-activation ``Z``.
    init : {"glorot", "he"}
        Glorot-uniform suits activations that are linear near 0 and saturate (tanh,
        sigmoid, identity); He-normal suits rectifiers.
    kinked : bool
        True if ``act'`` jumps at ``z = 0`` (ReLU): a derivative check there must keep its
        steps from crossing 0. The sign of ``z`` is then the sign of the saved array.
    description : str
    """

    name: str
    code: int
    function: Callable
    derivative: Callable
    saved: str
    init: str
    kinked: bool
    description: str

    @property
    def keeps_input(self):
        """True when a layer must keep ``Z`` for the backward pass."""
        return self.saved == "input"


def _identity(Z):
    return Z


def _relu(Z):
    return np.maximum(Z, 0)


ACTIVATIONS = {
    entry.name: entry for entry in (
        Activation(name="identity", code=0, function=_identity, derivative=np.ones_like,
                   saved="output", init="glorot", kinked=False,
                   description="identity: act(z) = z (a linear layer)"),
        Activation(name="tanh", code=1, function=np.tanh, derivative=lambda A: 1 - A * A,
                   saved="output", init="glorot", kinked=False,
                   description="hyperbolic tangent: act'(z) = 1 - act(z)^2"),
        Activation(name="relu", code=2, function=_relu,
                   derivative=lambda A: (A > 0).astype(A.dtype),
                   saved="output", init="he", kinked=True,
                   description="rectified linear unit: max(z, 0)"),
        Activation(name="sigmoid", code=3, function=expit, derivative=lambda A: A * (1 - A),
                   saved="output", init="glorot", kinked=False,
                   description="logistic sigmoid 1 / (1 + exp(-z)): "
                               "act'(z) = act(z) (1 - act(z))"),
    )
}


def names():
    """The activation names, in registry order."""
    return tuple(ACTIVATIONS)


def get(name, argument="activation"):
    """The registry entry of ``name``; a clear ValueError naming ``argument`` otherwise."""
    entry = ACTIVATIONS.get(name) if isinstance(name, str) else None
    # the lookup is on every kernel call: the message is built only when it fails
    return entry if entry is not None else ACTIVATIONS[v.choice(argument, name, ACTIVATIONS)]
