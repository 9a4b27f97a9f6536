# cython: language_level=3
"""Typed kernels for nncore's hot loops. nncore.ops checks every shape, dtype and
contiguity before calling here; what is checked here is only what a compiled plan is handed
at each call (run_many's arrays and thread count).

The code has three levels, and each level only calls the one below it:

1. ``cdef inline ... noexcept nogil`` helpers for one value or one row: the activations and
   their derivatives, a fast exponential, the softmax of one row. They are defined in
   ``_kernels.pxd`` (Cython's rule for inline functions of a module with a .pxd), over the
   float32 C helpers of the header ``_simd.h`` (nncore_expf, nncore_tanhf, the other
   activations and the loops compiled once per CPU level).
2. Array loops over raw pointers and sizes: a layer's passes (``_linear_forward``,
   ``_residual_backward``, ...), the losses and the optimizer updates; over them, a whole
   network's passes through a LayerPlan array (``_plan_forward``, ``_plan_backward``) and
   the fused training step (``_train_step``: forward, loss, backward and update), and the
   same step shared by two threads (``_team_step``; they wait for each other at the
   barrier of ``_team.h``). They write into caller-provided buffers, allocate nothing and
   never hold the GIL. Every matrix product goes through ``_gemm``, the only place that
   calls BLAS. The layer loops are declared in ``_kernels.pxd``, with the fused type
   ``floating``, the enums and the LayerPlan and Update structs, so that another Cython
   module can cimport them.
3. Python entry points: ``def`` functions taking typed memoryviews (``const`` for inputs,
   so read-only arrays work), which turn views into pointers and release the GIL; and the
   compiled plans ``Forward`` (predict's forward pass) and ``TrainStep`` (many training
   steps in one call, on one thread or on two: it starts the second for each call).

Arrays are row-major ``(n_samples, n_features)``; a weight ``W`` is ``(n_out, n_in)`` and a
layer computes ``A = act(X @ W.T + b)``. One fused type serves float32 and float64; sums
(softmax denominators, losses, bias gradients) are accumulated in double for both.
"""

from libc.math cimport exp as libm_exp, fabs, log, pow, sqrt
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from numpy import (empty as numpy_empty, zeros as numpy_zeros, intp as numpy_intp,
                   float32 as numpy_float32, float64 as numpy_float64)
from scipy.linalg.cython_blas cimport sgemm, dgemm
from threading import Thread

#: True when built with NNCORE_DEBUG=1 (bounds and wraparound checks on).
DEBUG_BUILD = NNCORE_DEBUG

# The fused type ``floating`` (float32, float64), the activation codes (IDENTITY, TANH, ...:
# ACTIVATION_CODES below), COLUMN_BLOCK and SMALL_TRANSPOSE are declared in _kernels.pxd.

#: Largest B^T (in elements) that _gemm copies to a stack buffer instead of asking BLAS
#: for the transposed product; the tests pick shapes on both sides of it.
SMALL_TRANSPOSE_ELEMENTS = SMALL_TRANSPOSE


# ============================================================================================
# Level 1: one value, one row
# ============================================================================================
# Defined in _kernels.pxd (Cython wants the inline functions of a module with a .pxd there):
# _exp, one function per activation (_tanh, _relu, _sigmoid, _leaky_relu, _elu, _softplus,
# _silu, _gelu), _derivative, _row_max and _normalise_row, over the float32 C helpers of
# _simd.h (nncore_expf, nncore_tanhf, ... and the cloned loops).


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
    cdef char ta, tb
    cdef Py_ssize_t i, j, size
    cdef floating B_transposed[SMALL_TRANSPOSE]
    if m == 0 or n == 0:
        return
    if trans_b and k > 0 and <Py_ssize_t> k * n <= SMALL_TRANSPOSE:
        # B is stored (n, k); write B^T as a (k, n) row-major matrix and multiply plainly
        if floating is float:
            _transpose_f32(B, n, k, ldb, B_transposed)
        else:
            for i in range(n):
                for j in range(k):
                    B_transposed[j * n + i] = B[i * ldb + j]
        B, ldb, trans_b = B_transposed, n, False
    ta = b'T' if trans_a else b'N'
    tb = b'T' if trans_b else b'N'
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
    """Z[i, j] = act(Z[i, j] + b[j]) in one pass: the forward pass of an activation whose
    derivative is a function of its output (the layer keeps only A), and with the identity
    the bias pass of _activation. One loop per activation so each inner loop is branch-free
    and the compiler can vectorise it; float32 uses the cloned C loops of _simd.h (every
    activation that keeps only A, and the identity)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    if floating is float:
        if _bias_activation_f32(activation, Z, b, n, n_out):
            return
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
        elif activation == LEAKY_RELU:
            for j in range(n_out):
                row[j] = _leaky_relu(row[j] + b[j])
        elif activation == ELU:
            for j in range(n_out):
                row[j] = _elu(row[j] + b[j])
        elif activation == SOFTPLUS:
            for j in range(n_out):
                row[j] = _softplus(row[j] + b[j])
        elif activation == GELU:
            for j in range(n_out):
                row[j] = _gelu(row[j] + b[j])
        elif activation == SILU:
            for j in range(n_out):
                row[j] = _silu(row[j] + b[j])
        else:
            for j in range(n_out):
                row[j] = row[j] + b[j]


cdef void _activation(floating* Z, const floating* b, floating* A, Py_ssize_t n,
                      Py_ssize_t n_out, int activation) noexcept nogil:
    """Z[i, j] += b[j] and A[i, j] = act(Z[i, j]), Z kept: the forward pass of an activation
    whose derivative needs Z (the layer keeps Z and A apart). In float32, gelu and silu do
    both in one pass (the cloned C loops of _simd.h); otherwise the bias goes first.
    Activations that only need their output go through _bias_activation, in place."""
    cdef Py_ssize_t i, size = n * n_out
    if floating is float:
        if _bias_keep_activation_f32(activation, Z, b, A, n, n_out):
            return
    _bias_activation(Z, b, n, n_out, IDENTITY)
    if activation == TANH:
        for i in range(size):
            A[i] = _tanh(Z[i])
    elif activation == RELU:
        for i in range(size):
            A[i] = _relu(Z[i])
    elif activation == SIGMOID:
        for i in range(size):
            A[i] = _sigmoid(Z[i])
    elif activation == LEAKY_RELU:
        for i in range(size):
            A[i] = _leaky_relu(Z[i])
    elif activation == ELU:
        for i in range(size):
            A[i] = _elu(Z[i])
    elif activation == SOFTPLUS:
        for i in range(size):
            A[i] = _softplus(Z[i])
    elif activation == GELU:
        for i in range(size):
            A[i] = _gelu(Z[i])
    elif activation == SILU:
        for i in range(size):
            A[i] = _silu(Z[i])
    else:
        for i in range(size):
            A[i] = Z[i]


cdef void _times_derivative(const floating* G, const floating* A, const floating* shift,
                            floating* out, Py_ssize_t n, Py_ssize_t m,
                            int activation) noexcept nogil:
    """out[i, j] = (G[i, j] + shift[j]) * act'[i, j]; ``shift`` may be NULL; out may be G.

    ``A`` is what the forward pass saved for the derivative (see _derivative): the output
    act(Z), or Z itself for an activation whose derivative needs it. Used by every backward
    pass (G = dA, no shift) and every JVP (G = the linear change of Z, shift = the change of
    the bias). In float32, every activation but the identity uses a cloned C loop of
    _simd.h.
    """
    cdef Py_ssize_t i, j
    cdef const floating* g_row
    cdef const floating* a_row
    cdef floating* o_row
    if floating is float:
        if _times_derivative_f32(activation, G, A, shift, out, n, m):
            return
    if shift != NULL:  # add the shift first (the same rounding as in one expression)
        for i in range(n):
            for j in range(m):
                out[i * m + j] = G[i * m + j] + shift[j]
        G = out
    for i in range(n):
        g_row = G + i * m
        a_row = A + i * m
        o_row = out + i * m
        if activation == TANH:
            for j in range(m):
                o_row[j] = g_row[j] * _derivative(a_row[j], TANH)
        elif activation == RELU:
            for j in range(m):
                o_row[j] = g_row[j] * _derivative(a_row[j], RELU)
        elif activation == SIGMOID:
            for j in range(m):
                o_row[j] = g_row[j] * _derivative(a_row[j], SIGMOID)
        elif activation == LEAKY_RELU:
            for j in range(m):
                o_row[j] = g_row[j] * _derivative(a_row[j], LEAKY_RELU)
        elif activation == ELU:
            for j in range(m):
                o_row[j] = g_row[j] * _derivative(a_row[j], ELU)
        elif activation == SOFTPLUS:
            for j in range(m):
                o_row[j] = g_row[j] * _derivative(a_row[j], SOFTPLUS)
        elif activation == GELU:
            for j in range(m):
                o_row[j] = g_row[j] * _derivative(a_row[j], GELU)
        elif activation == SILU:
            for j in range(m):
                o_row[j] = g_row[j] * _derivative(a_row[j], SILU)
        elif o_row != g_row:  # the identity
            for j in range(m):
                o_row[j] = g_row[j]


cdef void _column_sums(const floating* G, floating* sums, Py_ssize_t n, Py_ssize_t m,
                       Py_ssize_t ld) noexcept nogil:
    """sums[j] = sum_i G[i, j] over (n, m) with rows ``ld`` apart, accumulated in double in
    stack blocks of columns (float32: the cloned loop of _simd.h, in the same order)."""
    cdef double acc[COLUMN_BLOCK]
    cdef Py_ssize_t i, j, start = 0, width
    if floating is float:
        _column_sums_f32(G, sums, n, m, ld)
    else:
        while start < m:
            width = min(<Py_ssize_t> COLUMN_BLOCK, m - start)
            for j in range(width):
                acc[j] = 0.0
            for i in range(n):
                for j in range(width):
                    acc[j] += G[i * ld + start + j]
            for j in range(width):
                sums[start + j] = <floating> acc[j]
            start += width


cdef void _copy(const floating* src, floating* dst, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        dst[i] = src[i]


cdef void _linear_forward(const floating* X, const floating* W, const floating* b,
                          floating* Z, floating* A, int n, int n_in, int n_out,
                          int activation) noexcept nogil:
    """A (n, n_out) = act(X (n, n_in) @ W.T + b).

    ``Z`` is NULL, or receives the pre-activation X W^T + b (for an activation whose
    derivative needs it); without it the bias and the activation are applied to A in place.
    """
    _linear_product(X, W, A if Z == NULL else Z, n, n_in, n_out, 0, n_out)
    _linear_bias_activation(Z, b, A, n, n_out, activation)


cdef void _linear_product(const floating* X, const floating* W, floating* out, int n,
                          int n_in, int n_out, int first, int stop) noexcept nogil:
    """out[:, first:stop] = X W[first:stop]^T: a dense layer's product for its units
    ``first`` to ``stop`` (``out`` has rows of n_out)."""
    _gemm(False, True, n, stop - first, n_in, 1, X, n_in, W + <Py_ssize_t> first * n_in,
          n_in, 0, out + first, n_out)


cdef void _linear_bias_activation(floating* Z, const floating* b, floating* A, int n,
                                  int n_out, int activation) noexcept nogil:
    """A = act(Z + b), Z holding the layer's product (the kept pre-activation, + b here);
    with Z NULL the product is in A, and the bias and activation are applied in place."""
    if Z == NULL:
        _bias_activation(A, b, n, n_out, activation)
    else:
        _activation(Z, b, A, n, n_out, activation)


cdef void _linear_backward(const floating* dA, const floating* X, const floating* W,
                           const floating* S, floating* dZ, floating* dX, floating* dW,
                           floating* db, int n, int n_in, int n_out, int activation
                           ) noexcept nogil:
    """dZ = dA * act'; dW = dZ^T X; db = column sums of dZ; dX = dZ W (skipped if NULL).

    ``S`` is what the forward pass saved for act' (the output A, or Z; see _derivative).
    dZ is scratch of shape (n, n_out); for the identity it is not touched (dZ is dA).
    """
    _linear_backward_rows(dA, W, S, dZ, dX, n, n_in, n_out, activation)
    _linear_backward_weights(_dZ(dA, dZ, activation), X, dW, db, n, n_in, n_out, 0, n_out)


cdef inline const floating* _dZ(const floating* dA, const floating* scratch,
                                int activation) noexcept nogil:
    """A dense layer's dZ = dA * act': dA itself for the identity, else the scratch buffer
    _linear_backward_rows wrote it to."""
    return dA if activation == IDENTITY else scratch


cdef void _linear_backward_rows(const floating* dA, const floating* W, const floating* S,
                                floating* dZ, floating* dX, int n, int n_in, int n_out,
                                int activation) noexcept nogil:
    """The part of _linear_backward that works row by row (each row of dZ and dX needs
    only the same row of dA and S): dZ = dA * act' (not for the identity), dX = dZ W."""
    if activation != IDENTITY:
        _times_derivative(dA, S, <const floating*> NULL, dZ, n, n_out, activation)
    if dX != NULL:
        _linear_input_gradient(_dZ(dA, dZ, activation), W, dX, n, n_in, n_out, 0, n_in)


