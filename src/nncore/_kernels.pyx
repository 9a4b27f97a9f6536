# cython: language_level=3
"""Typed kernels for nncore's hot loops. Nothing here validates: nncore.ops does, first.

The code has three levels, and each level only calls the one below it:

1. ``cdef inline ... noexcept nogil`` helpers for one value or one row: the activations and
   their derivatives, a fast exponential, the softmax of one row.
2. Array loops over raw pointers and sizes (``_linear_forward``, ``_residual_backward``, ...).
   They write into caller-provided buffers, allocate nothing and never hold the GIL, so a
   fused training step written in Cython can call them directly. Every matrix product goes
   through ``_gemm``, the only place that calls BLAS.
3. ``def`` functions taking typed memoryviews (``const`` for inputs, so read-only arrays work).
   They turn views into pointers and release the GIL. The caller (nncore.ops) has already
   checked every shape, dtype and contiguity: a kernel never sees an unchecked shape.

Arrays are row-major ``(n_samples, n_features)``; a weight ``W`` is ``(n_out, n_in)`` and a
layer computes ``A = act(X @ W.T + b)``. One fused type serves float32 and float64; sums
(softmax denominators, losses, bias gradients) are accumulated in double for both.
"""

from libc.math cimport exp as libm_exp, log, tanh as libm_tanh, fabs
from scipy.linalg.cython_blas cimport sgemm, dgemm

ctypedef fused floating:
    float
    double

# Activation codes, shared with nncore.ops (ACTIVATION_CODES there).
cdef enum:
    IDENTITY = 0
    TANH = 1
    RELU = 2
    SIGMOID = 3

# Column block for the double accumulators of bias gradients (kept on the stack).
cdef enum:
    COLUMN_BLOCK = 256


# ============================================================================================
# Level 1: one value, one row
# ============================================================================================

# The float32 exponential and tanh are written in C so they can be forced inline: GCC's
# inliner otherwise judges them "cold" inside the activation loops, and a loop that calls a
# function is not vectorised. Everything else is Cython.
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #include <math.h>
    #if defined(__GNUC__)
    #define NNCORE_ALWAYS_INLINE static inline __attribute__((always_inline))
    #else
    #define NNCORE_ALWAYS_INLINE static inline
    #endif

    /* exp(x) to about 1e-10 relative error (plenty for float32 results), branch-free so
       that loops calling it vectorise.  x = k ln2 + r with |r| <= ln2/2; exp(r) by its
       Taylor series to degree 9 (truncation error < 3e-11); 2^k built in the exponent bits.
       x is clamped to [-708, 709] so 2^k stays a normal double (exp(709) ~ 8e307); NaN
       fails both comparisons and propagates through r. */
    NNCORE_ALWAYS_INLINE double nncore_exp_f32(double x) {
        x = x < -708.0 ? -708.0 : x;
        x = x > 709.0 ? 709.0 : x;
        /* adding 1.5 * 2^52 rounds to an integer k held in the low mantissa bits */
        double shifted = x * 1.4426950408889634 + 6755399441055744.0;
        double k = shifted - 6755399441055744.0;
        /* ln 2 split in two so that k times the high part is exact */
        double r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10;
        double p = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24
                   + r * (1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040
                   + r * (1.0 / 40320 + r * (1.0 / 362880)))))))));
        uint64_t bits;
        memcpy(&bits, &shifted, sizeof bits);
        /* the bits of 1.5 * 2^52 end in 52 zeros after the leading ones of 0x4338...;
           shifting left by 52 keeps (k + 1023) mod 2^12: the biased exponent of 2^k */
        bits = (bits + 1023) << 52;
        double scale;
        memcpy(&scale, &bits, sizeof scale);
        return p * scale;
    }

    /* tanh = 1 - 2 / (exp(2x) + 1) cancels for small |x|; there the cubic Taylor
       polynomial is accurate to x^5 * 2/15 < 1e-16 relative. */
    NNCORE_ALWAYS_INLINE double nncore_tanh_f32(double x) {
        double series = x * (1.0 - x * x * (1.0 / 3));
        double formula = 1.0 - 2.0 / (nncore_exp_f32(2.0 * x) + 1.0);
        return fabs(x) < 4e-4 ? series : formula;
    }
    """
    double _exp_f32 "nncore_exp_f32" (double x) noexcept nogil
    double _tanh_f32 "nncore_tanh_f32" (double x) noexcept nogil


cdef inline double _exp(floating x) noexcept nogil:
    if floating is float:
        return _exp_f32(x)
    else:
        return libm_exp(x)


cdef inline floating _tanh(floating z) noexcept nogil:
    if floating is float:
        return <float> _tanh_f32(z)
    else:
        return libm_tanh(z)


cdef inline floating _relu(floating z) noexcept nogil:
    # written so that NaN stays NaN (NaN <= 0 is false)
    return 0 if z <= 0 else z


cdef inline floating _sigmoid(floating z) noexcept nogil:
    # exp(-z) overflows to inf for z < -709 and 1 / inf = 0, the right limit
    if floating is float:
        return <float> (1.0 / (1.0 + _exp_f32(-z)))
    else:
        return 1.0 / (1.0 + libm_exp(-z))


cdef inline floating _derivative(floating a, int activation) noexcept nogil:
    """act'(z) from a = act(z): all four activations allow it, so z is never stored."""
    if activation == TANH:
        return 1 - a * a
    if activation == RELU:
        return 1 if a > 0 else 0
    if activation == SIGMOID:
        return a * (1 - a)
    return 1


