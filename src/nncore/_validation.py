"""Every argument check of nncore, in one place: arrays, feature matrices, class labels,
integers, reals in ranges, booleans and enumerated choices.

:mod:`nncore.ops` and :mod:`nncore.reference` must reject the same bad input with the same
message, and so must the networks, the training loop, the data loaders, the verification
tools, the study and the command line: they all call these functions. This module imports
nothing from nncore (it sits at the bottom, beside the reference and the data loaders) and
computes no result.

Every check names the offending argument and value; shapes and dtypes are checked before any
compiled kernel runs, so a kernel never sees an unchecked shape.
"""

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(name, value, ndim):
    """Return ``value`` as a C-contiguous float32/float64 array with ``ndim`` dimensions.

    Contiguous input is returned as is (no copy); Fortran-ordered or strided input is copied.
    Read-only input stays read-only: the kernels take ``const`` views.
    """
    if not isinstance(value, np.ndarray):
        if value is None:
            raise TypeError(f"{name} must be an array, got None")
        value = np.asarray(value)
        if value.dtype == np.float64 or value.dtype.kind in "iu":
            value = value.astype(np.float64)
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {value.shape}")
    if not value.flags.c_contiguous:
        value = np.ascontiguousarray(value)
    return value


def same_dtype(**arrays):
    """Raise ``TypeError`` unless all the arrays share one dtype; return it."""
    arrays_iter = iter(arrays.values())
    dtype = next(arrays_iter).dtype
    for array in arrays_iter:
        if array.dtype is not dtype and array.dtype != dtype:
            described = ", ".join(f"{n} is {a.dtype}" for n, a in arrays.items())
            raise TypeError(f"arrays must share one dtype: {described}")
    return dtype


def shape_is(name, array, shape, why=""):
    if array.shape != shape:
        why = f" ({why})" if why else ""
        raise ValueError(f"{name} must have shape {shape}{why}, got {array.shape}")


def labels_array(labels, n_samples):
    """Return integer class labels as a C-contiguous ``intp`` array of length ``n_samples``.

    The range ``0 <= label < n_classes`` is checked by the caller (the kernel checks it in
    its single pass, the reference with NumPy), so the message is built by
    :func:`label_range_error`.
    """
    labels = np.asarray(labels)
    # np.asarray([]) is float64: an empty list is still a valid (empty) set of labels.
    if labels.dtype.kind not in "iu" and labels.size:
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.shape[0] != n_samples:
        raise ValueError(
            f"labels has {labels.shape[0]} entries but logits has {n_samples} rows"
        )
    return np.ascontiguousarray(labels, dtype=np.intp)


def label_range_error(labels, n_classes):
    bad = labels[(labels < 0) | (labels >= n_classes)]
    return ValueError(
        f"labels must lie in [0, {n_classes}) for logits with {n_classes} columns, "
        f"got {bad[0]}"
    )


def no_overlap(name, out, inputs):
    """A kernel that writes ``out`` while still reading an input would read its own output."""
    for input_name, array in inputs.items():
        if np.may_share_memory(out, array):
            raise ValueError(f"{name} must not overlap the input {input_name}")


def out_array(name, out, shape, dtype, inputs=None):
    """Check a caller-provided output array: exact shape and dtype, C-contiguous, writeable,
    and not overlapping any of ``inputs`` (a dict name -> array)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"{name} must have shape {shape} and dtype {dtype}, got {out.shape} {out.dtype}"
        )
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if inputs:
        no_overlap(name, out, inputs)
    return out


def out_tuple(out, names, shapes, dtype, inputs=None):
    """Unpack ``out=`` given as a tuple of arrays, or allocate them when ``out`` is None.

    Given arrays must not overlap ``inputs`` nor each other.
    """
    if out is None:
        return tuple(np.empty(shape, dtype=dtype) for shape in shapes)
    if not isinstance(out, tuple) or len(out) != len(names):
        raise TypeError(f"out must be a tuple of {len(names)} arrays ({', '.join(names)})")
    arrays = tuple(out_array(f"out[{i}] ({n})", o, s, dtype, inputs)
                   for i, (n, o, s) in enumerate(zip(names, out, shapes)))
    for i in range(len(arrays)):
        no_overlap(f"out[{i}] ({names[i]})", arrays[i],
                   {f"out[{j}] ({names[j]})": arrays[j] for j in range(i + 1, len(arrays))})
    return arrays


def integer(name, value, minimum=1, maximum=None):
    """Return ``value`` as a Python int in ``[minimum, maximum]``.

    Bools and floats are refused, 2.0 and 2.7 alike: a count is never rounded.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def find_columns(columns, names):
    """Where each of ``names`` is among ``columns`` (a CSV header's cells or a DataFrame's
    column labels, compared as str): ``(positions, missing, repeated)``, the position of
    each name found, in the order of ``names``; the names not there; and those there more
    than once (their first position is given)."""
    columns = [str(column) for column in columns]
    missing = [name for name in names if name not in columns]
    repeated = [name for name in names if columns.count(name) > 1]
    return [columns.index(name) for name in names if name in columns], missing, repeated


