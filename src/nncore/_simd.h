/* nncore's C helpers for the Cython kernels (_kernels.pyx, declared in _kernels.pxd).

   The float32 exponential, tanh and sigmoid, the loops that apply them, and the float32 SGD
   and Adam loops are written in C in this header, for two reasons Cython cannot express: the
   helpers must be forced inline (GCC's inliner otherwise calls them "cold", and a loop that
   calls a function is not vectorised), and on x86-64 Linux the loops are compiled three
   times (AVX-512, AVX2, baseline SSE2) with the right clone picked when the module loads,
   so one portable binary runs 8 or 16 lanes wide where the CPU allows. float64 uses the C
   library's exp and tanh.
*/
#ifndef NNCORE_SIMD_H
#define NNCORE_SIMD_H

#include <stdint.h>
#include <string.h>
#include <stddef.h>
#include <math.h>
#if defined(__GNUC__)
#define NNCORE_INLINE static inline __attribute__((always_inline))
#else
#define NNCORE_INLINE static inline
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define NNCORE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NNCORE_CLONES
#endif

/* exp(x) in float to about 2 ulp, branch-free.  x = k ln2 + r with |r| <= ln2/2;
   exp(r) by its Taylor series to degree 7 (truncation error < 6e-9); 2^k is built in
   the exponent bits.  x is clamped to [-87, 88] so 2^k stays a normal float
   (exp(88) = 1.7e38 < FLT_MAX); below -87 the result is ~1.6e-38 instead of smaller.
   NaN fails both comparisons and propagates through r. */
NNCORE_INLINE float nncore_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* adding 1.5 * 2^23 rounds x / ln2 to an integer k held in the low mantissa bits */
    float shifted = x * 1.44269504f + 12582912.0f;
    float k = shifted - 12582912.0f;
    /* ln 2 split in two so that k times the high part is exact */
    float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
    float p = 1.0f + r * (1.0f + r * (1.0f / 2 + r * (1.0f / 6 + r * (1.0f / 24
              + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    uint32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    /* the bits of `shifted` are those of 1.5 * 2^23 (0x4B400000) plus k, and the low
       9 bits of 0x4B400000 are zero: shifting left by 23 keeps (k + 127) mod 2^9 in the
       exponent field, the bits of 2^k for -126 <= k <= 127 */
    bits = (bits + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh = 1 - 2 / (exp(2x) + 1) cancels as |x| -> 0; below |x| = 0.3 the Taylor series
   to x^11 is used instead (next term < 2e-9 relative).  Measured against float64:
   at most 5 ulp over [-100, 100]. */
NNCORE_INLINE float nncore_tanhf(float x) {
    float x2 = x * x;
    float series = x + x * x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315
                   + x2 * (62.0f / 2835 + x2 * (-1382.0f / 155925)))));
    float formula = 1.0f - 2.0f / (nncore_expf(2.0f * x) + 1.0f);
    return fabsf(x) < 0.3f ? series : formula;
}

NNCORE_INLINE float nncore_sigmoidf(float x) {
    return 1.0f / (1.0f + nncore_expf(-x));
}

/* x[i] = exp(x[i]) over a flat array: the softmax's exponentials, one long loop. */
NNCORE_CLONES static void nncore_exp_inplace_f32(float *x, ptrdiff_t size) {
    for (ptrdiff_t i = 0; i < size; i++) x[i] = nncore_expf(x[i]);
}

/* Z[i, j] = act(Z[i, j] + b[j]) for the two transcendental activations in float32. */
NNCORE_CLONES static void nncore_bias_tanh_f32(float *z, const float *b,
                                               ptrdiff_t n, ptrdiff_t m) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float *row = z + i * m;
        for (ptrdiff_t j = 0; j < m; j++) row[j] = nncore_tanhf(row[j] + b[j]);
    }
}

NNCORE_CLONES static void nncore_bias_sigmoid_f32(float *z, const float *b,
                                                  ptrdiff_t n, ptrdiff_t m) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float *row = z + i * m;
        for (ptrdiff_t j = 0; j < m; j++) row[j] = nncore_sigmoidf(row[j] + b[j]);
    }
}