cdef inline double _softmax_row(const floating* row, floating* out, Py_ssize_t k,
                                double scale) noexcept nogil:
    """out = scale * softmax(row); returns the log-normaliser log(sum(exp(row)))."""
    cdef Py_ssize_t j
    cdef floating row_max = row[0]
    cdef double e, total = 0.0, factor
    for j in range(1, k):
        if row[j] > row_max:
            row_max = row[j]
    # Subtracting the row maximum keeps every exp argument <= 0: no overflow for logits
    # of 1e4, and the largest term is exactly 1, so the sum is >= 1 and its log is safe.
    for j in range(k):
        e = _exp(row[j] - row_max)
        out[j] = <floating> e
        total += e
    factor = scale / total
    for j in range(k):
        out[j] = <floating> (out[j] * factor)
    return row_max + log(total)


# ============================================================================================
# Level 2: array loops over pointers; the one BLAS wrapper
# ============================================================================================

cdef void _gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                const floating* A, int lda, const floating* B, int ldb,
                floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major ``C = alpha * op(A) @ op(B) + beta * C`` with C ``(m, n)``, op(A) ``(m, k)``.

    ``ld*`` are the row strides (in elements) of the arrays as stored. BLAS is column-major:
    a row-major C is a column-major C^T = op(B)^T op(A)^T, so B goes first, with the same
    transpose flags.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef Py_ssize_t i, size
    if m == 0 or n == 0:
        return
    if k == 0:  # an empty sum: C = beta * C (BLAS would read the empty operands' strides)
        size = <Py_ssize_t> m * n
        for i in range(size):
            C[i] = 0 if beta == 0 else beta * C[i]
        return
    if lda < 1: lda = 1
    if ldb < 1: ldb = 1
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> B, &ldb, <float*> A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> B, &ldb, <double*> A, &lda,
              &beta, C, &ldc)


cdef void _bias_activation(floating* Z, const floating* b, Py_ssize_t n, Py_ssize_t n_out,
                           int activation) noexcept nogil:
    """Z[i, j] = act(Z[i, j] + b[j]) in one pass. One loop per activation so each inner
    loop is branch-free and the compiler can vectorise it."""
    cdef Py_ssize_t i, j
    cdef floating* row
    for i in range(n):
        row = Z + i * n_out
        if activation == TANH:
            for j in range(n_out):
                row[j] = _tanh(row[j] + b[j])
        elif activation == RELU:
            for j in range(n_out):
                row[j] = _relu(row[j] + b[j])
        elif activation == SIGMOID:
            for j in range(n_out):
                row[j] = _sigmoid(row[j] + b[j])
        else:
            for j in range(n_out):
                row[j] = row[j] + b[j]


