"""Each CPU level of the float32 loops of ``_simd.h`` run alone, against the references.

The compiled module carries every loop three times (AVX-512, AVX2, baseline: GCC's
``target_clones``) and the loader runs the one the CPU allows, so the module's own tests
only ever run one of them. Here the header is compiled once per level with
``-DNNCORE_ONE_LEVEL -march=<level>`` (the same source and flags, without clones) into a
small library, and each level's loops are compared with nncore's NumPy references:
the activations (forward with the bias, and the derivative loops), the softmax's exp, the
SGD and Adam updates and their finiteness checks, the bias gradients' column sums and
_gemm's transpose. A level this CPU cannot run is skipped.
Row lengths 1, 15, 16, 17, 63, 64, 65 cover the vector tails of 8 and 16 lanes.
"""

import ctypes
import math
import pathlib
import platform
import shutil
import subprocess

import numpy as np
import pytest

from nncore import activations, reference
from conftest import assert_close

HEADER_DIR = pathlib.Path(__file__).resolve().parent.parent / "src" / "nncore"
#: level -> (gcc -march, the /proc/cpuinfo flags it needs)
LEVELS = {
    "avx512": ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    "avx2": ("x86-64-v3", {"avx2", "fma", "bmi2", "f16c", "movbe"}),
    "baseline": ("x86-64", set()),
}
#: the compile flags of setup.py (optimised build)
FLAGS = ["-O3", "-fno-trapping-math", "-fno-math-errno"]
WIDTHS = (1, 15, 16, 17, 63, 64, 65)
#: Tolerances from the measured accuracy of the helpers (docs/extending.md: at most
#: 7.8 ulp, 4.7e-7 relative, for the activations; 1.6e-7 absolute for GELU's and SiLU's
#: derivatives), so that a loop off by 1e-5 fails (tried by scaling tanh's result).
RELATIVE = dict(rtol=2e-6, scale=1e-30)
DERIVATIVE = dict(rtol=1e-6, scale=1.0)
UPDATE = dict(rtol=1e-6)

# The loops are reached as the kernels reach them, through the dispatchers by activation code
# (nncore.activations' codes): a loop filed under the wrong code fails too.
BIAS = ("identity", "tanh", "relu", "sigmoid", "leaky_relu", "elu", "softplus")
BIAS_KEEP = ("gelu", "silu")
TIMES_DERIVATIVE = ("tanh", "sigmoid", "relu", "leaky_relu", "elu", "softplus", "gelu", "silu")

