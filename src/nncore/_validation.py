"""Argument checks shared by :mod:`nncore.ops` and :mod:`nncore.reference` (and used by
:mod:`nncore.check`).

Both modules must reject the same bad input with the same message, so the checks live here,
in plain Python and NumPy. Nothing in this module computes a result.

Every check names the offending argument and value; shapes and dtypes are checked before any
compiled kernel runs, so a kernel never sees an unchecked shape.
"""

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ACTIVATIONS = ("identity", "tanh", "relu", "sigmoid")


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


def activation_name(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation


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


def integer(name, value, minimum=1):
    """Return ``value`` as a Python int >= ``minimum`` (bools and floats are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def real_number(name, value, minimum=None, maximum=None):
    """Return ``value`` as a finite float within ``[minimum, maximum]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


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


def real_in_range(name, value, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a finite float between ``low`` and ``high``, each bound closed
    unless ``low_open`` / ``high_open`` (only int, float and NumPy scalars are accepted)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


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
    lr = real_number("lr", lr, minimum=0.0)
    momentum = real_number("momentum", momentum, minimum=0.0)
    weight_decay = real_number("weight_decay", weight_decay, minimum=0.0)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov=True needs momentum > 0")
    return param, grad, velocity, lr, momentum, bool(nesterov), weight_decay


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