cdef void _linear_input_gradient(const floating* dZ, const floating* W, floating* dX, int n,
                                 int n_in, int n_out, int first, int stop) noexcept nogil:
    """dX[:, first:stop] = dZ W[:, first:stop]: the gradient to a dense layer's inputs
    ``first`` to ``stop`` (``dX`` has rows of n_in)."""
    _gemm(False, False, n, stop - first, n_out, 1, dZ, n_out, W + first, n_in, 0, dX + first,
          n_in)


cdef void _linear_backward_weights(const floating* dZ, const floating* X, floating* dW,
                                   floating* db, int n, int n_in, int n_out, int first,
                                   int stop) noexcept nogil:
    """The part of _linear_backward that sums over the rows, for the units ``first`` to
    ``stop`` (rows of dW, entries of db): db = column sums of dZ, dW = dZ^T X."""
    _column_sums(dZ + first, db + first, n, stop - first, n_out)
    _gemm(True, False, stop - first, n_in, n, 1, dZ + first, n_out, X, n_in, 0,
          dW + <Py_ssize_t> first * n_in, n_in)


cdef void _linear_jvp(const floating* X, const floating* W, const floating* S,
                      const floating* dX, const floating* dW, const floating* db,
                      floating* dA, int n, int n_in, int n_out, int activation) noexcept nogil:
    """dA = act' * (dX W^T + X dW^T + db), act' computed from the saved ``S``."""
    _gemm(False, True, n, n_out, n_in, 1, dX, n_in, W, n_in, 0, dA, n_out)
    _gemm(False, True, n, n_out, n_in, 1, X, n_in, dW, n_in, 1, dA, n_out)
    _times_derivative(dA, S, db, dA, n, n_out, activation)


cdef void _residual_forward(const floating* X, const floating* W1, const floating* b1,
                            const floating* W2, floating* Z, floating* H, floating* Y, int n,
                            int width, int hidden, int activation) noexcept nogil:
    """H (n, hidden) = act(X W1^T + b1); Y (n, width) = X + H W2^T. ``Z`` is NULL or
    receives the hidden pre-activation (see _linear_forward)."""
    _linear_forward(X, W1, b1, Z, H, n, width, hidden, activation)
    _copy(X, Y, <Py_ssize_t> n * width)
    _gemm(False, True, n, width, hidden, 1, H, hidden, W2, hidden, 1, Y, width)


cdef void _residual_backward(const floating* dY, const floating* X, const floating* W1,
                             const floating* W2, const floating* H, const floating* S,
                             floating* dZ, floating* dX, floating* dW1, floating* db1,
                             floating* dW2, int n, int width, int hidden,
                             int activation) noexcept nogil:
    """Gradients of the block; ``S`` is what the forward pass saved for act' (H, or the
    hidden pre-activation); dZ is scratch of shape (n, hidden); dX skipped if NULL."""
    _residual_backward_rows(dY, W1, W2, S, dZ, dX, n, width, hidden, activation)
    _residual_backward_weights(dY, X, H, dZ, dW1, db1, dW2, n, width, hidden, 0, width, 0,
                               hidden)


cdef void _residual_backward_rows(const floating* dY, const floating* W1, const floating* W2,
                                  const floating* S, floating* dZ, floating* dX, int n,
                                  int width, int hidden, int activation) noexcept nogil:
    """The row-by-row part of _residual_backward: dZ = (dY W2) * act', dX = dY + dZ W1."""
    _gemm(False, False, n, hidden, width, 1, dY, width, W2, hidden, 0, dZ, hidden)
    _times_derivative(dZ, S, <const floating*> NULL, dZ, n, hidden, activation)
    if dX != NULL:
        _copy(dY, dX, <Py_ssize_t> n * width)
        _gemm(False, False, n, width, hidden, 1, dZ, hidden, W1, width, 1, dX, width)


cdef void _residual_backward_weights(const floating* dY, const floating* X, const floating* H,
                                     const floating* dZ, floating* dW1, floating* db1,
                                     floating* dW2, int n, int width, int hidden,
                                     int first_out, int stop_out, int first_hidden,
                                     int stop_hidden) noexcept nogil:
    """The part of _residual_backward that sums over the rows, for the rows ``first_out``
    to ``stop_out`` of dW2 = dY^T H and the hidden units ``first_hidden`` to
    ``stop_hidden`` of db1 (column sums of dZ) and dW1 = dZ^T X."""
    _gemm(True, False, stop_out - first_out, hidden, n, 1, dY + first_out, width, H, hidden,
          0, dW2 + <Py_ssize_t> first_out * hidden, hidden)
    _column_sums(dZ + first_hidden, db1 + first_hidden, n, stop_hidden - first_hidden, hidden)
    _gemm(True, False, stop_hidden - first_hidden, width, n, 1, dZ + first_hidden, hidden, X,
          width, 0, dW1 + <Py_ssize_t> first_hidden * width, width)


cdef void _residual_jvp(const floating* X, const floating* W1, const floating* W2,
                        const floating* H, const floating* S, const floating* dX,
                        const floating* dW1, const floating* db1, const floating* dW2,
                        floating* dH, floating* dY, int n, int width, int hidden,
                        int activation) noexcept nogil:
    """dY = dX + dH W2^T + H dW2^T with dH = act' * (dX W1^T + X dW1^T + db1), act'
    computed from the saved ``S``."""
    _linear_jvp(X, W1, S, dX, dW1, db1, dH, n, width, hidden, activation)
    _copy(dX, dY, <Py_ssize_t> n * width)
    _gemm(False, True, n, width, hidden, 1, dH, hidden, W2, hidden, 1, dY, width)
    _gemm(False, True, n, width, hidden, 1, H, hidden, dW2, hidden, 1, dY, width)


cdef double _shifted_exp(const floating* logits, floating* out, Py_ssize_t n, Py_ssize_t k,
                         const Py_ssize_t* labels, const floating* weights) noexcept nogil:
    """out[i, j] = exp(logits[i, j] - max_j logits[i, j]).

    If ``labels`` is not NULL, returns sum_i (logits[i, labels[i]] - max_j logits[i, j]),
    the labels' shifted logits that the cross-entropy needs (else 0); with ``weights`` (not
    NULL), sum_i w_i (...), rows of weight 0 left out (a weight of 1 multiplies exactly).

    Subtracting the row maximum keeps every argument <= 0: no overflow for logits of 1e4,
    and the largest term of each row is exactly 1, so the row sum is >= 1 and its log safe.
    The shift is one pass over the rows; the exponentials are then one long flat loop, which
    vectorises even when rows are short (k = 5).
    """
    cdef Py_ssize_t i, j
    cdef floating row_max
    cdef double picked = 0.0
    for i in range(n):
        row_max = _row_max(logits + i * k, k)
        for j in range(k):
            out[i * k + j] = logits[i * k + j] - row_max
        if labels != NULL:
            if weights == NULL:
                picked += out[i * k + labels[i]]
            elif weights[i] != 0:
                picked += <double> weights[i] * out[i * k + labels[i]]
    if floating is float:
        _exp_inplace_f32(out, n * k)
    else:
        for i in range(n * k):
            out[i] = libm_exp(out[i])
    return picked


