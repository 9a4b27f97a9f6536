"""scikit-learn interface: :class:`NNClassifier` and :class:`NNRegressor`, nncore networks as
scikit-learn estimators.

Needs the optional ``sklearn`` extra (``pip install "nncore[sklearn]"``)::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from nncore.sklearn import NNClassifier

    model = make_pipeline(StandardScaler(), NNClassifier(hidden_layer_sizes=(64,), max_iter=50))
    model.fit(X_train, y_train).score(X_test, y_test)

The estimator follows scikit-learn's conventions: ``__init__`` stores the hyperparameters as
given, ``fit`` validates them and the data (with :func:`sklearn.utils.validation.validate_data`)
and sets the fitted attributes, which end in ``_``. Training is :func:`nncore.train.fit` on an
:func:`nncore.mlp` or :func:`nncore.resnet` network with :class:`nncore.SGD`,
:class:`nncore.Adam` or :class:`nncore.AdamW` (``solver``).
"""

# Absolute imports: ``sklearn`` below is scikit-learn, not this module.
try:
    import sklearn  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "nncore.sklearn needs scikit-learn; install it with: pip install 'nncore[sklearn]'"
    ) from error

import functools
import math
import numbers
import warnings

import numpy as np
import scipy.special
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _validation as v
from . import activations, losses
from .network import ARCHITECTURES, Network, applicable, build
from .optim import OPTIMIZERS, check_schedule, make_schedule
from .train import EarlyStopping
from .train import fit as train_fit

__all__ = ["NNClassifier", "NNRegressor"]

#: Activation names (nncore's registry), and "logistic", scikit-learn's name for the sigmoid.
_ACTIVATIONS = {**{name: name for name in activations.names()}, "logistic": "sigmoid"}
#: Input dtypes kept as they are; anything else is converted to float64 by validate_data.
_INPUT_DTYPES = (np.float64, np.float32)
#: Seeds are drawn below this bound (any int32 is a valid seed everywhere).
_SEED_BOUND = np.iinfo(np.int32).max
#: The estimator's optimizer parameters (scikit-learn's names) -> the optimizer constructor
#: parameter each sets; ``beta_1`` and ``beta_2`` are the two entries of ``betas``. A solver
#: uses the ones its constructor takes and ignores the others (as MLPClassifier does).
_OPTIMIZER_PARAMS = {"learning_rate": "lr", "momentum": "momentum", "nesterov": "nesterov",
                     "beta_1": "betas", "beta_2": "betas", "epsilon": "eps",
                     "weight_decay": "weight_decay"}


