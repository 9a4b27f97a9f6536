"""A training step with Adam against one with SGD, and a regression step (squared error,
the same five outputs) against a classification one: the breadth issue asks for Adam at
most 10% slower than SGD, and MSE networks as fast as classifiers, on MLP 4x64 and ResNet
width 64 depth 4, batch 64, float32.

    python benchmarks/optimizer_speed.py            # a few seconds
    python benchmarks/optimizer_speed.py --rounds 15

Each round trains every configuration for two epochs with each optimizer, interleaved, on
one core's worth of BLAS (one thread); the best time per step over the rounds is kept.
Pin the process to a core (``taskset -c 1``) on a shared machine.
"""

import argparse
import time

import numpy as np

import nncore as nc
import nncore.ops  # loads SciPy's BLAS before the thread limit below is applied

CONFIGS = [
    # name, builder (loss -> network), batch size, steps per run
    ("MLP 4x64, batch 64", lambda loss: nc.mlp(2, [64] * 4, 5, loss=loss), 64, 2000),
    ("ResNet width 64 depth 4, batch 64", lambda loss: nc.resnet(2, 64, 4, 5, loss=loss), 64,
     1000),
]
#: name -> (optimizer factory, loss)
VARIANTS = {"SGD": (lambda: nc.SGD(lr=0.01, momentum=0.9), "softmax_cross_entropy"),
            "Adam": (lambda: nc.Adam(lr=1e-3), "softmax_cross_entropy"),
            "SGD, MSE": (lambda: nc.SGD(lr=0.01, momentum=0.9), "mse")}


def seconds_per_step(build, optimizer, loss, batch_size, steps):
    rng = np.random.default_rng(0)
    n = batch_size * (steps // 2)
    X = rng.uniform(-3, 3, (n, 2)).astype(np.float32)
    y = rng.standard_normal((n, 5)) if loss == "mse" else rng.integers(0, 5, n)
    net = build(loss)
    start = time.perf_counter()
    net.fit(X, y, epochs=2, batch_size=batch_size, optimizer=optimizer, verbose=0)
    return (time.perf_counter() - start) / steps


def main(rounds):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        print("| configuration | SGD (us/step) | Adam (us/step) | Adam / SGD "
              "| SGD, MSE head (us/step) | MSE / cross-entropy |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, build, batch_size, steps in CONFIGS:
            best = {key: float("inf") for key in VARIANTS}
            for _ in range(rounds):
                for key, (make, loss) in VARIANTS.items():
                    best[key] = min(best[key], seconds_per_step(build, make(), loss,
                                                                batch_size, steps))
            sgd, adam, mse = (best[key] * 1e6 for key in ("SGD", "Adam", "SGD, MSE"))
            print(f"| {name} | {sgd:.1f} | {adam:.1f} | {adam / sgd:.3f} | {mse:.1f} "
                  f"| {mse / sgd:.3f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    main(parser.parse_args().rounds)
