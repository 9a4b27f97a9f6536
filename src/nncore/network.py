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
import threading
from collections.abc import Iterable
from typing import Callable

import numpy as np

from . import _validation as v
from . import losses, modelfile, ops, parallel, reference, train
from .layers import Dense, Residual, layer_from_spec

__all__ = ["Network", "mlp", "resnet", "softmax_regression", "build", "applicable",
           "count_params", "describe",
           "save", "load", "ARCHITECTURES", "BACKENDS"]

#: The two interchangeable implementations of the kernel API.
BACKENDS = {"kernels": ops, "reference": reference}
#: Rows per block when predicting or evaluating, so memory stays bounded on large inputs
#: (1024, 2048 and 4096 measured within 5% of each other on S, M, R; 2048 the best), and
#: fewer for wide layers: a layer's buffer holds at most PLAN_BLOCK_BYTES (but >= 256 rows).
PREDICT_CHUNK = 2048
PLAN_BLOCK_BYTES = 1 << 20
#: Blocks per compiled call when predicting: between calls a Ctrl-C is seen (and the other
#: threads stop), so a long predict ends within one call of it.
BLOCKS_PER_CALL = 8


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
        rng = np.random.default_rng(v.seed("seed", seed))
        for layer in layers:
            layer.init(rng)
        self.architecture = architecture or {"builder": "layers"}
        self.history = None
        #: the class labels (set by the first fit; None: the class indices)
        self._classes = None
        #: the standardisation of the inputs (and regression targets), or None
        self.input_mean = self.input_scale = None
        self._feature_names = None
        self.target_mean = self.target_scale = None
        self._dlogits = {}
        self._plans = {}
        #: held while a call runs on the kept plans (their buffers are shared)
        self._plans_lock = threading.Lock()

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
        self._plans = {}

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
        "params", "classes", "scaling", "feature_names"}`` (``params`` is the live buffer,
        not a copy; ``classes`` the class labels as ``{"kind", "values"}`` or None for class
        indices; ``scaling`` the standardisation as lists, or None; ``feature_names`` a list
        of strings, or None)."""
        return {"dtype": self.dtype.name, "layers": self.layer_specs(),
                "architecture": self.architecture, "loss": self.loss_function.name,
                "params": self.params, "classes": _classes_to_json(self._classes),
                "scaling": self._scaling_state(),
                "feature_names": None if self.feature_names is None
                else list(self.feature_names)}

    def _scaling_state(self):
        # either part may stand alone: a scikit-learn regressor scales only its targets
        scaling = {}
        if self.input_mean is not None:
            scaling.update(input_mean=self.input_mean.tolist(),
                           input_scale=self.input_scale.tolist())
        if self.target_mean is not None:
            scaling.update(target_mean=self.target_mean.tolist(),
                           target_scale=self.target_scale.tolist())
        return scaling or None

    def _set_scaling(self, scaling):
        """Install a :meth:`state`'s ``scaling`` entry (None: no standardisation)."""
        self.input_mean = self.input_scale = self.target_mean = self.target_scale = None
        if scaling is None:
            return
        if not isinstance(scaling, dict):
            raise ValueError("scaling must be a dict of lists")

        def vector(key, size):
            if key not in scaling:
                raise ValueError(f"scaling lacks {key}")
            value = np.asarray(scaling[key], dtype=np.float64)
            if value.shape != (size,) or not np.isfinite(value).all():
                raise ValueError(f"scaling {key} must be {size} finite numbers")
            if key.endswith("scale") and (value <= 0).any():
                raise ValueError(f"scaling {key} must be positive")
            return value

        if "input_mean" in scaling or "input_scale" in scaling:
            self.input_mean = vector("input_mean", self.n_in)
            self.input_scale = vector("input_scale", self.n_in)
        if "target_mean" in scaling or "target_scale" in scaling:
            if self.task != "regression":
                raise ValueError("target scaling is for a regression network")
            self.target_mean = vector("target_mean", self.n_outputs)
            self.target_scale = vector("target_scale", self.n_outputs)

    @property
    def classes(self):
        """The class labels (a NumPy array, column k of :meth:`predict_proba` is
        ``classes[k]``): set by the first :meth:`fit`; ``arange(n_classes)`` before, or
        when the network was trained on class indices. None for regression."""
        if self.task != "classification":
            return None
        if self._classes is None:
            return np.arange(self.n_classes)
        return self._classes

    @classes.setter
    def classes(self, labels):
        """Name the classes (None: class indices): ``labels[k]`` is output k's label. They
        must be sorted and distinct, one per class, of a kind a model file stores (ints,
        integer-valued floats, strings, bools); an object array of strings is kept as
        strings."""
        if labels is not None:
            if self.task != "classification":
                raise ValueError("class labels are for a classifier")
            labels = _storable_classes(_label_array(labels, "classes"), "classes")
            if labels.shape != (self.n_classes,):
                raise ValueError(f"the network has {self.n_classes} classes, got "
                                 f"{labels.size} labels")
            if not (labels[1:] > labels[:-1]).all():
                raise ValueError(f"class labels must be sorted and distinct, got "
                                 f"{labels.tolist()!r}")
        self._classes = labels

    @property
    def feature_names(self):
        """The names of the input features (a list of n_in strings), or None: kept in the
        model file, so that ``nncore predict`` can pick a CSV's columns by name."""
        return self._feature_names

    @feature_names.setter
    def feature_names(self, names):
        if names is not None:
            names = list(names) if isinstance(names, (list, tuple, np.ndarray)) else names
            if not isinstance(names, list) or len(names) != self.n_in \
                    or not all(isinstance(name, str) for name in names):
                raise ValueError(f"feature_names must be a list of {self.n_in} strings (one "
                                 f"per input), got {names!r}")
            names = [str(name) for name in names]  # NumPy's str_ as plain str
        self._feature_names = names

    @property
    def standardized(self):
        """Whether the inputs are standardised (see :meth:`fit`)."""
        return self.input_mean is not None

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
        network.classes = _classes_from_json(state.get("classes"))
        network._set_scaling(state.get("scaling"))
        # None in files written before names were kept
        network.feature_names = state.get("feature_names")
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

    def _standardised(self, X, name="X"):
        """``X`` checked and standardised with the network's statistics (as
        :meth:`check_X` gives it, without). The standardisation is done in float64 before
        the cast to the network's dtype: a float32 cast first would keep little of a
        feature far from 0 (a timestamp of 1.7e9 +- 100 moves in steps of 128). A
        DataFrame's columns are picked by the network's feature names (_by_name)."""
        X = self._by_name(X, name)
        if self.input_mean is None:
            return self.check_X(X, name)
        return self._scale_X(v.features(X, self.n_in, None, name))

    def _by_name(self, X, name):
        """A DataFrame ``X``'s columns of the network's :attr:`feature_names`, in their
        order (others ignored), as ``nncore predict`` picks a CSV's; refused (ValueError)
        if one is missing or named twice. Anything else, or a network without names, as it
        is (by position)."""
        columns = getattr(X, "columns", None)
        if columns is None or self._feature_names is None or not hasattr(X, "iloc"):
            return X
        positions, missing, twice = v.find_columns(columns, self._feature_names)
        if missing or twice:
            raise ValueError(f"{name}'s columns must include the network's features "
                             f"{self._feature_names}: "
                             + "; ".join(part for part in (
                                 f"missing {missing}" if missing else "",
                                 f"named twice {twice}" if twice else "") if part))
        return X.iloc[:, positions]

    def _scale_X(self, X):
        """Checked inputs (float64 or the network's dtype) standardised with the network's
        statistics, in the network's dtype."""
        # in chunks: each chunk's float64 arithmetic needs a temporary, the whole X would
        # need two of twice its size
        out = np.empty(X.shape, dtype=self.dtype)
        for start in range(0, X.shape[0], PREDICT_CHUNK):
            chunk = slice(start, start + PREDICT_CHUNK)
            out[chunk] = (X[chunk] - self.input_mean) / self.input_scale
        return out

    def _prepared_logits(self, X, then=None):
        """Logits for inputs already checked and standardised (what training sees); with
        ``then`` (the name of a backend function of the logits that may write over them:
        the softmax), its values, computed part by part in the threads that computed the
        logits, in place (a fresh array costs its page faults)."""
        out = np.empty((X.shape[0], self.n_classes), dtype=self.dtype)
        block = self._predict_block()
        parts = parallel.row_parts(X.shape[0], block, parallel.threads_available()
                                   if X.shape[0] > block else 1)
        function = None if then is None else getattr(self._backend, then)
        stop, rows_per_call = threading.Event(), block * BLOCKS_PER_CALL

        def run(plan, rows):
            for start in range(rows.start, rows.stop, rows_per_call):
                if stop.is_set():  # a Ctrl-C on the calling thread
                    return
                piece = slice(start, min(start + rows_per_call, rows.stop))
                part = plan.run(X[piece], out[piece])
                if function is not None:
                    # the softmax of finite logits is finite, of inf or NaN logits NaN:
                    # the check below sees the same rows either way
                    with np.errstate(invalid="ignore", over="ignore"):
                        function(part, out=part)

        # the kept plans, unless another thread of the caller's is predicting with them
        # right now: then plans of its own for this call (same numbers, fresh buffers)
        kept = False
        try:
            kept = self._plans_lock.acquire(blocking=False)
            plans = (self._forward_plans(block, len(parts)) if kept else
                     self._new_forward_plans(block, len(parts)))
            parallel.run_threads([lambda plan=plan, rows=rows: run(plan, rows)
                                  for plan, rows in zip(plans, parts)], stop=stop)
        finally:
            if kept:
                self._plans_lock.release()
        if not np.isfinite(out).all():
            # finite weights and inputs can still overflow (weights grown huge by too large
            # a learning rate): say so rather than hand out NaN probabilities
            row = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
            raise ValueError(
                f"the network's output overflows to inf/NaN for row {row} of X (largest "
                f"|weight| is {np.abs(self.params).max():.3g}); retrain with a smaller "
                "learning rate")
        return out

    def _predict_block(self):
        """Rows per block of a forward plan: PREDICT_CHUNK, fewer when the widest layer's
        buffer would pass PLAN_BLOCK_BYTES (a plan per thread is kept)."""
        widest = max(max(layer.n_out, getattr(layer, "hidden", 0)) for layer in self.layers)
        fitting = PLAN_BLOCK_BYTES // (widest * self.dtype.itemsize)
        return max(1, min(PREDICT_CHUNK, max(256, fitting)))

    def _forward_plans(self, block, count):
        """``count`` forward plans (:func:`nncore.ops.forward_plan`) of ``block``-row blocks,
        one per thread that runs at once; made on first use and kept (they read the live
        parameters)."""
        plans = self._plans.setdefault(block, [])
        if len(plans) < count:
            plans += self._new_forward_plans(block, count - len(plans))
        return plans[:count]

    def _new_forward_plans(self, block, count):
        specs = [layer.step_spec() for layer in self.layers]
        return [self._backend.forward_plan(specs, block, self.params) for _ in range(count)]

    def _prepared_evaluate(self, X, y):
        """:meth:`evaluate` on inputs and targets as training sees them (checked,
        standardised, class indices): what ``fit`` scores its validation data with."""
        logits = self._prepared_logits(X)
        if len(y) == 0:
            raise ValueError("cannot evaluate on an empty set")
        if self.target_mean is not None:  # scores in the targets' units, as evaluate's
            logits = self._unscale_outputs(logits)
            y = self._unscale_outputs(y)
        loss, _ = self._loss(logits, y)
        return {"loss": loss, **self.loss_function.scores(logits, y)}

    def logits(self, X):
        """Logits ``(n, n_classes)`` for ``X`` (after the standardisation of the inputs,
        if the network has one; for a standardised regression network these are the
        standardised outputs).

        Inference: one compiled forward pass over blocks of rows (see _predict_block), the blocks
        split over as many threads as :func:`nncore.parallel.threads_available` allows
        (the numbers do not depend on how many). It keeps nothing for a backward pass."""
        return self._prepared_logits(self._standardised(X))

    def _unscale_outputs(self, outputs):
        """Standardised outputs in the targets' units, in float64 (a float32 result would
        round targets far from 0: 1e8 +- 3 to multiples of 8)."""
        if self.target_mean is None:
            return outputs
        return outputs * self.target_scale + self.target_mean

    def predict_proba(self, X):
        """Class probabilities ``(n, n_classes)`` (classification only); column k is the
        probability of ``classes[k]``."""
        if self.loss_function.probabilities is None:
            raise ValueError(f"predict_proba needs a classifier; this network is trained for "
                             f"{self.task} ({self.loss_function.name}): use predict")
        return self._prepared_logits(self._standardised(X),
                                     then=self.loss_function.probabilities)

    def predict(self, X):
        """Predicted class labels ``(n,)`` (from :attr:`classes`: the class indices for a
        network never fitted on other labels), or predicted values ``(n, n_outputs)`` in
        the targets' units (float64 when the network standardises its targets)."""
        outputs = self.loss_function.predict(self.logits(X))
        if self.task != "classification":
            return self._unscale_outputs(outputs)
        return outputs if self._classes is None else self._classes[outputs]

    def encode_labels(self, y, name="y", extra=(), fit=False, n_samples=None):
        """Class indices ``(n,)`` (intp) for the labels ``y`` (classification).

        Integer labels that all lie in ``range(n_classes)`` are class indices when the
        network has no other labels; otherwise each label is looked up in
        :attr:`classes`. A network without labels yet (never fitted on other labels) takes
        the sorted unique values of ``y`` (and of the arrays in ``extra``, the validation
        labels) as its :attr:`classes` when ``fit`` (as :meth:`fit` does); they must
        number exactly ``n_classes``.

        Targets that look continuous are refused (a ValueError suggesting regression):
        floats that are not integers, or integers with more than
        :data:`CONTINUOUS_DISTINCT` distinct values that are also more than half the
        samples.
        """
        raw = _label_array(y, name)
        if self._classes is None:
            if not fit:  # class indices, checked as they always were
                return v.class_labels(raw, n_samples, self.n_classes, name)
            # whether the labels are class indices or not: 0 .. 99 look as continuous as
            # 1 .. 100
            arrays = [raw, *(_label_array(other, "y_val") for other in extra)]
            for array, array_name in zip(arrays, [name] + ["y_val"] * len(extra)):
                refuse_continuous(array, array_name)
            as_indices = _as_indices(raw, self.n_classes)
            if as_indices is not None:
                self._classes = np.arange(self.n_classes)
                return v.class_labels(as_indices, n_samples, self.n_classes, name)
            try:
                classes = np.unique(np.concatenate(arrays) if extra else raw)
            except TypeError:
                raise ValueError(f"{name} mixes labels of types that cannot be sorted "
                                 "(give all labels of one type: ints, strings or bools)"
                                 ) from None
            classes = _storable_classes(classes, name)
            if classes.size != self.n_classes:
                raise ValueError(
                    f"{name} has {classes.size} distinct labels but the network has "
                    f"{self.n_classes} classes (integer labels in range({self.n_classes}) "
                    "are class indices; any other labels are mapped to classes by their "
                    "sorted unique values, which must number n_classes)")
            self._classes = classes
        return self._lookup(raw, name, n_samples)

    def _lookup(self, raw, name, n_samples):
        classes = self._classes
        if classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(classes.size)):
            # class indices, checked as they always were
            return v.class_labels(raw, n_samples, classes.size, name)
        if n_samples is not None and raw.shape[0] != n_samples:
            raise ValueError(f"{name} has {raw.shape[0]} labels for {n_samples} samples")
        try:
            if raw.dtype.kind in "iuf" and classes.dtype.kind not in "iuf" or \
                    raw.dtype.kind in "US" and classes.dtype.kind not in "US" or \
                    (raw.dtype.kind == "b") != (classes.dtype.kind == "b"):
                raise TypeError
            index = np.searchsorted(classes, raw)
        except TypeError:
            raise ValueError(f"{name} holds {raw.dtype} labels; the network's classes are "
                             f"{classes.tolist()!r}") from None
        index = np.minimum(index, classes.size - 1)
        unknown = classes[index] != raw
        if np.any(unknown):
            first = raw[np.flatnonzero(unknown)[0]].item()
            raise ValueError(f"{name} holds {int(np.sum(unknown))} label(s) the network does "
                             f"not know, the first {first!r}; its classes are "
                             f"{classes.tolist()!r}")
        return np.ascontiguousarray(index, dtype=np.intp)

    def _prepare_targets(self, y, n_samples, name="y"):
        """Targets as training sees them: class indices, or (standardised) values."""
        if self.task == "classification":
            return self.encode_labels(y, name, n_samples=n_samples)
        if self.target_mean is None:
            return self.check_y(y, n_samples, name)
        # standardised in float64, then cast (as the inputs: see _standardised)
        y = self.loss_function.check_targets(y, n_samples, self.n_outputs, np.float64, name)
        return np.ascontiguousarray((y - self.target_mean) / self.target_scale,
                                    dtype=self.dtype)

    def evaluate(self, X, y):
        """``{"loss": mean loss, **scores}`` on ``(X, y)``: ``"accuracy"`` (the fraction
        correct; ``y`` holds labels, as :meth:`fit` takes them) for classification,
        ``"rmse"`` and ``"r2"`` (scikit-learn's ``r2_score``) for regression, in the
        targets' units."""
        logits = self.logits(X)
        if self.task == "classification":
            y = self.encode_labels(y, n_samples=logits.shape[0])
        elif self.target_mean is None:
            y = self.check_y(y, logits.shape[0])
        else:  # scored in the targets' units, in float64 (see _unscale_outputs)
            y = self.loss_function.check_targets(y, logits.shape[0], self.n_outputs,
                                                 np.float64, "y")
            logits = self._unscale_outputs(logits)
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

    def fit(self, X, y, sample_weight=None, standardize=False, validation_data=None,
            **kwargs):
        """Train by mini-batch SGD; see :func:`nncore.train.fit` for the arguments
        (``sample_weight``: one weight per sample, each batch's loss their weighted mean).

        ``y`` (and ``validation_data``'s) holds, for a classifier, any labels: integers,
        strings or booleans (see :meth:`encode_labels`; the first fit sets
        :attr:`classes`, later fits and :meth:`evaluate` must use the same labels).

        ``standardize=True`` fits the per-feature mean and standard deviation of ``X``
        (a constant feature keeps scale 1) and, for regression, of the targets, stores
        them on the network (``input_mean``, ``input_scale``, ``target_mean``,
        ``target_scale``; kept by :meth:`state` and model files) and trains on the
        standardised data; ``predict``, ``logits``, ``evaluate`` then take raw inputs
        and give predictions in the targets' units. The data are scaled once per fit, not
        per step. A network that already has a standardisation keeps it (it is not
        refitted) whatever ``standardize`` says. With standardised regression targets,
        History's ``loss`` and ``rmse`` are brought back to the targets' units when ``fit``
        ends (also after an error or Ctrl-C), like its ``val_*`` scores and
        :meth:`evaluate`: exactly for one output; for several, with the mean squared scale
        of the outputs (exact when their scales are equal). R^2 has no units."""
        if self._feature_names is None:
            self.feature_names = _column_names(X, self.n_in)  # as scikit-learn's estimators
        if v.boolean("standardize", standardize) and self.input_mean is None \
                and self.target_mean is None:
            # the statistics of the data as given (float64 keeps a far-off feature's spread)
            X = v.features(self._by_name(X, "X"), self.n_in, None, "X")
            mean, scale = _mean_and_scale(X)
            if self.task == "regression":
                Y = self.loss_function.check_targets(y, X.shape[0], self.n_outputs,
                                                     np.float64, "y")
                self.target_mean, self.target_scale = _mean_and_scale(Y)
            self.input_mean, self.input_scale = mean, scale
            X = self._scale_X(X)  # checked above: _standardised would check it again
        else:
            X = self._standardised(X)
        if self.task == "classification":
            extra = () if validation_data is None or len(validation_data) != 2 \
                else (validation_data[1],)
            y = self.encode_labels(y, "y", extra=extra, fit=True, n_samples=X.shape[0])
        else:
            y = self._prepare_targets(y, X.shape[0])
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            X_val = self._standardised(validation_data[0], "X_val")
            validation_data = (X_val, self._prepare_targets(validation_data[1], X_val.shape[0],
                                                            "y_val"))
        try:
            return train.fit(self, X, y, sample_weight=sample_weight,
                             validation_data=validation_data, **kwargs)
        finally:
            if self.target_scale is not None and self.history is not None:
                _training_scores_in_target_units(self.history, self.target_scale)


