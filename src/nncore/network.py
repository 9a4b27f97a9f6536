"""Networks: a stack of layers with a loss head, the registry of architectures that build
them, and their model files.

All parameters live in one contiguous buffer ``net.params`` and all gradients in
``net.grads`` (same layout); each layer's ``W``, ``b`` are views into them. Arrays are
``(n_samples, n_features)`` and labels integer class indices.

The architectures (``mlp``, ``resnet``, ``softmax_regression``) are registered in
:data:`ARCHITECTURES`; :func:`build` is the one place that turns an architecture name and
its settings into a network, for the command line, the grid search, the study and the
scikit-learn estimator alike.

Dependencies: a network is what a user holds, so it sits above the training loop
(:meth:`Network.fit` calls :func:`nncore.train.fit`, which works on any object with the
network's interface and imports nothing of this module) and above the model-file layer
(:mod:`nncore.modelfile` reads and writes plain states).
"""

import dataclasses
import math
import os
from typing import Callable

import numpy as np

from . import _validation as v
from . import losses, modelfile, ops, reference, train
from .layers import Dense, Residual, layer_from_spec

__all__ = ["Network", "mlp", "resnet", "softmax_regression", "build", "applicable",
           "count_params", "describe",
           "save", "load", "ARCHITECTURES", "BACKENDS"]

#: The two interchangeable implementations of the kernel API.
BACKENDS = {"kernels": ops, "reference": reference}
#: Rows per chunk when predicting or evaluating, so memory stays bounded on large inputs.
PREDICT_CHUNK = 4096


