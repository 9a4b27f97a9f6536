"""Networks: a stack of layers with a softmax cross-entropy head, and the MLP/ResNet builders.

All parameters live in one contiguous buffer ``net.params`` and all gradients in
``net.grads`` (same layout); each layer's ``W``, ``b`` are views into them. Arrays are
``(n_samples, n_features)`` and labels integer class indices.
"""

import math

import numpy as np

from . import _validation as v
from . import ops, reference
from .layers import Dense, Residual

__all__ = ["Network", "mlp", "resnet", "softmax_regression", "BACKENDS"]

#: The two interchangeable implementations of the kernel API.
BACKENDS = {"kernels": ops, "reference": reference}
_LAYER_TYPES = {"dense": Dense, "residual": Residual}
#: Rows per chunk when predicting or evaluating, so memory stays bounded on large inputs.
PREDICT_CHUNK = 4096


def _network_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in v.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


class Network:
    """A feed-forward classifier: ``layers`` then softmax cross-entropy.

    Parameters
    ----------
    layers : list of Dense / Residual
        Consecutive layers must agree (``layers[i].n_out == layers[i + 1].n_in``); the last
        layer's outputs are the logits, one per class.
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initialisation (``numpy.random.default_rng``).
    backend : {"kernels", "reference"}
        ``"kernels"`` runs the Cython kernels, ``"reference"`` the NumPy oracle.
    architecture : dict, optional
        How the network was built (stored in model files).
    """

    def __init__(self, layers, dtype="float32", seed=0, backend="kernels", architecture=None):
        layers = list(layers)
        if not layers:
            raise ValueError("a network needs at least one layer")
        for i, (a, b) in enumerate(zip(layers, layers[1:])):
            if a.n_out != b.n_in:
                raise ValueError(
                    f"layer {i} has {a.n_out} outputs but layer {i + 1} expects {b.n_in} inputs"
                )
        if layers[-1].n_out < 2:
            raise ValueError(f"the last layer must output >= 2 logits, got {layers[-1].n_out}")
        self.layers = layers
        self.dtype = _network_dtype(dtype)
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
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {tuple(BACKENDS)}, got {backend!r}")
        self.backend = backend
        offset = 0
        for layer in self.layers:
            size = layer.n_params
            layer.bind(self.params[offset:offset + size], self.grads[offset:offset + size],
                       BACKENDS[backend])
            offset += size

    def set_backend(self, backend):
        """Switch between the Cython kernels and the NumPy reference; parameters are kept."""
        self._bind(backend)
        self._dlogits = {}

    @property
    def n_in(self):
        return self.layers[0].n_in

    @property
    def n_classes(self):
        return self.layers[-1].n_out

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
        return f"Network([{inner}], dtype={self.dtype.name}, n_params={self.n_params})"

    # --- input checks ----------------------------------------------------------------------

    def check_X(self, X, name="X"):
        """X as a C-contiguous array of the network's dtype, ``(n, n_in)``, all finite."""
        if isinstance(X, np.ndarray) and X.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
        X = np.asarray(X)
        if X.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
        if X.shape[1] != self.n_in:
            raise ValueError(
                f"{name} has {X.shape[1]} features but the network expects {self.n_in}"
            )
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or infinity")
        return X

    def check_y(self, y, n_samples, name="y"):
        """y as intp class indices in ``[0, n_classes)`` with ``n_samples`` entries."""
        y = np.asarray(y)
        if y.dtype.kind not in "iu":
            integral = y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
            if not integral:  # an empty float array (np.asarray([])) counts as integral
                raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
            y = y.astype(np.intp)
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
        if y.shape[0] != n_samples:
            raise ValueError(f"{name} has {y.shape[0]} labels for {n_samples} samples")
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(
                f"{name} must lie in [0, {self.n_classes}) for a {self.n_classes}-class "
                f"network, got values in [{y.min()}, {y.max()}]"
            )
        return np.ascontiguousarray(y, dtype=np.intp)

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

    def _loss_and_grad(self, X, y):
        """Forward, loss and backward on a checked batch; fills ``self.grads``.

        Returns ``(loss, n_correct)``.
        """
        logits = self._forward(X)
        backend = BACKENDS[self.backend]
        loss, dlogits = backend.softmax_cross_entropy(logits, y, out=self._dlogits_buffer(len(y)))
        n_correct = int(np.count_nonzero(logits.argmax(axis=1) == y)) if len(y) else 0
        grad = dlogits
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return loss, n_correct

    def train_step(self, n, velocity):
        """A step function for batches of ``n`` rows: ``step.run(X, y, lr, momentum,
        nesterov, weight_decay) -> (loss, n_correct, bad_row)`` computes the loss and
        gradient and, if the loss is finite, applies the SGD update with ``velocity``.

        On the kernels backend this is one fused nogil call
        (:func:`nncore.ops.train_step`); on the reference backend, the same sequence of
        NumPy calls, layer by layer.
        """
        if self.backend == "kernels":
            return ops.train_step([layer.step_spec() for layer in self.layers], n,
                                  self.params, self.grads, velocity)
        return _LayerwiseStep(self, velocity, n)

    # --- public API --------------------------------------------------------------------------

    def loss_and_grad(self, X, y):
        """Mean cross-entropy on ``(X, y)``; writes its gradient into ``self.grads``.

        Returns the loss (a float). ``self.grads`` is laid out like ``self.params``.
        """
        X = self.check_X(X)
        y = self.check_y(y, X.shape[0])
        return self._loss_and_grad(X, y)[0]

    def loss(self, X, y):
        """Mean cross-entropy on ``(X, y)`` without touching the gradients."""
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
        """Class probabilities ``(n, n_classes)``."""
        return BACKENDS[self.backend].softmax(self.logits(X))

    def predict(self, X):
        """Predicted class indices ``(n,)``."""
        return self.logits(X).argmax(axis=1)

    def evaluate(self, X, y):
        """``{"loss": mean cross-entropy, "accuracy": fraction correct}`` on ``(X, y)``."""
        logits = self.logits(X)
        y = self.check_y(y, logits.shape[0])
        if len(y) == 0:
            raise ValueError("cannot evaluate on an empty set")
        loss, _ = BACKENDS[self.backend].softmax_cross_entropy(logits, y)
        return {"loss": loss, "accuracy": float(np.mean(logits.argmax(axis=1) == y))}

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

    def fit(self, X, y, **kwargs):
        """Train with mini-batch SGD; see :func:`nncore.train.fit` for the arguments."""
        from .train import fit  # train builds on network, so the import waits until used

        return fit(self, X, y, **kwargs)

    def save(self, path):
        """Write the model file (see :func:`nncore.io.save`)."""
        from .io import save

        return save(self, path)