def seed(name, value):
    """A random seed for ``numpy.random.default_rng``: None (fresh entropy), an integer
    >= 0 (returned as a Python int), or a NumPy SeedSequence or Generator (as they are)."""
    if value is None or isinstance(value, (np.random.SeedSequence, np.random.Generator)):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer, None or a NumPy "
                        f"SeedSequence or Generator, got {value!r}")
    return integer(name, value, minimum=0)


def real_number(name, value, minimum=None, maximum=None, exclusive_minimum=False,
                exclusive_maximum=False):
    """Return ``value`` as a finite float within its bounds.

    ``minimum``/``maximum`` are inclusive unless ``exclusive_minimum``/``exclusive_maximum``:
    ``real_number("lr", lr, 0, exclusive_minimum=True)`` asks for ``lr > 0``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value < minimum or exclusive_minimum and value == minimum):
        raise ValueError(f"{name} must be {'>' if exclusive_minimum else '>='} {minimum}, "
                         f"got {value}")
    if maximum is not None and (value > maximum or exclusive_maximum and value == maximum):
        raise ValueError(f"{name} must be {'<' if exclusive_maximum else '<='} {maximum}, "
                         f"got {value}")
    return value


def boolean(name, value):
    """Return ``value`` as a bool; only True/False (and NumPy's bools) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name, value, options):
    """Return ``value`` if it is one of ``options`` (any iterable of names, e.g. a registry)."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def float_dtype(name, dtype):
    """``dtype`` as ``np.dtype('float32')`` or ``np.dtype('float64')``."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    return dtype


def features(X, n_features=None, dtype=None, name="X", source=None, allow_empty=True,
             expected_by="the network"):
    """A feature matrix ``(n_samples, n_features)`` of real numbers, all finite.

    Parameters
    ----------
    X : array-like
    n_features : int, optional
        The number of columns required (a network's ``n_in``).
    dtype : dtype, optional
        Cast to it (C-contiguous); by default integers become float64 and floats keep their
        dtype.
    name : str
        The argument's name in messages.
    source : str, optional
        Where the array came from (a file), put in front of every message. A file's
        contents are values, so every problem with them is a ValueError; without a source,
        an argument of the wrong kind is a TypeError.
    allow_empty : bool
        Whether zero rows are acceptable.
    expected_by : str
        Who expects ``n_features`` columns, for the message.
    """
    where = f"{source}: " if source else ""
    kind_error = ValueError if source else TypeError
    if X is None or isinstance(X, (str, bytes)):
        raise kind_error(f"{where}{name} must be an array of real numbers, got {X!r}")
    X = np.asarray(X)
    if X.dtype.kind not in "fiu":  # bools are labels or masks, not features
        raise kind_error(f"{where}{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{where}{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{where}{name} has {X.shape[1]} features but {expected_by} expects "
                         f"{n_features}")
    if not allow_empty and X.shape[0] == 0:
        raise ValueError(f"{where}{name} is empty (0 samples)")
    if X.shape[1] == 0:
        raise ValueError(f"{where}{name} has 0 features")
    if dtype is None:
        dtype = X.dtype if X.dtype in FLOAT_DTYPES else np.float64
    X = np.ascontiguousarray(X, dtype=dtype)
    bad = ~np.isfinite(X)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"{where}{name} contains NaN or infinity: {int(bad.sum())} NaN or "
                         f"infinite value(s), the first at sample {row}, feature {column}")
    return X


