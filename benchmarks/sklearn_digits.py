"""Digits: nncore's NNClassifier vs scikit-learn's MLPClassifier, same network, same training.

    python benchmarks/sklearn_digits.py                 # prints a Markdown table
    python benchmarks/sklearn_digits.py --repeats 5
    python benchmarks/sklearn_digits.py --blas-threads 0   # leave BLAS threads alone

Both train one hidden layer of 100 tanh units and a softmax output by mini-batch SGD:
learning rate 0.01 (constant), momentum 0.9 without Nesterov, no L2 penalty, batch 32, the
training set shuffled every epoch, exactly 30 epochs (MLPClassifier's convergence test is
switched off). The data is ``sklearn.datasets.load_digits`` with one stratified 75/25 split
(``random_state=0``), standardised on the training part. Repeat ``i`` fits every model with
``random_state=i``; the table gives the median test accuracy and the median wall time of
``fit`` over the repeats (after one untimed warm-up fit each). MLPClassifier computes in
float64 (the dtype of the data); NNClassifier is shown in float32 (its default) and float64.

By default BLAS runs on one thread for both libraries (threadpoolctl, from the ``bench``
extra), as in ``benchmarks/train_speed.py``: NumPy and SciPy bundle separate OpenBLAS
builds whose thread pools fight on a small shared machine. Keep the configuration in sync
with ``test_digits_accuracy_at_least_mlpclassifier`` in ``tests/test_sklearn.py``.

This is a script, not a test: it asserts nothing.
"""

import argparse
import platform
import statistics
import sys
import time
import warnings

import numpy as np

import nncore
import nncore.ops  # loads SciPy's BLAS before the thread limit below is applied

try:
    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("this benchmark needs scikit-learn: pip install '.[sklearn]'")

from nncore.sklearn import NNClassifier

HIDDEN = (100,)
ACTIVATION = "tanh"
LEARNING_RATE = 0.01
MOMENTUM = 0.9
BATCH_SIZE = 32
EPOCHS = 30


def load_split():
    """The fixed split, standardised with the training part's mean and deviation."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def make_nncore(dtype, seed, epochs=EPOCHS):
    return NNClassifier(hidden_layer_sizes=HIDDEN, activation=ACTIVATION, dtype=dtype,
                        learning_rate=LEARNING_RATE, momentum=MOMENTUM, nesterov=False,
                        weight_decay=0.0, batch_size=BATCH_SIZE, max_iter=epochs,
                        random_state=seed)


def make_sklearn(seed, epochs=EPOCHS):
    return MLPClassifier(hidden_layer_sizes=HIDDEN, activation=ACTIVATION, solver="sgd",
                         learning_rate="constant", learning_rate_init=LEARNING_RATE,
                         momentum=MOMENTUM, nesterovs_momentum=False, alpha=0.0,
                         batch_size=BATCH_SIZE, max_iter=epochs, shuffle=True, tol=0.0,
                         n_iter_no_change=epochs + 1, random_state=seed)


def measure(make, data, repeats):
    """Fit ``make(seed)`` for seed = 0..repeats-1; return (accuracies, fit seconds)."""
    X_train, X_test, y_train, y_test = data
    make(0, epochs=1).fit(X_train, y_train)  # warm-up: imports, first allocations
    accuracies, seconds = [], []
    for seed in range(repeats):
        model = make(seed)
        start = time.perf_counter()
        model.fit(X_train, y_train)
        seconds.append(time.perf_counter() - start)
        if model.n_iter_ != EPOCHS:
            raise RuntimeError(f"{type(model).__name__} ran {model.n_iter_} epochs, "
                               f"not {EPOCHS}")
        accuracies.append(model.score(X_test, y_test))
    return accuracies, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fits per model (default 3)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads for both libraries; 0 leaves them alone (default 1)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    threads = "as configured"
    if args.blas_threads > 0:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            print("threadpoolctl is not installed: BLAS thread counts left as they are",
                  file=sys.stderr)
        else:
            threadpool_limits(limits=args.blas_threads, user_api="blas")
            threads = str(args.blas_threads)

    data = load_split()
    models = [
        ("nncore NNClassifier", "float32",
         lambda seed, epochs=EPOCHS: make_nncore("float32", seed, epochs)),
        ("nncore NNClassifier", "float64",
         lambda seed, epochs=EPOCHS: make_nncore("float64", seed, epochs)),
        ("scikit-learn MLPClassifier", "float64", make_sklearn),
    ]
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is reached on purpose
        for name, dtype, make in models:
            accuracies, seconds = measure(make, data, args.repeats)
            results.append((name, dtype, accuracies, seconds))
    sklearn_seconds = statistics.median(results[-1][3])

    print(f"| model | dtype | test accuracy (median of {args.repeats}) | accuracies by seed "
          f"| fit time, s (median of {args.repeats}) | speed-up vs MLPClassifier |")
    print("|---|---|---:|---|---:|---:|")
    for name, dtype, accuracies, seconds in results:
        median_seconds = statistics.median(seconds)
        by_seed = ", ".join(f"{a:.4f}" for a in accuracies)
        print(f"| {name} | {dtype} | {statistics.median(accuracies):.4f} | {by_seed} "
              f"| {median_seconds:.3f} | {sklearn_seconds / median_seconds:.1f}x |")
    n_train, n_test = len(data[2]), len(data[3])
    print(f"\nload_digits, {n_train} training / {n_test} test samples; MLP {HIDDEN} "
          f"{ACTIVATION}, SGD lr {LEARNING_RATE}, momentum {MOMENTUM}, batch {BATCH_SIZE}, "
          f"{EPOCHS} epochs. {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}, BLAS threads {threads}; "
          f"nncore {nncore.__version__}, numpy {np.__version__}, "
          f"scikit-learn {sklearn.__version__}.\n"
          f"command: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