class _NNEstimator(BaseEstimator):
    """What NNClassifier and NNRegressor share: the hyperparameters' checks, building and
    training the network, the fitted history, pickling. A subclass sets ``_task`` and
    turns its targets into what the network trains on."""

    _task = None

    def __sklearn_is_fitted__(self):
        """True once :meth:`fit` or :meth:`partial_fit` has succeeded."""
        return hasattr(self, "network_")

    # --- pickling: a Network holds references to its backend module, so it is stored as
    # --- its layer specifications and parameters and rebuilt on loading.

    def __getstate__(self):
        state = dict(super().__getstate__())
        network = state.pop("network_", None)
        if network is not None:
            state["network_"] = _NetworkState(network)
        return state

    def __setstate__(self, state):
        state = dict(state)
        network = state.get("network_")
        if isinstance(network, _NetworkState):
            state["network_"] = network.rebuild()
        if "_velocity" in state:  # pickled before the solvers: SGD's velocity alone
            velocity = state.pop("_velocity")
            state["_optimizer_state"] = (None if velocity is None
                                         else ("sgd", {"velocity": velocity}, {}))
        state.setdefault("solver", "sgd")
        for name, default in (("beta_1", 0.9), ("beta_2", 0.999), ("epsilon", 1e-8)):
            state.setdefault(name, default)
        super().__setstate__(state)
        if "network_" in state:  # pickled before the network carried them: install them
            self._complete_network()

    # --- internals --------------------------------------------------------------------------

    def _complete_network(self):
        """Install in ``network_`` what the estimator knows of its data (the feature names
        of a DataFrame, and by _complete_targets the class labels or the target
        standardisation), so that the network alone predicts what :meth:`predict` does:
        its model file, ``nncore predict`` (which picks a CSV's columns by those names),
        its ONNX export."""
        self.network_.feature_names = getattr(self, "feature_names_in_", None)
        self._complete_targets()

    def _complete_targets(self):
        raise NotImplementedError

    def _forget_fit(self):
        """Drop the fitted state, so a failed :meth:`fit` leaves an unfitted estimator."""
        for name in _FITTED_ATTRIBUTES:
            self.__dict__.pop(name, None)

    def _check_predict_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=_INPUT_DTYPES, reset=False)

    def _check_params(self):
        """Validate the hyperparameters; return them normalised, as a dict."""
        s = {}
        s["architecture"] = v.choice("architecture", self.architecture, ARCHITECTURES)
        hidden = self.hidden_layer_sizes
        if _is_int(hidden):
            hidden = (hidden,)
        try:
            hidden = list(hidden)
        except TypeError:
            raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, "
                            f"got {self.hidden_layer_sizes!r}") from None
        for size in hidden:
            if not _is_int(size) or size < 1:
                raise ValueError("hidden_layer_sizes must hold positive integers, "
                                 f"got {self.hidden_layer_sizes!r}")
        s["hidden"] = [int(size) for size in hidden]
        s["width"] = _check_int("width", self.width, 1)
        s["depth"] = _check_int("depth", self.depth, 0)
        if not isinstance(self.activation, str) or self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        s["activation"] = _ACTIVATIONS[self.activation]
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        s["dtype"] = dtype
        s["solver"] = v.choice("solver", self.solver, OPTIMIZERS)
        s["learning_rate"] = _check_float("learning_rate", self.learning_rate, 0.0,
                                          include_min=False)
        range_ = v.MOMENTUM_RANGE  # SGD's rule, [0, 1)
        s["momentum"] = _check_float("momentum", self.momentum, range_["minimum"],
                                     range_["maximum"],
                                     include_max=not range_["exclusive_maximum"])
        s["nesterov"] = v.boolean("nesterov", self.nesterov)
        s["beta_1"] = _check_float("beta_1", self.beta_1, 0.0, 1.0, include_max=False)
        s["beta_2"] = _check_float("beta_2", self.beta_2, 0.0, 1.0, include_max=False)
        s["epsilon"] = _check_float("epsilon", self.epsilon, 0.0, include_min=False)
        s["weight_decay"] = _check_float("weight_decay", self.weight_decay, 0.0)
        # the solver's settings, and what the optimizer itself requires of them (SGD's
        # Nesterov needs momentum), checked now by building it
        s["optimizer"] = _optimizer_settings(s)
        OPTIMIZERS[s["solver"]](**s["optimizer"])
        schedule = check_schedule(self.schedule)
        s["batch_size"] = _check_int("batch_size", self.batch_size, 1)
        s["max_iter"] = _check_int("max_iter", self.max_iter, 1)
        s["schedule"] = make_schedule(schedule, s["max_iter"])
        s["early_stopping"] = v.boolean("early_stopping", self.early_stopping)
        s["validation_fraction"] = _check_float("validation_fraction", self.validation_fraction,
                                                0.0, 1.0, include_min=False, include_max=False)
        s["n_iter_no_change"] = _check_int("n_iter_no_change", self.n_iter_no_change, 1)
        s["tol"] = _check_float("tol", self.tol, 0.0)
        s["shuffle"] = v.boolean("shuffle", self.shuffle)
        verbose = self.verbose
        if isinstance(verbose, (bool, np.bool_)):
            verbose = int(verbose)
        if not _is_int(verbose) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or a bool, got {self.verbose!r}")
        s["verbose"] = int(verbose)
        return s

    def _build_network(self, settings, n_features, n_outputs, seed):
        options = applicable(settings["architecture"], layers=settings["hidden"],
                             width=settings["width"], depth=settings["depth"],
                             activation=settings["activation"])
        return build(n_features, n_outputs, seed, settings["architecture"],
                     dtype=settings["dtype"], loss=losses.TASKS[self._task], **options)

    def _partial_fit_network(self, settings, n_features, n_outputs, first_call):
        """``(network, base_seed)`` for a partial_fit: a new network on the first call, the
        fitted one after it."""
        if not first_call:
            return self.network_, self._base_seed
        base_seed = int(check_random_state(self.random_state).randint(_SEED_BOUND))
        network = self._build_network(settings, n_features, n_outputs,
                                      _derive_seed(base_seed, "init"))
        return network, base_seed

    def _partial_fit_epoch(self, settings, network, base_seed, X, targets, sample_weight,
                           first_call):
        """One epoch of partial_fit on ``targets``, continuing the optimizer's state after
        the first call; returns the History and the optimizer's state."""
        optimizer_state, n_iter = ((None, 0) if first_call
                                   else (self._optimizer_state, self.n_iter_))
        history, optimizer_state, _ = self._train(
            settings, network, X, targets, epochs=1, first_epoch=n_iter,
            optimizer_state=optimizer_state, early_stopping=False,
            seed=_derive_seed(base_seed, "partial_fit", n_iter), sample_weight=sample_weight,
            stacklevel=4)  # _train, here, partial_fit, the user's call
        return history, optimizer_state

    def _train(self, settings, network, X, y, *, epochs, first_epoch, optimizer_state,
               early_stopping, seed, sample_weight=None, stacklevel=3):
        """Run :func:`nncore.train.fit`; return its History, the optimizer's state
        ``(name, arrays, counters)`` and the 1-based number of the epoch whose weights early
        stopping kept (None without it). ``optimizer_state`` None (or another solver's) starts the
        optimizer from zero; otherwise it continues. ``sample_weight`` (None or checked) is
        split with the data for early stopping; the validation loss is unweighted.
        ``stacklevel`` points the Ctrl-C warning at the user's call (3: _train, fit, it).

        The network is trained on the targets as given (class indices, standardised
        values), without the estimator's labels and target scaling installed (see
        :meth:`_complete_network`): early stopping's validation loss stays that of the
        standardised targets, which ``tol`` is compared with."""
        optimizer = OPTIMIZERS[settings["solver"]](
            **settings["optimizer"],
            schedule=functools.partial(_shifted_schedule, settings["schedule"], first_epoch))
        if optimizer_state is not None and optimizer_state[0] == optimizer.name:
            optimizer.load_state(*optimizer_state[1:])
        validation_data, callbacks = None, []
        if early_stopping:
            stratified = self._task == "classification"
            arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
            try:
                X, X_val, y, y_val, *weights = train_test_split(
                    *arrays, test_size=settings["validation_fraction"],
                    stratify=y if stratified else None,
                    random_state=_derive_seed(seed, "split"))
            except ValueError as error:
                raise ValueError(
                    f"early_stopping=True needs a {'stratified ' if stratified else ''}"
                    "validation set of "
                    f"validation_fraction={settings['validation_fraction']} of the data, "
                    f"which is impossible here: {error}"
                ) from error
            validation_data = (X_val, y_val)
            if sample_weight is not None:
                sample_weight = weights[0]  # the training part's weights
            # scikit-learn stops after more than n_iter_no_change epochs without an
            # improvement; EarlyStopping (Keras's rule) after exactly `patience`
            callbacks.append(EarlyStopping(monitor="val_loss",
                                           patience=settings["n_iter_no_change"] + 1,
                                           min_delta=settings["tol"], restore_best=True))
        try:
            history = train_fit(network, X, y, epochs=epochs,
                                batch_size=min(settings["batch_size"], X.shape[0]),
                                optimizer=optimizer, validation_data=validation_data,
                                seed=seed, verbose=settings["verbose"], callbacks=callbacks,
                                shuffle=settings["shuffle"], sample_weight=sample_weight,
                                report_interrupt=False)  # the warning below says it
        except KeyboardInterrupt:
            # as scikit-learn's MLP estimators: Ctrl-C ends training, with a warning, and the
            # estimator keeps what was trained (train_fit left it on the network)
            warnings.warn("Training interrupted by user.", stacklevel=stacklevel)
            history = network.history
        # the (1-based) epoch whose weights early stopping kept (not simply the lowest
        # val_loss: an improvement smaller than tol does not replace the kept weights)
        kept_epoch = callbacks[0].best_epoch if callbacks else None
        return history, (optimizer.name, optimizer.state(), optimizer.counters()), kept_epoch

    @staticmethod
    def _check_sample_weight(sample_weight, X):
        """None, or the weights as float64 (n_samples,), finite and >= 0, not all 0
        (scikit-learn's checks; :func:`nncore.train.fit` checks them again)."""
        if sample_weight is None:
            return None
        return _check_sample_weight(sample_weight, X, dtype=np.float64,
                                    ensure_non_negative=True)

    def _record(self, history, early_stopping, kept_epoch=None):
        """Append a training run's History to the fitted attributes; ``kept_epoch`` is the
        1-based epoch whose weights early stopping kept."""
        for key in history.columns[1:]:  # every column but the epoch number
            self.history_.setdefault(key, []).extend(float(value) for value in history[key])
        self.n_iter_ += len(history)
        self.loss_curve_ = list(self.history_["loss"])
        if early_stopping:
            self.validation_scores_ = list(self.history_[_VALIDATION_SCORE[self._task]])
            self.best_validation_score_ = (None if kept_epoch is None
                                           else self.validation_scores_[kept_epoch - 1])
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None