def _training_scores_in_target_units(history, target_scale):
    """History's training loss (a mean squared error) and RMSE of standardised targets,
    in the targets' units (see :meth:`Network.fit`)."""
    factor = float(np.mean(np.square(target_scale)))
    history.history["loss"][:] = [value * factor for value in history["loss"]]
    history.history["rmse"][:] = [value * math.sqrt(factor) for value in history["rmse"]]


#: More distinct integer labels than this (and more than half the samples) look like
#: continuous targets to a classifier.
CONTINUOUS_DISTINCT = 50


def _column_names(X, n_in):
    """A DataFrame's ``n_in`` column names if they are distinct strings, else None."""
    columns = getattr(X, "columns", None)
    if columns is None or len(columns) != n_in:
        return None
    names = list(columns)
    if not all(isinstance(c, str) for c in names) or len(set(names)) != len(names):
        return None
    return names


def _mean_and_scale(A):
    """Per-column mean and standard deviation (float64) of ``A``; 0 -> 1."""
    A = np.asarray(A)
    if not len(A):
        return np.zeros(A.shape[1]), np.ones(A.shape[1])
    # sums in float64 over chunks of rows: never a float64 copy of the whole data
    mean = A.sum(axis=0, dtype=np.float64) / len(A)
    squares = np.zeros(A.shape[1])
    for start in range(0, len(A), PREDICT_CHUNK):
        squares += np.square(A[start:start + PREDICT_CHUNK] - mean).sum(axis=0)
    scale = np.sqrt(squares / len(A))
    scale[~(scale > 1e-12 * np.maximum(1.0, np.abs(mean)))] = 1.0
    return mean, scale


