"""Training speed of two builds of nncore, measured in interleaved rounds.

    python benchmarks/before_after.py OLD_SRC NEW_SRC [--rounds 5] [--cpu 1]

OLD_SRC and NEW_SRC are ``src`` folders with the kernels built in place (``git worktree add
../before REV && cd ../before && python setup.py build_ext --inplace``). Each round runs
one fresh process per build, old then new, pinned to one CPU with one BLAS thread; each
process trains the configurations of ``train_speed.py`` for two epochs three times and keeps
its best steps/s. The table gives the medians over the rounds and the median and range of
the per-round ratios new / old: a refactoring that keeps the speed shows ratios around 1.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

#: Run in each process: steps/s of nncore.fit on each configuration, printed as JSON.
MEASURE = """
import json, time
import numpy as np
from threadpoolctl import threadpool_limits
import nncore as nc
import nncore.ops  # loads SciPy's BLAS before the limit below
from train_speed import CONFIGS, LR, MOMENTUM, N_CLASSES, N_FEATURES, make_data
speeds = {}
with threadpool_limits(1):
    for name, kind, arch, batch_size, steps in CONFIGS:
        X, y = make_data(batch_size, max(steps // 2, 1))
        best = 0.0
        for _ in range(3):
            net = (nc.mlp(N_FEATURES, arch, N_CLASSES) if kind == "mlp"
                   else nc.resnet(N_FEATURES, arch[0], arch[1], N_CLASSES))
            start = time.perf_counter()
            net.fit(X, y, epochs=2, batch_size=batch_size, verbose=0,
                    optimizer=nc.SGD(lr=LR, momentum=MOMENTUM))
            best = max(best, 2 * len(X) // batch_size / (time.perf_counter() - start))
        speeds[name] = best
print(json.dumps(speeds))
"""


def measure(src, cpu):
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, here]),
           "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-c", MEASURE]
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", str(cpu), *command]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old_src")
    parser.add_argument("new_src")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=1, help="CPU to pin to (-1: none)")
    args = parser.parse_args(argv)
    cpu = None if args.cpu < 0 else args.cpu
    old, new = [], []
    for round_ in range(args.rounds):
        old.append(measure(args.old_src, cpu))
        new.append(measure(args.new_src, cpu))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print("| configuration | old steps/s | new steps/s | new / old (median of rounds) | range |")
    print("|---|---:|---:|---:|---:|")
    for name in old[0]:
        ratios = [n[name] / o[name] for o, n in zip(old, new)]
        print(f"| {name} | {statistics.median(o[name] for o in old):,.0f} "
              f"| {statistics.median(n[name] for n in new):,.0f} "
              f"| {statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} |")


if __name__ == "__main__":
    main()