SHIM = "#include \"_simd.h\"\n" + "\n".join(
    ["int bias(int code, float *z, const float *b, ptrdiff_t n, ptrdiff_t m) "
     "{ return nncore_bias_activation_f32(code, z, b, n, m); }",
     "int bias_keep(int code, float *z, const float *b, float *out, ptrdiff_t n, ptrdiff_t m) "
     "{ return nncore_bias_keep_activation_f32(code, z, b, out, n, m); }",
     "int times(int code, const float *g, const float *s, const float *shift, float *out, "
     "ptrdiff_t n, ptrdiff_t m) "
     "{ return nncore_times_derivative_f32(code, g, s, shift, out, n, m); }"]
    + ["void exp_inplace(float *x, ptrdiff_t n) { nncore_exp_inplace_f32(x, n); }",
       "int sgd_finite(const float *p, const float *g, const float *v, ptrdiff_t n, float lr,"
       " float mu, int nesterov, float wd) "
       "{ return nncore_sgd_update_is_finite_f32(p, g, v, n, lr, mu, nesterov, wd); }",
       "void sgd(float *p, const float *g, float *v, ptrdiff_t n, float lr, float mu, "
       "int nesterov, float wd) { nncore_sgd_momentum_f32(p, g, v, n, lr, mu, nesterov, wd); }",
       "int adam_finite(const float *p, const float *g, const float *m, const float *v, "
       "ptrdiff_t n, float decay, float wd, float w, float b2, float omb2, float bc2, "
       "float eps, float nss) { return nncore_adam_update_is_finite_f32(p, g, m, v, n, decay,"
       " wd, w, b2, omb2, bc2, eps, nss); }",
       "void adam(float *p, const float *g, float *m, float *v, ptrdiff_t n, float decay, "
       "float wd, float w, float b2, float omb2, float bc2, float eps, float nss) "
       "{ nncore_adam_f32(p, g, m, v, n, decay, wd, w, b2, omb2, bc2, eps, nss); }",
       "void column_sums(const float *g, float *sums, ptrdiff_t n, ptrdiff_t m, ptrdiff_t ld) "
       "{ nncore_column_sums_f32(g, sums, n, m, ld); }",
       "int transpose_tile(void) { return NNCORE_TRANSPOSE_TILE; }",
       "void transpose(const float *src, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t ld, "
       "float *dst) { nncore_transpose_f32(src, rows, cols, ld, dst); }"]) + "\n"


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@pytest.fixture(scope="module", params=list(LEVELS))
def level(request, tmp_path_factory):
    """The shim compiled for one level, as a ctypes library."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the clones exist on x86-64 Linux only")
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc (the compiler that builds the kernels)")
    march, needed = LEVELS[request.param]
    missing = needed - _cpu_flags()
    if missing:
        pytest.skip(f"this CPU cannot run {request.param} code (lacks {sorted(missing)})")
    folder = tmp_path_factory.mktemp(request.param)
    source, library = folder / "shim.c", folder / "shim.so"
    source.write_text(SHIM)
    subprocess.run(["gcc", *FLAGS, f"-march={march}", "-DNNCORE_ONE_LEVEL", "-shared",
                    "-fPIC", f"-I{HEADER_DIR}", str(source), "-o", str(library)], check=True)
    return ctypes.CDLL(str(library))


def _p(array):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _size(n):
    return ctypes.c_ssize_t(n)


def _code(name):
    """The activation code of ``name`` (an int passes through: a code no activation has)."""
    return name if isinstance(name, int) else activations.ACTIVATIONS[name].code


def _inputs(rng, n, m, scale=6.0):
    z = rng.uniform(-scale, scale, (n, m)).astype(np.float32)
    z.flat[::7] = 0.0  # exact zeros, where several activations switch formula
    return z, rng.uniform(-1, 1, m).astype(np.float32)


@pytest.mark.parametrize("name", BIAS)
@pytest.mark.parametrize("m", WIDTHS)
def test_bias_activation_loops(level, name, m):
    z, b = _inputs(np.random.default_rng(m), 9, m)
    expected = activations.ACTIVATIONS[name].function((z + b).astype(np.float64))
    assert level.bias(_code(name), _p(z), _p(b), _size(9), _size(m)) == 1
    assert_close(z, expected, np.float32, name=name, **RELATIVE)


def test_tanh_stays_within_one(level):
    """Near its clamp at +-9 the rational tanh rounded to 1.0000002 before its result was
    held to [-1, 1]; the derivative 1 - a^2 taken from the output then turned negative."""
    z = np.linspace(-12, 12, 240_001, dtype=np.float32).reshape(1, -1)
    b = np.zeros(z.shape[1], dtype=np.float32)
    level.bias(_code("tanh"), _p(z), _p(b), _size(1), _size(z.shape[1]))
    assert np.abs(z).max() <= 1.0


@pytest.mark.parametrize("name", BIAS_KEEP)
@pytest.mark.parametrize("m", WIDTHS)
def test_bias_keep_activation_loops(level, name, m):
    z, b = _inputs(np.random.default_rng(m), 9, m)
    pre = (z + b).astype(np.float64)
    out = np.empty_like(z)
    assert level.bias_keep(_code(name), _p(z), _p(b), _p(out), _size(9), _size(m)) == 1
    assert_close(z, pre, np.float32, name=f"{name}: kept pre-activation", **RELATIVE)
    assert_close(out, activations.ACTIVATIONS[name].function(pre), np.float32, name=name,
                 **RELATIVE)


@pytest.mark.parametrize("name", TIMES_DERIVATIVE)
@pytest.mark.parametrize("m", WIDTHS)
@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("in_place", [False, True], ids=["out", "out=g"])
def test_times_derivative_loops(level, name, m, shifted, in_place):
    rng = np.random.default_rng(m)
    entry = activations.ACTIVATIONS[name]
    z, shift = _inputs(rng, 9, m)
    g = rng.uniform(-1, 1, (9, m)).astype(np.float32)
    # the loop takes what the forward pass saved: z (gelu, silu) or the output (the others)
    saved = (z if entry.keeps_input
             else entry.function(z.astype(np.float64)).astype(np.float32))
    expected = ((g + shift) if shifted else g).astype(np.float64) * entry.derivative(
        saved.astype(np.float64))
    out = g if in_place else np.empty_like(g)  # the backward passes write over dA
    assert level.times(_code(name), _p(g), _p(saved), _p(shift) if shifted else None,
                       _p(out), _size(9), _size(m)) == 1
    assert_close(out, expected, np.float32, name=f"{name}'", **DERIVATIVE)


def test_tanh_derivative_keeps_its_digits_near_one(level):
    """tanh' from the output near |a| = 1, where 1 - a*a cancels: written so, the baseline
    clone was 8.6e-5 relative off and the fused clones 6e-8 (each level rounding its own
    way); (1 - a)(1 + a) is within an ulp at every level."""
    a = (1 - np.arange(1, 4001, dtype=np.float32) * np.float32(2 ** -24)).reshape(1, -1)
    a = np.concatenate([a, -a], axis=1)
    g = np.ones_like(a)
    out = np.empty_like(a)
    level.times(_code("tanh"), _p(g), _p(a), None, _p(out), _size(1), _size(a.shape[1]))
    expected = 1 - a.astype(np.float64) ** 2
    assert_close(out, expected, np.float32, name="tanh'", rtol=2e-7, scale=1e-30)


def test_codes_without_a_loop_are_left_to_the_caller(level):
    """Each dispatcher returns 0, touching nothing, for the codes it has no loop for (the
    kernels then run their own loop): the keeping activations in place, the others with Z
    kept, the identity's derivative, and an unknown code."""
    z = np.ones((2, 3), dtype=np.float32)
    b = np.ones(3, dtype=np.float32)
    out = np.full((2, 3), 7.0, dtype=np.float32)
    for name in BIAS_KEEP + (99,):
        assert level.bias(_code(name), _p(z), _p(b), _size(2), _size(3)) == 0
    for name in BIAS + (99,):
        assert level.bias_keep(_code(name), _p(z), _p(b), _p(out), _size(2), _size(3)) == 0
    for name in ("identity", 99):
        assert level.times(_code(name), _p(z), _p(z), None, _p(out), _size(2), _size(3)) == 0
    assert (z == 1).all() and (out == 7).all()