def class_labels(y, n_samples=None, n_classes=None, name="y", source=None):
    """Integer class labels as a C-contiguous ``intp`` array.

    Integer-valued floats are accepted (a ``.mat`` file stores labels as doubles); anything
    else that is not an integer is refused. With ``n_samples`` the length is checked, with
    ``n_classes`` the range ``[0, n_classes)``. ``source`` as in :func:`features`.
    """
    where = f"{source}: " if source else ""
    kind_error = ValueError if source else TypeError
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{where}{name} must be 1-D, got shape {y.shape}")
    if y.dtype.kind == "f":
        # an empty float array (np.asarray([])) counts as integral
        not_integer = ~np.isfinite(y) | (y != np.round(y)) | (np.abs(y) >= 2.0**62)
        if not_integer.any():
            first = int(np.flatnonzero(not_integer)[0])
            raise kind_error(
                f"{where}{name} must hold integer class labels; {int(not_integer.sum())} are "
                f"not integers, the first is {y[first]!r} at index {first}")
        y = y.astype(np.intp)
    if y.dtype.kind not in "iu":
        raise kind_error(f"{where}{name} must hold integer class labels, got dtype {y.dtype}")
    if y.dtype == np.uint64 and y.size and y.max() > np.iinfo(np.intp).max:
        raise ValueError(f"{where}{name} holds labels too large for a class index")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(f"{where}{name} has {y.shape[0]} labels for {n_samples} samples")
    if n_classes is not None and y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{where}{name} must lie in [0, {n_classes}) for a {n_classes}-class network, "
            f"got values in [{y.min()}, {y.max()}]")
    return np.ascontiguousarray(y, dtype=np.intp)


def regression_targets(y, n_samples=None, n_outputs=None, dtype=np.float64, name="y",
                       source=None):
    """Real-valued targets as a C-contiguous ``(n_samples, n_outputs)`` array of ``dtype``.

    A 1-D ``y`` is one output (``(n,)`` becomes ``(n, 1)``); it is refused for a network
    with several outputs. Every value must be finite; strings and booleans are refused.
    """
    where = f"{source}: " if source else ""
    kind_error = ValueError if source else TypeError
    y = np.asarray(y)
    if y.dtype.kind not in "fiu":
        raise kind_error(f"{where}{name} must hold real numbers (regression targets), got dtype "
                         f"{y.dtype}; class labels go to a classifier")
    if y.ndim == 1:
        if n_outputs is not None and n_outputs != 1:
            raise ValueError(f"{where}{name} is 1-D but the network has {n_outputs} outputs: "
                             f"give an (n_samples, {n_outputs}) array")
        y = y.reshape(-1, 1)
    elif y.ndim != 2:
        raise ValueError(f"{where}{name} must be 1-D or 2-D (n_samples, n_outputs), got shape "
                         f"{y.shape}")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(f"{where}{name} has {y.shape[0]} targets for {n_samples} samples")
    if n_outputs is not None and y.shape[1] != n_outputs:
        raise ValueError(f"{where}{name} has {y.shape[1]} outputs per sample but the network "
                         f"has {n_outputs}")
    y = np.ascontiguousarray(y, dtype=dtype)
    bad = ~np.isfinite(y)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"{where}{name} contains NaN or infinity: {int(bad.sum())} value(s), "
                         f"the first at sample {row}, output {column}")
    return y


#: The range of SGD's momentum, ``[0, 1)``: at 1 or more the velocity never forgets and the
#: steps grow without bound (PyTorch accepts it; nncore does not). Every caller takes it from
#: here: :func:`sgd_hyperparameters` (the kernels, the reference, :class:`nncore.SGD`, the
#: grid search), the ``--momentum`` option and the scikit-learn estimators.
MOMENTUM_RANGE = {"minimum": 0.0, "maximum": 1.0, "exclusive_maximum": True}


def momentum(value, name="momentum"):
    """SGD's momentum as a float in ``[0, 1)`` (:data:`MOMENTUM_RANGE`)."""
    return real_number(name, value, **MOMENTUM_RANGE)


