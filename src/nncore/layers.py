"""Layers: the registry of layer kinds, a fused Dense layer and the residual block.

Weight layout, documented once: ``W`` is ``(n_out, n_in)`` and a layer computes
``A = act(X @ W.T + b)``. A layer owns no parameter memory: the network hands it views into
its one flat parameter buffer and its one flat gradient buffer (:meth:`Layer.bind`), so a
single optimizer-kernel call updates every layer at once.

A layer kind is one class, registered in :data:`LAYERS` under its ``kind``, and it owns
everything about itself: its configuration and description, its parameter shapes and count,
its initialisation, its math (the backend functions it calls), its slots in the fused
training step (:meth:`Layer.step_spec`), and the point its ready-made derivative checks are
taken at (:meth:`Layer.check_point`). Model files, the study and the verification catalogue
look layer kinds up here; see docs/extending.md for adding one.

Each layer calls a *backend*: :mod:`nncore.ops` (the Cython kernels) or
:mod:`nncore.reference` (plain NumPy), which share one API. Output and scratch buffers are
kept per batch size, so repeated steps of one batch size allocate nothing.
"""

import math

import numpy as np

from . import _validation as v
from . import activations

__all__ = ["Layer", "Dense", "Residual", "LAYERS", "layer_from_spec"]

#: Layer kinds by name: ``kind -> class``. A Layer subclass with a ``kind`` registers itself.
LAYERS = {}


def _init_weight(rng, W, activation, scale=1.0):
    """Glorot-uniform, or He-normal where the activation's entry asks for it (the
    rectifiers), times ``scale``."""
    n_out, n_in = W.shape
    if activations.ACTIVATIONS[activation].init == "he":
        W[...] = rng.standard_normal(W.shape) * (scale * math.sqrt(2.0 / n_in))
    else:
        limit = scale * math.sqrt(6.0 / (n_in + n_out))
        W[...] = rng.uniform(-limit, limit, W.shape)


class _BatchBuffers:
    """Output, input-gradient and cache of one layer for one batch size."""

    __slots__ = ("out", "dX", "cache")

    def __init__(self, out, dX):
        self.out, self.dX, self.cache = out, dX, None


class Layer:
    """The interface every layer kind provides, and what they share.

    A subclass sets the class attributes

    - ``kind``: its registry key (setting it registers the class in :data:`LAYERS`);
    - ``description``: one line;
    - ``config_keys``: the constructor arguments that rebuild it (:meth:`describe`);
    - ``functions``: the names of its forward, backward and JVP functions in the backend
      API (:mod:`nncore.ops` / :mod:`nncore.reference`), which take the input, then the
      parameters in ``param_shapes`` order, then the activation;
    - ``step_slots``: the fused training step's slot for each of its parameters;

    its constructor sets ``n_in``, ``n_out``, ``activation`` and ``param_shapes`` (name ->
    shape, in the order the parameters lie in the flat buffer); and it implements
    :meth:`init` and :meth:`check_point`. ``forward``, ``backward`` and ``jvp`` come from
    here, through ``functions``.
    """

    kind = None
    description = None
    config_keys = ()
    functions = ()
    step_slots = {}
    #: how many batch sizes keep their buffers (a training run uses two: full and last)
    MAX_BUFFERED_SIZES = 4

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind is not None:
            LAYERS[cls.kind] = cls

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
        """``{"kind": ..., **config}``: a plain dict that :func:`layer_from_spec` rebuilds
        this layer from (model files store it)."""
        return {"kind": self.kind, **{k: getattr(self, k) for k in self.config_keys}}

    def step_spec(self):
        """This layer for ``train_step`` (either backend): sizes and, for each of the
        step's slots, the parameter and gradient views that fill it."""
        spec = {"kind": self.kind, "activation": self.activation, "n_in": self.n_in,
                "n_out": self.n_out, "hidden": getattr(self, "hidden", 0)}
        for slot, name in self.step_slots.items():
            spec[slot], spec["d" + slot] = getattr(self, name), getattr(self, "d" + name)
        return spec

    # --- computation, through the backend ----------------------------------------------------

    def forward(self, X):
        """The layer's output for the batch ``X``; keeps what backward and jvp need."""
        buffers = self._buffers_for(X.shape[0], X.dtype)
        forward = getattr(self.backend, self.functions[0])
        out, buffers.cache = forward(X, *self.param_views().values(), self.activation,
                                     out=buffers.out, cache=buffers.cache)
        return out

    def backward(self, dY):
        """Write the parameter gradients into the gradient buffer; return dX."""
        backward = getattr(self.backend, self.functions[1])
        dX, *_ = backward(dY, self._cache(),
                          out=(self._current.dX, *self.grad_views().values()))
        return dX

    def jvp(self, dX, dparams):
        """Change of the output for a change ``dX`` of the input and ``dparams`` (a dict
        name -> array) of the parameters: the Jacobian-vector product."""
        jvp = getattr(self.backend, self.functions[2])
        return jvp(self._cache(), dX, *(dparams[name] for name in self.param_shapes))

    def pre_activation_signs(self):
        """Where the pre-activation of the last forward pass is > 0: for a kinked
        activation (ReLU) the sign of the saved array is the sign of z."""
        return self._cache().saved > 0

    # --- what this kind provides ---------------------------------------------------------------

    def init(self, rng):
        """Initialise the parameters in place from the generator ``rng``."""
        raise NotImplementedError

    @classmethod
    def check_point(cls, rng, activation):
        """The point at which the ready-made checks (:mod:`nncore.check`) test this kind:
        a dict of float64 arrays, the input ``X`` first, then the parameters in
        ``param_shapes`` order, with no kinked unit on its kink."""
        raise NotImplementedError


