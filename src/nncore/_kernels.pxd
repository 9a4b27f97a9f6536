# cython: language_level=3
"""Declarations of nncore's kernels (_kernels.pyx): types, level 1 and level 2.

Level 1 (the ``cdef inline`` helpers for one value or one row) is defined here, as Cython
requires for inline functions of a module with a .pxd; the float32 C helpers they call are
in ``_simd.h``. Level 2 (the array loops over raw pointers) is only declared here and defined
in _kernels.pyx. All of it is ``noexcept nogil``; nothing validates its arguments (see the
docstring of _kernels.pyx). Another Cython module may ``from nncore._kernels cimport ...``.
"""

from libc.math cimport (erfc as libm_erfc, exp as libm_exp, expm1 as libm_expm1,
                        log1p as libm_log1p, tanh as libm_tanh)

ctypedef fused floating:
    float
    double

# Activation codes: the ``code`` of each entry of nncore.activations.ACTIVATIONS, defined in
# _simd.h (its loops dispatch on them).
cdef extern from "_simd.h":
    enum:
        IDENTITY "NNCORE_IDENTITY"
        TANH "NNCORE_TANH"
        RELU "NNCORE_RELU"
        SIGMOID "NNCORE_SIGMOID"
        LEAKY_RELU "NNCORE_LEAKY_RELU"
        ELU "NNCORE_ELU"
        GELU "NNCORE_GELU"
        SILU "NNCORE_SILU"
        SOFTPLUS "NNCORE_SOFTPLUS"

# Largest op(B) = B^T (in elements) that _gemm transposes into a stack buffer first: for
# small matrices OpenBLAS's transposed-B path costs up to 1.7x its plain one (64x64x64
# sgemm: 10.1 us vs 5.9 us here), more than the 4096-element copy. 8192 floats = 32 KiB.
cdef enum:
    SMALL_TRANSPOSE = 8192

# --- a whole training step (_train_step in _kernels.pyx) -------------------------------------

cdef struct LayerPlan:
    # One layer of a network, as raw pointers into arrays that nncore.ops allocated, checked
    # and keeps alive. Dense: W (n_out, n_in), b, scratch dZ (n, n_out). Residual:
    # W = W1 (hidden, n_in), b = b1, W2 (n_in, hidden), H and scratch dZ (n, hidden).
    int kind
    int activation
    int n_in
    int n_out
    int hidden
    void* W
    void* b
    void* W2
    void* dW
    void* db
    void* dW2
    void* out      # (n, n_out): this layer's output, the next layer's input
    void* dX       # (n, n_in): gradient to the layer below; NULL for the first layer
    void* scratch
    void* H
    void* Z        # NULL, or the pre-activation (n, n_out or hidden) if act' needs it

cdef enum:
    DENSE = 0
    RESIDUAL = 1

# What a training step returns when no label is out of range (a bad label's row is >= 0);
# nncore.status names the first two for Python.
cdef enum:
    STEP_OK = -1                 # the step ran (and updated, if its loss was finite)
    STEP_UPDATE_NOT_FINITE = -2  # the update was skipped: it would overflow the weights
    STEP_ABORTED = -3            # two threads only: the barrier was aborted, nothing is done

# The losses of the fused step: the ``code`` of each entry of nncore.losses.LOSSES.
cdef enum:
    SOFTMAX_CROSS_ENTROPY = 0
    MEAN_SQUARED_ERROR = 1

# The optimizer update of the fused step: Update.kind (UPDATE_KIND_CODES in _kernels.pyx;
# nncore._validation.UPDATE_KINDS lists the same kinds with their state arrays and settings).
cdef enum:
    SGD_UPDATE = 0
    ADAM_UPDATE = 1

cdef struct Update:
    # One optimizer step's settings, read by _apply_update. SGD reads lr, momentum, nesterov
    # and weight_decay; Adam reads lr, beta1, beta2, eps, weight_decay, decoupled (AdamW) and
    # step, the 1-based number of the update it is about to apply (_train_steps adds one
    # after each update it applies).
    int kind
    double lr
    double momentum
    double weight_decay
    double beta1
    double beta2
    double eps
    bint nesterov
    bint decoupled
    Py_ssize_t step

# Adam's per-step constants, derived once per step from an Update (_adam_scalars) in double.
cdef struct AdamScalars:
    double decay          # what param is multiplied by first: 1 - lr * weight_decay (AdamW), 1
    double weight_decay   # the L2 term added to the gradient: weight_decay (Adam), 0 (AdamW)
    double weight         # lerp's weight 1 - beta1
    double beta2
    double one_minus_beta2
    double bias_correction2_sqrt
    double eps
    double neg_step_size  # -lr / (1 - beta1 ** step)


# ============================================================================================
# Level 1: one value, one row
# ============================================================================================