def sgd_hyperparameters(lr, momentum, nesterov, weight_decay):
    """SGD's hyperparameters checked once for every caller (the kernels, the reference and
    :class:`nncore.SGD`): ``lr >= 0``, ``momentum`` in ``[0, 1)``, ``weight_decay >= 0``,
    finite; Nesterov needs momentum."""
    lr = real_number("lr", lr, minimum=0.0)
    momentum = real_number("momentum", momentum, **MOMENTUM_RANGE)
    weight_decay = real_number("weight_decay", weight_decay, minimum=0.0)
    nesterov = boolean("nesterov", nesterov)
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov=True needs momentum > 0")
    return lr, momentum, nesterov, weight_decay


def finite_float_array(name, value):
    """``value`` as a float32/float64 ndarray of any shape, not empty and all finite.

    Integer arrays become float64. No copy is made of a float array (the callers only read it).
    """
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise TypeError(f"{name} must be a float32 or float64 array, got {value!r}")
    array = np.asarray(value)
    if array.dtype.kind in "iu":
        array = array.astype(np.float64)
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return array


def sample_weight(value, n_samples, dtype=np.float64, name="sample_weight",
                  allow_all_zero=False):
    """``value`` as a new C-contiguous 1-D array of ``dtype``, one weight per sample, finite
    and >= 0 (and not all 0 unless ``allow_all_zero``); None stays None.

    Integer, boolean and float input is converted; anything else (strings, complex, objects)
    raises ``TypeError``; a wrong shape or length, NaN/infinity, a negative weight or only
    zeros raise ``ValueError``, naming ``name``.
    """
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, one weight per sample, got shape {array.shape}")
    if array.shape[0] != n_samples:
        raise ValueError(f"{name} has {array.shape[0]} weights for {n_samples} samples")
    array = np.array(array, dtype=dtype, order="C")  # a copy: the fit loop shuffles it
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity (or a value too large for {dtype})")
    if (array < 0).any():
        raise ValueError(f"{name} must be >= 0, got {array.min()} at sample "
                         f"{int(np.argmin(array))}")
    if not allow_all_zero and n_samples and not array.any():
        raise ValueError(f"{name} is all zero: there is nothing to train on")
    return array