class NNClassifier(ClassifierMixin, _NNEstimator):
    """A feed-forward neural-network classifier trained by mini-batch SGD with momentum,
    Adam or AdamW.

    A scikit-learn estimator over :func:`nncore.mlp` / :func:`nncore.resnet` networks: the
    hot loops run in nncore's compiled kernels. Labels may be any values
    (integers, strings, ...); the network has one softmax output per class, two for binary
    problems. The inputs are used as given: scaling them belongs in a Pipeline
    (``make_pipeline(StandardScaler(), NNClassifier())``), scikit-learn's convention; the
    estimator does not use ``Network.fit(standardize=True)``.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Widths of the hidden layers of an ``"mlp"``; ``()`` gives softmax regression.
        Ignored by ``"resnet"``.
    architecture : {"mlp", "resnet", "softmax_regression"}, default="mlp"
        ``"mlp"``: Dense layers then a linear softmax head (see :func:`nncore.mlp`).
        ``"resnet"``: a Dense layer to ``width`` units, ``depth`` residual blocks
        ``x + act(x W1^T + b1) W2^T`` and the head (see :func:`nncore.resnet`).
        ``"softmax_regression"``: one linear layer. (The names of
        :data:`nncore.network.ARCHITECTURES`.)
    width : int, default=64
        Width of a ``"resnet"`` (and of the hidden layer inside each block).
    depth : int, default=4
        Number of residual blocks of a ``"resnet"`` (0 allowed).
    activation : str, default="tanh"
        Hidden-layer activation, a name in :data:`nncore.activations.ACTIVATIONS` ("tanh",
        "relu", "sigmoid", "identity", "leaky_relu", "elu", "gelu", "silu", "softplus");
        ``"logistic"`` is an alias of ``"sigmoid"``. Weights start Glorot-uniform, He-normal
        for the rectifiers (the entry's ``init``; see :func:`nncore.mlp`).
    dtype : {"float32", "float64"}, default="float32"
        Precision of the weights and of the computation; ``X`` is cast to it.
    solver : {"sgd", "adam", "adamw"}, default="sgd"
        The optimizer (:data:`nncore.optim.OPTIMIZERS`): :class:`nncore.SGD` with momentum,
        :class:`nncore.Adam`, or :class:`nncore.AdamW` (decoupled weight decay).
    learning_rate : float, default=0.01
        Initial step size (> 0), for every solver (Adam is often run at 0.001).
    momentum : float, default=0.9
        Momentum, in [0, 1). Only used when ``solver="sgd"``.
    nesterov : bool, default=False
        Nesterov momentum (needs ``momentum > 0``). Only used when ``solver="sgd"``.
    beta_1 : float, default=0.9
        Decay of Adam's first-moment average, in [0, 1). Only used by "adam" and "adamw".
    beta_2 : float, default=0.999
        Decay of Adam's second-moment average, in [0, 1). Only used by "adam" and "adamw".
    epsilon : float, default=1e-8
        Added to Adam's denominator (> 0). Only used by "adam" and "adamw".
    weight_decay : float, default=0.0
        L2 penalty added to the gradient of every parameter (biases too, as in PyTorch);
        with ``solver="adamw"``, decoupled weight decay instead.
    schedule : None, {"constant", "step", "exponential", "cosine"} or callable, default=None
        Learning rate per epoch (see :class:`nncore.SGD`); ``"cosine"`` anneals to 0 over
        ``max_iter`` epochs. A callable maps ``(learning_rate, epoch) -> lr``. In
        :meth:`partial_fit` the epoch is the number of epochs trained so far.
    batch_size : int, default=64
        Mini-batch size; clipped to the number of training samples.
    max_iter : int, default=200
        Number of epochs (passes over the training set). Without early stopping all of them
        are run.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training set (stratified), stop when the
        validation loss has not improved by ``tol`` for more than ``n_iter_no_change``
        epochs and keep the weights of the best epoch. Not used by :meth:`partial_fit`.
    validation_fraction : float, default=0.1
        Fraction of the training set held out for early stopping, in (0, 1).
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs (>= 1).
    tol : float, default=1e-4
        Smallest decrease of the validation loss that counts as an improvement (>= 0).
    shuffle : bool, default=True
        Shuffle the training set at every epoch.
    random_state : None, int or numpy.random.RandomState, default=None
        Seeds the initial weights, the shuffling and the validation split. An int gives
        reproducible (bit-identical) fits.
    verbose : {0, 1, 2} or bool, default=0
        0 silent, 1 (or True) a progress bar, 2 one line per epoch.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes, multiplied into the samples' weights (``sample_weight`` of
        :meth:`fit`), as in scikit-learn's linear models: a dict ``{label: weight}``
        (classes not named weigh 1), or ``"balanced"``, ``n_samples / (n_classes *
        count(label))`` from the labels of ``y``
        (:func:`sklearn.utils.class_weight.compute_class_weight`). :meth:`partial_fit`
        takes a dict but not "balanced" (the class frequencies of one batch are not those
        of the data: compute them once and pass the dict).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted; output ``k`` of the network is ``classes_[k]``.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` had string column names.
    network_ : nncore.Network
        The trained network, holding the labels (``network_.classes``): it predicts what
        the estimator does, and so do the model file ``network_.save(path)`` writes
        (:func:`nncore.load`, ``nncore predict``) and its ONNX export
        (``nncore.export_onnx(network_, path)``, or of the estimator itself). Labels a model
        file cannot store (datetimes) stay with the estimator: the network then predicts
        class indices.
    n_iter_ : int
        Number of epochs trained (by :meth:`fit`, plus one per :meth:`partial_fit` call).
    loss_curve_ : list of float
        Mean training cross-entropy of each epoch.
    validation_scores_ : list of float or None
        Validation accuracy of each epoch with early stopping, else None.
    best_validation_score_ : float or None
        Validation accuracy of the epoch whose weights were kept, with early stopping.
    history_ : dict of lists
        The per-epoch record of :class:`nncore.train.History` ("loss", "accuracy",
        "val_loss", "val_accuracy", "lr", "seconds"), across all fit calls since the last
        :meth:`fit`.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : scikit-learn's own network classifier.

    Notes
    -----
    ``NNClassifier(learning_rate=lr, momentum=m, nesterov=n)`` and ``MLPClassifier(
    solver="sgd", learning_rate_init=lr, momentum=m, nesterovs_momentum=n, alpha=0)`` apply
    the same update for a constant learning rate; ``solver="adam"`` is PyTorch's Adam, whose
    ``epsilon`` is added after the bias correction of the second moment (MLPClassifier's
    Adam adds it to the uncorrected one, so the two differ slightly in the first steps).
    Differences: weights start Glorot-uniform
    (He-normal for ReLU, where MLPClassifier stays Glorot) with zero biases, there is no
    convergence test on the training loss (``max_iter`` epochs are run unless
    ``early_stopping``), and early stopping watches the validation loss.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from nncore.sklearn import NNClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NNClassifier(hidden_layer_sizes=(32,), max_iter=100, random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    """

    _task = "classification"

    def __init__(self, hidden_layer_sizes=(100,), architecture="mlp", width=64, depth=4,
                 activation="tanh", dtype="float32", solver="sgd", learning_rate=0.01,
                 momentum=0.9, nesterov=False, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 weight_decay=0.0, schedule=None, batch_size=64, max_iter=200,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 shuffle=True, random_state=None, verbose=0, class_weight=None):
        _store_params(self, locals())

    # --- scikit-learn API -------------------------------------------------------------------

    def _weights(self, sample_weight, X, y, classes, y_index, partial):
        """The samples' weights: ``sample_weight`` times their classes' ``class_weight``;
        None when neither is given (the unweighted loss)."""
        sample_weight = self._check_sample_weight(sample_weight, X)
        class_weight = self.class_weight
        if class_weight is None:
            return sample_weight
        if not (isinstance(class_weight, dict) or (isinstance(class_weight, str)
                                                   and class_weight == "balanced")):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict "
                             f"{{label: weight}}, got {class_weight!r}")
        if partial and isinstance(class_weight, str):
            raise ValueError("class_weight='balanced' is not supported by partial_fit: the "
                             "class frequencies of one batch are not those of the data. Use "
                             "compute_class_weight('balanced', classes=classes, y=y) on the "
                             "whole target and pass the resulting dict as class_weight")
        per_class = compute_class_weight(class_weight, classes=classes, y=y)
        per_class = np.asarray(per_class, dtype=np.float64)
        if not np.isfinite(per_class).all() or (per_class < 0).any():
            raise ValueError(f"class_weight must hold finite weights >= 0, got {class_weight!r}")
        weights = per_class[y_index]
        return weights if sample_weight is None else weights * sample_weight

    def fit(self, X, y, sample_weight=None):
        """Train a new network on ``(X, y)`` for ``max_iter`` epochs (or until early stopping).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, finite real numbers (cast to ``dtype``).
        y : array-like of shape (n_samples,)
            Class labels, any hashable values; at least two distinct classes.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples, finite and >= 0, not all 0; multiplied by
            ``class_weight``. Each mini-batch's loss is the weighted mean of its samples'
            losses, ``sum_i w_i l_i / sum_i w_i`` (weights of 1 train exactly as none).
            The validation loss of early stopping is unweighted.

        Returns
        -------
        self : NNClassifier
            The fitted estimator. Any previous training (including :meth:`partial_fit`) is
            discarded. Ctrl-C ends training early with a warning and keeps the model trained
            so far, as scikit-learn's MLP estimators do.
        """
        settings = self._check_params()
        self._forget_fit()
        X, y = validate_data(self, X, y, dtype=_INPUT_DTYPES)
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        _check_n_classes(classes, "y")
        weights = self._weights(sample_weight, X, y, classes, y_index, partial=False)
        base_seed = int(check_random_state(self.random_state).randint(_SEED_BOUND))
        network = self._build_network(settings, X.shape[1], len(classes),
                                      _derive_seed(base_seed, "init"))
        history, optimizer_state, kept_epoch = self._train(
            settings, network, X, y_index.astype(np.intp), epochs=settings["max_iter"],
            first_epoch=0, optimizer_state=None, early_stopping=settings["early_stopping"],
            seed=_derive_seed(base_seed, "fit"), sample_weight=weights)
        self.classes_ = classes
        self.network_ = network
        self._complete_network()
        self._base_seed = base_seed
        self._optimizer_state = optimizer_state
        self.history_ = {}
        self.n_iter_ = 0
        self._record(history, settings["early_stopping"], kept_epoch)
        return self

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on ``(X, y)``, continuing from the current network.

        The first call builds the network and must name every class with ``classes``; later
        calls continue with the same network and optimizer state (SGD's momentum, Adam's
        moments and update count; and the schedule's epoch count). Architecture and dtype
        parameters changed after the first call are ignored until the next :meth:`fit`; a
        changed ``solver`` starts its own state from zero. Early stopping is not used.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels, each one of ``classes`` (of ``classes_`` after the first call).
        classes : array-like of shape (n_classes,), default=None
            All the class labels, required on the first call; on later calls it may be
            given again but must be the same set.
        sample_weight : array-like of shape (n_samples,), default=None
            As for :meth:`fit` (``class_weight`` may be a dict, not "balanced").

        Returns
        -------
        self : NNClassifier
        """
        settings = self._check_params()
        first_call = not hasattr(self, "network_")
        if first_call:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit "
                                 "(all the labels that will ever be seen)")
            classes = np.unique(np.asarray(classes))
            check_classification_targets(classes)
            _check_n_classes(classes, "classes")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)),
                                                         self.classes_):
            raise ValueError(f"classes={classes!r} differs from the classes of the earlier "
                             f"fit, {self.classes_!r}")
        X, y = validate_data(self, X, y, dtype=_INPUT_DTYPES, reset=first_call)
        check_classification_targets(y)
        classes = classes if first_call else self.classes_
        known = np.isin(y, classes)
        if not known.all():
            raise ValueError(f"y contains labels not in classes {classes!r}: "
                             f"{np.unique(y[~known])!r}")
        y_index = np.searchsorted(classes, y).astype(np.intp)
        weights = self._weights(sample_weight, X, y, classes, y_index, partial=True)
        network, base_seed = self._partial_fit_network(settings, X.shape[1], len(classes),
                                                       first_call)
        history, optimizer_state = self._partial_fit_epoch(settings, network, base_seed, X,
                                                           y_index, weights, first_call)
        if first_call:
            self.classes_ = classes
            self.network_ = network
            self._complete_network()
            self._base_seed = base_seed
            self.history_ = {}
            self.n_iter_ = 0
        self._optimizer_state = optimizer_state
        self._record(history, early_stopping=False)
        return self

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype of the network
            Softmax outputs; column ``k`` is the probability of ``classes_[k]``.
        """
        X = self._check_predict_X(X)
        return self.network_.predict_proba(X)

    def predict_log_proba(self, X):
        """Logarithms of the class probabilities, taken from the logits (log-softmax: finite
        where a probability underflows to 0, unlike ``log(predict_proba(X))``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), dtype of the network
        """
        X = self._check_predict_X(X)
        return scipy.special.log_softmax(self.network_.logits(X), axis=1)

    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        X = self._check_predict_X(X)
        predicted = self.network_.predict(X)
        if self.network_._classes is None:  # labels a model file cannot store (datetimes)
            return self.classes_[predicted]
        # the network keeps the labels as a model file does (strings given as objects are
        # str, integers int64 once loaded); the estimator returns them as classes_ holds them
        return predicted.astype(self.classes_.dtype, copy=False)

    def _complete_targets(self):
        try:
            self.network_.classes = self.classes_
        except ValueError:
            # labels a model file cannot store (datetimes; Network.classes names the kinds
            # it can): the network keeps class indices, which predict maps to classes_
            self.network_.classes = None

    def __sklearn_tags__(self):
        # Stated for the reader; these are also scikit-learn's defaults for a classifier.
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = False
        return tags

#: The validation score that early stopping records, by task (scikit-learn's ``score``).
_VALIDATION_SCORE = {"classification": "val_accuracy", "regression": "val_r2"}
_FITTED_ATTRIBUTES = ("classes_", "network_", "n_iter_", "loss_curve_", "validation_scores_",
                      "n_outputs_", "target_mean_", "target_scale_", "_y_1d",
                      "best_validation_score_", "history_", "_base_seed", "_optimizer_state")


class NNRegressor(RegressorMixin, _NNEstimator):
    """A feed-forward neural-network regressor: an nncore network with linear outputs
    trained on the mean squared error by Adam, AdamW or SGD with momentum.

    The same conventions and parameters as :class:`NNClassifier` (see there), with
    regression defaults: ``solver="adam"`` at ``learning_rate=0.001``. Targets may be 1-D
    (``predict`` then returns 1-D values) or ``(n_samples, n_outputs)``. Scaling the inputs
    belongs in a Pipeline (``make_pipeline(StandardScaler(), NNRegressor())``), as with every
    scikit-learn estimator; the targets are standardised inside (``standardize_target``),
    because a network trained by gradient steps on targets of scale 100 needs a learning
    rate 10,000 times smaller than on targets of scale 1, and no Pipeline step can scale
    ``y``.

    Parameters
    ----------
    hidden_layer_sizes, architecture, width, depth, activation, dtype, solver, momentum,
    nesterov, beta_1, beta_2, epsilon, weight_decay, schedule, batch_size, max_iter,
    early_stopping, validation_fraction, n_iter_no_change, tol, shuffle, random_state, verbose
        As for :class:`NNClassifier`; early stopping holds out a random (not stratified)
        ``validation_fraction`` and watches the validation loss.
    learning_rate : float, default=0.001
        Initial step size of the solver (> 0).
    standardize_target : bool, default=True
        Train on ``(y - mean) / std`` per output (means and standard deviations of the
        first :meth:`fit` or :meth:`partial_fit` batch; a constant output keeps std 1) and
        map predictions back, so the defaults suit targets of any scale.

    Attributes
    ----------
    n_outputs_ : int
        Number of outputs (columns of ``y``; 1 for 1-D targets).
    target_mean_, target_scale_ : ndarray of shape (n_outputs_,)
        The target standardisation (zeros and ones without ``standardize_target``).
    network_ : nncore.Network
        The trained network, holding the target standardisation (``network_.target_mean``,
        ``target_scale``): it predicts in the targets' units as the estimator does, shaped
        ``(n_samples, n_outputs_)`` also for 1-D targets, and so do its model file and ONNX
        export (see :class:`NNClassifier`).
    n_iter_, loss_curve_, history_, n_features_in_, feature_names_in_
        As for :class:`NNClassifier`; the losses are of the standardised targets, and
        ``history_`` holds "loss", "rmse", "r2" and their "val_" twins.
    validation_scores_ : list of float or None
        Validation R^2 of each epoch with early stopping, else None.
    best_validation_score_ : float or None
        Validation R^2 of the epoch whose weights were kept, with early stopping.

    See Also
    --------
    sklearn.neural_network.MLPRegressor : scikit-learn's own network regressor.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from nncore.sklearn import NNRegressor
    >>> X, y = make_friedman1(n_samples=500, random_state=0)
    >>> model = make_pipeline(StandardScaler(), NNRegressor(random_state=0)).fit(X, y)
    >>> round(model.score(X, y), 2) > 0.9
    True
    """

    _task = "regression"

    def __init__(self, hidden_layer_sizes=(100,), architecture="mlp", width=64, depth=4,
                 activation="tanh", dtype="float32", solver="adam", learning_rate=0.001,
                 momentum=0.9, nesterov=False, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 weight_decay=0.0, schedule=None, batch_size=64, max_iter=200,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 shuffle=True, random_state=None, verbose=0, standardize_target=True):
        _store_params(self, locals())

    def fit(self, X, y, sample_weight=None):
        """Train a new network on ``(X, y)`` for ``max_iter`` epochs (or until early stopping).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Real-valued targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples, finite and >= 0, not all 0: each mini-batch's loss is
            the weighted mean of its samples' squared errors (a sample's: the mean over its
            outputs), ``sum_i w_i l_i / sum_i w_i``; the target standardisation uses the
            weighted mean and standard deviation. The validation loss of early stopping is
            unweighted.

        Returns
        -------
        self : NNRegressor
            The fitted estimator. Ctrl-C ends training early with a warning and keeps the
            model trained so far, as scikit-learn's MLP estimators do.
        """
        settings = self._check_params()
        standardize = v.boolean("standardize_target", self.standardize_target)
        self._forget_fit()
        X, Y, y_1d = self._check_Xy(X, y, reset=True)
        weights = self._check_sample_weight(sample_weight, X)
        mean, scale = _target_scaling(Y, standardize, weights)
        base_seed = int(check_random_state(self.random_state).randint(_SEED_BOUND))
        network = self._build_network(settings, X.shape[1], Y.shape[1],
                                      _derive_seed(base_seed, "init"))
        history, optimizer_state, kept_epoch = self._train(
            settings, network, X, (Y - mean) / scale, epochs=settings["max_iter"],
            first_epoch=0, optimizer_state=None, early_stopping=settings["early_stopping"],
            seed=_derive_seed(base_seed, "fit"), sample_weight=weights)
        self._fitted(network, base_seed, mean, scale, y_1d)
        self._optimizer_state = optimizer_state
        self._record(history, settings["early_stopping"], kept_epoch)
        return self

    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch on ``(X, y)``, continuing from the current network (see
        :meth:`NNClassifier.partial_fit`); the first call fixes the target standardisation
        and the number of outputs. ``sample_weight`` as for :meth:`fit`.

        Returns
        -------
        self : NNRegressor
            The fitted estimator. Ctrl-C ends training early with a warning and keeps the
            model trained so far, as scikit-learn's MLP estimators do.
        """
        settings = self._check_params()
        standardize = v.boolean("standardize_target", self.standardize_target)
        first_call = not hasattr(self, "network_")
        X, Y, y_1d = self._check_Xy(X, y, reset=first_call)
        weights = self._check_sample_weight(sample_weight, X)
        if first_call:
            mean, scale = _target_scaling(Y, standardize, weights)
        else:
            if Y.shape[1] != self.n_outputs_:
                raise ValueError(f"y has {Y.shape[1]} outputs, the earlier fit had "
                                 f"{self.n_outputs_}")
            mean, scale = self.target_mean_, self.target_scale_
        network, base_seed = self._partial_fit_network(settings, X.shape[1], Y.shape[1],
                                                       first_call)
        history, optimizer_state = self._partial_fit_epoch(
            settings, network, base_seed, X, (Y - mean) / scale, weights, first_call)
        if first_call:
            self._fitted(network, base_seed, mean, scale, y_1d)
        self._optimizer_state = optimizer_state
        self._record(history, early_stopping=False)
        return self

    def predict(self, X):
        """Predicted values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            1-D when the network was fitted on 1-D targets; float64 (``network_.predict``'s
            values, taken back to the targets' units in float64).
        """
        X = self._check_predict_X(X)
        Y = self.network_.predict(X).astype(np.float64)  # in the targets' units
        return Y[:, 0] if self._y_1d else Y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        tags.input_tags.sparse = False
        return tags

    def _check_Xy(self, X, y, reset):
        """X as for NNClassifier; y real-valued, 1-D or 2-D, as float64 (n, n_outputs), and
        whether it was 1-D."""
        X, y = validate_data(self, X, y, dtype=_INPUT_DTYPES, multi_output=True,
                             y_numeric=True, reset=reset)
        return X, v.regression_targets(y, X.shape[0]), y.ndim == 1

    def _fitted(self, network, base_seed, mean, scale, y_1d):
        self.network_ = network
        self._base_seed = base_seed
        self.target_mean_, self.target_scale_ = mean, scale
        self.n_outputs_ = len(mean)
        self._y_1d = y_1d
        self.history_ = {}
        self.n_iter_ = 0
        self._complete_network()

    def _complete_targets(self):
        # the network undoes the standardisation in predict (model files keep it); none
        # without one (zeros and ones would change nothing)
        scaled = (self.target_mean_ != 0).any() or (self.target_scale_ != 1).any()
        self.network_.target_mean = self.target_mean_ if scaled else None
        self.network_.target_scale = self.target_scale_ if scaled else None


def _target_scaling(Y, standardize, weights=None):
    """Per-output mean and standard deviation of ``Y`` (a constant output keeps scale 1),
    weighted by ``weights`` if given, or zeros and ones without standardisation."""
    if not standardize:
        return np.zeros(Y.shape[1]), np.ones(Y.shape[1])
    if weights is None:
        scale = Y.std(axis=0)
        return Y.mean(axis=0), np.where(scale > 0, scale, 1.0)
    mean = np.average(Y, axis=0, weights=weights)
    scale = np.sqrt(np.average((Y - mean) ** 2, axis=0, weights=weights))
    return mean, np.where(scale > 0, scale, 1.0)


class _NetworkState:
    """A picklable snapshot of a Network: its state (see :meth:`Network.state`) and its
    backend."""

    def __init__(self, network):
        self.state = {**network.state(), "params": network.params.copy()}
        self.backend = network.backend

    def rebuild(self):
        return Network.from_state(self.state, backend=self.backend)


def _store_params(estimator, arguments):
    """Store an ``__init__``'s arguments as they are, under their names (scikit-learn's
    convention: checked in ``fit``, not here)."""
    for name, value in arguments.items():
        if name != "self":
            setattr(estimator, name, value)


def _optimizer_settings(settings):
    """The constructor arguments of the solver's optimizer from the checked estimator
    parameters (see _OPTIMIZER_PARAMS); the parameters the solver does not take are left
    out."""
    import inspect

    accepted = inspect.signature(OPTIMIZERS[settings["solver"]]).parameters
    arguments = {name: settings[param] for param, name in _OPTIMIZER_PARAMS.items()
                 if name in accepted}
    if "betas" in arguments:
        arguments["betas"] = (settings["beta_1"], settings["beta_2"])
    return arguments


def _check_n_classes(classes, name):
    if len(classes) < 2:
        raise ValueError(
            f"{name} has {len(classes)} class ({', '.join(map(repr, classes))}); a classifier "
            "needs at least 2 classes"
        )


def _derive_seed(base_seed, *keys):
    """An int seed derived from ``base_seed`` and ``keys`` (strings or ints)."""
    words = [int(base_seed)]
    for key in keys:
        words.extend(key.encode() if isinstance(key, str) else [int(key)])
    return int(np.random.SeedSequence(words).generate_state(1)[0] % _SEED_BOUND)


def _shifted_schedule(schedule, first_epoch, lr0, epoch):
    """The learning rate of epoch ``first_epoch + epoch`` (``partial_fit`` counts on)."""
    return schedule(lr0, first_epoch + epoch)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_int(name, value, minimum):
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(check_scalar(value, name, numbers.Integral, min_val=minimum))


def _check_float(name, value, min_val, max_val=None, include_min=True, include_max=True):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    include_max = include_max and max_val is not None  # check_scalar's rule without a maximum
    boundaries = {(True, True): "both", (True, False): "left", (False, True): "right",
                  (False, False): "neither"}[include_min, include_max]
    value = check_scalar(value, name, numbers.Real, min_val=min_val, max_val=max_val,
                         include_boundaries=boundaries)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)
