"""Is there a faster sgemm than the OpenBLAS nncore uses? The step's products, library by library.

    python benchmarks/blas_libraries.py                # L's, X's and M's products; Markdown
    python benchmarks/blas_libraries.py --rounds 9 --threads 1

nncore's kernels call the sgemm of the OpenBLAS that SciPy ships (``scipy.linalg.cython_blas``).
A training step of a wide network is almost all matrix products (L, 4x512 at batch 256: 1.2
GFLOP a step in products), so no step can be faster than that sgemm allows: beating a peer
that reaches 0.9 of the products-only bound by 1.25x needs a faster sgemm. This measures the
three products of a layer's step (forward ``X W^T``, weight gradient ``dZ^T X``, input
gradient ``dZ W``, row-major float32 as nncore lays them out) through every BLAS found here:

- OpenBLAS, SciPy's (``scipy.linalg.blas.sgemm``; always present);
- BLIS, the ``blis`` package that thinc uses (``pip install blis``; built without threads,
  so measured on one thread only);
- Intel MKL through ``cblas_sgemm`` of ``libmkl_rt``, from the ``mkl`` package
  (``pip install mkl``) or a path given with ``--mkl``.

A missing library shows as "-". The libraries alternate in interleaved rounds, each timed run
after a rest of SETTLE seconds (MKL's OpenMP threads spin for a while after a product); the
table gives each median GFLOP/s and the median per-round ratio to OpenBLAS. The calls go
through Python (a few microseconds each, the same order for every library), so the small
shapes understate every library alike; the wide ones are what L is made of.
"""

import argparse
import ctypes
import ctypes.util
import glob
import os
import statistics
import sys
import time

import numpy as np
from scipy.linalg import blas as scipy_blas
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(__file__))
from peers import cpu_model  # noqa: E402

#: name: (batch, fan_in, fan_out) of one hidden layer of the peers.py configuration
LAYERS = {"L": (256, 512, 512), "X": (128, 128, 128), "M": (64, 64, 64)}
SETTLE = 0.3
SECONDS = 0.4  # per timed run


def products(batch, fan_in, fan_out, rng):
    """The layer's three products: name -> (A, B, C, trans_a, trans_b), C = op(A) op(B)."""
    def rand(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    X, W, dZ = rand(batch, fan_in), rand(fan_out, fan_in), rand(batch, fan_out)
    return {"X W^T": (X, W, np.empty((batch, fan_out), np.float32), False, True),
            "dZ^T X": (dZ, X, np.empty((fan_out, fan_in), np.float32), True, False),
            "dZ W": (dZ, W, np.empty((batch, fan_in), np.float32), False, False)}


def openblas_gemm(A, B, C, trans_a, trans_b):
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the transposed views
    # are Fortran-ordered, so SciPy writes into C itself.
    scipy_blas.sgemm(1.0, B.T, A.T, trans_a=trans_b, trans_b=trans_a, c=C.T, overwrite_c=True)


def find_mkl(path):
    """libmkl_rt's cblas_sgemm and MKL_Set_Num_Threads, or None."""
    candidates = [path] if path else (
        sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
        + [ctypes.util.find_library("mkl_rt")])
    for candidate in filter(None, candidates):
        try:
            library = ctypes.CDLL(candidate)
        except OSError:
            continue
        sgemm = library.cblas_sgemm
        sgemm.restype = None
        sgemm.argtypes = ([ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                                                ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
                                                ctypes.c_void_p, ctypes.c_int])
        return sgemm, library.MKL_Set_Num_Threads
    return None


def mkl_runner(found):
    sgemm, set_threads = found
    row_major, no_trans, trans = 101, 111, 112

    def gemm(A, B, C, trans_a, trans_b):
        k = A.shape[0] if trans_a else A.shape[1]
        sgemm(row_major, trans if trans_a else no_trans, trans if trans_b else no_trans,
              C.shape[0], C.shape[1], k, 1.0, A.ctypes.data, A.shape[1], B.ctypes.data,
              B.shape[1], 0.0, C.ctypes.data, C.shape[1])

    return gemm, set_threads


def libraries(mkl_path):
    """name -> (gemm, set_threads or None) of every BLAS found here."""
    found = {"OpenBLAS": (openblas_gemm, None)}
    try:
        from blis.py import gemm as blis_py_gemm

        def blis_gemm(A, B, C, trans_a, trans_b):
            blis_py_gemm(A, B, out=C, trans1=trans_a, trans2=trans_b, beta=0.0)

        found["BLIS"] = (blis_gemm, None)
    except ImportError:
        pass
    mkl = find_mkl(mkl_path)
    if mkl is not None:
        found["MKL"] = mkl_runner(mkl)
    return found


def rate(gemm, args, flops, threads, set_threads):
    """GFLOP/s of one timed run of repeated products on ``threads`` threads."""
    with threadpool_limits(threads, user_api="blas"):
        if set_threads is not None:
            set_threads(threads)
        gemm(*args)  # warm
        start = time.perf_counter()
        gemm(*args)
        repeats = max(3, round(SECONDS / max(time.perf_counter() - start, 1e-6)))
        time.sleep(SETTLE)
        start = time.perf_counter()
        for _ in range(repeats):
            gemm(*args)
        return repeats * flops / (time.perf_counter() - start) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="L,X,M", help="of " + ", ".join(LAYERS))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mkl", help="path of libmkl_rt (default: the mkl package's)")
    args = parser.parse_args(argv)
    found = libraries(args.mkl)
    names = list(found)
    others = [name for name in ("BLIS", "MKL") if name in found]
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_model()}; {os.cpu_count()} CPUs; found: {', '.join(names)}\n")
    print("| layer | product | m x k x n | threads | " + " | ".join(
        f"{name} GFLOP/s" for name in ("OpenBLAS", "BLIS", "MKL")) + " | " + " | ".join(
        f"{name} / OpenBLAS" for name in ("BLIS", "MKL")) + " |")
    print("|---|---|---|---:|" + "---:|" * 5)
    for layer in args.layers.split(","):
        for product, operands in products(*LAYERS[layer], rng).items():
            A, B, C, trans_a, trans_b = operands
            m, n = C.shape
            k = A.shape[0] if trans_a else A.shape[1]
            expected = (A.T if trans_a else A) @ (B.T if trans_b else B)
            for name in names:
                C.fill(np.nan)
                found[name][0](*operands)
                if not np.allclose(C, expected, rtol=1e-3, atol=1e-3 * np.sqrt(k)):
                    raise SystemExit(f"{name} computed {product} wrongly")
            for threads in map(int, args.threads.split(",")):
                # the blis wheel is built without threads: it runs only on one
                rates = {name: [] for name in names if threads == 1 or name != "BLIS"}
                for _ in range(args.rounds):
                    for name in rates:
                        gemm, set_threads = found[name]
                        rates[name].append(rate(gemm, operands, 2 * m * k * n, threads,
                                                set_threads))
                cells = [f"{statistics.median(rates[name]):.1f}" if name in rates else "-"
                         for name in ("OpenBLAS", "BLIS", "MKL")]
                ratios = [f"{statistics.median(a / b for a, b in zip(rates[name], rates['OpenBLAS'])):.2f}x"
                          if name in rates else "-" for name in ("BLIS", "MKL")]
                print(f"| {layer} | {product} | {m}x{k}x{n} | {threads} | "
                      + " | ".join(cells + ratios) + " |", flush=True)
    if not others:
        print("\nNo BLAS beside OpenBLAS found: pip install blis mkl")


if __name__ == "__main__":
    main()