def inplace_vector(name, value):
    """A 1-D float array that is updated in place: must already be contiguous and writeable."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (it is updated in place)")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {value.dtype}")
    if value.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {value.shape}")
    if not value.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
    if not value.flags.writeable:
        raise ValueError(f"{name} must be writeable (it is updated in place)")
    return value


def _same_memory(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


def sgd_arguments(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    """Check the arguments of ``sgd_momentum_``; return them normalised."""
    param = inplace_vector("param", param)
    velocity = inplace_vector("velocity", velocity)
    grad = float_array("grad", grad, 1)
    same_dtype(param=param, grad=grad, velocity=velocity)
    shape_is("grad", grad, param.shape, "same as param")
    shape_is("velocity", velocity, param.shape, "same as param")
    # one pass reads grad[i] after writing param[j], velocity[j] for j < i: an overlap
    # would read updated values (grad *being* param is fine: element i is read first)
    if np.may_share_memory(param, velocity):
        raise ValueError("param and velocity must not overlap in memory")
    for name, array in (("param", param), ("velocity", velocity)):
        if np.may_share_memory(grad, array) and not _same_memory(grad, array):
            raise ValueError(f"grad must not partly overlap {name} (it is updated in place)")
    lr, momentum, nesterov, weight_decay = sgd_hyperparameters(lr, momentum, nesterov,
                                                               weight_decay)
    return param, grad, velocity, lr, momentum, nesterov, weight_decay


def adam_hyperparameters(lr, beta1, beta2, eps, weight_decay, decoupled,
                         beta_names=("beta1", "beta2")):
    """Adam's hyperparameters checked once for every caller (the kernels, the reference and
    :class:`nncore.Adam`): ``lr >= 0``, betas in ``[0, 1)``, ``eps > 0``,
    ``weight_decay >= 0``, all finite; ``decoupled`` (AdamW) a bool. ``beta_names`` name
    the betas in messages (``nncore.Adam`` takes them as ``betas[0]``, ``betas[1]``)."""
    lr = real_number("lr", lr, minimum=0.0)
    beta1, beta2 = (real_number(name, beta, minimum=0.0, maximum=1.0, exclusive_maximum=True)
                    for name, beta in zip(beta_names, (beta1, beta2)))
    eps = real_number("eps", eps, minimum=0.0, exclusive_minimum=True)
    weight_decay = real_number("weight_decay", weight_decay, minimum=0.0)
    decoupled = boolean("decoupled", decoupled)
    return lr, beta1, beta2, eps, weight_decay, decoupled


def adam_arguments(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                   weight_decay, decoupled):
    """Check the arguments of ``adam_``; return them normalised. ``step`` is the 1-based
    number of the update (an integer >= 1: the bias corrections are 1 - beta ** step)."""
    param = inplace_vector("param", param)
    exp_avg = inplace_vector("exp_avg", exp_avg)
    exp_avg_sq = inplace_vector("exp_avg_sq", exp_avg_sq)
    grad = float_array("grad", grad, 1)
    same_dtype(param=param, grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    shape_is("grad", grad, param.shape, "same as param")
    shape_is("exp_avg", exp_avg, param.shape, "same as param")
    shape_is("exp_avg_sq", exp_avg_sq, param.shape, "same as param")
    # as in sgd_arguments: the three updated arrays must be apart, and grad is either one of
    # them exactly (element i is read before it is written) or apart from them
    written = (("param", param), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq))
    for i, (name, array) in enumerate(written):
        for other_name, other in written[i + 1:]:
            if np.may_share_memory(array, other):
                raise ValueError(f"{name} and {other_name} must not overlap in memory")
        if np.may_share_memory(grad, array) and not _same_memory(grad, array):
            raise ValueError(f"grad must not partly overlap {name} (it is updated in place)")
    step = integer("step", step, minimum=1)
    lr, beta1, beta2, eps, weight_decay, decoupled = adam_hyperparameters(
        lr, beta1, beta2, eps, weight_decay, decoupled)
    return (param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
            decoupled)


def linear_arguments(X, W, b):
    X = float_array("X", X, 2)
    W = float_array("W", W, 2)
    b = float_array("b", b, 1)
    dtype = same_dtype(X=X, W=W, b=b)
    if X.shape[1] != W.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features but W expects {W.shape[1]}: "
            f"X.shape={X.shape}, W.shape={W.shape} (W is (n_out, n_in))"
        )
    shape_is("b", b, (W.shape[0],), "one bias per row of W")
    return X, W, b, dtype


def residual_arguments(X, W1, b1, W2):
    X = float_array("X", X, 2)
    W1 = float_array("W1", W1, 2)
    b1 = float_array("b1", b1, 1)
    W2 = float_array("W2", W2, 2)
    dtype = same_dtype(X=X, W1=W1, b1=b1, W2=W2)
    n_features = X.shape[1]
    if W1.shape[1] != n_features:
        raise ValueError(
            f"W1 must be (n_hidden, {n_features}) for X.shape={X.shape}, got W1.shape={W1.shape}"
        )
    shape_is("b1", b1, (W1.shape[0],), "one bias per row of W1")
    shape_is("W2", W2, (n_features, W1.shape[0]), "(n_features, n_hidden)")
    return X, W1, b1, W2, dtype


def squared_error_arguments(pred, target):
    """``pred`` and ``target``: 2-D arrays of one float dtype and one shape."""
    pred = float_array("pred", pred, 2)
    target = float_array("target", target, 2)
    same_dtype(pred=pred, target=target)
    shape_is("target", target, pred.shape, "same as pred")
    return pred, target


def least_squares_arguments(A, x, b):
    A = float_array("A", A, 2)
    x = float_array("x", x, 1)
    b = float_array("b", b, 1)
    same_dtype(A=A, x=x, b=b)
    shape_is("x", x, (A.shape[1],), "one entry per column of A")
    shape_is("b", b, (A.shape[0],), "one entry per row of A")
    return A, x, b


def linear_jvp_arguments(X, W, A, dX, dW, db):
    dX = float_array("dX", dX, 2)
    dW = float_array("dW", dW, 2)
    db = float_array("db", db, 1)
    same_dtype(A=A, dX=dX, dW=dW, db=db)
    shape_is("dX", dX, X.shape, "same as X")
    shape_is("dW", dW, W.shape, "same as W")
    shape_is("db", db, (W.shape[0],), "same as b")
    return dX, dW, db


def residual_jvp_arguments(X, W1, W2, dX, dW1, db1, dW2):
    dX = float_array("dX", dX, 2)
    dW1 = float_array("dW1", dW1, 2)
    db1 = float_array("db1", db1, 1)
    dW2 = float_array("dW2", dW2, 2)
    same_dtype(X=X, dX=dX, dW1=dW1, db1=db1, dW2=dW2)
    shape_is("dX", dX, X.shape, "same as X")
    shape_is("dW1", dW1, W1.shape, "same as W1")
    shape_is("db1", db1, (W1.shape[0],), "same as b1")
    shape_is("dW2", dW2, W2.shape, "same as W2")
    return dX, dW1, db1, dW2


def gradient_argument(name, grad, like, what):
    """The incoming gradient of a backward pass: same shape and dtype as the forward output."""
    grad = float_array(name, grad, 2)
    same_dtype(**{name: grad, what: like})
    shape_is(name, grad, like.shape, f"same as {what}")
    return grad


#: The fused training step's layer kinds and, for each, the shapes of the parameter views it
#: reads, given the layer's sizes. Both backends' ``train_step`` check their arguments
#: against this table, so neither can read past a view. (Which parameters of a layer class
#: go into which slot is the layer class's business: its ``step_spec``.)
STEP_SHAPES = {
    "dense": lambda n_in, n_out, hidden: {"W": (n_out, n_in), "b": (n_out,)},
    "residual": lambda n_in, n_out, hidden: {"W": (hidden, n_in), "b": (hidden,),
                                             "W2": (n_in, hidden)},
}


def step_shapes(layer):
    """The parameter views the fused step reads of ``layer`` (a dict with ``kind``,
    ``n_in``, ``n_out`` and, for a residual block, ``hidden``): slot name -> shape, in the
    order its kind's functions take them (:data:`STEP_SHAPES`)."""
    return STEP_SHAPES[layer["kind"]](layer["n_in"], layer["n_out"], layer.get("hidden", 0))


