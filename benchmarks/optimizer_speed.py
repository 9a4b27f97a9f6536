"""A training step with Adam against one with SGD: the breadth issue asks for at most 10%
more time on MLP 4x64 and ResNet width 64 depth 4, batch 64, float32.

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
    # name, builder, batch size, steps per run
    ("MLP 4x64, batch 64", lambda: nc.mlp(2, [64] * 4, 5), 64, 2000),
    ("ResNet width 64 depth 4, batch 64", lambda: nc.resnet(2, 64, 4, 5), 64, 1000),
]
OPTIMIZERS = {"SGD": lambda: nc.SGD(lr=0.01, momentum=0.9), "Adam": lambda: nc.Adam(lr=1e-3)}


def seconds_per_step(build, optimizer, batch_size, steps):
    rng = np.random.default_rng(0)
    n = batch_size * (steps // 2)
    X = rng.uniform(-3, 3, (n, 2)).astype(np.float32)
    y = rng.integers(0, 5, n)
    net = build()
    start = time.perf_counter()
    net.fit(X, y, epochs=2, batch_size=batch_size, optimizer=optimizer, verbose=0)
    return (time.perf_counter() - start) / steps


def main(rounds):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        print("| configuration | SGD (us/step) | Adam (us/step) | Adam / SGD |")
        print("|---|---:|---:|---:|")
        for name, build, batch_size, steps in CONFIGS:
            best = {key: float("inf") for key in OPTIMIZERS}
            for _ in range(rounds):
                for key, make in OPTIMIZERS.items():
                    best[key] = min(best[key], seconds_per_step(build, make(), batch_size,
                                                                steps))
            sgd, adam = best["SGD"] * 1e6, best["Adam"] * 1e6
            print(f"| {name} | {sgd:.1f} | {adam:.1f} | {adam / sgd:.3f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    main(parser.parse_args().rounds)
