"""Peak memory of ``fit`` on a 1,000,000 x 8 float32 training set.

    python benchmarks/memory.py             # MLP 4x64, one epoch, batch 64
    python benchmarks/memory.py --validate  # also with a 20% validation set
    python benchmarks/memory.py --standardize  # fit(standardize=True)

The performance issue's memory target: ``fit`` peaks below three times the data's size plus
the model's (taken here as the data, the model and everything ``fit`` allocates, against
3 x data + model). Measured with ``tracemalloc``, which sees every NumPy allocation (NumPy reports
its buffers to it); the data exist before tracing starts, so the peak is what ``fit`` adds
on top of them.
"""

import argparse
import tracemalloc

import numpy as np

import nncore as nc


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--validate", action="store_true",
                        help="hold out 20%% of the rows as validation data")
    parser.add_argument("--standardize", action="store_true",
                        help="fit(standardize=True), as `nncore train` does by default")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, 8), dtype=np.float32)
    y = rng.integers(0, 5, args.rows)
    net = nc.mlp(8, [64] * 4, 5)
    data = X.nbytes + y.nbytes
    model = net.params.nbytes
    fit = dict(epochs=1, batch_size=64, optimizer=nc.SGD(lr=0.01, momentum=0.9), verbose=0)
    if args.validate:
        cut = args.rows * 4 // 5
        fit["validation_data"] = (X[cut:], y[cut:])
        X, y = X[:cut], y[:cut]

    tracemalloc.start()
    net.fit(X, y, standardize=args.standardize, **fit)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total, bound = data + model + peak, 3 * data + model
    mib = 2**20
    print(f"data {data / mib:.1f} MiB (X {X.dtype}, y {y.dtype}), model {model / mib:.2f} MiB; "
          f"fit adds {peak / mib:.1f} MiB at its peak: {total / mib:.1f} MiB in all, "
          f"{total / bound:.2f} of the bound 3 x data + model ({bound / mib:.1f} MiB)")


if __name__ == "__main__":
    main()