#: The optimizer updates of the fused training step (``train_step(..., optimizer=kind)``):
#: for each kind, the state arrays it keeps beside the parameters (in the order
#: ``train_step`` takes them) and the settings its update dict holds besides ``kind``
#: (``optimizer.step_update()`` builds it). AdamW is Adam with ``decoupled=True``. The
#: kernels' ``UPDATE_KIND_CODES`` lists the same kinds (the tests hold them to it).
UPDATE_KINDS = {
    "sgd": {"state": ("velocity",),
            "settings": ("lr", "momentum", "nesterov", "weight_decay")},
    "adam": {"state": ("exp_avg", "exp_avg_sq"),
             "settings": ("lr", "beta1", "beta2", "eps", "weight_decay", "decoupled", "step")},
}


def step_update(update, kind):
    """Check an update handed to a training step built for optimizer ``kind`` (a key of
    :data:`UPDATE_KINDS`): a dict like ``optimizer.step_update()``'s, of that kind, with
    every setting of it; Adam's ``step`` (the number of the update about to be applied) an
    integer >= 1. Returns ``update``."""
    if not isinstance(update, dict):
        raise TypeError(f"update must be a dict (an optimizer's step_update()), got "
                        f"{type(update).__name__}")
    if update.get("kind") != kind:
        raise ValueError(f"this step was built for optimizer kind {kind!r}, got an update "
                         f"of kind {update.get('kind')!r}")
    for key in UPDATE_KINDS[kind]["settings"]:
        if key not in update:
            raise ValueError(f"a {kind!r} update lacks {key!r}")
    if "step" in UPDATE_KINDS[kind]["settings"]:
        integer("update['step'] (the number of the update about to be applied)",
                update["step"])
    return update