# The float32 activations, their derivatives, the loops that apply them, and the float32
# SGD and Adam loops are written in C in _simd.h (it says why); float64 uses the C library's
# exp, expm1, log1p, tanh and erfc.
cdef extern from "_simd.h":
    float _expf "nncore_expf" (float x) noexcept nogil
    float _expm1f "nncore_expm1f" (float x) noexcept nogil
    float _tanhf "nncore_tanhf" (float x) noexcept nogil
    float _sigmoidf "nncore_sigmoidf" (float x) noexcept nogil
    float _leaky_reluf "nncore_leaky_reluf" (float x) noexcept nogil
    float _eluf "nncore_eluf" (float x) noexcept nogil
    float _softplusf "nncore_softplusf" (float x) noexcept nogil
    float _siluf "nncore_siluf" (float x) noexcept nogil
    float _geluf "nncore_geluf" (float x) noexcept nogil
    float _silu_derivativef "nncore_silu_derivativef" (float x) noexcept nogil
    float _gelu_derivativef "nncore_gelu_derivativef" (float x) noexcept nogil
    void _exp_inplace_f32 "nncore_exp_inplace_f32" (float* x, Py_ssize_t size) noexcept nogil
    # Column block for the double accumulators of bias gradients (kept on the stack)
    enum: COLUMN_BLOCK "NNCORE_COLUMN_BLOCK"
    void _column_sums_f32 "nncore_column_sums_f32" (const float* G, float* sums,
                                                    Py_ssize_t n, Py_ssize_t m,
                                                    Py_ssize_t ld) noexcept nogil
    void _transpose_f32 "nncore_transpose_f32" (const float* src, Py_ssize_t rows,
                                                Py_ssize_t cols, Py_ssize_t ld,
                                                float* dst) noexcept nogil
    bint _sgd_update_is_finite_f32 "nncore_sgd_update_is_finite_f32" (
        const float* param, const float* grad, const float* velocity, Py_ssize_t size,
        float lr, float momentum, int nesterov, float weight_decay) noexcept nogil
    void _sgd_momentum_f32 "nncore_sgd_momentum_f32" (
        float* param, const float* grad, float* velocity, Py_ssize_t size, float lr,
        float momentum, int nesterov, float weight_decay) noexcept nogil
    bint _adam_update_is_finite_f32 "nncore_adam_update_is_finite_f32" (
        const float* param, const float* grad, const float* exp_avg, const float* exp_avg_sq,
        Py_ssize_t size, float decay, float weight_decay, float weight, float beta2,
        float one_minus_beta2, float bias_correction2_sqrt, float eps,
        float neg_step_size) noexcept nogil
    void _adam_f32 "nncore_adam_f32" (
        float* param, const float* grad, float* exp_avg, float* exp_avg_sq, Py_ssize_t size,
        float decay, float weight_decay, float weight, float beta2, float one_minus_beta2,
        float bias_correction2_sqrt, float eps, float neg_step_size) noexcept nogil
    # The cloned float32 loops over (n, m) by activation code; each returns 1, or 0 for a
    # code it has no loop for. Z[i, j] = act(Z[i, j] + b[j]) in place, for the activations
    # whose act' needs only their output:
    bint _bias_activation_f32 "nncore_bias_activation_f32" (
        int code, float* Z, const float* b, Py_ssize_t n, Py_ssize_t m) noexcept nogil
    # Z[i, j] += b[j] and A[i, j] = act(Z[i, j]), for those whose act' needs Z:
    bint _bias_keep_activation_f32 "nncore_bias_keep_activation_f32" (
        int code, float* Z, const float* b, float* A, Py_ssize_t n, Py_ssize_t m
        ) noexcept nogil
    # out[i, j] = (G[i, j] + shift[j]) * act'(S[i, j]), shift NULL or not:
    bint _times_derivative_f32 "nncore_times_derivative_f32" (
        int code, const float* G, const float* S, const float* shift, float* out,
        Py_ssize_t n, Py_ssize_t m) noexcept nogil


cdef inline double _exp(floating x) noexcept nogil:
    if floating is float:
        return _expf(x)
    else:
        return libm_exp(x)


cdef inline floating _tanh(floating z) noexcept nogil:
    if floating is float:
        return _tanhf(z)
    else:
        return libm_tanh(z)


cdef inline floating _relu(floating z) noexcept nogil:
    # written so that NaN stays NaN (NaN <= 0 is false)
    return 0 if z <= 0 else z


cdef inline floating _sigmoid(floating z) noexcept nogil:
    # exp(-z) overflows to inf for z < -709 and 1 / inf = 0, the right limit
    if floating is float:
        return _sigmoidf(z)
    else:
        return 1.0 / (1.0 + libm_exp(-z))