class Network:
    """A feed-forward network: ``layers``, then a loss.

    Parameters
    ----------
    layers : list of Layer
        Consecutive layers must agree (``layers[i].n_out == layers[i + 1].n_in``); the last
        layer's outputs are the logits, one per class, or the predicted values.
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initialisation (``numpy.random.default_rng``).
    backend : {"kernels", "reference"}
        ``"kernels"`` runs the Cython kernels, ``"reference"`` the NumPy oracle.
    architecture : dict, optional
        How the network was built (stored in model files).
    loss : str
        A name in :data:`nncore.losses.LOSSES`: "softmax_cross_entropy" (classification,
        integer labels) or "mean_squared_error" (regression, real-valued targets).
    """

    def __init__(self, layers, dtype="float32", seed=0, backend="kernels", architecture=None,
                 loss="softmax_cross_entropy"):
        layers = list(layers)
        if not layers:
            raise ValueError("a network needs at least one layer")
        for i, (a, b) in enumerate(zip(layers, layers[1:])):
            if a.n_out != b.n_in:
                raise ValueError(
                    f"layer {i} has {a.n_out} outputs but layer {i + 1} expects {b.n_in} inputs"
                )
        self.loss_function = losses.get(loss, "loss")
        if layers[-1].n_out < self.loss_function.min_outputs:
            raise ValueError(f"the last layer must output >= {self.loss_function.min_outputs} "
                             f"logits for {loss}, got {layers[-1].n_out}")
        self.layers = layers
        self.dtype = v.float_dtype("dtype", dtype)
        n_params = sum(layer.n_params for layer in layers)
        self.params = np.zeros(n_params, dtype=self.dtype)
        self.grads = np.zeros(n_params, dtype=self.dtype)
        self._bind(backend)
        rng = np.random.default_rng(seed)
        for layer in layers:
            layer.init(rng)
        self.architecture = architecture or {"builder": "layers"}
        self.history = None
        self._dlogits = {}

    # --- structure -------------------------------------------------------------------------

    def _bind(self, backend):
        self._backend = BACKENDS[v.choice("backend", backend, BACKENDS)]
        self.backend = backend
        offset = 0
        for layer in self.layers:
            size = layer.n_params
            layer.bind(self.params[offset:offset + size], self.grads[offset:offset + size],
                       self._backend)
            offset += size

    def set_backend(self, backend):
        """Switch between the Cython kernels and the NumPy reference; parameters are kept."""
        self._bind(backend)
        self._dlogits = {}

    @property
    def n_in(self):
        return self.layers[0].n_in

    @property
    def n_outputs(self):
        """The number of outputs: classes (logits) or predicted values."""
        return self.layers[-1].n_out

    n_classes = n_outputs

    @property
    def task(self):
        """"classification" or "regression", as the loss says."""
        return self.loss_function.task

    @property
    def n_params(self):
        return self.params.size

    def layer_specs(self):
        """One dict per layer (kind and sizes): enough to rebuild the network."""
        return [layer.describe() for layer in self.layers]

    def __repr__(self):
        inner = ", ".join(
            f"{s['kind']}({', '.join(str(s[k]) for k in s if k != 'kind')})"
            for s in self.layer_specs()
        )
        loss = "" if self.task == "classification" else f", loss={self.loss_function.name}"
        return f"Network([{inner}], dtype={self.dtype.name}, n_params={self.n_params}{loss})"

    # --- state: what a model file holds ------------------------------------------------------

    def state(self):
        """The network as plain data: ``{"dtype", "layers", "architecture", "loss",
        "params"}`` (``params`` is the live buffer, not a copy)."""
        return {"dtype": self.dtype.name, "layers": self.layer_specs(),
                "architecture": self.architecture, "loss": self.loss_function.name,
                "params": self.params}

    @classmethod
    def from_state(cls, state, backend="kernels"):
        """Rebuild a network from :meth:`state` (its parameters are copied in)."""
        network = cls([layer_from_spec(spec) for spec in state["layers"]],
                      dtype=state["dtype"], backend=backend,
                      architecture=state.get("architecture"),
                      loss=state.get("loss") or "softmax_cross_entropy")
        params = np.asarray(state["params"])
        if params.shape != network.params.shape:
            raise ValueError(f"the architecture needs {network.n_params} parameters, the "
                             f"state has {params.size}")
        network.params[...] = params
        return network

    def save(self, path):
        """Write the model file (an ``.npz`` with a JSON header, written atomically;
        see :mod:`nncore.modelfile`). Returns the path."""
        return modelfile.write_model(path, self.state())

    # --- input checks ----------------------------------------------------------------------

    def check_X(self, X, name="X"):
        """X as a C-contiguous array of the network's dtype, ``(n, n_in)``, all finite."""
        return v.features(X, self.n_in, self.dtype, name)

    def check_y(self, y, n_samples, name="y"):
        """The targets of the network's loss, with ``n_samples`` entries: class indices in
        ``[0, n_classes)`` (intp), or finite values ``(n_samples, n_outputs)`` of the
        network's dtype (a 1-D ``y`` for a one-output network)."""
        return self.loss_function.check_targets(y, n_samples, self.n_outputs, self.dtype, name)

    # --- computation (inputs already checked) ----------------------------------------------

    def _forward(self, X):
        for layer in self.layers:
            X = layer.forward(X)
        return X

    def _dlogits_buffer(self, n):
        buffer = self._dlogits.get(n)
        if buffer is None:
            if len(self._dlogits) >= 4:
                self._dlogits.clear()
            buffer = self._dlogits[n] = np.empty((n, self.n_classes), dtype=self.dtype)
        return buffer

    def _loss(self, logits, y, out=None):
        return getattr(self._backend, self.loss_function.function)(logits, y, out=out)

    def train_step(self, n, state, optimizer="sgd"):
        """A step function for batches of ``n`` rows: ``step.run(X, y, update) -> (loss,
        n_correct, status)`` computes the loss and gradient and, if the loss is finite,
        applies the optimizer's update to the parameters and to ``state``, the tuple of its
        state arrays (``optimizer`` is the kind of update, "sgd" or "adam"; ``update`` the
        optimizer's ``step_update()``). See ``train_step`` in :mod:`nncore.ops`: on the
        kernels backend it is one fused nogil call, on the reference the same sequence of
        NumPy calls."""
        return self._backend.train_step([layer.step_spec() for layer in self.layers], n,
                                        self.params, self.grads, state, optimizer=optimizer,
                                        loss=self.loss_function.name)

    # --- public API --------------------------------------------------------------------------

    def loss_and_grad(self, X, y):
        """Mean loss on ``(X, y)``; writes its gradient into ``self.grads``.

        Returns the loss (a float). ``self.grads`` is laid out like ``self.params``.
        """
        X = self.check_X(X)
        y = self.check_y(y, X.shape[0])
        loss, dlogits = self._loss(self._forward(X), y, out=self._dlogits_buffer(len(y)))
        grad = dlogits
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return loss

    def loss(self, X, y):
        """Mean loss on ``(X, y)`` without touching the gradients."""
        return self.evaluate(X, y)["loss"]

    def logits(self, X):
        """Logits ``(n, n_classes)`` for ``X``, computed in chunks of PREDICT_CHUNK rows."""
        X = self.check_X(X)
        out = np.empty((X.shape[0], self.n_classes), dtype=self.dtype)
        for start in range(0, X.shape[0], PREDICT_CHUNK):
            out[start:start + PREDICT_CHUNK] = self._forward(X[start:start + PREDICT_CHUNK])
        if not np.isfinite(out).all():
            # finite weights and inputs can still overflow (weights grown huge by too large
            # a learning rate): say so rather than hand out NaN probabilities
            row = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
            raise ValueError(
                f"the network's output overflows to inf/NaN for row {row} of X (largest "
                f"|weight| is {np.abs(self.params).max():.3g}); retrain with a smaller "
                "learning rate")
        return out

    def predict_proba(self, X):
        """Class probabilities ``(n, n_classes)`` (classification only)."""
        if self.loss_function.probabilities is None:
            raise ValueError(f"predict_proba needs a classifier; this network is trained for "
                             f"{self.task} ({self.loss_function.name}): use predict")
        return getattr(self._backend, self.loss_function.probabilities)(self.logits(X))

    def predict(self, X):
        """Predicted class indices ``(n,)``, or predicted values ``(n, n_outputs)``."""
        return self.loss_function.predict(self.logits(X))

    def evaluate(self, X, y):
        """``{"loss": mean loss, **scores}`` on ``(X, y)``: ``"accuracy"`` (the fraction
        correct) for classification, ``"rmse"`` and ``"r2"`` (scikit-learn's ``r2_score``)
        for regression."""
        logits = self.logits(X)
        y = self.check_y(y, logits.shape[0])
        if len(y) == 0:
            raise ValueError("cannot evaluate on an empty set")
        loss, _ = self._loss(logits, y)
        return {"loss": loss, **self.loss_function.scores(logits, y)}

    def jvp(self, X, dparams, dX=None):
        """Change of the logits at ``X`` for a change ``dparams`` of the flat parameter
        vector (and ``dX`` of the input): the Jacobian-vector product."""
        X = self.check_X(X)
        dparams = np.ascontiguousarray(dparams, dtype=self.dtype)
        v.shape_is("dparams", dparams, self.params.shape, "same as params")
        dX = np.zeros_like(X) if dX is None else np.ascontiguousarray(dX, dtype=self.dtype)
        v.shape_is("dX", dX, X.shape, "same as X")
        self._forward(X)
        offset = 0
        for layer in self.layers:
            pieces = {}
            for name, shape in layer.param_shapes.items():
                size = math.prod(shape)
                pieces[name] = dparams[offset:offset + size].reshape(shape)
                offset += size
            dX = layer.jvp(dX, pieces)
        return dX

    def fit(self, X, y, sample_weight=None, **kwargs):
        """Train by mini-batch SGD; see :func:`nncore.train.fit` for the arguments
        (``sample_weight``: one weight per sample, each batch's loss their weighted mean)."""
        return train.fit(self, X, y, sample_weight=sample_weight, **kwargs)


