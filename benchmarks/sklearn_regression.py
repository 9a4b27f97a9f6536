"""NNRegressor against scikit-learn's MLPRegressor, both out of the box.

    python benchmarks/sklearn_regression.py              # prints a Markdown table
    python benchmarks/sklearn_regression.py --repeats 5

The issue's bar: ``NNRegressor()``'s defaults must match or beat ``MLPRegressor()``'s R^2 on
standardised data, on scikit-learn's bundled ``load_diabetes`` and on ``make_friedman1``
(2,000 samples, noise 1, ``random_state=0``), and train faster. Each repeat ``i`` splits
75/25 with ``random_state=i`` and fits ``make_pipeline(StandardScaler(), model)`` with the
model's ``random_state=i``; the table gives the median test R^2 and the median wall time of
``fit``. A second MLPRegressor row wraps it in ``TransformedTargetRegressor`` with a
``StandardScaler`` on the target, the scaling NNRegressor does inside, to show how much of
the difference that is. BLAS runs on one thread for both (threadpoolctl).

This is a script, not a test: it asserts nothing (``tests/test_sklearn.py`` checks the bar on
one split).
"""

import argparse
import platform
import statistics
import time
import warnings

from threadpoolctl import threadpool_limits

import nncore.ops  # noqa: F401  (loads SciPy's BLAS before the thread limit below)
from nncore.sklearn import NNRegressor

from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DATASETS = {
    "diabetes": lambda: load_diabetes(return_X_y=True),
    "friedman1": lambda: make_friedman1(n_samples=2000, noise=1.0, random_state=0),
}
MODELS = {
    "NNRegressor()": lambda seed: NNRegressor(random_state=seed),
    "MLPRegressor()": lambda seed: MLPRegressor(random_state=seed),
    "MLPRegressor(), target standardised": lambda seed: TransformedTargetRegressor(
        MLPRegressor(random_state=seed), transformer=StandardScaler()),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    print("| data set | model | median test R^2 | min-max R^2 | median fit time (s) |")
    print("|---|---|---:|---:|---:|")
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLPRegressor's ConvergenceWarning
        for data_name, load in DATASETS.items():
            X, y = load()
            for model_name, make in MODELS.items():
                scores, seconds = [], []
                for seed in range(args.repeats):
                    X_train, X_test, y_train, y_test = train_test_split(
                        X, y, test_size=0.25, random_state=seed)
                    pipe = make_pipeline(StandardScaler(), make(seed))
                    start = time.perf_counter()
                    pipe.fit(X_train, y_train)
                    seconds.append(time.perf_counter() - start)
                    scores.append(pipe.score(X_test, y_test))
                print(f"| {data_name} | {model_name} | {statistics.median(scores):.3f} "
                      f"| {min(scores):.3f}-{max(scores):.3f} "
                      f"| {statistics.median(seconds):.3f} |")


if __name__ == "__main__":
    main()