cdef inline floating _leaky_relu(floating z) noexcept nogil:
    # negative slope 0.01 (PyTorch's default); NaN stays NaN (NaN > 0 is false)
    if floating is float:
        return _leaky_reluf(z)
    else:
        return z if z > 0 else 0.01 * z


cdef inline floating _elu(floating z) noexcept nogil:
    # alpha 1: expm1 is only reached for z <= 0, where it cannot overflow (it is -1 in
    # double below z = -37.4); NaN goes to expm1 and stays NaN
    if floating is float:
        return _eluf(z)
    else:
        return z if z > 0 else libm_expm1(z)


cdef inline floating _softplus(floating z) noexcept nogil:
    # log(1 + exp(z)) with PyTorch's threshold: z itself above 20 (the difference,
    # log1p(exp(-z)) < 2.1e-9, is below float32's resolution there), so exp(z) never
    # exceeds exp(20) and cannot overflow; below z = -745, exp(z) underflows to 0 and so
    # does the result, as its true value rounds
    if floating is float:
        return _softplusf(z)
    else:
        return z if z > 20 else libm_log1p(libm_exp(z))


cdef inline floating _silu(floating z) noexcept nogil:
    # z sigmoid(z) = z / (1 + exp(-z)): below z = -709.8, exp(-z) overflows to inf and the
    # result is -0 where its true value is below 4e-306 in magnitude
    if floating is float:
        return _siluf(z)
    else:
        return z / (1.0 + libm_exp(-z))


cdef inline floating _gelu(floating z) noexcept nogil:
    # z Phi(z) = z erfc(-z / sqrt 2) / 2: erfc keeps the tail's relative accuracy where
    # 1 + erf(z / sqrt 2) would cancel (z < -1); it underflows to 0 below z = -38.5 (GELU's
    # true value is then below 1e-320), and z erfc(...) / 2 is then -0
    if floating is float:
        return _geluf(z)
    else:
        return 0.5 * z * libm_erfc(-z * 0.7071067811865476)  # 1 / sqrt 2


cdef inline double _silu_derivative(double z) noexcept nogil:
    # sigmoid(z) (1 + z (1 - sigmoid(z))), with 1 - sigmoid(z) = exp(-z) sigmoid(z): it does
    # not cancel as sigmoid(z) -> 1. Below z = -709, exp(-z) overflows (to inf past -709.8,
    # where inf * 0 would be NaN): the derivative is 0 there, its true value being below
    # 1e-305 in magnitude.
    cdef double e, s
    if z < -709:
        return 0.0
    e = libm_exp(-z)
    s = 1.0 / (1.0 + e)
    return s * (1.0 + z * (e * s))


cdef inline double _gelu_derivative(double z) noexcept nogil:
    # Phi(z) + z phi(z); exp(-z^2 / 2) underflows to 0 beyond |z| = 38.6, and z * 0 = 0
    return 0.5 * libm_erfc(-z * 0.7071067811865476) \
        + z * libm_exp(-0.5 * z * z) * 0.3989422804014327  # 1 / sqrt(2 pi)


cdef inline floating _derivative(floating s, int activation) noexcept nogil:
    """act'(z) from what the forward pass saved (nncore.activations says which): the output
    s = act(z) for the activations whose derivative is a function of it (tanh, relu, sigmoid,
    leaky relu, elu, softplus; z is then never stored), z itself for gelu and silu."""
    if activation == TANH:
        return 1 - s * s
    if activation == RELU:
        return 1 if s > 0 else 0
    if activation == SIGMOID:
        return s * (1 - s)
    if activation == LEAKY_RELU:
        return 1 if s > 0 else 0.01
    if activation == ELU:
        # exp(z) = act(z) + 1 for z <= 0
        return 1 if s > 0 else s + 1
    if activation == SOFTPLUS:
        # sigmoid(z) = 1 - exp(-act(z)), as -expm1: accurate where act(z) is small
        if floating is float:
            return -_expm1f(-s)
        else:
            return -libm_expm1(-s)
    if activation == SILU:
        if floating is float:
            return _silu_derivativef(s)
        else:
            return _silu_derivative(s)
    if activation == GELU:
        if floating is float:
            return _gelu_derivativef(s)
        else:
            return _gelu_derivative(s)
    return 1


cdef inline floating _row_max(const floating* row, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating row_max = row[0]
    for j in range(1, k):
        row_max = row[j] if row[j] > row_max else row_max
    return row_max


cdef inline double _normalise_row(floating* row, Py_ssize_t k, double scale) noexcept nogil:
    """row *= scale / sum(row), the sum taken in double; returns that sum."""
    cdef Py_ssize_t j, tail = k - k % 4
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, total, factor
    # four independent partial sums: one running sum would wait on each add's latency
    for j in range(0, tail, 4):
        s0 += row[j]
        s1 += row[j + 1]
        s2 += row[j + 2]
        s3 += row[j + 3]
    for j in range(tail, k):
        s0 += row[j]
    total = (s0 + s1) + (s2 + s3)
    factor = scale / total
    for j in range(k):
        row[j] = <floating> (row[j] * factor)
    return total


# ============================================================================================
# Level 2: array loops over pointers; the one BLAS wrapper (defined in _kernels.pyx)
# ============================================================================================

cdef void _gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                const floating* A, int lda, const floating* B, int ldb,
                floating beta, floating* C, int ldc) noexcept nogil

