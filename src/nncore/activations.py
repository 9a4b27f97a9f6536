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
import math
from typing import Callable

import numpy as np
from scipy.special import erfc, expit

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
        True if ``act'`` jumps at ``z = 0`` (ReLU, leaky ReLU): a derivative check there must
        keep its steps from crossing 0. The sign of ``z`` is then the sign of the saved
        array.
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


# The math below is the reference's and the oracle's: written to be exact in float64 (to a
# few ulps) wherever a naive formula would lose accuracy or overflow, with NumPy and SciPy's
# own functions. Each keeps the dtype of Z (float32 stays float32: Python scalars only).

def _identity(Z):
    return Z


def _relu(Z):
    return np.maximum(Z, 0)


def _leaky_relu(Z):
    return np.where(Z > 0, Z, 0.01 * Z)


def _elu(Z):
    # expm1 of min(Z, 0): the branch not taken never overflows (np.where computes both)
    return np.where(Z > 0, Z, np.expm1(np.minimum(Z, 0)))


def _gelu(Z):
    # z Phi(z) = z (1 + erf(z / sqrt 2)) / 2 = z erfc(-z / sqrt 2) / 2, which keeps its
    # relative accuracy for z < 0, where 1 + erf cancels
    return 0.5 * Z * erfc(-Z * math.sqrt(0.5))


def _gelu_derivative(Z):
    # Phi(z) + z phi(z)
    return 0.5 * erfc(-Z * math.sqrt(0.5)) + Z * np.exp(-0.5 * Z * Z) / math.sqrt(2 * math.pi)


def _silu(Z):
    return Z * expit(Z)


def _silu_derivative(Z):
    # sigmoid(z) (1 + z (1 - sigmoid(z))), 1 - sigmoid(z) = sigmoid(-z): no cancellation
    return expit(Z) * (1 + Z * expit(-Z))


def _softplus(Z):
    # log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)), as logaddexp(0, z) computes it (which
    # warns on NaN): exp never overflows. z itself above 20, PyTorch's default threshold.
    return np.where(Z > 20, Z, np.maximum(Z, 0) + np.log1p(np.exp(-np.abs(Z))))


def _softplus_derivative(A):
    # sigmoid(z) = 1 - exp(-softplus(z)), as -expm1: accurate where A is small
    return -np.expm1(-A)


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
        # The sign of the output is the sign of z, so act' (1 or 0.01) follows from it. He:
        # a rectifier (PyTorch's kaiming init with negative slope 0.01 differs from He's by
        # a factor 1 / sqrt(1 + 0.01^2), a few parts in 1e5).
        Activation(name="leaky_relu", code=4, function=_leaky_relu,
                   derivative=lambda A: np.where(A > 0, 1, 0.01).astype(A.dtype),
                   saved="output", init="he", kinked=True,
                   description="leaky rectified linear unit: z for z > 0, else 0.01 z"),
        # act'(z) = exp(z) = act(z) + 1 for z <= 0, 1 above: a function of the output.
        # Not kinked: with alpha = 1 both sides' derivatives are 1 at 0 (only act'' jumps).
        # He: ELU is the identity for z > 0 and a bounded ReLU-like tail below, and its
        # authors (Clevert et al., 2016) initialised it as He did ReLU.
        Activation(name="elu", code=5, function=_elu,
                   derivative=lambda A: np.where(A > 0, 1, A + 1).astype(A.dtype),
                   saved="output", init="he", kinked=False,
                   description="exponential linear unit (alpha 1): z for z > 0, "
                               "else exp(z) - 1"),
        # Not monotone (a minimum at z = -0.75): act' needs z. Glorot, as Keras gives every
        # activation by default: GELU is smooth and its slope at 0 is 1/2, not the
        # exact-zero half of ReLU that He's factor 2 corrects for.
        Activation(name="gelu", code=6, function=_gelu, derivative=_gelu_derivative,
                   saved="input", init="glorot", kinked=False,
                   description="Gaussian error linear unit, exact: z Phi(z) = "
                               "z (1 + erf(z / sqrt 2)) / 2"),
        # Not monotone (a minimum at z = -1.28): act' needs z. Glorot, as for GELU.
        Activation(name="silu", code=7, function=_silu, derivative=_silu_derivative,
                   saved="input", init="glorot", kinked=False,
                   description="sigmoid linear unit (swish): z sigmoid(z)"),
        # Increasing, so act' = sigmoid(z) = 1 - exp(-act(z)) follows from the output.
        # Glorot: smooth, slope 1/2 at 0, as for GELU and SiLU.
        Activation(name="softplus", code=8, function=_softplus,
                   derivative=_softplus_derivative,
                   saved="output", init="glorot", kinked=False,
                   description="softplus log(1 + exp(z)) (z itself above 20, as PyTorch)"),
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