class _LayerwiseStep:
    """The training step as separate backend calls (the reference backend's path)."""

    def __init__(self, network, velocity, n):
        self.network, self.velocity, self.n = network, velocity, n

    @property
    def outputs(self):
        return [layer._current.out for layer in self.network.layers
                if layer._current is not None]

    def run(self, X, y, lr, momentum, nesterov, weight_decay):
        network = self.network
        loss, n_correct = network._loss_and_grad(X, y)
        if not math.isfinite(loss):
            return loss, n_correct, -1
        # update copies first, so weights that would go non-finite are never written
        params, velocity = network.params.copy(), self.velocity.copy()
        BACKENDS[network.backend].sgd_momentum_(params, network.grads, velocity, lr, momentum,
                                                nesterov, weight_decay)
        if not (np.isfinite(params).all() and np.isfinite(velocity).all()):
            return loss, n_correct, ops.UPDATE_NOT_FINITE
        network.params[...], self.velocity[...] = params, velocity
        return loss, n_correct, -1

    def run_many(self, X, y, n_steps, lr, momentum, nesterov, weight_decay, losses, n_correct):
        n = self.n
        for s in range(n_steps):
            rows = slice(s * n, (s + 1) * n)
            losses[s], n_correct[s], status = self.run(X[rows], y[rows], lr, momentum,
                                                       nesterov, weight_decay)
            if not math.isfinite(losses[s]) or status != -1:
                return s + 1, status
        return n_steps, -1


def _hidden_sizes(hidden):
    if isinstance(hidden, (int, np.integer)):
        hidden = [hidden]
    return [v.integer("hidden", width) for width in hidden]


def mlp(n_in, hidden, n_classes, activation="tanh", dtype="float32", seed=0, backend="kernels"):
    """A standard network: Dense layers with ``activation``, then a linear softmax head.

    ``hidden`` lists the hidden widths (``[]`` gives softmax regression).
    """
    n_in, n_classes = v.integer("n_in", n_in), v.integer("n_classes", n_classes)
    hidden = _hidden_sizes(hidden)
    sizes = [n_in, *hidden]
    layers = [Dense(a, b, activation) for a, b in zip(sizes, sizes[1:])]
    layers.append(Dense(sizes[-1], n_classes, "identity"))
    architecture = {"builder": "mlp", "n_in": n_in, "hidden": hidden, "n_classes": n_classes,
                    "activation": activation}
    return Network(layers, dtype=dtype, seed=seed, backend=backend, architecture=architecture)


def softmax_regression(n_in, n_classes, dtype="float32", seed=0, backend="kernels"):
    """Softmax regression: one linear layer into the softmax head."""
    return mlp(n_in, [], n_classes, "identity", dtype=dtype, seed=seed, backend=backend)


def resnet(n_in, width, depth, n_classes, hidden=None, activation="tanh", dtype="float32",
           seed=0, backend="kernels"):
    """A ResNet: Dense(n_in -> width), ``depth`` residual blocks
    ``x + act(x W1^T + b1) W2^T`` with ``hidden`` units (default ``width``), a linear head.

    Each block's W2 starts scaled by ``1 / sqrt(depth)`` so the stack starts near identity.
    """
    n_in, n_classes = v.integer("n_in", n_in), v.integer("n_classes", n_classes)
    width, depth = v.integer("width", width), v.integer("depth", depth, minimum=0)
    hidden = width if hidden is None else v.integer("hidden", hidden)
    layers = [Dense(n_in, width, activation)]
    layers += [Residual(width, hidden, activation, branch_scale=1 / math.sqrt(max(depth, 1)))
               for _ in range(depth)]
    layers.append(Dense(width, n_classes, "identity"))
    architecture = {"builder": "resnet", "n_in": n_in, "width": width, "depth": depth,
                    "n_classes": n_classes, "hidden": hidden, "activation": activation}
    return Network(layers, dtype=dtype, seed=seed, backend=backend, architecture=architecture)


def from_layer_specs(specs, dtype="float32", backend="kernels", architecture=None):
    """Rebuild a network from :meth:`Network.layer_specs` (used by model files)."""
    layers = []
    for spec in specs:
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind not in _LAYER_TYPES:
            raise ValueError(f"unknown layer kind {kind!r}")
        layers.append(_LAYER_TYPES[kind](**spec))
    return Network(layers, dtype=dtype, backend=backend, architecture=architecture)