cdef void _times_derivative(const floating* G, const floating* A, const floating* shift,
                            floating* out, Py_ssize_t n, Py_ssize_t m,
                            int activation) noexcept nogil:
    """out[i, j] = (G[i, j] + shift[j]) * act'(A)[i, j]; ``shift`` may be NULL; out may be G.

    Used by every backward pass (G = dA, no shift) and every JVP (G = the linear change of Z,
    shift = the change of the bias).
    """
    cdef Py_ssize_t i, j
    cdef const floating* g_row
    cdef const floating* a_row
    cdef floating* o_row
    for i in range(n):
        g_row = G + i * m
        a_row = A + i * m
        o_row = out + i * m
        if shift == NULL:
            if activation == TANH:
                for j in range(m):
                    o_row[j] = g_row[j] * _derivative(a_row[j], TANH)
            elif activation == RELU:
                for j in range(m):
                    o_row[j] = g_row[j] * _derivative(a_row[j], RELU)
            elif activation == SIGMOID:
                for j in range(m):
                    o_row[j] = g_row[j] * _derivative(a_row[j], SIGMOID)
            else:
                for j in range(m):
                    o_row[j] = g_row[j]
        else:
            if activation == TANH:
                for j in range(m):
                    o_row[j] = (g_row[j] + shift[j]) * _derivative(a_row[j], TANH)
            elif activation == RELU:
                for j in range(m):
                    o_row[j] = (g_row[j] + shift[j]) * _derivative(a_row[j], RELU)
            elif activation == SIGMOID:
                for j in range(m):
                    o_row[j] = (g_row[j] + shift[j]) * _derivative(a_row[j], SIGMOID)
            else:
                for j in range(m):
                    o_row[j] = g_row[j] + shift[j]


cdef void _column_sums(const floating* G, floating* sums, Py_ssize_t n,
                       Py_ssize_t m) noexcept nogil:
    """sums[j] = sum_i G[i, j], accumulated in double in stack blocks of columns."""
    cdef double acc[COLUMN_BLOCK]
    cdef Py_ssize_t i, j, start = 0, width
    while start < m:
        width = min(<Py_ssize_t> COLUMN_BLOCK, m - start)
        for j in range(width):
            acc[j] = 0.0
        for i in range(n):
            for j in range(width):
                acc[j] += G[i * m + start + j]
        for j in range(width):
            sums[start + j] = <floating> acc[j]
        start += width