# activations and their derivatives over (n, m) arrays
cdef void _bias_activation(floating* Z, const floating* b, Py_ssize_t n, Py_ssize_t n_out,
                           int activation) noexcept nogil
cdef void _activation(floating* Z, const floating* b, floating* A, Py_ssize_t n,
                      Py_ssize_t n_out, int activation) noexcept nogil
cdef void _times_derivative(const floating* G, const floating* A, const floating* shift,
                            floating* out, Py_ssize_t n, Py_ssize_t m,
                            int activation) noexcept nogil

cdef void _column_sums(const floating* G, floating* sums, Py_ssize_t n, Py_ssize_t m,
                       Py_ssize_t ld) noexcept nogil

# layers: forward, backward and JVP of a dense layer and of a residual block
cdef void _linear_forward(const floating* X, const floating* W, const floating* b,
                          floating* Z, floating* A, int n, int n_in, int n_out,
                          int activation) noexcept nogil
cdef void _linear_backward(const floating* dA, const floating* X, const floating* W,
                           const floating* S, floating* dZ, floating* dX, floating* dW,
                           floating* db, int n, int n_in, int n_out, int activation
                           ) noexcept nogil
cdef void _linear_jvp(const floating* X, const floating* W, const floating* S,
                      const floating* dX, const floating* dW, const floating* db,
                      floating* dA, int n, int n_in, int n_out, int activation) noexcept nogil

cdef void _residual_forward(const floating* X, const floating* W1, const floating* b1,
                            const floating* W2, floating* Z, floating* H, floating* Y, int n,
                            int width, int hidden, int activation) noexcept nogil
cdef void _residual_backward(const floating* dY, const floating* X, const floating* W1,
                             const floating* W2, const floating* H, const floating* S,
                             floating* dZ, floating* dX, floating* dW1, floating* db1,
                             floating* dW2, int n, int width, int hidden,
                             int activation) noexcept nogil
cdef void _residual_jvp(const floating* X, const floating* W1, const floating* W2,
                        const floating* H, const floating* S, const floating* dX,
                        const floating* dW1, const floating* db1, const floating* dW2,
                        floating* dH, floating* dY, int n, int width, int hidden,
                        int activation) noexcept nogil

# softmax and the cross-entropy loss
cdef void _softmax(const floating* logits, floating* out, Py_ssize_t n,
                   Py_ssize_t k) noexcept nogil
# (``weights``: NULL, or one per row for the weighted mean; see _kernels.pyx)
cdef Py_ssize_t _softmax_cross_entropy(const floating* logits, const Py_ssize_t* labels,
                                       const floating* weights, floating* dlogits,
                                       Py_ssize_t n, Py_ssize_t k,
                                       double* loss) noexcept nogil
cdef double _mean_squared_error(const floating* pred, const floating* target,
                                const floating* weights, floating* dpred, Py_ssize_t n,
                                Py_ssize_t k) noexcept nogil

# the SGD update
cdef void _sgd_momentum(floating* param, const floating* grad, floating* velocity,
                        Py_ssize_t size, floating lr, floating momentum, bint nesterov,
                        floating weight_decay) noexcept nogil
cdef bint _sgd_update_is_finite(const floating* param, const floating* grad,
                                 const floating* velocity, Py_ssize_t size, floating lr,
                                 floating momentum, bint nesterov,
                                 floating weight_decay) noexcept nogil

# the Adam update (AdamW with decoupled weight decay)
cdef AdamScalars _adam_scalars(Py_ssize_t step, double lr, double beta1, double beta2,
                               double eps, double weight_decay, bint decoupled) noexcept nogil
cdef void _adam(floating* param, const floating* grad, floating* exp_avg,
                floating* exp_avg_sq, Py_ssize_t size, const AdamScalars* c) noexcept nogil
cdef bint _adam_update_is_finite(const floating* param, const floating* grad,
                                 const floating* exp_avg, const floating* exp_avg_sq,
                                 Py_ssize_t size, const AdamScalars* c) noexcept nogil

# the fused step's update: the finiteness check and, if it passes, the update of its kind
cdef bint _apply_update(floating* params, const floating* grads, floating* state0,
                        floating* state1, Py_ssize_t n_params,
                        const Update* update) noexcept nogil