def _draw_away_from_kinks(rng, X, W, b, activation, margin=0.05):
    """For a kinked activation (ReLU), redraw entries of ``b`` until every pre-activation
    ``X W^T + b`` is at least ``margin`` from 0, so no unit sits on its kink at the point
    under test. Other activations get ``b`` back as it is."""
    if not activations.ACTIVATIONS[activation].kinked:
        return b
    for _ in range(200):
        Z = X.astype(np.float64) @ W.T.astype(np.float64) + b
        near = np.any(np.abs(Z) < margin, axis=0)
        if not near.any():
            return b
        b[near] = rng.standard_normal(np.count_nonzero(near))
    raise RuntimeError(f"could not place every pre-activation {margin} away from 0")


class Dense(Layer):
    """Fused linear layer and activation, ``A = act(X @ W.T + b)``.

    Parameters
    ----------
    n_in, n_out : int
    activation : str
        A name in :data:`nncore.activations.ACTIVATIONS`.
    """

    kind = "dense"
    description = "fused linear layer and activation, act(X W^T + b)"
    config_keys = ("n_in", "n_out", "activation")
    functions = ("linear_forward", "linear_backward", "linear_jvp")
    step_slots = {"W": "W", "b": "b"}

    def __init__(self, n_in, n_out, activation="tanh"):
        super().__init__()
        self.n_in = v.integer("n_in", n_in)
        self.n_out = v.integer("n_out", n_out)
        self.activation = activations.get(activation).name
        self.param_shapes = {"W": (self.n_out, self.n_in), "b": (self.n_out,)}

    def init(self, rng):
        _init_weight(rng, self.W, self.activation)
        self.b[...] = 0

    @classmethod
    def check_point(cls, rng, activation):
        n, n_in, n_out = 8, 5, 4
        X = rng.standard_normal((n, n_in))
        W = rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)
        b = _draw_away_from_kinks(rng, X, W, 0.5 * rng.standard_normal(n_out), activation)
        return {"X": X, "W": W, "b": b}


class Residual(Layer):
    """Residual block ``Y = X + act(X @ W1.T + b1) @ W2.T``.

    Parameters
    ----------
    width : int
        Features in and out (``W1`` is ``(hidden, width)``, ``W2`` is ``(width, hidden)``).
    hidden : int
    activation : str
        A name in :data:`nncore.activations.ACTIVATIONS`.
    branch_scale : float
        Scales the initial W2, so a deep stack starts close to the identity.
    """

    kind = "residual"
    description = "residual block X + act(X W1^T + b1) W2^T"
    config_keys = ("width", "hidden", "activation")
    functions = ("residual_forward", "residual_backward", "residual_jvp")
    # the fused step's slots W, b hold a block's W1, b1
    step_slots = {"W": "W1", "b": "b1", "W2": "W2"}

    def __init__(self, width, hidden, activation="tanh", branch_scale=1.0):
        super().__init__()
        self.width = v.integer("width", width)
        self.hidden = v.integer("hidden", hidden)
        self.activation = activations.get(activation).name
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

    @classmethod
    def check_point(cls, rng, activation):
        n, width, hidden = 8, 4, 6
        X = rng.standard_normal((n, width))
        W1 = rng.standard_normal((hidden, width)) / math.sqrt(width)
        b1 = 0.5 * rng.standard_normal(hidden)
        W2 = rng.standard_normal((width, hidden)) / math.sqrt(hidden)
        b1 = _draw_away_from_kinks(rng, X, W1, b1, activation)
        return {"X": X, "W1": W1, "b1": b1, "W2": W2}


def layer_from_spec(spec):
    """Rebuild a layer from :meth:`Layer.describe`'s dict (``{"kind": ..., **config}``)."""
    if not isinstance(spec, dict):
        raise TypeError(f"a layer spec must be a dict, got {type(spec).__name__}")
    config = dict(spec)
    kind = v.choice("layer kind", config.pop("kind", None), LAYERS)
    return LAYERS[kind](**config)