def save(network, path):
    """``network.save(path)``, as a function (beside :func:`load`)."""
    return network.save(path)


def load(path, backend="kernels"):
    """Read a model file written by :meth:`Network.save` and return the network.

    Raises :class:`nncore.ModelFileError` for a file that is missing parts, corrupted, of
    another format or version, or whose layers do not match its parameters.
    """
    state = modelfile.read_model(path)
    try:
        return Network.from_state(state, backend=backend)
    except (TypeError, ValueError) as error:
        raise modelfile.ModelFileError(
            f"{os.fspath(path)!r}: invalid architecture ({error})") from None


# --- architectures ---------------------------------------------------------------------------

def _hidden_sizes(hidden):
    if isinstance(hidden, (int, np.integer)):
        hidden = [hidden]
    return [v.integer("hidden", width) for width in hidden]


def _mlp_layers(n_in, hidden, n_classes, activation="tanh"):
    sizes = [n_in, *hidden]
    layers = [Dense(a, b, activation) for a, b in zip(sizes, sizes[1:])]
    layers.append(Dense(sizes[-1], n_classes, "identity"))
    return layers


def _resnet_layers(n_in, width, depth, n_classes, hidden, activation="tanh"):
    layers = [Dense(n_in, width, activation)]
    layers += [Residual(width, hidden, activation, branch_scale=1 / math.sqrt(max(depth, 1)))
               for _ in range(depth)]
    layers.append(Dense(width, n_classes, "identity"))
    return layers


def _head(n_outputs, n_classes, loss):
    """The number of outputs, given as ``n_outputs`` (or, as before, ``n_classes``), the
    loss entry, and how the architecture records them: a classifier keeps ``n_classes``
    (model files and results written before regression existed read the same)."""
    if (n_outputs is None) == (n_classes is None):
        raise TypeError("give the number of outputs once: n_outputs (or its older name "
                        "n_classes)")
    entry = losses.get(loss, "loss")
    n_outputs = v.integer("n_outputs" if n_classes is None else "n_classes",
                          n_classes if n_outputs is None else n_outputs)
    if entry.task == "classification":
        return n_outputs, entry, {"n_classes": n_outputs}
    return n_outputs, entry, {"n_outputs": n_outputs, "loss": entry.name}