@pytest.mark.parametrize("m", WIDTHS)
def test_exp_loop(level, m):
    x = np.random.default_rng(m).uniform(-80, 80, m).astype(np.float32)
    expected = np.exp(x.astype(np.float64))
    level.exp_inplace(_p(x), _size(m))
    assert_close(x, expected, np.float32, name="exp", **RELATIVE)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("size", WIDTHS + (1000,))
def test_sgd_loops(level, nesterov, size):
    rng = np.random.default_rng(size)
    param, grad, velocity = (rng.standard_normal(size).astype(np.float32) for _ in range(3))
    expected = param.copy(), velocity.copy()
    reference.sgd_momentum_(expected[0], grad, expected[1], 0.05, 0.9, nesterov, 0.01)
    settings = (ctypes.c_float(0.05), ctypes.c_float(0.9), int(nesterov), ctypes.c_float(0.01))
    assert level.sgd_finite(_p(param), _p(grad), _p(velocity), _size(size), *settings) == 1
    level.sgd(_p(param), _p(grad), _p(velocity), _size(size), *settings)
    assert_close(param, expected[0], np.float32, name="param", **UPDATE)
    assert_close(velocity, expected[1], np.float32, name="velocity", **UPDATE)
    # finite inputs whose update overflows (0.9 * 3e38 + 3e38): the check says so
    grad[size // 2] = velocity[size // 2] = np.float32(3e38)
    assert level.sgd_finite(_p(param), _p(grad), _p(velocity), _size(size), *settings) == 0


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("size", WIDTHS + (1000,))
def test_adam_loops(level, decoupled, size):
    rng = np.random.default_rng(size)
    param, grad = (rng.standard_normal(size).astype(np.float32) for _ in range(2))
    exp_avg = rng.standard_normal(size).astype(np.float32) * 0.1
    exp_avg_sq = rng.random(size).astype(np.float32) * 0.01
    step, lr, beta1, beta2, eps, weight_decay = 3, 1e-3, 0.9, 0.999, 1e-8, 0.01
    expected = [a.copy() for a in (param, exp_avg, exp_avg_sq)]
    reference.adam_(expected[0], grad, expected[1], expected[2], step, lr, beta1, beta2, eps,
                    weight_decay, decoupled)
    # the constants _adam_scalars in _kernels.pyx computes for this update
    scalars = [1 - lr * weight_decay if decoupled else 1.0, 0.0 if decoupled else weight_decay,
               1 - beta1, beta2, 1 - beta2, math.sqrt(1 - beta2 ** step), eps,
               -(lr / (1 - beta1 ** step))]
    scalars = [ctypes.c_float(s) for s in scalars]
    arrays = (_p(param), _p(grad), _p(exp_avg), _p(exp_avg_sq), _size(size))
    assert level.adam_finite(*arrays, *scalars) == 1
    level.adam(*arrays, *scalars)
    for actual, wanted, name in zip((param, exp_avg, exp_avg_sq), expected,
                                    ("param", "exp_avg", "exp_avg_sq")):
        assert_close(actual, wanted, np.float32, name=name, **UPDATE)
    grad[0] = np.float32(np.inf)
    assert level.adam_finite(*arrays, *scalars) == 0


@pytest.mark.parametrize("rows", [1, 3, 4, 5, 8, 15, 16, 17, 64, 65])
@pytest.mark.parametrize("cols", [1, 2, 4, 7, 16, 17, 63, 64])
def test_transpose(level, rows, cols):
    """B^T for _gemm's small transposed products: exact, in 4x4 tiles and element by element
    at the edges, from a source whose rows are longer than the part read."""
    source = np.random.default_rng(rows * 100 + cols).standard_normal(
        (rows, cols + 3)).astype(np.float32)
    out = np.full((cols, rows), np.nan, dtype=np.float32)
    level.transpose(_p(source), _size(rows), _size(cols), _size(cols + 3), _p(out))
    np.testing.assert_array_equal(out, source[:, :cols].T)


def test_the_transpose_uses_its_tiles(level):
    """With GCC (which builds the kernels) the 4x4 tiles must be compiled in: without a
    vector shuffle builtin the transpose falls back to its element-by-element loop, right but
    four times slower, which the exact tests above cannot see."""
    assert level.transpose_tile() == 4


@pytest.mark.parametrize("m", WIDTHS + (255, 256, 257, 513))
@pytest.mark.parametrize("n", [0, 1, 9, 64])
def test_column_sums(level, n, m):
    """The bias gradients: column sums in double, over blocks of 256 columns."""
    g = np.random.default_rng(n * 1000 + m).uniform(-1, 1, (n, m)).astype(np.float32)
    g[:, ::5] *= 1e4  # large and small terms, so a float accumulator would show
    sums = np.full(m, np.nan, dtype=np.float32)
    level.column_sums(_p(g), _p(sums), _size(n), _size(m), _size(m))
    np.testing.assert_array_equal(sums, g.astype(np.float64).sum(axis=0).astype(np.float32))


@pytest.mark.parametrize("n", [1, 9])
def test_column_sums_of_some_columns(level, n):
    """Columns 3..260 of a (n, 300) array (rows 300 apart), as a step's second thread sums
    its share of a bias gradient: the same sums, and nothing outside them written."""
    g = np.random.default_rng(n).uniform(-1, 1, (n, 300)).astype(np.float32)
    sums = np.full(300, np.nan, dtype=np.float32)
    level.column_sums(_p(g[:, 3:]), _p(sums[3:]), _size(n), _size(258), _size(300))
    np.testing.assert_array_equal(sums[3:261],
                                  g[:, 3:261].astype(np.float64).sum(axis=0).astype(np.float32))
    assert np.isnan(sums[:3]).all() and np.isnan(sums[261:]).all()