cdef void _softmax(const floating* logits, floating* out, Py_ssize_t n,
                   Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    _shifted_exp(logits, out, n, k, NULL, NULL)
    for i in range(n):
        _normalise_row(out + i * k, k, 1.0)


cdef double _weight_sum(const floating* weights, Py_ssize_t n) noexcept nogil:
    """sum_i w_i in double, in order: n weights of 1 sum to n exactly."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    for i in range(n):
        total += weights[i]
    return total


cdef Py_ssize_t _softmax_cross_entropy(const floating* logits, const Py_ssize_t* labels,
                                       const floating* weights, floating* dlogits,
                                       Py_ssize_t n, Py_ssize_t k,
                                       double* loss) noexcept nogil:
    """Mean cross-entropy and its gradient (softmax - onehot) / n; with ``weights`` (not
    NULL, one per row, >= 0) the weighted mean sum_i w_i loss_i / W, W = sum_i w_i, and
    its gradient w_i (softmax - onehot) / W per row.

    Per row, loss_i = log(sum_j exp(z_j - max)) - (z_label - max), summed in double.
    Returns -1, or the first row whose label is outside [0, k); no element is read at a
    label before it is checked.

    The weighted arithmetic is the unweighted one with each term multiplied by w_i (exact
    for w_i = 1), the row scale w_i / W in place of 1 / n (the same double when W = n) and
    the loss total * (1 / W) as total * (1 / n): all-ones weights give the unweighted
    results bit for bit. Rows of weight 0 contribute nothing, not even a NaN; if W is 0
    the loss and the gradient are 0.
    """
    cdef Py_ssize_t i, j, label
    cdef double total = 0.0, inv_n = 1.0 / n, row_sum, label_exp, scale, W = n
    for i in range(n):
        if labels[i] < 0 or labels[i] >= k:
            return i
    if weights != NULL:
        W = _weight_sum(weights, n)
        if W == 0:
            for i in range(n * k):
                dlogits[i] = 0
            loss[0] = 0.0
            return -1
    total = -_shifted_exp(logits, dlogits, n, k, labels, weights)
    scale = inv_n
    for i in range(n):
        label = labels[i]
        if weights != NULL:
            if weights[i] == 0:
                for j in range(k):
                    dlogits[i * k + j] = 0
                continue
            scale = weights[i] / W
        label_exp = dlogits[i * k + label]
        row_sum = _normalise_row(dlogits + i * k, k, scale)
        if weights == NULL:
            total += log(row_sum)
        else:
            total += weights[i] * log(row_sum)
        # (p - 1) / n in double: p is close to 1 for a confident right answer, and rounding
        # p to float before subtracting would leave an error of float32's epsilon / n
        dlogits[i * k + label] = <floating> ((label_exp / row_sum - 1.0) * scale)
    loss[0] = total * (1.0 / W)
    return -1


cdef double _mean_squared_error(const floating* pred, const floating* target,
                                const floating* weights, floating* dpred, Py_ssize_t n,
                                Py_ssize_t k) noexcept nogil:
    """Mean over all ``n * k`` elements of (pred - target)^2, and its gradient
    2 (pred - target) / (n k) written to ``dpred`` (which may be ``pred``). With ``weights``
    (not NULL, one per row, >= 0): the weighted mean over rows of the rows' mean squared
    errors, sum_i w_i sum_j d_ij^2 / (W k), and its gradient 2 w_i d_ij / (W k).

    Each difference is taken in double, so a float32 prediction close to its target loses
    nothing to the subtraction, and the squares are summed in double, in four independent
    partial sums (one running sum would wait on each add's latency). The weighted loop is
    the same loop with each square multiplied by its row's weight (exact for 1) and the
    scale 2 w_i / (W k) (2 / (n k) when W = n): all-ones weights give the unweighted results
    bit for bit. Rows of weight 0 contribute nothing; if W is 0 the loss and gradient are 0.
    """
    cdef Py_ssize_t size = n * k
    cdef Py_ssize_t i, j, tail = size - size % 4, row = 0, col = 0
    cdef double scale = 2.0 / size, diff, W, Wk, w
    cdef double sums[4]
    sums[0] = sums[1] = sums[2] = sums[3] = 0.0
    if weights == NULL:
        for i in range(0, tail, 4):
            for j in range(4):
                diff = <double> pred[i + j] - <double> target[i + j]
                sums[j] += diff * diff
                dpred[i + j] = <floating> (scale * diff)
        for i in range(tail, size):
            diff = <double> pred[i] - <double> target[i]
            sums[0] += diff * diff
            dpred[i] = <floating> (scale * diff)
        return ((sums[0] + sums[1]) + (sums[2] + sums[3])) / size
    W = _weight_sum(weights, n)
    Wk = W * k
    if W == 0:
        for i in range(size):
            dpred[i] = 0
        return 0.0
    for i in range(size):
        j = i % 4 if i < tail else 0  # the unweighted loop's partial sum of element i
        w = weights[row]
        if w == 0:
            dpred[i] = 0
        else:
            diff = <double> pred[i] - <double> target[i]
            sums[j] += w * (diff * diff)
            dpred[i] = <floating> ((2.0 * w / Wk) * diff)
        col += 1
        if col == k:
            col = 0
            row += 1
    return ((sums[0] + sums[1]) + (sums[2] + sums[3])) / Wk


cdef inline floating _sgd_element(floating p, floating grad, floating* velocity,
                                  floating lr, floating momentum, bint nesterov,
                                  floating weight_decay) noexcept nogil:
    """SGD's update of one parameter ``p``: updates ``velocity`` in place and returns the
    new parameter (PyTorch's rule; see nncore.ops.sgd_momentum_ for the formula)."""
    cdef floating g = grad + weight_decay * p
    velocity[0] = momentum * velocity[0] + g
    return p - lr * (g + momentum * velocity[0] if nesterov else velocity[0])


cdef void _sgd_momentum(floating* param, const floating* grad, floating* velocity,
                        Py_ssize_t size, floating lr, floating momentum, bint nesterov,
                        floating weight_decay) noexcept nogil:
    """_sgd_element over the buffers, in one pass."""
    cdef Py_ssize_t i
    cdef floating v
    if floating is float:  # the vectorised, CPU-dispatched C loop above
        _sgd_momentum_f32(param, grad, velocity, size, lr, momentum, nesterov, weight_decay)
    else:
        for i in range(size):
            v = velocity[i]
            param[i] = _sgd_element(param[i], grad[i], &v, lr, momentum, nesterov,
                                    weight_decay)
            velocity[i] = v


cdef bint _sgd_update_is_finite(const floating* param, const floating* grad,
                                 const floating* velocity, Py_ssize_t size, floating lr,
                                 floating momentum, bint nesterov,
                                 floating weight_decay) noexcept nogil:
    """Whether the update of _sgd_momentum would leave every parameter and velocity finite.

    Computes the update without writing it. x - x is 0 for finite x and NaN for inf or NaN;
    the flags are OR-ed as integers, which (unlike a floating-point sum) the compiler may
    reorder, so the loop vectorises.
    """
    cdef Py_ssize_t i
    cdef floating v, p
    cdef int bad = 0
    if floating is float:
        bad = not _sgd_update_is_finite_f32(param, grad, velocity, size, lr, momentum,
                                            nesterov, weight_decay)
    else:
        for i in range(size):
            v = velocity[i]
            p = _sgd_element(param[i], grad[i], &v, lr, momentum, nesterov, weight_decay)
            bad |= ((p - p) != 0) | ((v - v) != 0)
    return bad == 0


cdef AdamScalars _adam_scalars(Py_ssize_t step, double lr, double beta1, double beta2,
                               double eps, double weight_decay, bint decoupled) noexcept nogil:
    """The constants of Adam's update number ``step`` (1-based), in double as PyTorch
    computes them in Python: the bias corrections 1 - beta ** step, the step size
    lr / (1 - beta1 ** step) and sqrt(1 - beta2 ** step)."""
    cdef AdamScalars c
    c.decay = 1 - lr * weight_decay if decoupled else 1.0
    c.weight_decay = 0.0 if decoupled else weight_decay
    c.weight = 1 - beta1
    c.beta2 = beta2
    c.one_minus_beta2 = 1 - beta2
    c.bias_correction2_sqrt = sqrt(1 - pow(beta2, <double> step))
    c.eps = eps
    c.neg_step_size = -(lr / (1 - pow(beta1, <double> step)))
    return c


cdef inline floating _adam_element(floating p, floating grad, floating* m, floating* v,
                                   const AdamScalars* c) noexcept nogil:
    """Adam's update of one parameter ``p``: updates the moments ``m`` and ``v`` in place
    and returns the new parameter. PyTorch's rule (amsgrad and maximize off) in its order
    of operations; see nncore.ops.adam_ for the formula. AdamW (decoupled weight decay)
    multiplies the parameter by ``decay`` first and adds nothing to the gradient.

    The first moment is torch.lerp(m, g, 1 - beta1): m + w (g - m) for a weight |w| < 0.5,
    else g + (w - 1) (g - m).
    """
    cdef floating weight = <floating> c.weight
    cdef floating g = grad + <floating> c.weight_decay * p
    if fabs(weight) < 0.5:
        m[0] = m[0] + weight * (g - m[0])
    else:
        m[0] = g + (weight - 1) * (g - m[0])
    v[0] = v[0] * <floating> c.beta2 + <floating> c.one_minus_beta2 * g * g
    return p * <floating> c.decay + <floating> c.neg_step_size * m[0] / (
        sqrt(v[0]) / <floating> c.bias_correction2_sqrt + <floating> c.eps)


cdef void _adam(floating* param, const floating* grad, floating* exp_avg,
                floating* exp_avg_sq, Py_ssize_t size, const AdamScalars* c) noexcept nogil:
    """_adam_element over the buffers, in one pass. Each element is read before it is
    written, so grad may be param itself."""
    cdef Py_ssize_t i
    cdef floating weight = <floating> c.weight, m, v
    cdef floating decay = <floating> c.decay, weight_decay = <floating> c.weight_decay
    cdef floating beta2 = <floating> c.beta2, one_minus_beta2 = <floating> c.one_minus_beta2
    cdef floating bias_correction2_sqrt = <floating> c.bias_correction2_sqrt
    cdef floating eps = <floating> c.eps, neg_step_size = <floating> c.neg_step_size
    if floating is float:  # the vectorised, CPU-dispatched C loop of _simd.h
        _adam_f32(param, grad, exp_avg, exp_avg_sq, size, decay, weight_decay, weight, beta2,
                  one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size)
    else:
        for i in range(size):
            m, v = exp_avg[i], exp_avg_sq[i]
            param[i] = _adam_element(param[i], grad[i], &m, &v, c)
            exp_avg[i], exp_avg_sq[i] = m, v


cdef bint _adam_update_is_finite(const floating* param, const floating* grad,
                                 const floating* exp_avg, const floating* exp_avg_sq,
                                 Py_ssize_t size, const AdamScalars* c) noexcept nogil:
    """Whether _adam would leave every parameter and both moments finite (computes the
    update without writing it; see _sgd_update_is_finite for the test)."""
    cdef Py_ssize_t i
    cdef floating weight = <floating> c.weight, m, v, p
    cdef floating decay = <floating> c.decay, weight_decay = <floating> c.weight_decay
    cdef floating beta2 = <floating> c.beta2, one_minus_beta2 = <floating> c.one_minus_beta2
    cdef floating bias_correction2_sqrt = <floating> c.bias_correction2_sqrt
    cdef floating eps = <floating> c.eps, neg_step_size = <floating> c.neg_step_size
    cdef int bad = 0
    if floating is float:
        bad = not _adam_update_is_finite_f32(param, grad, exp_avg, exp_avg_sq, size, decay,
                                             weight_decay, weight, beta2, one_minus_beta2,
                                             bias_correction2_sqrt, eps, neg_step_size)
    else:
        for i in range(size):
            m, v = exp_avg[i], exp_avg_sq[i]
            p = _adam_element(param[i], grad[i], &m, &v, c)
            bad |= ((p - p) != 0) | ((m - m) != 0) | ((v - v) != 0)
    return bad == 0


cdef bint _update_is_finite(const floating* params, const floating* grads,
                            const floating* state0, const floating* state1,
                            Py_ssize_t n_params, const Update* update) noexcept nogil:
    """Whether the optimizer step of ``update.kind`` over the flat buffers (SGD: state0 is
    the velocity, state1 unused; Adam: state0 and state1 are the first and second moments)
    would leave every parameter and state value finite."""
    cdef AdamScalars c
    if update.kind == ADAM_UPDATE:
        c = _adam_scalars(update.step, update.lr, update.beta1, update.beta2, update.eps,
                          update.weight_decay, update.decoupled)
        return _adam_update_is_finite(params, grads, state0, state1, n_params, &c)
    return _sgd_update_is_finite(params, grads, state0, n_params, <floating> update.lr,
                                 <floating> update.momentum, update.nesterov,
                                 <floating> update.weight_decay)


cdef void _update(floating* params, const floating* grads, floating* state0,
                  floating* state1, Py_ssize_t n_params, const Update* update) noexcept nogil:
    """The optimizer step of ``update.kind`` over the flat buffers (as _update_is_finite)."""
    cdef AdamScalars c
    if update.kind == ADAM_UPDATE:
        c = _adam_scalars(update.step, update.lr, update.beta1, update.beta2, update.eps,
                          update.weight_decay, update.decoupled)
        _adam(params, grads, state0, state1, n_params, &c)
    else:
        _sgd_momentum(params, grads, state0, n_params, <floating> update.lr,
                      <floating> update.momentum, update.nesterov,
                      <floating> update.weight_decay)


cdef bint _apply_update(floating* params, const floating* grads, floating* state0,
                        floating* state1, Py_ssize_t n_params,
                        const Update* update) noexcept nogil:
    """The optimizer step of the fused training step over the flat buffers, applied only if
    it leaves every parameter and state value finite (_update_is_finite). Returns whether
    it was applied."""
    if not _update_is_finite(params, grads, state0, state1, n_params, update):
        return False
    _update(params, grads, state0, state1, n_params, update)
    return True


# --- a whole training step -------------------------------------------------------------------

# The barrier of _team.h (it says how it waits) and what the two threads of a step share.
cdef extern from "_team.h":
    ctypedef struct nncore_barrier:
        int arrived
    enum: _HAVE_TEAM "NNCORE_HAVE_TEAM"
    void _barrier_init "nncore_barrier_init" (nncore_barrier* b) noexcept nogil
    void _barrier_abort "nncore_barrier_abort" (nncore_barrier* b) noexcept nogil
    bint _barrier_wait "nncore_barrier_wait" (nncore_barrier* b, int members) noexcept nogil

#: Whether a training step can run on two threads (TrainStep.run_many's ``run_threads``):
#: this build has the atomic operations its barrier needs.
TEAM_STEP = bool(_HAVE_TEAM)

cdef struct Team:
    nncore_barrier barrier
    Py_ssize_t bad   # the step's bad-label row or -1, from member 0's loss
    double loss      # the step's loss, from member 0
    bint ok[2]       # each member's verdict on its share of the update

cdef struct StepJob:
    # One TrainStep.run_many call's arguments, checked, for the threads that run it.
    const void* X
    const char* targets
    Py_ssize_t target_step
    const void* weights
    Py_ssize_t n_steps
    double* losses
    Py_ssize_t* n_correct
    Update update


cdef inline void* _moved(void* buffer, Py_ssize_t bytes) noexcept nogil:
    return NULL if buffer == NULL else <void*> (<char*> buffer + bytes)


cdef void _plan_from_row(const LayerPlan* layers, int n_layers, Py_ssize_t first,
                         Py_ssize_t itemsize, LayerPlan* rows) noexcept nogil:
    """Write to ``rows`` the plan ``layers`` with each buffer of one row per sample (out,
    dX, scratch, H, Z) moved ``first`` rows on: the plan of the batch's rows from ``first``
    on, for the thread that computes them. The weights and gradients stay shared."""
    cdef int i, inner
    cdef const LayerPlan* L
    for i in range(n_layers):
        L = &layers[i]
        rows[i] = L[0]
        inner = L.hidden if L.kind == RESIDUAL else L.n_out
        rows[i].out = _moved(L.out, first * L.n_out * itemsize)
        rows[i].dX = _moved(L.dX, first * L.n_in * itemsize)
        rows[i].scratch = _moved(L.scratch, first * inner * itemsize)
        rows[i].H = _moved(L.H, first * L.hidden * itemsize)
        rows[i].Z = _moved(L.Z, first * inner * itemsize)


# LayerPlan (one layer as raw pointers), DENSE / RESIDUAL and STEP_UPDATE_NOT_FINITE (what
# _train_step returns when it skipped an update that would overflow the weights) are declared
# in _kernels.pxd.
UPDATE_NOT_FINITE = STEP_UPDATE_NOT_FINITE
#: The losses of the fused step by name (each entry of nncore.losses.LOSSES names its code).
LOSS_CODES = {"softmax_cross_entropy": SOFTMAX_CROSS_ENTROPY,
              "mean_squared_error": MEAN_SQUARED_ERROR}
#: The layer kinds of the fused step (LayerPlan.kind) by name (nncore._validation.STEP_SHAPES
#: lists the same kinds; the tests hold the two to each other).
LAYER_KIND_CODES = {"dense": DENSE, "residual": RESIDUAL}
#: The update kinds of the fused step (Update.kind) by name (nncore._validation.UPDATE_KINDS
#: lists the same kinds; the tests hold the two to each other).
UPDATE_KIND_CODES = {"sgd": SGD_UPDATE, "adam": ADAM_UPDATE}
#: The activation enum of _kernels.pxd by name: each entry of nncore.activations names its
#: code, and the tests hold the two to each other.
ACTIVATION_CODES = {"identity": IDENTITY, "tanh": TANH, "relu": RELU, "sigmoid": SIGMOID,
                    "leaky_relu": LEAKY_RELU, "elu": ELU, "gelu": GELU, "silu": SILU,
                    "softplus": SOFTPLUS}


cdef inline void* _saved(const LayerPlan* L) noexcept nogil:
    """What the layer's act' is computed from (see _derivative): the kept pre-activation Z if
    there is one, else the activation's output (a dense layer's out, a block's H)."""
    if L.Z != NULL:
        return L.Z
    return L.H if L.kind == RESIDUAL else L.out


cdef void _plan_forward(const LayerPlan* layers, int n_layers, const floating* X,
                        int n) noexcept nogil:
    cdef int i
    cdef const LayerPlan* L
    cdef const floating* layer_input = X
    for i in range(n_layers):
        L = &layers[i]
        if L.kind == DENSE:
            _linear_forward(layer_input, <floating*> L.W, <floating*> L.b, <floating*> L.Z,
                            <floating*> L.out, n, L.n_in, L.n_out, L.activation)
        elif L.kind == RESIDUAL:
            _residual_forward(layer_input, <floating*> L.W, <floating*> L.b,
                              <floating*> L.W2, <floating*> L.Z, <floating*> L.H,
                              <floating*> L.out, n, L.n_in, L.hidden, L.activation)
        layer_input = <floating*> L.out


cdef void _plan_forward_blocks(LayerPlan* layers, int n_layers, const floating* X,
                               floating* out, Py_ssize_t rows, int n) noexcept nogil:
    """The plan's forward pass over ``rows`` rows of X in blocks of at most ``n`` (the rows
    its buffers hold); the last layer writes each block's outputs straight into ``out``."""
    cdef LayerPlan* last = &layers[n_layers - 1]
    cdef void* own_out = last.out
    cdef Py_ssize_t start = 0
    cdef int block
    while start < rows:
        block = <int> (n if rows - start > n else rows - start)
        last.out = <void*> (out + start * last.n_out)
        _plan_forward(layers, n_layers, X + start * layers[0].n_in, block)
        start += block
    last.out = own_out


cdef void _plan_backward(const LayerPlan* layers, int n_layers, const floating* X,
                         const floating* dlogits, int n) noexcept nogil:
    cdef int i
    cdef const LayerPlan* L
    cdef const floating* grad = dlogits
    cdef const floating* layer_input
    for i in range(n_layers - 1, -1, -1):
        L = &layers[i]
        layer_input = X if i == 0 else <floating*> layers[i - 1].out
        if L.kind == DENSE:
            _linear_backward(grad, layer_input, <floating*> L.W, <floating*> _saved(L),
                             <floating*> L.scratch, <floating*> L.dX, <floating*> L.dW,
                             <floating*> L.db, n, L.n_in, L.n_out, L.activation)
        elif L.kind == RESIDUAL:
            _residual_backward(grad, layer_input, <floating*> L.W, <floating*> L.W2,
                               <floating*> L.H, <floating*> _saved(L), <floating*> L.scratch,
                               <floating*> L.dX, <floating*> L.dW, <floating*> L.db,
                               <floating*> L.dW2, n, L.n_in, L.hidden, L.activation)
        grad = <floating*> L.dX


cdef inline Py_ssize_t _share_start(Py_ssize_t total, int member) noexcept nogil:
    """Where the share of ``member`` (0 or 1) of ``total`` items (rows, units, parameters)
    starts: member m takes items _share_start(total, m) to _share_start(total, m + 1), so
    the starts are 0, half of ``total`` and ``total``; the half is rounded down to a multiple
    of 16 (a cache line of float32) when there are 32 or more."""
    cdef Py_ssize_t half = total // 2
    if member <= 0:
        return 0
    if member >= 2:
        return total
    return half - half % 16 if total >= 32 else half


cdef void _plan_backward_weights(const LayerPlan* layers, int n_layers, const floating* X,
                                 const floating* dlogits, int n, int member) noexcept nogil:
    """The part of _plan_backward that sums over the batch's rows (every layer's weight and
    bias gradients), once the row-by-row part has run on all of them: the share of
    ``member`` (0 or 1) of each layer's units (_share_start)."""
    cdef int i
    cdef const LayerPlan* L
    cdef const floating* grad
    cdef const floating* layer_input
    for i in range(n_layers):
        L = &layers[i]
        layer_input = X if i == 0 else <floating*> layers[i - 1].out
        grad = dlogits if i == n_layers - 1 else <floating*> layers[i + 1].dX
        if L.kind == DENSE:
            _linear_backward_weights(_dZ(grad, <floating*> L.scratch, L.activation),
                                     layer_input, <floating*> L.dW, <floating*> L.db, n,
                                     L.n_in, L.n_out, _share_start(L.n_out, member),
                                     _share_start(L.n_out, member + 1))
        elif L.kind == RESIDUAL:
            _residual_backward_weights(grad, layer_input, <floating*> L.H,
                                       <floating*> L.scratch, <floating*> L.dW,
                                       <floating*> L.db, <floating*> L.dW2, n, L.n_in,
                                       L.hidden, _share_start(L.n_in, member),
                                       _share_start(L.n_in, member + 1),
                                       _share_start(L.hidden, member),
                                       _share_start(L.hidden, member + 1))


cdef Py_ssize_t _count_correct(const floating* logits, const Py_ssize_t* labels,
                               Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Rows whose first largest logit is at the label (numpy.argmax's tie rule)."""
    cdef Py_ssize_t i, j, label, correct = 0
    cdef const floating* row
    cdef floating row_max
    cdef bint first
    for i in range(n):
        row = logits + i * k
        label = labels[i]
        row_max = _row_max(row, k)
        first = row[label] == row_max
        for j in range(label):
            if row[j] == row_max:
                first = False
        correct += first
    return correct


cdef Py_ssize_t _loss_gradient(int loss_kind, const floating* outputs, const void* targets,
                               const floating* weights, floating* doutputs, Py_ssize_t n,
                               Py_ssize_t k, double* loss,
                               Py_ssize_t* n_correct) noexcept nogil:
    """The fused step's loss and its gradient wrt the outputs, by kind: softmax
    cross-entropy against integer labels (``targets`` is intp (n,); ``n_correct`` counts the
    right predictions) or mean squared error against values (``targets`` is floating
    (n, k); ``n_correct`` is 0). ``weights`` is NULL (the plain mean over the batch) or the
    batch's sample weights (n,): the weighted mean sum_i w_i loss_i / sum_i w_i (loss 0 and
    gradient 0 when they are all 0). Returns -1, or the first row with a label out of
    range."""
    cdef Py_ssize_t bad
    if loss_kind == MEAN_SQUARED_ERROR:
        loss[0] = _mean_squared_error(outputs, <const floating*> targets, weights, doutputs,
                                      n, k)
        n_correct[0] = 0
        return -1
    bad = _softmax_cross_entropy(outputs, <const Py_ssize_t*> targets, weights, doutputs, n,
                                 k, loss)
    if bad < 0:
        n_correct[0] = _count_correct(outputs, <const Py_ssize_t*> targets, n, k)
    return bad


cdef Py_ssize_t _train_step(const LayerPlan* layers, int n_layers, const floating* X,
                            int loss_kind, const void* targets, const floating* weights,
                            floating* dlogits, int n, int n_classes, floating* params, const floating* grads,
                            floating* state0, floating* state1, Py_ssize_t n_params,
                            const Update* update, double* loss,
                            Py_ssize_t* n_correct) noexcept nogil:
    """Forward, loss, backward and the optimizer's update (_apply_update), in one call.

    Returns STEP_OK, or the first row with a label outside [0, n_classes) (then nothing else is
    done), or UPDATE_NOT_FINITE. The update is applied only if the loss is finite and the
    updated parameters and optimizer state would all be finite: the weights never go
    non-finite.
    """
    cdef const floating* logits
    cdef Py_ssize_t bad
    _plan_forward(layers, n_layers, X, n)
    logits = <floating*> layers[n_layers - 1].out
    bad = _loss_gradient(loss_kind, logits, targets, weights, dlogits, n, n_classes, loss,
                         n_correct)
    if bad >= 0:
        return bad
    _plan_backward(layers, n_layers, X, dlogits, n)
    if loss[0] - loss[0] != 0:  # not finite: inf - inf and NaN - NaN are NaN
        return STEP_OK
    if not _apply_update(params, grads, state0, state1, n_params, update):
        return STEP_UPDATE_NOT_FINITE
    return STEP_OK


# The two threads of a step (_team_step) split each dense layer's product by units, each
# thread multiplying every row by its half of the weights, so that each packs only its half
# of W for BLAS: split by rows, both would pack all of W (perf: packing went from 14% to 20%
# of an L step). The elementwise work around the products is split by rows.

cdef bint _team_forward(Team* team, int member, const LayerPlan* layers,
                        const LayerPlan* own_plan, int n_layers, const floating* X,
                        int n) noexcept nogil:
    """_plan_forward by the two threads of _team_step: a dense layer's product for this
    member's units, then (once both are done) its bias and activation on this member's
    rows; a residual block all on this member's rows. Returns True if the barrier was
    aborted."""
    cdef int i, first = _share_start(n, member), stop = _share_start(n, member + 1)
    cdef const LayerPlan* L
    cdef const LayerPlan* R
    cdef const floating* layer_input = X
    cdef const floating* own_input = X + <Py_ssize_t> first * layers[0].n_in
    for i in range(n_layers):
        L, R = &layers[i], &own_plan[i]
        if L.kind == DENSE:
            # the product goes where _linear_forward puts it: Z if kept, else out
            _linear_product(layer_input, <floating*> L.W,
                            <floating*> (L.Z if L.Z != NULL else L.out), n, L.n_in, L.n_out,
                            _share_start(L.n_out, member), _share_start(L.n_out, member + 1))
            if _barrier_wait(&team.barrier, 2):
                return True
            _linear_bias_activation(<floating*> R.Z, <floating*> L.b, <floating*> R.out,
                                    stop - first, L.n_out, L.activation)
        elif L.kind == RESIDUAL:
            _residual_forward(own_input, <floating*> L.W, <floating*> L.b, <floating*> L.W2,
                              <floating*> R.Z, <floating*> R.H, <floating*> R.out,
                              stop - first, L.n_in, L.hidden, L.activation)
        if _barrier_wait(&team.barrier, 2):  # the next layer's product reads every row
            return True
        layer_input, own_input = <floating*> L.out, <floating*> R.out
    return False


cdef bint _team_backward_rows(Team* team, int member, const LayerPlan* layers,
                              const LayerPlan* own_plan, int n_layers,
                              const floating* dlogits, int n) noexcept nogil:
    """The row-by-row part of the backward pass (_linear_backward_rows and
    _residual_backward_rows, last layer first) by the two threads of _team_step: a dense
    layer's act' on this member's rows, then (once both are done) its product dX = dZ W for
    this member's input units; a residual block all on this member's rows. Returns True if
    the barrier was aborted."""
    cdef int i, first = _share_start(n, member), stop = _share_start(n, member + 1)
    cdef const LayerPlan* L
    cdef const LayerPlan* R
    cdef const floating* grad = dlogits
    cdef const floating* own_grad = dlogits + <Py_ssize_t> first * layers[n_layers - 1].n_out
    for i in range(n_layers - 1, -1, -1):
        L, R = &layers[i], &own_plan[i]
        if L.kind == DENSE:
            if L.activation != IDENTITY:
                _times_derivative(own_grad, <floating*> _saved(R), <const floating*> NULL,
                                  <floating*> R.scratch, stop - first, L.n_out, L.activation)
            if L.dX != NULL:
                if _barrier_wait(&team.barrier, 2):
                    return True
                _linear_input_gradient(_dZ(grad, <floating*> L.scratch, L.activation),
                                       <floating*> L.W, <floating*> L.dX, n, L.n_in, L.n_out,
                                       _share_start(L.n_in, member),
                                       _share_start(L.n_in, member + 1))
                if _barrier_wait(&team.barrier, 2):  # the layer below reads whole rows
                    return True
        elif L.kind == RESIDUAL:
            _residual_backward_rows(own_grad, <floating*> L.W, <floating*> L.W2,
                                    <floating*> _saved(R),
                                    <floating*> R.scratch, <floating*> R.dX, stop - first,
                                    L.n_in, L.hidden, L.activation)
        grad, own_grad = <floating*> L.dX, <floating*> R.dX
    return False


cdef Py_ssize_t _team_step(Team* team, int member, const LayerPlan* layers,
                           const LayerPlan* own_plan, int n_layers, const floating* X,
                           int loss_kind, const void* targets, const floating* weights,
                           floating* dlogits, int n, int n_classes, floating* params,
                           const floating* grads, floating* state0, floating* state1,
                           Py_ssize_t n_params, const Update* update, double* loss,
                           Py_ssize_t* n_correct) noexcept nogil:
    """_train_step's work done by two threads, ``member`` 0 and 1, which call this together
    with the same arguments but ``own_plan``: the plan with its row buffers moved to the
    member's first row of the batch (_plan_from_row). Each thread takes half of the forward
    and backward passes (_team_forward, _team_backward_rows: a dense layer's products by
    units, the rest, and a residual block's products, by rows), the weight gradients and the
    update of half of each layer's units and of the parameters; member 0 alone the loss (it
    needs every row's output). They meet at the barrier wherever one needs what the other
    wrote, and both return what _train_step would (only member 0 writes ``n_correct``), or
    STEP_ABORTED if the barrier was aborted (the other never came).

    The numbers are _train_step's to rounding: each output, gradient and parameter is
    computed by the same loop or product over the same operands, only by the other thread
    for half of them (BLAS may round a product of fewer columns differently).
    """
    cdef Py_ssize_t p_first, p_stop
    cdef const floating* logits = <floating*> layers[n_layers - 1].out
    if _team_forward(team, member, layers, own_plan, n_layers, X, n):  # ends at the barrier
        return STEP_ABORTED
    if member == 0:
        team.bad = _loss_gradient(loss_kind, logits, targets, weights, dlogits, n, n_classes,
                                  &team.loss, n_correct)
    if _barrier_wait(&team.barrier, 2):
        return STEP_ABORTED
    loss[0] = team.loss
    if team.bad >= 0:
        return team.bad
    if _team_backward_rows(team, member, layers, own_plan, n_layers, dlogits, n):
        return STEP_ABORTED
    if _barrier_wait(&team.barrier, 2):  # the weight gradients sum over every row
        return STEP_ABORTED
    _plan_backward_weights(layers, n_layers, X, dlogits, n, member)
    if loss[0] - loss[0] != 0:  # not finite
        return STEP_OK
    if _barrier_wait(&team.barrier, 2):  # the update reads gradients of the other's units
        return STEP_ABORTED
    p_first, p_stop = _share_start(n_params, member), _share_start(n_params, member + 1)
    team.ok[member] = _update_is_finite(params + p_first, grads + p_first, state0 + p_first,
                                        state1 + p_first if state1 != NULL else NULL,
                                        p_stop - p_first, update)
    if _barrier_wait(&team.barrier, 2):
        return STEP_ABORTED
    if not (team.ok[0] and team.ok[1]):
        return STEP_UPDATE_NOT_FINITE
    _update(params + p_first, grads + p_first, state0 + p_first,
            state1 + p_first if state1 != NULL else NULL, p_stop - p_first, update)
    if _barrier_wait(&team.barrier, 2):  # the next forward pass reads every weight
        return STEP_ABORTED
    return STEP_OK


cdef Py_ssize_t _train_steps(const LayerPlan* layers, int n_layers, const floating* X,
                             int loss_kind, const char* targets, Py_ssize_t target_step,
                             const floating* weights, floating* dlogits, int n, int n_in,
                             int n_classes, floating* params, const floating* grads,
                             floating* state0, floating* state1, Py_ssize_t n_params,
                             Update* update, Py_ssize_t n_steps, double* losses,
                             Py_ssize_t* n_correct, Py_ssize_t* status, Team* team,
                             int member, const LayerPlan* own_plan) noexcept nogil:
    """``n_steps`` calls of _train_step on consecutive blocks of ``n`` rows; with a ``team``
    (not NULL), of _team_step by this thread, ``member`` of the two that call this together
    (``own_plan`` as for _team_step; only member 0 writes ``losses`` and ``n_correct``).

    Stops after a step whose loss is not finite or whose update was refused, or before a
    step with a bad label. Returns the number of steps whose loss and count were written;
    ``status`` receives the last step's return value. ``targets`` advances by
    ``target_step`` bytes per step (one block of labels or of target rows), ``weights`` (if
    not NULL) by ``n`` per step. ``update.step``
    is advanced by one after every update applied (Adam's bias corrections count the
    updates).
    """
    cdef Py_ssize_t s
    cdef double loss = 0.0
    cdef const floating* step_weights
    for s in range(n_steps):
        step_weights = weights + s * n if weights != NULL else NULL
        if team == NULL:
            status[0] = _train_step(layers, n_layers, X + s * n * n_in, loss_kind,
                                    targets + s * target_step, step_weights, dlogits, n,
                                    n_classes, params, grads, state0, state1, n_params,
                                    update, &loss, &n_correct[s])
        else:
            status[0] = _team_step(team, member, layers, own_plan, n_layers,
                                   X + s * n * n_in, loss_kind, targets + s * target_step,
                                   step_weights, dlogits, n, n_classes, params, grads,
                                   state0, state1, n_params, update, &loss, &n_correct[s])
        if status[0] >= 0 or status[0] == STEP_ABORTED:
            return s
        if member == 0:
            losses[s] = loss
        if loss - loss != 0 or status[0] == STEP_UPDATE_NOT_FINITE:
            return s + 1
        update.step += 1
    return n_steps


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
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1]
    if n == 0 or k == 0:
        return
    with nogil:
        _softmax(&logits[0, 0], &out[0, 0], n, k)


def mean_squared_error(const floating[:, ::1] pred, const floating[:, ::1] target,
                       floating[:, ::1] out, const floating[::1] weights):
    """Returns the loss; ``out`` receives its gradient. ``pred`` is not empty. ``weights``:
    one per row, or empty for none."""
    cdef double loss
    with nogil:
        loss = _mean_squared_error(&pred[0, 0], &target[0, 0], _c1(weights), &out[0, 0],
                                   pred.shape[0], pred.shape[1])
    return loss


def softmax_cross_entropy(const floating[:, ::1] logits, const Py_ssize_t[::1] labels,
                          floating[:, ::1] out, const floating[::1] weights):
    """Returns (loss, bad_row): bad_row is -1, or the first row with an out-of-range label.
    ``weights``: one per row, or empty for none."""
    cdef double loss = 0.0
    cdef Py_ssize_t bad = -1
    if logits.shape[0] == 0:
        return 0.0, -1
    with nogil:
        bad = _softmax_cross_entropy(&logits[0, 0], &labels[0], _c1(weights), &out[0, 0],
                                     logits.shape[0], logits.shape[1], &loss)
    return loss, bad


# In the layer entry points, ``Z`` is the buffer for the pre-activation, or an empty (0, 0)
# array when the activation's derivative does not need it (its pointer is then NULL), and
# ``S`` is what act' is computed from: the output, or that Z (nncore.activations says which).

def linear_forward(const floating[:, ::1] X, const floating[:, ::1] W,
                   const floating[::1] b, floating[:, ::1] Z, floating[:, ::1] A,
                   int activation):
    with nogil:
        _linear_forward(_c2(X), _c2(W), _c1(b), _p2(Z), _p2(A), X.shape[0], X.shape[1],
                        W.shape[0], activation)


def linear_backward(const floating[:, ::1] dA, const floating[:, ::1] X,
                    const floating[:, ::1] W, const floating[:, ::1] S,
                    floating[:, ::1] dZ, floating[:, ::1] dX, floating[:, ::1] dW,
                    floating[::1] db, int activation):
    with nogil:
        _linear_backward(_c2(dA), _c2(X), _c2(W), _c2(S), _p2(dZ), _p2(dX), _p2(dW), _p1(db),
                         X.shape[0], X.shape[1], W.shape[0], activation)


def linear_jvp(const floating[:, ::1] X, const floating[:, ::1] W,
               const floating[:, ::1] S, const floating[:, ::1] dX,
               const floating[:, ::1] dW, const floating[::1] db,
               floating[:, ::1] out, int activation):
    with nogil:
        _linear_jvp(_c2(X), _c2(W), _c2(S), _c2(dX), _c2(dW), _c1(db), _p2(out),
                    X.shape[0], X.shape[1], W.shape[0], activation)


def residual_forward(const floating[:, ::1] X, const floating[:, ::1] W1,
                     const floating[::1] b1, const floating[:, ::1] W2,
                     floating[:, ::1] Z, floating[:, ::1] H, floating[:, ::1] Y,
                     int activation):
    with nogil:
        _residual_forward(_c2(X), _c2(W1), _c1(b1), _c2(W2), _p2(Z), _p2(H), _p2(Y),
                          X.shape[0], X.shape[1], W1.shape[0], activation)


def residual_backward(const floating[:, ::1] dY, const floating[:, ::1] X,
                      const floating[:, ::1] W1, const floating[:, ::1] W2,
                      const floating[:, ::1] H, const floating[:, ::1] S,
                      floating[:, ::1] dZ, floating[:, ::1] dX, floating[:, ::1] dW1,
                      floating[::1] db1, floating[:, ::1] dW2, int activation):
    with nogil:
        _residual_backward(_c2(dY), _c2(X), _c2(W1), _c2(W2), _c2(H), _c2(S), _p2(dZ),
                           _p2(dX), _p2(dW1), _p1(db1), _p2(dW2), X.shape[0], X.shape[1],
                           W1.shape[0], activation)


def residual_jvp(const floating[:, ::1] X, const floating[:, ::1] W1,
                 const floating[:, ::1] W2, const floating[:, ::1] H,
                 const floating[:, ::1] S, const floating[:, ::1] dX,
                 const floating[:, ::1] dW1, const floating[::1] db1,
                 const floating[:, ::1] dW2, floating[:, ::1] dH, floating[:, ::1] out,
                 int activation):
    with nogil:
        _residual_jvp(_c2(X), _c2(W1), _c2(W2), _c2(H), _c2(S), _c2(dX), _c2(dW1), _c1(db1),
                      _c2(dW2), _p2(dH), _p2(out), X.shape[0], X.shape[1], W1.shape[0],
                      activation)


def sgd_momentum(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
                 double lr, double momentum, bint nesterov, double weight_decay):
    with nogil:
        _sgd_momentum(_p1(param), _c1(grad), _p1(velocity), param.shape[0], <floating> lr,
                      <floating> momentum, nesterov, <floating> weight_decay)


def adam(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
         floating[::1] exp_avg_sq, Py_ssize_t step, double lr, double beta1, double beta2,
         double eps, double weight_decay, bint decoupled):
    cdef AdamScalars c = _adam_scalars(step, lr, beta1, beta2, eps, weight_decay, decoupled)
    with nogil:
        _adam(_p1(param), _c1(grad), _p1(exp_avg), _p1(exp_avg_sq), param.shape[0], &c)


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


cdef void* _address(object array, object dtype) except? NULL:
    """Address of the first element of a C-contiguous, writeable array of ``dtype``."""
    if array is None:
        return NULL
    if array.dtype != dtype or not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError(f"a compiled plan needs C-contiguous writeable {dtype} arrays")
    if array.size == 0:
        raise ValueError("a compiled plan needs non-empty arrays")
    return <void*> <size_t> array.__array_interface__["data"][0]


cdef int _read_update(object update, int kind, Update* u) except -1:
    """Fill ``u`` from an update dict (``optimizer.step_update()``) of the step's ``kind``,
    checked by nncore._validation.step_update."""
    u.kind = kind
    u.lr = update["lr"]
    u.weight_decay = update["weight_decay"]
    if kind == ADAM_UPDATE:
        u.beta1, u.beta2, u.eps = update["beta1"], update["beta2"], update["eps"]
        u.decoupled, u.step = update["decoupled"], update["step"]
        u.momentum, u.nesterov = 0.0, False
    else:
        u.momentum, u.nesterov = update["momentum"], update["nesterov"]
        u.beta1 = u.beta2 = u.eps = 0.0
        u.decoupled, u.step = False, 1
    return 0


cdef LayerPlan* _new_plan(list specs, object dtype) except NULL:
    """A LayerPlan array (PyMem_Malloc'd: the caller frees it) for the layer specs that
    nncore.ops built and checked; a buffer a spec leaves out (None) is NULL."""
    cdef LayerPlan* layers
    cdef LayerPlan* L
    if not specs:
        raise ValueError("a plan needs at least one layer")
    layers = <LayerPlan*> PyMem_Malloc(len(specs) * sizeof(LayerPlan))
    if layers == NULL:
        raise MemoryError()
    try:
        for i, spec in enumerate(specs):
            L = &layers[i]
            L.kind = LAYER_KIND_CODES[spec["kind"]]
            L.activation, L.n_in, L.n_out = spec["activation"], spec["n_in"], spec["n_out"]
            L.hidden = spec.get("hidden", 0)
            L.W, L.b = _address(spec["W"], dtype), _address(spec["b"], dtype)
            L.dW, L.db = _address(spec.get("dW"), dtype), _address(spec.get("db"), dtype)
            L.W2, L.dW2 = _address(spec.get("W2"), dtype), _address(spec.get("dW2"), dtype)
            L.out, L.dX = _address(spec["out"], dtype), _address(spec.get("dX"), dtype)
            L.scratch = _address(spec.get("scratch"), dtype)
            L.H, L.Z = _address(spec.get("H"), dtype), _address(spec.get("Z"), dtype)
    except BaseException:
        PyMem_Free(layers)
        raise
    return layers


cdef int _enter(bint* running, str what) except -1:
    """Mark a plan as running, or raise if it already is: its buffers (and a forward plan's
    output pointer) belong to one call at a time, and a second thread's call would write
    into the first one's arrays. Checked and set while holding the GIL, so atomically."""
    if running[0]:
        raise RuntimeError(f"this {what} is running in another thread; give each thread "
                           f"its own")
    running[0] = True
    return 0


cdef class Forward:
    """A network's forward pass over any number of rows in a single nogil call.

    Built by :func:`nncore.ops.forward_plan`, which allocates and checks the buffers (one
    block of ``n`` rows per layer) and keeps them alive in ``arrays``; do not build it
    directly. It reads the live parameters, so it stays valid while they are trained. One
    object runs one call at a time (its buffers are its own); threads each use their own.
    """

    cdef LayerPlan* layers
    cdef int n_layers, n, n_in, n_outputs
    cdef bint single, running
    cdef readonly object arrays

    def __cinit__(self, list specs, int n, dtype):
        self.single = dtype.itemsize == 4
        self.n_layers, self.n = len(specs), n
        self.layers = _new_plan(specs, dtype)
        self.arrays = specs
        self.n_in = self.layers[0].n_in
        self.n_outputs = self.layers[self.n_layers - 1].n_out

    def __dealloc__(self):
        PyMem_Free(self.layers)

    def run(self, X, out):
        """Write the outputs (the last layer's) for the rows of ``X`` (r, n_in) into ``out``
        (r, n_outputs), both C-contiguous of the plan's dtype (``X`` may be read-only)."""
        cdef const float[:, ::1] X32
        cdef const double[:, ::1] X64
        cdef float[:, ::1] out32
        cdef double[:, ::1] out64
        if X.shape[1:] != (self.n_in,) or out.shape != (X.shape[0], self.n_outputs):
            raise ValueError(f"X must be (r, {self.n_in}) and out (r, {self.n_outputs})")
        if X.shape[0] == 0:
            return out
        _enter(&self.running, "forward plan")
        try:
            if self.single:
                X32, out32 = X, out
                with nogil:
                    _plan_forward_blocks(self.layers, self.n_layers, &X32[0, 0],
                                         &out32[0, 0], X32.shape[0], self.n)
            else:
                X64, out64 = X, out
                with nogil:
                    _plan_forward_blocks(self.layers, self.n_layers, &X64[0, 0],
                                         &out64[0, 0], X64.shape[0], self.n)
        finally:
            self.running = False
        return out


# Where a two-thread call of TrainStep.run_many stands for the thread started for it.
cdef enum:
    CALL_OPEN = 0       # not yet claimed: the started thread may take part
    CALL_CLAIMED = 1    # the started thread takes part (and must be joined)
    CALL_CLOSED = 2     # given up on: the started thread, if it ever runs, does nothing


cdef _join(worker):
    """Join ``worker`` even if a Ctrl-C arrives meanwhile (it ends within microseconds once
    the barrier is aborted), then raise that interruption."""
    cdef object interruption = None
    while True:
        try:
            worker.join()
            break
        except BaseException as error:
            interruption = error if interruption is None else interruption
    if interruption is not None:
        raise interruption


cdef class TrainStep:
    """One whole training step of a network in a single nogil call.

    Built by :func:`nncore.ops.train_step`, which allocates and checks every buffer and
    keeps them alive in ``arrays``; do not build it directly. ``run`` does forward, the loss
    (``loss``: a code of LOSS_CODES), backward into the flat gradient buffer and, when the
    loss is finite, the optimizer's update (SGD or Adam, ``kind``) of the flat parameter
    buffer and of the optimizer's state buffers ``state0``, ``state1`` (SGD: the velocity
    and NULL; Adam: the two moments).
    """

    cdef LayerPlan* layers
    cdef int n_layers, n, n_in, n_classes, kind, loss_kind
    cdef bint single
    cdef void* dlogits
    cdef void* params
    cdef void* grads
    cdef void* state0
    cdef void* state1
    cdef Py_ssize_t n_params
    cdef bint running
    cdef readonly object arrays
    cdef LayerPlan* member_1_plan  # the plan from member 1's first row (_plan_from_row)
    cdef Team team
    cdef StepJob job         # run_many's call, for _run_job
    cdef Py_ssize_t calls    # two-thread calls so far: the number a started thread is for
    cdef int claim           # the current call's CALL_OPEN, CALL_CLAIMED or CALL_CLOSED
    cdef object failure      # what member 1 raised in the current call, or None

    def __cinit__(self, list specs, int n, params, grads, tuple state, dlogits, str kind,
                  int loss):
        dtype = params.dtype
        self.loss_kind = loss
        self.single = dtype.itemsize == 4
        self.kind = UPDATE_KIND_CODES[kind]
        if len(state) != (2 if self.kind == ADAM_UPDATE else 1):
            raise ValueError(f"a {kind!r} step takes {2 if self.kind == ADAM_UPDATE else 1} "
                             f"state arrays, got {len(state)}")
        self.n_layers = len(specs)
        self.n = n
        self.layers = _new_plan(specs, dtype)
        self.arrays = (specs, params, grads, state, dlogits)
        self.n_in = self.layers[0].n_in
        self.n_classes = self.layers[self.n_layers - 1].n_out
        self.params, self.grads = _address(params, dtype), _address(grads, dtype)
        self.state0 = _address(state[0], dtype)
        self.state1 = _address(state[1], dtype) if len(state) > 1 else NULL
        self.dlogits = _address(dlogits, dtype)
        self.n_params = params.size
        self.claim = CALL_CLOSED  # no call open until run_many opens one
        self.member_1_plan = <LayerPlan*> PyMem_Malloc(self.n_layers * sizeof(LayerPlan))
        if self.member_1_plan == NULL:
            raise MemoryError()
        _plan_from_row(self.layers, self.n_layers, _share_start(n, 1), dtype.itemsize,
                       self.member_1_plan)

    def __dealloc__(self):
        PyMem_Free(self.layers)
        PyMem_Free(self.member_1_plan)

    def run(self, X, targets, update, weights=None, int threads=1):
        """Returns ``(loss, n_correct, status)``: ``status`` is -1, UPDATE_NOT_FINITE (the
        update was skipped because it would make the weights non-finite), or a row whose
        label is out of range (nothing was computed then). ``update``, ``weights`` and
        ``threads`` as for run_many."""
        cdef double[::1] loss = numpy_empty(1)
        cdef Py_ssize_t[::1] correct = numpy_zeros(1, dtype=numpy_intp)
        if len(targets) != self.n:
            raise ValueError(f"targets has {len(targets)} rows, the step expects {self.n}")
        _, status = self.run_many(X, targets, 1, update, loss, correct, weights, threads)
        return loss[0], correct[0], status

    cdef const char* _targets(self, targets, Py_ssize_t rows, Py_ssize_t* step) except NULL:
        """The address of the targets (intp labels (rows,) for cross-entropy, values
        (rows, n_outputs) of the parameters' dtype for squared error), and in ``step`` the
        bytes one step's block takes. Read-only arrays are fine: the step only reads them."""
        if self.loss_kind == MEAN_SQUARED_ERROR:
            dtype = numpy_float32 if self.single else numpy_float64
            shape = (rows, self.n_classes)
        else:
            dtype, shape = numpy_intp, (rows,)
        if targets.dtype != dtype or not targets.flags.c_contiguous \
                or targets.shape[1:] != shape[1:] or targets.shape[0] < rows:
            raise ValueError(f"targets must be a C-contiguous {dtype.__name__} array of at "
                             f"least shape {shape}")
        step[0] = self.n * targets.strides[0]
        return <const char*> <size_t> targets.__array_interface__["data"][0]

    def run_many(self, X, targets, Py_ssize_t n_steps, update, double[::1] losses,
                 Py_ssize_t[::1] n_correct, weights=None, int threads=1):
        """``n_steps`` consecutive steps on the consecutive row blocks of ``X``/``targets``
        (each block has this step's ``n`` rows), without returning to Python in between.

        ``update`` is the optimizer's settings, a dict from ``optimizer.step_update()``:
        ``kind`` (this step's) and that kind's settings; Adam's ``step`` is the number of
        the first update of the call, and each applied update counts one more (the dict
        itself is not changed). ``losses[s]`` and ``n_correct[s]`` receive each step's
        loss and correct count. Stops after the first step whose loss is not finite or
        whose update would make the weights or the optimizer state non-finite (its update
        is skipped), or whose labels are out of range. Returns ``(steps_done, status)``:
        ``steps_done`` counts the steps whose losses were written; ``status`` is -1,
        UPDATE_NOT_FINITE, or the row of a bad label.

        ``weights`` is None (each step's loss is the plain mean over its batch) or the
        samples' weights, a C-contiguous 1-D array of the parameters' dtype with at least
        ``n_steps * n`` entries, finite and >= 0 (not checked here: nncore._validation
        .sample_weight), read in blocks of ``n`` alongside the targets: each step's loss is
        then its batch's weighted mean (0, with gradient 0, if its weights are all 0).

        ``threads`` is 1 (the steps run on this thread, BLAS with the threads it may use)
        or 2: this thread and one it starts each take half of every step's work
        (_team_step), with the same results to rounding; the caller holds BLAS to one thread
        meanwhile (nncore.ops does). Two only where TEAM_STEP is true.
        """
        cdef const float[:, ::1] X32
        cdef const double[:, ::1] X64
        cdef Py_ssize_t rows = n_steps * self.n
        cdef const float[::1] w32
        cdef const double[::1] w64
        cdef StepJob job
        if threads not in (1, 2) or (threads == 2 and not _HAVE_TEAM):
            raise ValueError(f"threads must be 1{' or 2' if _HAVE_TEAM else ''}, got {threads}")
        _read_update(update, self.kind, &job.update)
        if n_steps < 0 or losses.shape[0] < n_steps or n_correct.shape[0] < n_steps:
            raise ValueError("losses or n_correct too short for n_steps steps")
        if n_steps == 0:
            return 0, -1
        job.n_steps, job.losses, job.n_correct = n_steps, &losses[0], &n_correct[0]
        job.targets = self._targets(targets, rows, &job.target_step)
        job.weights = NULL
        if weights is not None:
            dtype = numpy_float32 if self.single else numpy_float64
            if weights.dtype != dtype or weights.ndim != 1 or weights.shape[0] < rows:
                raise ValueError(f"weights must be a C-contiguous 1-D {dtype.__name__} array "
                                 f"of at least {rows} entries")
            if self.single:
                w32 = weights
                job.weights = &w32[0]
            else:
                w64 = weights
                job.weights = &w64[0]
        if self.single:
            X32 = X
            if X32.shape[0] < rows or X32.shape[1] != self.n_in:
                raise ValueError(f"X must have {rows} rows of {self.n_in} features")
            job.X = &X32[0, 0]
        else:
            X64 = X
            if X64.shape[0] < rows or X64.shape[1] != self.n_in:
                raise ValueError(f"X must have {rows} rows of {self.n_in} features")
            job.X = &X64[0, 0]
        _enter(&self.running, "training step")
        try:
            self.job = job  # the memoryviews above keep what it points to alive
            if threads == 1:
                return self._run_job(-1)
            return self._run_job_on_two_threads()
        finally:
            self.running = False

    def _run_job_on_two_threads(self):
        """Run ``self.job`` as member 0 here and member 1 on a thread started for it
        (_member_1). If no thread can be started, the job runs on this thread alone.

        The started thread takes part only in the call it was started for, and only if it
        claims the call first: if anything is raised here (a Ctrl-C while the thread starts,
        before this one reached the steps), a thread that has not claimed the call never
        will, and one that has is released by aborting the barrier and joined before this
        returns, so no thread is left waiting or writing. If the started thread raised, this
        raises RuntimeError from its error once it is joined (member 0 stopped at the aborted
        barrier: the steps are not all done)."""
        self.calls += 1
        self.claim = CALL_OPEN
        self.failure = None
        _barrier_init(&self.team.barrier)
        worker = Thread(target=self._member_1, args=(self.calls,),
                        name="nncore training step", daemon=True)
        try:
            try:
                worker.start()
            except RuntimeError:  # no thread to be had (a process limit, shutdown)
                self.claim = CALL_CLOSED
                return self._run_job(-1)
            result = self._run_job(0)
        except BaseException:
            if self.claim == CALL_OPEN:
                self.claim = CALL_CLOSED
            _barrier_abort(&self.team.barrier)
            raise
        finally:
            if self.claim == CALL_CLAIMED:
                _join(worker)
        if self.failure is not None:
            raise RuntimeError("the training step's second thread failed") from self.failure
        return result

    def _member_1(self, Py_ssize_t call):
        """The started thread's part: member 1 of the call numbered ``call``, if that call
        is still open (claimed here, under the GIL, before the steps). What it raises is
        kept for run_many's thread to raise."""
        if call != self.calls or self.claim != CALL_OPEN:
            return
        self.claim = CALL_CLAIMED
        try:
            self._take_part()
        except BaseException as error:
            self.failure = error
            _barrier_abort(&self.team.barrier)  # member 0 must not wait for ever

    def _take_part(self):
        """Member 1's steps (a method of its own so that a test can make it fail)."""
        self._run_job(1)

    cdef tuple _run_job(self, int member):
        """Run ``self.job`` (run_many's call) alone (``member`` -1), or as ``member`` 0 or 1
        of the two threads that run it together. Returns ``(steps_done, status)``. Only
        run_many's thread and the one it starts call it (the job is checked; a member alone
        would wait for ever)."""
        cdef Update update = self.job.update  # each thread counts Adam's updates itself
        cdef Team* team = NULL if member < 0 else &self.team
        cdef LayerPlan* own_plan = self.member_1_plan if member == 1 else self.layers
        cdef Py_ssize_t done, status = -1
        cdef StepJob* j = &self.job
        with nogil:
            if self.single:
                done = _train_steps(self.layers, self.n_layers, <const float*> j.X,
                                    self.loss_kind, j.targets, j.target_step,
                                    <const float*> j.weights, <float*> self.dlogits, self.n,
                                    self.n_in, self.n_classes, <float*> self.params,
                                    <float*> self.grads, <float*> self.state0,
                                    <float*> self.state1, self.n_params, &update, j.n_steps,
                                    j.losses, j.n_correct, &status, team, max(member, 0),
                                    own_plan)
            else:
                done = _train_steps(self.layers, self.n_layers, <const double*> j.X,
                                    self.loss_kind, j.targets, j.target_step,
                                    <const double*> j.weights, <double*> self.dlogits, self.n,
                                    self.n_in, self.n_classes, <double*> self.params,
                                    <double*> self.grads, <double*> self.state0,
                                    <double*> self.state1, self.n_params, &update, j.n_steps,
                                    j.losses, j.n_correct, &status, team, max(member, 0),
                                    own_plan)
        return done, status
