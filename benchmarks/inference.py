"""Inference speed: nncore's predict_proba vs onnxruntime on the model nncore exports.

    python benchmarks/inference.py            # 1,000,000 rows, 5 interleaved rounds
    python benchmarks/inference.py --quick    # 100,000 rows, 2 rounds

The performance issue's inference target: ``predict`` on a million rows at least as fast as
onnxruntime running the same model written by ``nncore.export_onnx``, at equal threads.
Both compute class probabilities (the exported graph ends in its Softmax) for the same
float32 rows; the network is freshly initialised (the weights do not change the work).
Each thread count runs in its own child process pinned with ``taskset``, BLAS limited by
threadpoolctl and onnxruntime's intra-op threads set to the same number; the two libraries
alternate in interleaved rounds and the table reports the median of per-round ratios
(rows/s of nncore over onnxruntime's). Needs the ``onnx`` extra.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from peers import _timed, cpu_model  # this folder is on sys.path when run as a script

N_FEATURES, N_CLASSES = 2, 5
CONFIGS = {
    # name: (kind, hidden widths or (width, depth))
    "S": ("mlp", [32] * 3),
    "M": ("mlp", [64] * 4),
    "R": ("resnet", (64, 4)),
    "L": ("mlp", [512] * 4),
}


def child(threads, rows, rounds, configs):
    import numpy as np
    import onnxruntime as ort
    from threadpoolctl import threadpool_limits

    import nncore as nc

    threadpool_limits(limits=threads)
    X = np.random.default_rng(0).uniform(-3, 3, (rows, N_FEATURES)).astype(np.float32)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in configs:
            kind, arch = CONFIGS[name]
            net = (nc.mlp(N_FEATURES, arch, N_CLASSES) if kind == "mlp"
                   else nc.resnet(N_FEATURES, arch[0], arch[1], N_CLASSES))
            path = os.path.join(folder, f"{name}.onnx")
            nc.export_onnx(net, path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: X}
            ours, theirs = net.predict_proba(X), session.run(None, feed)[0]
            difference = float(np.max(np.abs(ours - theirs)))
            rates = {"nncore": [], "onnxruntime": []}
            for _ in range(rounds):
                rates["nncore"].append(rows / _timed(lambda: net.predict_proba(X)))
                rates["onnxruntime"].append(rows / _timed(lambda: session.run(None, feed)))
            results[name] = {"rates": rates, "difference": difference}
    print(json.dumps(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 2 rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--threads", default="1,2", help="thread counts (default %(default)s)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    rounds = 2 if args.quick else args.rounds
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {sorted(CONFIGS)}")
    if args.child is not None:
        child(args.child, rows, rounds, configs)
        return

    import numpy as np

    print(f"CPU: {cpu_model()}; {rows:,} rows, float32, class probabilities\n")
    print("| config | threads | nncore rows/s | onnxruntime rows/s | nncore / onnxruntime "
          "(median) | per round | max difference |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    for threads in map(int, args.threads.split(",")):
        command = [sys.executable, __file__, "--child", str(threads), "--rows", str(rows),
                   "--rounds", str(rounds), "--configs", args.configs]
        if len(cpus) >= threads:
            command = ["taskset", "-c", ",".join(map(str, cpus[:threads]))] + command
        env = dict(os.environ, OMP_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads))
        output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        results = json.loads(output.stdout.strip().splitlines()[-1])
        for name, entry in results.items():
            ours, theirs = entry["rates"]["nncore"], entry["rates"]["onnxruntime"]
            ratios = [a / b for a, b in zip(ours, theirs)]
            print(f"| {name} | {threads} | {np.median(ours):,.0f} | {np.median(theirs):,.0f} "
                  f"| {np.median(ratios):.2f}x | {' '.join(f'{r:.2f}' for r in ratios)} "
                  f"| {entry['difference']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