/* The momentum update over the flat float32 parameter buffer (see _sgd_momentum), and
   the check that it stays finite (see _sgd_update_is_finite): long flat loops, cloned
   for AVX-512/AVX2 like the activations. */
NNCORE_CLONES static int nncore_sgd_update_is_finite_f32(
        const float *param, const float *grad, const float *velocity, ptrdiff_t size,
        float lr, float momentum, int nesterov, float weight_decay) {
    int bad = 0;
    for (ptrdiff_t i = 0; i < size; i++) {
        float g = grad[i] + weight_decay * param[i];
        float v = momentum * velocity[i] + g;
        float p = param[i] - lr * (nesterov ? g + momentum * v : v);
        bad |= ((p - p) != 0) | ((v - v) != 0);
    }
    return !bad;
}

NNCORE_CLONES static void nncore_sgd_momentum_f32(
        float *param, const float *grad, float *velocity, ptrdiff_t size, float lr,
        float momentum, int nesterov, float weight_decay) {
    for (ptrdiff_t i = 0; i < size; i++) {
        float g = grad[i] + weight_decay * param[i];
        float v = momentum * velocity[i] + g;
        velocity[i] = v;
        param[i] = param[i] - lr * (nesterov ? g + momentum * v : v);
    }
}

/* One element of Adam's update, PyTorch's rule in its order of operations (see _adam in
   _kernels.pyx for the formula and _adam_scalars for the constants): writes the new moments
   into *m and *v and returns the new parameter. The first moment is torch.lerp(m, g, w)
   with w = 1 - beta1: m + w (g - m) if |w| < 0.5 (`small`), else g + (w - 1) (g - m).
   `small` is the same for every element: the loops below pass it as a constant, so each
   compiled loop is branch-free. */
NNCORE_INLINE float nncore_adam_element(float param, float grad, float *m, float *v,
                                        int small, float decay, float weight_decay,
                                        float weight, float beta2, float one_minus_beta2,
                                        float bias_correction2_sqrt, float eps,
                                        float neg_step_size) {
    float g = grad + weight_decay * param;
    float m_new = small ? *m + weight * (g - *m) : g + (weight - 1.0f) * (g - *m);
    float v_new = *v * beta2 + one_minus_beta2 * g * g;
    float denom = sqrtf(v_new) / bias_correction2_sqrt + eps;
    *m = m_new;
    *v = v_new;
    return param * decay + neg_step_size * m_new / denom;
}

/* The check that the Adam update stays finite (see _adam_update_is_finite) and the update
   itself (see _adam), over the flat float32 buffers: one pass each, cloned like the SGD
   loops. */
#define NNCORE_ADAM_ARGUMENTS decay, weight_decay, weight, beta2, one_minus_beta2, \
                              bias_correction2_sqrt, eps, neg_step_size

NNCORE_INLINE int nncore_adam_bad(const float *param, const float *grad, const float *exp_avg,
                                  const float *exp_avg_sq, ptrdiff_t size, int small,
                                  float decay, float weight_decay, float weight, float beta2,
                                  float one_minus_beta2, float bias_correction2_sqrt,
                                  float eps, float neg_step_size) {
    int bad = 0;
    for (ptrdiff_t i = 0; i < size; i++) {
        float m = exp_avg[i], v = exp_avg_sq[i];
        float p = nncore_adam_element(param[i], grad[i], &m, &v, small, NNCORE_ADAM_ARGUMENTS);
        bad |= ((p - p) != 0) | ((m - m) != 0) | ((v - v) != 0);
    }
    return bad;
}

NNCORE_INLINE void nncore_adam_loop(float *param, const float *grad, float *exp_avg,
                                    float *exp_avg_sq, ptrdiff_t size, int small, float decay,
                                    float weight_decay, float weight, float beta2,
                                    float one_minus_beta2, float bias_correction2_sqrt,
                                    float eps, float neg_step_size) {
    for (ptrdiff_t i = 0; i < size; i++) {
        float m = exp_avg[i], v = exp_avg_sq[i];
        float p = nncore_adam_element(param[i], grad[i], &m, &v, small, NNCORE_ADAM_ARGUMENTS);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] = p;
    }
}