def mlp(n_in, hidden, n_outputs=None, activation="tanh", dtype="float32", seed=0,
        backend="kernels", loss="softmax_cross_entropy", *, n_classes=None):
    """A standard network: Dense layers with ``activation``, then a linear head with
    ``n_outputs`` outputs: class logits for ``loss="softmax_cross_entropy"`` (the default),
    values for ``loss="mse"`` (regression).

    ``hidden`` lists the hidden widths (``[]`` gives softmax or linear regression).
    ``n_classes=`` is the older name of ``n_outputs`` and still works.
    """
    n_in = v.integer("n_in", n_in)
    n_outputs, entry, head = _head(n_outputs, n_classes, loss)
    hidden = _hidden_sizes(hidden)
    architecture = {"builder": "mlp", "n_in": n_in, "hidden": hidden, **head,
                    "activation": activation}
    return Network(_mlp_layers(n_in, hidden, n_outputs, activation), dtype=dtype, seed=seed,
                   backend=backend, architecture=architecture, loss=entry.name)


def softmax_regression(n_in, n_classes, dtype="float32", seed=0, backend="kernels",
                       loss="softmax_cross_entropy"):
    """Softmax regression: one linear layer into the softmax head (with ``loss="mse"``,
    linear regression onto ``n_classes`` outputs)."""
    return mlp(n_in, [], n_classes, "identity", dtype=dtype, seed=seed, backend=backend,
               loss=loss)


