"""The fused training step on two CPUs: which way of using the second core is fastest.

    python benchmarks/two_threads.py                 # every configuration, 7 rounds
    python benchmarks/two_threads.py --configs L,R --rounds 9

Measures ``TrainStep.run_many`` (32 steps a call, SGD with momentum, tanh) three ways in
interleaved rounds, the process pinned to two CPUs: the step on one thread with one BLAS
thread ("1 thread"), on one thread with BLAS on two ("BLAS on 2": OpenBLAS splits each large
product itself), and shared by two threads with one BLAS thread each ("2 threads": what
``nncore.ops`` picks for a step of at least ``TWO_THREAD_STEP_FLOPS``). Each timed run starts
after a rest of SETTLE seconds, so that no pool still spinning from the run before takes a
core from it. The table gives each median in steps/s and the median per-round ratio of the
two-thread step to the faster one-thread way; the configurations straddle the threshold.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(__file__))
from peers import cpu_model  # noqa: E402

import nncore as nc  # noqa: E402
from nncore import ops  # noqa: E402

#: name: (kind, width, depth, batch)
CONFIGS = {
    "M": ("mlp", 64, 4, 64),
    "M128": ("mlp", 64, 4, 128),
    "R": ("resnet", 64, 4, 64),
    "X64": ("mlp", 128, 4, 64),
    "X": ("mlp", 128, 4, 128),
    "W": ("mlp", 256, 4, 128),
    "L": ("mlp", 512, 4, 256),
}
STEPS = 32
SETTLE = 0.2
MODES = ("1 thread", "BLAS on 2", "2 threads")


def step_runner(kind, width, depth, batch):
    """A function running one call of STEPS steps in a given mode; the step's MFLOP."""
    rng = np.random.default_rng(0)
    net = (nc.mlp(2, [width] * depth, 5) if kind == "mlp"
           else nc.resnet(2, width, depth, 5))
    X = rng.uniform(-3, 3, (batch * STEPS, 2)).astype(np.float32)
    y = rng.integers(0, 5, batch * STEPS).astype(np.intp)
    step = net.train_step(batch, (np.zeros_like(net.params),))
    losses, correct = np.zeros(STEPS), np.zeros(STEPS, dtype=np.intp)
    update = {"kind": "sgd", "lr": 1e-3, "momentum": 0.9, "nesterov": False,
              "weight_decay": 0.0}

    def run(mode):
        step.threads = 2 if mode == "2 threads" else 1
        with threadpool_limits(2 if mode == "BLAS on 2" else 1, user_api="blas"):
            step.run_many(X, y, STEPS, update, losses, correct)

    return run, step.flops / 1e6


def measure(name, rounds, seconds):
    run, mflop = step_runner(*CONFIGS[name])
    run("1 thread")
    start = time.perf_counter()
    run("1 thread")
    calls = max(1, round(seconds / (time.perf_counter() - start)))
    rates = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            run(mode)  # warm
            time.sleep(SETTLE)
            start = time.perf_counter()
            for _ in range(calls):
                run(mode)
            rates[mode].append(calls * STEPS / (time.perf_counter() - start))
    ratios = [two / max(one, blas2) for one, blas2, two
              in zip(rates["1 thread"], rates["BLAS on 2"], rates["2 threads"])]
    return mflop, {mode: statistics.median(v) for mode, v in rates.items()}, ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="time of one timed run of the one-thread step (default 0.3)")
    args = parser.parse_args()
    names = args.configs.split(",")
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("two_threads.py needs two CPUs")
    os.sched_setaffinity(0, cpus[:2])
    print(f"CPU: {cpu_model()}; two CPUs; TWO_THREAD_STEP_FLOPS = "
          f"{ops.TWO_THREAD_STEP_FLOPS / 1e6:g} MFLOP\n")
    print("| config | MFLOP per step | " + " | ".join(f"{m}, steps/s" for m in MODES)
          + " | 2 threads / faster of the others (median) | per round |")
    print("|---|---:|" + "---:|" * (len(MODES) + 2))
    for name in names:
        mflop, medians, ratios = measure(name, args.rounds, args.seconds)
        kind, width, depth, batch = CONFIGS[name]
        label = f"{name}: {kind} {width}x{depth}, batch {batch}"
        print(f"| {label} | {mflop:.1f} | "
              + " | ".join(f"{medians[m]:,.0f}" for m in MODES)
              + f" | {statistics.median(ratios):.2f}x | "
              + " ".join(f"{r:.2f}" for r in ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