cdef void _copy(const floating* src, floating* dst, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        dst[i] = src[i]


cdef void _linear_forward(const floating* X, const floating* W, const floating* b,
                          floating* A, int n, int n_in, int n_out,
                          int activation) noexcept nogil:
    """A (n, n_out) = act(X (n, n_in) @ W.T + b)."""
    _gemm(False, True, n, n_out, n_in, 1, X, n_in, W, n_in, 0, A, n_out)
    _bias_activation(A, b, n, n_out, activation)


cdef void _linear_backward(const floating* dA, const floating* X, const floating* W,
                           const floating* A, floating* dZ, floating* dX, floating* dW,
                           floating* db, int n, int n_in, int n_out, int activation
                           ) noexcept nogil:
    """dZ = dA * act'(A); dW = dZ^T X; db = column sums of dZ; dX = dZ W (skipped if NULL).

    dZ is scratch of shape (n, n_out); for the identity it is not touched (dZ is dA).
    """
    if activation == IDENTITY:
        dZ = <floating*> dA
    else:
        _times_derivative(dA, A, <const floating*> NULL, dZ, n, n_out, activation)
    _column_sums(dZ, db, n, n_out)
    _gemm(True, False, n_out, n_in, n, 1, dZ, n_out, X, n_in, 0, dW, n_in)
    if dX != NULL:
        _gemm(False, False, n, n_in, n_out, 1, dZ, n_out, W, n_in, 0, dX, n_in)


cdef void _linear_jvp(const floating* X, const floating* W, const floating* A,
                      const floating* dX, const floating* dW, const floating* db,
                      floating* dA, int n, int n_in, int n_out, int activation) noexcept nogil:
    """dA = act'(A) * (dX W^T + X dW^T + db)."""
    _gemm(False, True, n, n_out, n_in, 1, dX, n_in, W, n_in, 0, dA, n_out)
    _gemm(False, True, n, n_out, n_in, 1, X, n_in, dW, n_in, 1, dA, n_out)
    _times_derivative(dA, A, db, dA, n, n_out, activation)


cdef void _residual_forward(const floating* X, const floating* W1, const floating* b1,
                            const floating* W2, floating* H, floating* Y, int n, int width,
                            int hidden, int activation) noexcept nogil:
    """H (n, hidden) = act(X W1^T + b1); Y (n, width) = X + H W2^T."""
    _linear_forward(X, W1, b1, H, n, width, hidden, activation)
    _copy(X, Y, <Py_ssize_t> n * width)
    _gemm(False, True, n, width, hidden, 1, H, hidden, W2, hidden, 1, Y, width)


cdef void _residual_backward(const floating* dY, const floating* X, const floating* W1,
                             const floating* W2, const floating* H, floating* dZ,
                             floating* dX, floating* dW1, floating* db1, floating* dW2,
                             int n, int width, int hidden, int activation) noexcept nogil:
    """Gradients of the block; dZ is scratch of shape (n, hidden); dX skipped if NULL."""
    _gemm(False, False, n, hidden, width, 1, dY, width, W2, hidden, 0, dZ, hidden)
    _gemm(True, False, width, hidden, n, 1, dY, width, H, hidden, 0, dW2, hidden)
    _times_derivative(dZ, H, <const floating*> NULL, dZ, n, hidden, activation)
    _column_sums(dZ, db1, n, hidden)
    _gemm(True, False, hidden, width, n, 1, dZ, hidden, X, width, 0, dW1, width)
    if dX != NULL:
        _copy(dY, dX, <Py_ssize_t> n * width)
        _gemm(False, False, n, width, hidden, 1, dZ, hidden, W1, width, 1, dX, width)


cdef void _residual_jvp(const floating* X, const floating* W1, const floating* W2,
                        const floating* H, const floating* dX, const floating* dW1,
                        const floating* db1, const floating* dW2, floating* dH,
                        floating* dY, int n, int width, int hidden,
                        int activation) noexcept nogil:
    """dY = dX + dH W2^T + H dW2^T with dH = act'(H) * (dX W1^T + X dW1^T + db1)."""
    _linear_jvp(X, W1, H, dX, dW1, db1, dH, n, width, hidden, activation)
    _copy(dX, dY, <Py_ssize_t> n * width)
    _gemm(False, True, n, width, hidden, 1, dH, hidden, W2, hidden, 1, dY, width)
    _gemm(False, True, n, width, hidden, 1, H, hidden, dW2, hidden, 1, dY, width)


cdef Py_ssize_t _softmax_cross_entropy(const floating* logits, const Py_ssize_t* labels,
                                       floating* dlogits, Py_ssize_t n, Py_ssize_t k,
                                       double* loss) noexcept nogil:
    """Mean cross-entropy and its gradient (softmax - onehot) / n, one row at a time.

    Returns -1, or the first row whose label is outside [0, k) (nothing is read at a bad
    label: the check comes first).
    """
    cdef Py_ssize_t i, label
    cdef double total = 0.0, inv_n = 1.0 / n
    for i in range(n):
        label = labels[i]
        if label < 0 or label >= k:
            return i
        total += _softmax_row(logits + i * k, dlogits + i * k, k, inv_n) - logits[i * k + label]
        dlogits[i * k + label] = <floating> (dlogits[i * k + label] - inv_n)
    loss[0] = total * inv_n
    return -1


cdef void _sgd_momentum(floating* param, const floating* grad, floating* velocity,
                        Py_ssize_t size, floating lr, floating momentum, bint nesterov,
                        floating weight_decay) noexcept nogil:
    """PyTorch's SGD rule in one pass; see nncore.ops.sgd_momentum_ for the formula."""
    cdef Py_ssize_t i
    cdef floating g, v
    if nesterov:
        for i in range(size):
            g = grad[i] + weight_decay * param[i]
            v = momentum * velocity[i] + g
            velocity[i] = v
            param[i] = param[i] - lr * (g + momentum * v)
    else:
        for i in range(size):
            g = grad[i] + weight_decay * param[i]
            v = momentum * velocity[i] + g
            velocity[i] = v
            param[i] = param[i] - lr * v


# ============================================================================================
# Level 3: Python entry points (shapes already checked by nncore.ops)
# ============================================================================================
# A zero-size view has no element [0, 0] to take the address of; these return NULL for it,
# and every level-2 loop does nothing when a dimension is 0.

cdef inline floating* _p2(floating[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL

cdef inline const floating* _c2(const floating[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL

cdef inline floating* _p1(floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL

cdef inline const floating* _c1(const floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


def softmax(const floating[:, ::1] logits, floating[:, ::1] out):
    cdef Py_ssize_t i, n = logits.shape[0], k = logits.shape[1]
    if k == 0:
        return
    with nogil:
        for i in range(n):
            _softmax_row(&logits[i, 0], &out[i, 0], k, 1.0)


def softmax_cross_entropy(const floating[:, ::1] logits, const Py_ssize_t[::1] labels,
                          floating[:, ::1] out):
    """Returns (loss, bad_row): bad_row is -1, or the first row with an out-of-range label."""
    cdef double loss = 0.0
    cdef Py_ssize_t bad = -1
    if logits.shape[0] == 0:
        return 0.0, -1
    with nogil:
        bad = _softmax_cross_entropy(&logits[0, 0], &labels[0], &out[0, 0],
                                     logits.shape[0], logits.shape[1], &loss)
    return loss, bad


def linear_forward(const floating[:, ::1] X, const floating[:, ::1] W,
                   const floating[::1] b, floating[:, ::1] A, int activation):
    with nogil:
        _linear_forward(_c2(X), _c2(W), _c1(b), _p2(A), X.shape[0], X.shape[1],
                        W.shape[0], activation)


def linear_backward(const floating[:, ::1] dA, const floating[:, ::1] X,
                    const floating[:, ::1] W, const floating[:, ::1] A,
                    floating[:, ::1] dZ, floating[:, ::1] dX, floating[:, ::1] dW,
                    floating[::1] db, int activation):
    with nogil:
        _linear_backward(_c2(dA), _c2(X), _c2(W), _c2(A), _p2(dZ), _p2(dX), _p2(dW), _p1(db),
                         X.shape[0], X.shape[1], W.shape[0], activation)


def linear_jvp(const floating[:, ::1] X, const floating[:, ::1] W,
               const floating[:, ::1] A, const floating[:, ::1] dX,
               const floating[:, ::1] dW, const floating[::1] db,
               floating[:, ::1] out, int activation):
    with nogil:
        _linear_jvp(_c2(X), _c2(W), _c2(A), _c2(dX), _c2(dW), _c1(db), _p2(out),
                    X.shape[0], X.shape[1], W.shape[0], activation)


def residual_forward(const floating[:, ::1] X, const floating[:, ::1] W1,
                     const floating[::1] b1, const floating[:, ::1] W2,
                     floating[:, ::1] H, floating[:, ::1] Y, int activation):
    with nogil:
        _residual_forward(_c2(X), _c2(W1), _c1(b1), _c2(W2), _p2(H), _p2(Y),
                          X.shape[0], X.shape[1], W1.shape[0], activation)


def residual_backward(const floating[:, ::1] dY, const floating[:, ::1] X,
                      const floating[:, ::1] W1, const floating[:, ::1] W2,
                      const floating[:, ::1] H, floating[:, ::1] dZ, floating[:, ::1] dX,
                      floating[:, ::1] dW1, floating[::1] db1, floating[:, ::1] dW2,
                      int activation):
    with nogil:
        _residual_backward(_c2(dY), _c2(X), _c2(W1), _c2(W2), _c2(H), _p2(dZ), _p2(dX),
                           _p2(dW1), _p1(db1), _p2(dW2), X.shape[0], X.shape[1],
                           W1.shape[0], activation)


def residual_jvp(const floating[:, ::1] X, const floating[:, ::1] W1,
                 const floating[:, ::1] W2, const floating[:, ::1] H,
                 const floating[:, ::1] dX, const floating[:, ::1] dW1,
                 const floating[::1] db1, const floating[:, ::1] dW2,
                 floating[:, ::1] dH, floating[:, ::1] out, int activation):
    with nogil:
        _residual_jvp(_c2(X), _c2(W1), _c2(W2), _c2(H), _c2(dX), _c2(dW1), _c1(db1),
                      _c2(dW2), _p2(dH), _p2(out), X.shape[0], X.shape[1], W1.shape[0],
                      activation)


def sgd_momentum(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
                 double lr, double momentum, bint nesterov, double weight_decay):
    with nogil:
        _sgd_momentum(_p1(param), _c1(grad), _p1(velocity), param.shape[0], <floating> lr,
                      <floating> momentum, nesterov, <floating> weight_decay)


def least_squares(const floating[:, ::1] A, const floating[::1] x, const floating[::1] b,
                  floating[::1] residual, floating[::1] grad):
    """loss = ||A x - b||^2 / (2 m); grad = A^T (A x - b) / m. residual is (m,) scratch."""
    cdef Py_ssize_t i, m = A.shape[0]
    cdef int n = A.shape[1]
    cdef double total = 0.0
    with nogil:
        _gemm(False, False, <int> m, 1, n, 1, _c2(A), n, _c1(x), 1, 0, _p1(residual), 1)
        for i in range(m):
            residual[i] = residual[i] - b[i]
            total += <double> residual[i] * residual[i]
        _gemm(True, False, n, 1, <int> m, <floating> (1.0 / m), _c2(A), n, _p1(residual), 1,
              0, _p1(grad), 1)
    return total / (2 * m)