def _label_array(y, name):
    raw = np.asarray(y)
    if raw.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {raw.shape}")
    if raw.dtype.kind == "O" and raw.size and all(isinstance(x, str) for x in raw):
        raw = raw.astype(str)
    return raw


def _as_indices(raw, n_classes):
    """``raw`` as integers if every label is an integer in ``range(n_classes)``, else None
    (booleans are labels, never indices)."""
    if raw.dtype.kind not in "iuf":
        return None
    if raw.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            if not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
                return None
    if raw.size and (raw.min() < 0 or raw.max() >= n_classes):
        return None
    return raw.astype(np.intp)


def refuse_continuous(raw, name):
    """ValueError (naming ``name`` and pointing to regression) if the class labels ``raw``
    look continuous: floats that are not integers, or more than
    :data:`CONTINUOUS_DISTINCT` distinct numbers that are also more than half the labels.
    :meth:`Network.fit` checks its labels so; ``nncore train`` checks a file's before it
    makes the run folder, naming the file."""
    raw = np.asarray(raw)
    hint = ("; for real-valued targets train a regression network (nncore train --task "
            "regression, or loss=\"mse\")")
    if raw.dtype.kind == "f":
        missing = np.isnan(raw)
        if missing.any():  # a missing label is no sign of a regression target
            raise ValueError(f"{name} has {int(missing.sum())} missing label(s) (NaN), the "
                             f"first at index {int(np.flatnonzero(missing)[0])}")
        bad = ~np.isfinite(raw) | (raw != np.round(raw))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} looks continuous: {int(bad.sum())} labels are not "
                             f"integers, the first {raw[first]!r} at index {first}{hint}")
    if raw.dtype.kind in "iuf":
        distinct = np.unique(raw).size
        if distinct > CONTINUOUS_DISTINCT and distinct > raw.size / 2:
            raise ValueError(f"{name} looks continuous: {distinct} distinct values among "
                             f"{raw.size} samples (a classifier takes at most "
                             f"{CONTINUOUS_DISTINCT}, or at most half the samples){hint}")


