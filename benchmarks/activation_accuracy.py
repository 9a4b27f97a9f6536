"""Measure the float32 activation helpers of ``src/nncore/_simd.h`` against float64.

    python benchmarks/activation_accuracy.py          # the error table
    python benchmarks/activation_accuracy.py --fit tanh   # refit tanh's (gelu: GELU's tail,
                                                          # exp, log1p) approximation

The numbers quoted in the comments of ``_simd.h`` and in ``docs/extending.md`` come from
here. The helpers are compiled as they are into a small shared library (with ``gcc``, the
flags of ``setup.py`` and the same per-CPU clones), once as built and once without fused
multiply-adds (the baseline clone's arithmetic), and evaluated on float32 grids: the
table gives the worse of the two. The
reference is float64 NumPy/SciPy at the same float32 inputs, and every input range ends
with a NaN, which must come out NaN. An error in ulps is the absolute error over the
float32 spacing at the float64 value; relative errors are taken where that value is at
least 1e-36 in magnitude (below it, in the far tails, the helpers flush to 0 or stop at
nncore_expf's floor of 1.6e-38, and only the absolute error says something).
"""

import argparse
import ctypes
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from scipy.special import erf, erfc, erfcx, expit

HEADER_DIR = pathlib.Path(__file__).resolve().parent.parent / "src" / "nncore"
#: Relative errors are taken where the float64 value is at least this large in magnitude.
SMALLEST = 1e-36

SHIM = r"""
#include "_simd.h"

static inline float tail(float z) { float E; return nncore_gaussian_tailf(z, &E); }
static inline float erf_float(float x) {
    float e = 1.0f - 2.0f * tail(1.41421356f * x);
    return x < 0.0f ? -e : e;
}

#define EXPORT(name, f)                                                        \
    NNCORE_CLONES static void name##_loop(const float *z, float *a, ptrdiff_t n) { \
        for (ptrdiff_t i = 0; i < n; i++) a[i] = f(z[i]);                          \
    }                                                                              \
    void measure_##name(const float *z, float *a, ptrdiff_t n) { name##_loop(z, a, n); }

EXPORT(exp, nncore_expf)
EXPORT(expm1, nncore_expm1f)
EXPORT(log1p_unit, nncore_log1p_unitf)
EXPORT(tanh, nncore_tanhf)
EXPORT(leaky_relu, nncore_leaky_reluf)
EXPORT(elu, nncore_eluf)
EXPORT(softplus, nncore_softplusf)
EXPORT(softplus_derivative, nncore_softplus_derivativef)
EXPORT(silu, nncore_siluf)
EXPORT(silu_derivative, nncore_silu_derivativef)
EXPORT(gelu, nncore_geluf)
EXPORT(gelu_derivative, nncore_gelu_derivativef)
EXPORT(gaussian_tail, tail)
EXPORT(erf, erf_float)
"""


def load_helpers(workdir, contract):
    """The shim as a shared library. ``contract``: GCC's default, which lets the AVX2 and
    AVX-512 clones fuse a multiply and an add into one FMA (one rounding instead of two);
    without it the arithmetic is the baseline clone's (no FMA)."""
    flags = ["-O3", "-fno-trapping-math", f"-ffp-contract={'fast' if contract else 'off'}"]
    name = "shim_fma" if contract else "shim"
    source = pathlib.Path(workdir) / f"{name}.c"
    library = pathlib.Path(workdir) / f"{name}.so"
    source.write_text(SHIM)
    subprocess.run(["gcc", *flags, "-shared", "-fPIC", f"-I{HEADER_DIR}", str(source), "-o",
                    str(library)], check=True)
    return ctypes.CDLL(str(library))


def evaluate(library, name, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pointer = ctypes.POINTER(ctypes.c_float)
    getattr(library, "measure_" + name)(x.ctypes.data_as(pointer), out.ctypes.data_as(pointer),
                           ctypes.c_ssize_t(x.size))
    return out


def gelu(z):
    return 0.5 * z * erfc(-z * np.sqrt(0.5))


def gelu_derivative(z):
    return 0.5 * erfc(-z * np.sqrt(0.5)) + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def silu_derivative(z):
    s = expit(z)
    return s * (1 + z * expit(-z))


#: name in the shim -> (float64 function, the input ranges measured, whether relative errors
#: mean anything: not for a function that crosses 0 inside the range, where they are all
#: cancellation (the derivatives of SiLU and GELU; erf, taken as 1 - 2 Q))
WIDE = ((-10.0, 10.0, 10_000_000), (-100.0, 100.0, 1_000_000))
FUNCTIONS = {
    "tanh": (np.tanh, WIDE, True),
    "exp": (np.exp, ((-10.0, 10.0, 10_000_000), (-87.0, 88.0, 1_000_000)), True),
    "expm1": (np.expm1, ((-10.0, 10.0, 10_000_000), (-100.0, 88.0, 1_000_000)), True),
    "log1p_unit": (np.log1p, ((0.0, 1.0, 10_000_000),), True),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), WIDE, True),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))), WIDE, True),
    "softplus": (lambda z: np.where(z > 20, z, np.logaddexp(0, z)), WIDE, True),
    "softplus_derivative": (lambda a: -np.expm1(-a), ((0.0, 10.0, 10_000_000),
                                                       (0.0, 100.0, 1_000_000)), True),
    "silu": (lambda z: z * expit(z), WIDE, True),
    "silu_derivative": (silu_derivative, WIDE, False),
    "gelu": (gelu, WIDE, True),
    "gelu_derivative": (gelu_derivative, WIDE, False),
    "gaussian_tail": (lambda z: 0.5 * erfc(np.abs(z) * np.sqrt(0.5)), WIDE, True),
    "erf": (erf, ((-10.0, 10.0, 10_000_000),), False),
}