/* A sufficient condition for the update to be finite, at the cost of a pass without square
   roots or divisions (those make the update itself about three times as slow as SGD's):
   with m and v the new moments and p the parameters, if every p and m is finite, every v
   finite and >= 0 (the bits of v, sign included, below those of +inf), then
   denom = sqrt(v) / c + eps >= eps > 0 with everything finite, and
   |new p| <= (|decay| max|p| + |neg_step_size| max|m| max(1, 1 / eps)) (1 + 2^-24)^3,
   which is finite if the bound is below FLT_MAX / 2. Maxima of |x| are taken on the bits
   (for x >= 0 they order as the values do), integer maxima that vectorise. */
NNCORE_INLINE uint32_t nncore_float_bits(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

NNCORE_INLINE float nncore_bits_float(uint32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

NNCORE_INLINE int nncore_adam_surely_finite(const float *param, const float *grad,
                                            const float *exp_avg, const float *exp_avg_sq,
                                            ptrdiff_t size, int small, float decay,
                                            float weight_decay, float weight, float beta2,
                                            float one_minus_beta2, float bias_correction2_sqrt,
                                            float eps, float neg_step_size) {
    const uint32_t infinity = 0x7f800000u, magnitude = 0x7fffffffu;
    uint32_t max_p = 0, max_m = 0, max_v = 0;
    (void) bias_correction2_sqrt;
    for (ptrdiff_t i = 0; i < size; i++) {
        float p = param[i], g = grad[i] + weight_decay * p;
        float m = small ? exp_avg[i] + weight * (g - exp_avg[i])
                        : g + (weight - 1.0f) * (g - exp_avg[i]);
        float v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g;
        uint32_t bp = nncore_float_bits(p) & magnitude, bm = nncore_float_bits(m) & magnitude;
        uint32_t bv = nncore_float_bits(v);
        max_p = bp > max_p ? bp : max_p;
        max_m = bm > max_m ? bm : max_m;
        max_v = bv > max_v ? bv : max_v;
    }
    if (max_p >= infinity || max_m >= infinity || max_v >= infinity)
        return 0;
    double bound = fabs((double) decay) * nncore_bits_float(max_p)
                   + fabs((double) neg_step_size) * nncore_bits_float(max_m)
                     * (eps >= 1.0f ? 1.0 : 1.0 / eps);
    return bound < 0.5 * 3.4028234663852886e38;  /* FLT_MAX; false for NaN (eps = 0) */
}

NNCORE_CLONES static int nncore_adam_update_is_finite_f32(
        const float *param, const float *grad, const float *exp_avg, const float *exp_avg_sq,
        ptrdiff_t size, float decay, float weight_decay, float weight, float beta2,
        float one_minus_beta2, float bias_correction2_sqrt, float eps, float neg_step_size) {
    int small = fabsf(weight) < 0.5f;
    if (small ? nncore_adam_surely_finite(param, grad, exp_avg, exp_avg_sq, size, 1,
                                          NNCORE_ADAM_ARGUMENTS)
              : nncore_adam_surely_finite(param, grad, exp_avg, exp_avg_sq, size, 0,
                                          NNCORE_ADAM_ARGUMENTS))
        return 1;
    /* not sure (something is huge, or eps tiny): compute the update itself */
    if (small)
        return !nncore_adam_bad(param, grad, exp_avg, exp_avg_sq, size, 1,
                                NNCORE_ADAM_ARGUMENTS);
    return !nncore_adam_bad(param, grad, exp_avg, exp_avg_sq, size, 0, NNCORE_ADAM_ARGUMENTS);
}

NNCORE_CLONES static void nncore_adam_f32(
        float *param, const float *grad, float *exp_avg, float *exp_avg_sq, ptrdiff_t size,
        float decay, float weight_decay, float weight, float beta2, float one_minus_beta2,
        float bias_correction2_sqrt, float eps, float neg_step_size) {
    if (fabsf(weight) < 0.5f)
        nncore_adam_loop(param, grad, exp_avg, exp_avg_sq, size, 1, NNCORE_ADAM_ARGUMENTS);
    else
        nncore_adam_loop(param, grad, exp_avg, exp_avg_sq, size, 0, NNCORE_ADAM_ARGUMENTS);
}

#undef NNCORE_ADAM_ARGUMENTS

#endif /* NNCORE_SIMD_H */