def train_step_arguments(layers, n, params, grads, state, optimizer="sgd",
                         loss="softmax_cross_entropy"):
    """Check the arguments of ``train_step`` (both backends); return ``(n, dtype, state)``.

    ``loss`` is "softmax_cross_entropy" or "mean_squared_error", the losses the fused step
    computes.

    Each layer is a dict with ``kind`` (a key of :data:`STEP_SHAPES`), ``activation``,
    ``n_in``, ``n_out``, ``hidden`` and, for each slot of its kind, a parameter view and its
    gradient view (``W`` and ``dW``, ...), which must be C-contiguous views into ``params``
    and ``grads`` of the shapes the kind reads. ``optimizer`` is a key of
    :data:`UPDATE_KINDS` and ``state`` a tuple of its state arrays (SGD: ``(velocity,)``;
    Adam: ``(exp_avg, exp_avg_sq)``), each like ``params`` and apart from the others.
    """
    optimizer = choice("optimizer", optimizer, UPDATE_KINDS)
    names = UPDATE_KINDS[optimizer]["state"]
    params = inplace_vector("params", params)
    grads = inplace_vector("grads", grads)
    if not isinstance(state, (tuple, list)) or len(state) != len(names):
        raise TypeError(f"state must be a tuple of the {optimizer!r} optimizer's "
                        f"{len(names)} state array(s) {names}, got {type(state).__name__}"
                        + (f" of {len(state)}" if isinstance(state, (tuple, list)) else ""))
    state = tuple(inplace_vector(name, array) for name, array in zip(names, state))
    dtype = same_dtype(params=params, grads=grads, **dict(zip(names, state)))
    shape_is("grads", grads, params.shape, "same as params")
    for name, array in zip(names, state):
        shape_is(name, array, params.shape, "same as params")
    apart = (("params", params), ("grads", grads), *zip(names, state))
    for i, (name, array) in enumerate(apart):
        for other_name, other in apart[i + 1:]:
            if np.may_share_memory(array, other):
                raise ValueError(f"{name} and {other_name} must not overlap in memory")
    n = integer("n", n)
    choice("loss", loss, ("softmax_cross_entropy", "mean_squared_error"))
    _step_layers(layers, dtype, params, grads)
    return n, dtype, state


def forward_plan_arguments(layers, n, params):
    """Check the arguments of ``forward_plan`` (both backends); return ``(n, dtype)``.

    ``layers`` as for :func:`train_step_arguments` (gradient views, if present, are not
    read); ``params`` the flat buffer the parameter views lie in."""
    params = inplace_vector("params", params)
    n = integer("n", n)
    _step_layers(layers, params.dtype, params)
    return n, params.dtype


def plan_input(X, n_in, dtype):
    """The rows a forward plan runs on: a C-contiguous 2-D array of the plan's dtype with
    ``n_in`` columns (returned as is when it already is one; read-only is fine)."""
    X = float_array("X", X, 2)
    if X.dtype != dtype:
        raise TypeError(f"X must have the plan's dtype {dtype}, got {X.dtype}")
    if X.shape[1] != n_in:
        raise ValueError(f"X must have {n_in} columns, got shape {X.shape}")
    return X


def _step_layers(layers, dtype, params, grads=None):
    """Each layer's kind, sizes and its parameter (and, given ``grads``, gradient) views:
    C-contiguous views of the shapes its kind reads into the flat buffers."""
    if not layers:
        raise ValueError("layers must not be empty")
    n_in = layers[0]["n_in"]
    for i, layer in enumerate(layers):
        kind = choice(f"layer {i}: kind", layer["kind"], STEP_SHAPES)
        if layer["n_in"] != n_in:
            raise ValueError(f"layer {i} expects {layer['n_in']} inputs, gets {n_in}")
        if kind == "residual" and layer["n_out"] != n_in:
            raise ValueError(f"layer {i}: a residual block keeps its width")
        shapes = step_shapes(layer)
        bases = ((params, ""),) if grads is None else ((params, ""), (grads, "d"))
        for name, shape in shapes.items():
            for base, prefix in bases:
                key = prefix + name
                view = layer[key]
                if not isinstance(view, np.ndarray) or view.shape != shape \
                        or view.dtype != dtype or not view.flags.c_contiguous \
                        or view.base is not base and not np.shares_memory(view, base):
                    raise ValueError(
                        f"layer {i}: {key} must be a C-contiguous {dtype} view of shape "
                        f"{shape} into the flat buffer")
        n_in = layer["n_out"]