def resnet(n_in, width, depth, n_outputs=None, hidden=None, activation="tanh",
           dtype="float32", seed=0, backend="kernels", loss="softmax_cross_entropy", *,
           n_classes=None):
    """A ResNet: Dense(n_in -> width), ``depth`` residual blocks
    ``x + act(x W1^T + b1) W2^T`` with ``hidden`` units (default ``width``), a linear head
    with ``n_outputs`` outputs (classes, or values for ``loss="mse"``; ``n_classes=`` is the
    older name and still works).

    Each block's W2 starts scaled by ``1 / sqrt(depth)`` so the stack starts near identity.
    """
    n_in = v.integer("n_in", n_in)
    n_outputs, entry, head = _head(n_outputs, n_classes, loss)
    width, depth = v.integer("width", width), v.integer("depth", depth, minimum=0)
    hidden = width if hidden is None else v.integer("hidden", hidden)
    architecture = {"builder": "resnet", "n_in": n_in, "width": width, "depth": depth,
                    **head, "hidden": hidden, "activation": activation}
    return Network(_resnet_layers(n_in, width, depth, n_outputs, hidden, activation),
                   dtype=dtype, seed=seed, backend=backend, architecture=architecture,
                   loss=entry.name)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One way of building a network from settings (an entry of :data:`ARCHITECTURES`).

    ``layers(n_in, n_classes, settings)`` returns its layers (used to count parameters
    without allocating any), ``network(n_in, n_classes, settings, common)`` builds it
    (``common``: dtype, seed, backend, loss; ``n_classes`` is the number of outputs),
    ``label(settings)`` describes it in a few words (``settings["loss"]`` is the loss's
    registry name),
    ``takes`` names the settings it reads and ``refuses`` the ones it must not be given
    (with the reason).
    """

    name: str
    description: str
    takes: tuple
    layers: Callable
    network: Callable
    label: Callable
    refuses: dict


def _linear_label(settings):
    """One linear layer into the loss: softmax regression, or linear regression."""
    regression = losses.get(settings["loss"]).task == "regression"
    return "linear regression" if regression else "softmax regression"


def _mlp_widths(settings):
    if settings["layers"] is not None:
        return settings["layers"]
    return [settings["width"]] * v.integer("depth", settings["depth"], minimum=0)


ARCHITECTURES = {
    entry.name: entry for entry in (
        Architecture(
            name="resnet",
            description="Dense(n_in -> width), depth residual blocks, a linear head",
            takes=("width", "depth", "hidden", "activation"),
            layers=lambda n_in, n_classes, s: _resnet_layers(
                n_in, s["width"], s["depth"], n_classes,
                s["width"] if s["hidden"] is None else s["hidden"], s["activation"]),
            network=lambda n_in, n_classes, s, common: resnet(
                n_in, s["width"], s["depth"], n_classes, hidden=s["hidden"],
                activation=s["activation"], **common),
            label=lambda s: (f"resnet width {s['width']} depth {s['depth']} "
                             f"hidden {s['hidden'] or s['width']} {s['activation']}"),
            refuses={"layers": "layers is for architecture 'mlp'; a resnet takes width, "
                               "depth and hidden"}),
        Architecture(
            name="mlp",
            description="Dense layers of the given widths, then a linear head",
            takes=("layers", "width", "depth", "activation"),
            layers=lambda n_in, n_classes, s: _mlp_layers(n_in, _mlp_widths(s), n_classes,
                                                          s["activation"]),
            network=lambda n_in, n_classes, s, common: mlp(
                n_in, _mlp_widths(s), n_classes, activation=s["activation"], **common),
            label=lambda s: (f"mlp {'x'.join(map(str, _mlp_widths(s))) or _linear_label(s)}"
                             f" {s['activation']}"),
            refuses={"hidden": "hidden is for architecture 'resnet'; an mlp takes layers, "
                               "or width and depth"}),
        Architecture(
            name="softmax_regression",
            description="one linear layer into the softmax head",
            takes=(),
            layers=lambda n_in, n_classes, s: _mlp_layers(n_in, [], n_classes, "identity"),
            # with a regression loss the one linear layer is linear regression
            network=lambda n_in, n_classes, s, common: softmax_regression(n_in, n_classes,
                                                                          **common),
            label=_linear_label,
            refuses={}),
    )
}


def applicable(architecture, **settings):
    """The ``settings`` that ``architecture`` reads, for callers that hold settings for
    every architecture at once (the command line's options, an estimator's parameters)."""
    entry = ARCHITECTURES[v.choice("architecture", architecture, ARCHITECTURES)]
    return {key: value for key, value in settings.items() if key in entry.takes}


def _settings(architecture, width, depth, hidden, layers, activation,
              loss="softmax_cross_entropy"):
    entry = ARCHITECTURES[v.choice("architecture", architecture, ARCHITECTURES)]
    settings = {"width": width, "depth": depth, "hidden": hidden, "layers": layers,
                "activation": activation, "loss": losses.get(loss, "loss").name}
    for key, reason in entry.refuses.items():
        if settings[key] is not None:
            raise ValueError(reason)
    return entry, settings


def build(n_in, n_classes, seed=0, architecture="resnet", width=64, depth=4, hidden=None,
          layers=None, activation="tanh", dtype="float32", backend="kernels",
          loss="softmax_cross_entropy"):
    """Build a network from settings: the one place an architecture name is turned into a
    network (the command line, ``grid_search("auto", ...)``, the study and the
    scikit-learn estimator all come here).

    Parameters
    ----------
    n_in, n_classes : int
        Taken from the data: ``n_classes`` is the number of outputs (classes, or target
        columns for a regression loss).
    seed : int
        Seeds the initialisation.
    architecture : str
        A key of :data:`ARCHITECTURES`: "resnet", "mlp" or "softmax_regression".
    width, depth : int
        ResNet: ``depth`` residual blocks of ``width`` units. MLP: ``depth`` hidden layers
        of ``width`` units (unless ``layers`` is given; ``depth=0`` is softmax regression).
    hidden : int, optional
        Units inside each residual block (default ``width``); ResNet only.
    layers : list of int, optional
        Hidden widths of an MLP, overriding ``width`` and ``depth``.
    activation : str
        A name in :data:`nncore.activations.ACTIVATIONS`.
    dtype : {"float32", "float64"}
    backend : {"kernels", "reference"}
    loss : str
        A name in :data:`nncore.losses.LOSSES` or an alias: "softmax_cross_entropy"
        (classification, the default) or "mse" (regression; ``losses.TASKS`` gives each
        task's loss).

    Returns
    -------
    Network
    """
    entry, settings = _settings(architecture, width, depth, hidden, layers, activation, loss)
    return entry.network(n_in, n_classes, settings,
                         {"dtype": dtype, "seed": seed, "backend": backend,
                          "loss": settings["loss"]})


def count_params(n_in, n_classes, architecture="resnet", width=64, depth=4, hidden=None,
                 layers=None, activation="tanh"):
    """The number of parameters :func:`build` would give, without allocating them."""
    entry, settings = _settings(architecture, width, depth, hidden, layers, activation)
    return sum(layer.n_params for layer in entry.layers(n_in, n_classes, settings))


def describe(architecture="resnet", width=64, depth=4, hidden=None, layers=None,
             activation="tanh", loss="softmax_cross_entropy"):
    """A few words naming the network :func:`build` would give ("resnet width 64 ...")."""
    entry, settings = _settings(architecture, width, depth, hidden, layers, activation, loss)
    return entry.label(settings)
