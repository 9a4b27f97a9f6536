"""End-to-end training speed: nncore vs its NumPy reference network, PyTorch and scikit-learn.

    python benchmarks/train_speed.py            # prints a Markdown table
    python benchmarks/train_speed.py --quick    # fewer steps, for a smoke test

Every library trains the same network (tanh, softmax cross-entropy, SGD with momentum 0.9)
on the same data (2 features, 5 classes) with a full training loop: a shuffle per epoch,
mini-batches, forward, backward and update. Steps/s is the number of mini-batch steps over
the wall time of the loop, median of repeats. Everything runs on one core: BLAS limited to
one thread (threadpoolctl) and ``torch.set_num_threads(1)``. PyTorch and scikit-learn are
optional; a missing one shows as "-".
"""

import argparse
import math
import platform
import time

import numpy as np

import nncore as nc
import nncore.ops  # loads SciPy's BLAS before the thread limit below is applied
from peers import torch_model  # this folder is on sys.path when run as a script

CONFIGS = [
    # name, kind, hidden widths or (width, depth), batch size, steps per run
    ("MLP 3x32, batch 32", "mlp", [32] * 3, 32, 3000),
    ("MLP 4x64, batch 64", "mlp", [64] * 4, 64, 2000),
    ("ResNet width 64 depth 4, batch 64", "resnet", (64, 4), 64, 1000),
    ("MLP 4x512, batch 256", "mlp", [512] * 4, 256, 40),
]
N_FEATURES, N_CLASSES, LR, MOMENTUM = 2, 5, 0.01, 0.9


def make_data(batch_size, steps_per_epoch, seed=0):
    rng = np.random.default_rng(seed)
    n = batch_size * steps_per_epoch
    X = rng.uniform(-3, 3, (n, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, n)
    return X, y


def run_nncore(kind, arch, batch_size, steps, backend):
    X, y = make_data(batch_size, max(steps // 2, 1))
    if kind == "mlp":
        net = nc.mlp(N_FEATURES, arch, N_CLASSES, backend=backend)
    else:
        net = nc.resnet(N_FEATURES, arch[0], arch[1], N_CLASSES, backend=backend)
    opt = nc.SGD(lr=LR, momentum=MOMENTUM)
    start = time.perf_counter()
    net.fit(X, y, epochs=2, batch_size=batch_size, optimizer=opt, verbose=0)
    return 2 * len(X) // batch_size / (time.perf_counter() - start)


def run_torch(kind, arch, batch_size, steps):
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch_model(kind, arch)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = make_data(batch_size, max(steps // 2, 1))
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(2):
        order = torch.randperm(len(X), generator=generator)
        Xs, ys = X[order], y[order]
        for i in range(0, len(X), batch_size):
            opt.zero_grad()
            loss = loss_fn(model(Xs[i:i + batch_size]), ys[i:i + batch_size])
            loss.backward()
            opt.step()
    return 2 * len(X) // batch_size / (time.perf_counter() - start)


def run_sklearn(kind, arch, batch_size, steps):
    if kind != "mlp":
        return None  # MLPClassifier has no residual blocks
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = make_data(batch_size, max(steps // 2, 1))
    model = MLPClassifier(hidden_layer_sizes=arch, activation="tanh", solver="sgd",
                          batch_size=batch_size, learning_rate_init=LR, momentum=MOMENTUM,
                          nesterovs_momentum=False, max_iter=2, alpha=0.0, tol=0.0,
                          n_iter_no_change=10**9, shuffle=True, random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return 2 * len(X) // batch_size / (time.perf_counter() - start)


def available(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def median_rate(function, repeats):
    rates = [function() for _ in range(repeats)]
    return None if rates[0] is None else float(np.median(rates))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    peers = {"torch": available("torch"), "sklearn": available("sklearn")}
    print("| configuration | nncore | reference | PyTorch | scikit-learn "
          "| nncore / reference | nncore / PyTorch | nncore / fastest peer |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, kind, arch, batch_size, steps in CONFIGS:
        steps = max(steps // 10, 4) if args.quick else steps
        rate = {
            "nncore": median_rate(lambda: run_nncore(kind, arch, batch_size, steps, "kernels"),
                                  repeats),
            "reference": median_rate(
                lambda: run_nncore(kind, arch, batch_size, max(steps // 4, 4), "reference"),
                repeats),
            "torch": median_rate(lambda: run_torch(kind, arch, batch_size, steps), repeats)
            if peers["torch"] else None,
            "sklearn": median_rate(lambda: run_sklearn(kind, arch, batch_size, steps), repeats)
            if peers["sklearn"] else None,
        }
        fastest_peer = max((r for k, r in rate.items() if k in ("torch", "sklearn") and r),
                           default=None)

        def fmt(value):
            return "-" if value is None else f"{value:,.0f}"

        def ratio(a, b):
            return "-" if a is None or b is None else f"{a / b:.1f}x"

        print(f"| {name} | {fmt(rate['nncore'])} | {fmt(rate['reference'])} "
              f"| {fmt(rate['torch'])} | {fmt(rate['sklearn'])} "
              f"| {ratio(rate['nncore'], rate['reference'])} "
              f"| {ratio(rate['nncore'], rate['torch'])} "
              f"| {ratio(rate['nncore'], fastest_peer)} |", flush=True)
    versions = [f"nncore {nc.__version__}", f"numpy {np.__version__}"]
    for module in ("torch", "sklearn"):
        if peers[module]:
            versions.append(f"{module} {__import__(module).__version__}")
    print(f"\nsteps/s, median of {repeats}; {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}; " + ", ".join(versions))


if __name__ == "__main__":
    main()