#: How each kind of class label is stored in a model file.
_CLASS_KINDS = {"b": "bool", "i": "int", "u": "int", "f": "float", "U": "str"}


def _storable_classes(classes, name):
    if classes.dtype.kind == "S":
        classes = classes.astype(str)
    if classes.dtype.kind not in _CLASS_KINDS:
        raise ValueError(f"{name} holds labels of dtype {classes.dtype} that a model file "
                         "cannot store: give ints, integer-valued floats, strings or bools")
    if classes.dtype.kind == "u" and classes.size and classes.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds labels above {np.iinfo(np.int64).max}, which a "
                         "model file (int64 labels) cannot store")
    return classes


def _classes_to_json(classes):
    if classes is None:
        return None
    return {"kind": _CLASS_KINDS[classes.dtype.kind], "values": classes.tolist()}


def _classes_from_json(entry):
    if entry is None:
        return None
    types = {"bool": (bool, bool), "int": (int, np.int64), "float": ((int, float), np.float64),
             "str": (str, str)}
    if not isinstance(entry, dict) or entry.get("kind") not in types \
            or not isinstance(entry.get("values"), list):
        raise ValueError("classes must be {'kind': 'bool'|'int'|'float'|'str', 'values': [...]}")
    accepted, dtype = types[entry["kind"]]
    values = entry["values"]
    if not all(isinstance(x, accepted) and (entry["kind"] in ("bool", "str")
                                            or not isinstance(x, bool)) for x in values):
        raise ValueError(f"classes of kind {entry['kind']!r} hold other values")
    return np.array(values, dtype=dtype)


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
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Iterable):
        raise TypeError(f"hidden must be a list of hidden widths (or one width), got "
                        f"{hidden!r}")
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