def errors(actual, expected):
    """(max absolute error, max relative error and max error in float32 ulps of the
    expected value, both where |expected| >= SMALLEST)."""
    actual = actual.astype(np.float64)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    ok = ~np.isnan(expected)
    error = np.abs(actual - expected)[ok]
    expected = expected[ok]
    large = np.abs(expected) >= SMALLEST
    relative = error[large] / np.abs(expected[large])
    ulp = np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64)
    return error.max(), relative.max(initial=0.0), (error / ulp)[large].max(initial=0.0)


def table(libraries):
    print("| helper | range | points | max abs error | max rel error | max ulps |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (reference, ranges, relative_meaningful) in FUNCTIONS.items():
        for low, high, points in ranges:
            x = np.linspace(low, high, points, dtype=np.float32)
            x = np.concatenate([x, np.array([np.nan], dtype=np.float32)])
            with np.errstate(invalid="ignore"):  # the NaN
                expected = reference(x.astype(np.float64))
            absolute, relative, ulps = np.max(
                [errors(evaluate(library, name, x), expected) for library in libraries],
                axis=0)
            relative = f"{relative:.2e} | {ulps:.1f}" if relative_meaningful else "- | -"
            print(f"| {name} | [{low:g}, {high:g}] | {points:.0e} | {absolute:.2e} "
                  f"| {relative} |")


#: The fits of _simd.h: name -> (f(a), the interval [a_min, a_max], the degrees of N and D,
#: coefficients of N fixed in advance). GELU's Gaussian tail: erfc(a / sqrt 2) / 2 =
#: exp(-a^2 / 2) N(a) / D(a) for 0 <= a <= 13.2. tanh: tanh(x) = x N(x^2) / D(x^2) for
#: |x| <= 9 (tanh(9) rounds to 1 in float32). exp: the polynomial of nncore_exp_reduced,
#: exp(r) for |r| <= ln2/2 and a little more (the range reduction's rounding), N(0) = 1 so
#: that exp(0) is exactly 1. log1p: the polynomial P of nncore_log1p_unitf,
#: atanh(s) = s P(s^2) for 0 <= s <= 1/3, P(0) = 1.
FITS = {
    "gelu": (lambda a: 0.5 * erfcx(a * np.sqrt(0.5)), (0.0, 13.2), (4, 5), {}),
    "tanh": (lambda s: np.tanh(np.sqrt(s)) / np.where(s > 0, np.sqrt(s), 1.0)
             + (s == 0), (0.0, 81.0), (4, 4), {}),
    "exp": (np.exp, (-0.3467, 0.3467), (6, 0), {0: 1.0}),
    "log1p": (lambda u: np.arctanh(np.sqrt(u)) / np.sqrt(np.where(u > 0, u, 1.0)) + (u == 0),
              (0.0, 1.0 / 9), (4, 0), {0: 1.0}),
}


def fit_rational(f, interval, degrees, fixed, nodes=8000):
    """A rational function N(a) / D(a) ~ f(a) for a in ``interval``, D(0) = 1, of the given
    degrees of N and D (a polynomial for D of degree 0); ``fixed`` maps the index of a
    coefficient of N to its value.

    Minimises the largest relative error: linearised least squares (N - f D) / (f D_old)
    iterated, with Lawson's weights (growing where the error is largest) after 20
    iterations; then the coefficients are rounded to float32 one at a time, the others
    refitted after each."""
    m, n = degrees
    low, high = interval
    a = low + (high - low) * (0.5 - 0.5 * np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes))
    a = np.concatenate([a, [low, high]])
    f = f(a)
    powers = np.vander(a, max(m, n) + 1, increasing=True)
    # unknowns N_0..N_m, D_1..D_n: the columns of N - f D
    columns = np.hstack([powers[:, :m + 1], -f[:, None] * powers[:, 1:n + 1]])
    fixed = dict(fixed)

    def solve():
        free = [i for i in range(m + 1 + n) if i not in fixed]
        known = sum((value * columns[:, i] for i, value in fixed.items()), np.zeros_like(a))
        weights, previous, best = np.ones_like(a), np.ones_like(a), None
        for iteration in range(300):
            scale = f * previous
            root = np.sqrt(weights)
            solution, *_ = np.linalg.lstsq(columns[:, free] / scale[:, None] * root[:, None],
                                           (f - known) / scale * root, rcond=None)
            x = np.zeros(m + 1 + n)
            x[free] = solution
            for i, value in fixed.items():
                x[i] = value
            numerator = powers[:, :m + 1] @ x[:m + 1]
            previous = powers[:, :n + 1] @ np.concatenate([[1.0], x[m + 1:]])
            error = np.abs(numerator / previous / f - 1)
            if best is None or error.max() < best[0]:
                best = (error.max(), x)
            if iteration >= 20:
                weights = weights * error / np.sum(weights * error)
        return best

    for i in range(m + 1 + n):
        if i not in fixed:
            fixed[i] = float(np.float32(solve()[1][i]))
    error, x = solve()
    print(f"largest relative error {error:.3g} (exact arithmetic, float32 coefficients)")
    print("N, a^0 first:", ", ".join(repr(float(c)) for c in x[:m + 1]))
    print("D, a^0 first: 1.0,", ", ".join(repr(float(c)) for c in x[m + 1:]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", choices=sorted(FITS),
                        help="refit a rational or polynomial approximation of _simd.h")
    args = parser.parse_args(argv)
    if args.fit:
        fit_rational(*FITS[args.fit])
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        table([load_helpers(workdir, contract) for contract in (True, False)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
