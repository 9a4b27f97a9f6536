/* nncore's C helpers for the Cython kernels (_kernels.pyx, declared in _kernels.pxd).

   The float32 exponential, the float32 activations and their derivatives, the loops that
   apply them (and the bias gradients' column sums and _gemm's small transpose), and the
   float32 SGD and Adam loops are written in C in this header, for two reasons Cython
   cannot express: the helpers must be forced inline (GCC's inliner otherwise calls them
   "cold", and a loop that calls a function is not vectorised), and on x86-64 Linux the
   loops are compiled three times (AVX-512, AVX2, baseline SSE2) with the right clone
   picked when the module loads, so one portable binary runs 8 or 16 lanes wide where the
   CPU allows. float64 uses the C library's exp, expm1, log1p, tanh and erfc.

   The errors stated below are measured against float64 at the same float32 inputs by
   benchmarks/activation_accuracy.py (1e7 points of [-10, 10] and 1e6 of [-100, 100]
   unless said otherwise; the worse of the FMA clones and the baseline), which prints the
   whole table. Relative errors and ulps are taken where the float64 value is above 1e-36
   in magnitude: below it, in the far tails, a helper may flush to 0 or stop at
   nncore_expf's floor 1.6e-38, and its absolute error is below 1e-36.
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
/* NNCORE_ONE_LEVEL compiles every loop once, for the -march given, with no clones: how
   tests/test_simd_levels.py runs the AVX-512, AVX2 and baseline code of each loop alone. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(NNCORE_ONE_LEVEL)
#define NNCORE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NNCORE_CLONES
#endif

/* The activation codes: the `code` of each entry of nncore.activations.ACTIVATIONS, declared
   for Cython in _kernels.pxd from here. */
enum {
    NNCORE_IDENTITY = 0,
    NNCORE_TANH = 1,
    NNCORE_RELU = 2,
    NNCORE_SIGMOID = 3,
    NNCORE_LEAKY_RELU = 4,
    NNCORE_ELU = 5,
    NNCORE_GELU = 6,
    NNCORE_SILU = 7,
    NNCORE_SOFTPLUS = 8
};

/* The float exponential and its relatives share one range reduction: x = k ln2 + r with k
   an integer and |r| <= ln2/2, so that exp(x) = 2^k exp(r), exp(r) from a short polynomial
   and 2^k built in the exponent bits. */

/* adding 1.5 * 2^23 to x / ln2 rounds it to the integer k, held in the low mantissa bits */
#define NNCORE_ROUND_SHIFT 12582912.0f
/* ln 2 split in two so that k times the high part is exact */
#define NNCORE_LN2_HI 0.693145751953125f
#define NNCORE_LN2_LO 1.428606765330187e-06f

/* 2^k from `shifted` = k + 1.5 * 2^23 as a float (-126 <= k <= 127): the bits of
   `shifted` are those of 1.5 * 2^23 (0x4B400000) plus k, and the low 9 bits of 0x4B400000
   are zero: shifting left by 23 keeps (k + 127) mod 2^9 in the exponent field, the bits of
   2^k. */
NNCORE_INLINE float nncore_exp2_shifted(float shifted) {
    uint32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return scale;
}

/* exp(r) for |r| <= ln2/2 (a little more is fine): a polynomial of degree 6 fitted to the
   smallest largest relative error, 3.1e-9 in exact arithmetic with these float32
   coefficients (benchmarks/activation_accuracy.py --fit exp), one multiply-add fewer than
   Taylor's series to degree 7 (7e-9). */
NNCORE_INLINE float nncore_exp_reduced(float r) {
    return 1.0f + r * (1.0f + r * (0.4999999403953552f + r * (0.1666652113199234f
           + r * (0.04166826233267784f + r * (0.008368674665689468f
           + r * 0.0013821055181324482f)))));
}

/* exp(r) - 1 for |r| <= ln2/2: Taylor to degree 8, truncation error below 6e-10 relative
   (relative to exp(r) - 1 itself, which a series starting at 1 would lose as r -> 0). */
NNCORE_INLINE float nncore_expm1_reduced(float r) {
    return r + r * r * (1.0f / 2 + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120
           + r * (1.0f / 720 + r * (1.0f / 5040 + r * (1.0f / 40320)))))));
}

/* The range reduction of nncore_expf and nncore_expm1f: x clamped to [-87, 88] so 2^k
   stays a normal float (exp(88) = 1.7e38 < FLT_MAX), then x = k ln2 + r; returns r and
   stores k + 1.5 * 2^23 (for nncore_exp2_shifted) in *shifted.  NaN fails both
   comparisons and propagates through r. */
NNCORE_INLINE float nncore_exp_reduce(float x, float *shifted) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    *shifted = x * 1.44269504f + NNCORE_ROUND_SHIFT;
    float k = *shifted - NNCORE_ROUND_SHIFT;
    return (x - k * NNCORE_LN2_HI) - k * NNCORE_LN2_LO;
}

/* exp(x) in float, branch-free: at most 1.2 ulp over [-87, 88]; below x = -87 the result
   is ~1.6e-38 instead of smaller (the clamp of nncore_exp_reduce). */
NNCORE_INLINE float nncore_expf(float x) {
    float shifted;
    float r = nncore_exp_reduce(x, &shifted);
    return nncore_exp_reduced(r) * nncore_exp2_shifted(shifted);
}

/* exp(hi + lo) for an exponent carried in two parts: hi exact and large, |lo| <= 1, so the
   exponent is never rounded to a float near hi (at hi = -80 its spacing, 8e-6, would be a
   relative error of 8e-6 in the result).  k is taken from hi + lo, and hi - k ln2_hi is
   exact as both are floats close to each other; lo joins r after it.  Unlike
   nncore_expf, nothing is clamped (two operations fewer in GELU's loops): hi + lo must lie
   in [-87, 88], and outside it the result is meaningless and must be discarded. */
NNCORE_INLINE float nncore_exp_sumf(float hi, float lo) {
    float shifted = (hi + lo) * 1.44269504f + NNCORE_ROUND_SHIFT;
    float k = shifted - NNCORE_ROUND_SHIFT;
    float r = ((hi - k * NNCORE_LN2_HI) + lo) - k * NNCORE_LN2_LO;
    return nncore_exp_reduced(r) * nncore_exp2_shifted(shifted);
}

/* exp(x) - 1 in float, branch-free: with x = k ln2 + r as in nncore_expf,
   exp(x) - 1 = 2^k (exp(r) - 1) + (2^k - 1), where 2^k - 1 is exact for -24 <= k <= 24 and
   otherwise rounds where the other term is below half its ulp: no cancellation, and for
   k = 0 it is the series itself, so small x keep their relative accuracy (1 - exp(-a)
   loses it all as a -> 0).  x is clamped to [-87, 88]: below, the result is -1, exact in
   float beyond x = -17.4.  At most 1.4 ulp over [-100, 88]. */
NNCORE_INLINE float nncore_expm1f(float x) {
    float shifted;
    float r = nncore_exp_reduce(x, &shifted);
    float scale = nncore_exp2_shifted(shifted);
    return scale * nncore_expm1_reduced(r) + (scale - 1.0f);
}

/* log(1 + t) for 0 <= t <= 1 (a NaN propagates), branch-free: log(1 + t) = 2 atanh(s) with
   s = t / (2 + t) in [0, 1/3], and atanh(s) = s P(s^2), P a polynomial of degree 4 fitted to
   the smallest largest relative error, 4.5e-9 in exact arithmetic with these float32
   coefficients (benchmarks/activation_accuracy.py --fit log1p; the series
   1 + s^2/3 + s^4/5 + ... needs eight terms for as much).  No 1 + t is ever rounded, so
   t = 1e-30 gives 1e-30.  At most 2.9 ulp over [0, 1]. */
NNCORE_INLINE float nncore_log1p_unitf(float t) {
    float s = t / (2.0f + t);
    float s2 = s * s;
    return 2.0f * s * (1.0f + s2 * (0.3333320915699005f + s2 * (0.20010718703269958f
           + s2 * (0.1400151401758194f + s2 * 0.1400337666273117f))));
}

/* tanh(x) = x N(x^2) / D(x^2), a rational fit with relative error 2.5e-8 in exact
   arithmetic over |x| <= 9 (benchmarks/activation_accuracy.py --fit tanh); x is clamped to
   +-9 first, where tanh rounds to +-1 in float (a NaN passes both clamps), and the result
   to [-1, 1].  Eight multiply-adds and one division, half the work of
   1 - 2 / (exp(2x) + 1) with a series near 0, and N(0) = D(0) = 1 keep tiny x exact.
   Measured against float64: at most 5.9 ulp (3.5e-7 relative). */
NNCORE_INLINE float nncore_tanhf(float x) {
    x = x < -9.0f ? -9.0f : x;
    x = x > 9.0f ? 9.0f : x;
    float s = x * x;
    float N = 1.0f + s * (0.13383980095386505f + s * (0.0034989959094673395f
              + s * (2.066126216959674e-05f + s * 1.3419827027405518e-08f)));
    float D = 1.0f + s * (0.4671730101108551f + s * (0.025890206918120384f
              + s * (0.0003291037573944777f + s * 7.804736696925829e-07f)));
    float t = x * N / D;
    /* near the clamp the rounding can pass 1 by an ulp, and the derivative 1 - t^2 taken
       from the output would turn negative: held to [-1, 1] (a NaN fails both tests) */
    t = t > 1.0f ? 1.0f : t;
    return t < -1.0f ? -1.0f : t;
}

NNCORE_INLINE float nncore_sigmoidf(float x) {
    return 1.0f / (1.0f + nncore_expf(-x));
}

/* The other activations, branch-free (the selects become vector blends), and their
   derivatives that take more than a few operations (the cheap ones, from the output, are
   with their loops below). */

/* ReLU, written so that NaN stays NaN (NaN <= 0 is false); the identity. Exact. */
NNCORE_INLINE float nncore_reluf(float z) { return z <= 0.0f ? 0.0f : z; }
NNCORE_INLINE float nncore_identityf(float z) { return z; }

/* Leaky ReLU, negative slope 0.01: at most 0.8 ulp (0.01 z is rounded once). */
NNCORE_INLINE float nncore_leaky_reluf(float z) {
    return z > 0.0f ? z : 0.01f * z;  /* NaN > 0 is false: 0.01 NaN = NaN */
}

/* ELU (alpha 1): z for z > 0, else exp(z) - 1 by nncore_expm1f, which is -1 (exact in
   float) below z = -17.4; the positive z, whose exp could overflow, take the other side of
   the select.  At most 0.9 ulp. */
NNCORE_INLINE float nncore_eluf(float z) {
    return z > 0.0f ? z : nncore_expm1f(z);
}

/* softplus log(1 + exp(z)) with PyTorch's threshold: z itself for z > 20.  Below it,
   max(z, 0) + log(1 + exp(-|z|)): exp never overflows (its argument is <= 0) and log1p's
   argument is in (0, 1].  For z < -87, exp(-|z|) is nncore_expf's floor 1.6e-38 instead of
   smaller, an absolute error below 1.6e-38.  At most 3.6 ulp (2.8e-7 relative). */
NNCORE_INLINE float nncore_softplusf(float z) {
    float smooth = (z > 0.0f ? z : 0.0f) + nncore_log1p_unitf(nncore_expf(-fabsf(z)));
    return z > 20.0f ? z : smooth;
}

/* softplus'(z) = sigmoid(z) = 1 - exp(-a) from a = softplus(z) >= 0, as -expm1(-a): accurate
   for small a, where 1 - exp(-a) would cancel.  At most 0.9 ulp over a in [0, 100]. */
NNCORE_INLINE float nncore_softplus_derivativef(float a) {
    return -nncore_expm1f(-a);
}

/* SiLU z sigmoid(z).  For z < -88, exp(-z) is clamped at exp(88) by nncore_expf, and
   z sigmoid(z) would grow with |z| (-0.6 at z = -1e38): the result is flushed to 0 there
   (the float64 value is below 5.4e-37 in magnitude).  z * (1 / (1 + e)), not z / (1 + e):
   GCC then folds the clamped lanes' sigmoid to a constant instead of dividing twice (2.5x
   slower).  At most 2.8 ulp (1.9e-7 relative). */
NNCORE_INLINE float nncore_siluf(float z) {
    float sigmoid = 1.0f / (1.0f + nncore_expf(-z));
    return z < -88.0f ? 0.0f : z * sigmoid;
}

/* SiLU'(z) = s (1 + z (1 - s)) with s = sigmoid(z), and 1 - s = exp(-z) s: written so, it
   does not cancel as s -> 1.  Beyond |z| = 88, nncore_expf's clamp would again leave a term
   growing with z: the limits 0 and 1 are taken there (the float64 value is within 5.4e-37 of
   them).  At most 2.3e-7 absolute (it crosses 0 at z = -1.28: relative errors say nothing
   there). */
NNCORE_INLINE float nncore_silu_derivativef(float z) {
    float e = nncore_expf(-z);
    float s = 1.0f / (1.0f + e);
    float derivative = s * (1.0f + z * (e * s));  /* e s <= 1: z e alone may overflow */
    derivative = z < -88.0f ? 0.0f : derivative;
    return z > 88.0f ? 1.0f : derivative;
}

/* GELU z Phi(z) and GELU'(z) = Phi(z) + z phi(z), Phi and phi the standard normal
   distribution and density, from the tail Q = Phi(-|z|) = erfc(|z| / sqrt 2) / 2 and
   E = exp(-z^2 / 2): Phi(z) is Q for z < 0 and 1 - Q for z >= 0, so 1 - Q >= 1/2 never
   cancels and Q keeps its relative accuracy far out in the tail, where
   1 + erf(z / sqrt 2) would be all rounding error.

       Q = E N(a) / D(a),   a = |z|,   N, D polynomials of degrees 4 and 5

   with positive coefficients (so their Horner sums do not cancel), fitted here to the
   smallest largest relative error over 0 <= a <= 13.2: 2.6e-8 in exact arithmetic with
   these float32 coefficients (benchmarks/activation_accuracy.py --fit reproduces them).
   A&S 7.1.26 (erfc = t P(t) exp(-x^2), t = 1 / (1 + p x)), PyTorch's float32 erf, has an
   absolute error of 1.5e-7 but a relative error of 38% far in the tail.

   E is computed without rounding z^2 / 2 to a float first, which would cost up to 5e-6
   relative at |z| = 13: a = ah + al with ah holding a's top 12 significant bits, so
   ah^2 / 2 is exact and a^2 / 2 = ah^2 / 2 + al (a + ah) / 2 goes to nncore_exp_sumf in
   two parts.  Beyond |z| = 13.19, E < exp(-87) would leave nncore_exp_sumf's range: Q and
   E are flushed to 0 there, where |GELU(z)| < 7e-39 for z < 0, GELU(z) = z in float for
   z > 0, and |z phi(z)| < 9e-38.  A NaN fails a > 13.19 and propagates.

   Measured (see the top of this file):
     Q: at most 6.6 ulp (4.8e-7 relative);
     erf(x) = sign(x) (1 - 2 Q(sqrt 2 x)): at most 2.2e-7 absolute on [-10, 10];
     GELU: at most 7.8 ulp (4.7e-7 relative; 3.9e-7 absolute);
     GELU': at most 1.6e-7 absolute (it crosses 0 at z = -0.75: relative errors say
     nothing there). */
NNCORE_INLINE float nncore_gaussian_tailf(float z, float *density) {
    float a = fabsf(z);
    float N = 0.5f + a * (0.4347681403160095f + a * (0.18060606718063354f
              + a * (0.03974195569753647f + a * 0.003982424270361662f)));
    float D = 1.0f + a * (1.6674211025238037f + a * (1.1916183233261108f
              + a * (0.46252501010894775f + a * (0.09962593764066696f
              + a * 0.009982308372855186f))));
    uint32_t bits;
    memcpy(&bits, &a, sizeof bits);
    bits &= 0xFFFFF000u;  /* keeps the 12 leading bits of the significand */
    float ah;
    memcpy(&ah, &bits, sizeof ah);
    float al = a - ah;
    float E = nncore_exp_sumf((-0.5f * ah) * ah, (-0.5f * al) * (a + ah));
    int tail = a > 13.19f;  /* also where E is meaningless: a^2 / 2 > 87 */
    *density = tail ? 0.0f : E;
    return tail ? 0.0f : E * N / D;
}

NNCORE_INLINE float nncore_geluf(float z) {
    float E;
    float Q = nncore_gaussian_tailf(z, &E);
    return z * (z < 0.0f ? Q : 1.0f - Q);
}

NNCORE_INLINE float nncore_gelu_derivativef(float z) {
    float E;
    float Q = nncore_gaussian_tailf(z, &E);
    return (z < 0.0f ? Q : 1.0f - Q) + z * E * 0.3989422804014327f;  /* 1 / sqrt(2 pi) */
}

/* x[i] = exp(x[i]) over a flat array: the softmax's exponentials, one long loop. */
NNCORE_CLONES static void nncore_exp_inplace_f32(float *x, ptrdiff_t size) {
    for (ptrdiff_t i = 0; i < size; i++) x[i] = nncore_expf(x[i]);
}

/* The float32 activation loops of the kernels, one per activation so that each inner loop
   is branch-free and vectorises, cloned per CPU level like every loop here:

   NNCORE_BIAS_LOOP: z[i, j] = act(z[i, j] + b[j]) in place over (n, m), for the
   activations whose derivative is a function of their output (_bias_activation);

   NNCORE_BIAS_KEEP_LOOP: z[i, j] += b[j] and a[i, j] = act(z[i, j]) in one pass, z kept,
   for those whose derivative needs z (_activation);

   NNCORE_TIMES_DERIVATIVE_LOOP: out[i, j] = (g[i, j] + shift[j]) * act'(s[i, j]) over
   (n, m), s what the forward pass saved, shift NULL for none, out possibly g
   (_times_derivative). */
#define NNCORE_BIAS_LOOP(name, act)                                                       \
    NNCORE_CLONES static void name(float *z, const float *b, ptrdiff_t n, ptrdiff_t m) {  \
        for (ptrdiff_t i = 0; i < n; i++) {                                              \
            float *row = z + i * m;                                                      \
            for (ptrdiff_t j = 0; j < m; j++) row[j] = act(row[j] + b[j]);               \
        }                                                                                \
    }

#define NNCORE_BIAS_KEEP_LOOP(name, act)                                                  \
    NNCORE_CLONES static void name(float *z, const float *b, float *a, ptrdiff_t n,       \
                                   ptrdiff_t m) {                                        \
        for (ptrdiff_t i = 0; i < n; i++) {                                              \
            float *z_row = z + i * m, *a_row = a + i * m;                                \
            for (ptrdiff_t j = 0; j < m; j++) {                                          \
                float pre = z_row[j] + b[j];                                             \
                z_row[j] = pre;                                                          \
                a_row[j] = act(pre);                                                     \
            }                                                                            \
        }                                                                                \
    }

#define NNCORE_TIMES_DERIVATIVE_LOOP(name, derivative)                                    \
    NNCORE_CLONES static void name(const float *g, const float *s, const float *shift,    \
                                   float *out, ptrdiff_t n, ptrdiff_t m) {                \
        for (ptrdiff_t i = 0; i < n; i++) {                                              \
            const float *g_row = g + i * m, *s_row = s + i * m;                          \
            float *o_row = out + i * m;                                                  \
            if (shift == NULL)                                                           \
                for (ptrdiff_t j = 0; j < m; j++)                                        \
                    o_row[j] = g_row[j] * derivative(s_row[j]);                          \
            else                                                                         \
                for (ptrdiff_t j = 0; j < m; j++)                                        \
                    o_row[j] = (g_row[j] + shift[j]) * derivative(s_row[j]);             \
        }                                                                                \
    }

NNCORE_BIAS_LOOP(nncore_bias_identity_f32, nncore_identityf)
NNCORE_BIAS_LOOP(nncore_bias_tanh_f32, nncore_tanhf)
NNCORE_BIAS_LOOP(nncore_bias_relu_f32, nncore_reluf)
NNCORE_BIAS_LOOP(nncore_bias_sigmoid_f32, nncore_sigmoidf)
NNCORE_BIAS_LOOP(nncore_bias_leaky_relu_f32, nncore_leaky_reluf)
NNCORE_BIAS_LOOP(nncore_bias_elu_f32, nncore_eluf)
NNCORE_BIAS_LOOP(nncore_bias_softplus_f32, nncore_softplusf)
NNCORE_BIAS_KEEP_LOOP(nncore_bias_keep_gelu_f32, nncore_geluf)
NNCORE_BIAS_KEEP_LOOP(nncore_bias_keep_silu_f32, nncore_siluf)
/* The derivatives taken from the output a = act(z) that cost a few operations (the
   float64 twins are _derivative in _kernels.pxd); their loops are cloned like the others,
   or the compiler's baseline SSE2 code would run them 2 doubles or 4 floats wide. */
/* tanh' = 1 - a^2 as (1 - a)(1 + a): exact near |a| = 1, where 1 - a*a loses digits, and
   never fused into one multiply-add by some clones and not others (each clone would round
   differently, 8.6e-5 relative apart there) */
NNCORE_INLINE float nncore_tanh_derivativef(float a) { return (1.0f - a) * (1.0f + a); }
NNCORE_INLINE float nncore_sigmoid_derivativef(float a) { return a * (1.0f - a); }
NNCORE_INLINE float nncore_relu_derivativef(float a) { return a > 0.0f ? 1.0f : 0.0f; }
NNCORE_INLINE float nncore_leaky_relu_derivativef(float a) { return a > 0.0f ? 1.0f : 0.01f; }
/* exp(z) = a + 1 for z <= 0 */
NNCORE_INLINE float nncore_elu_derivativef(float a) { return a > 0.0f ? 1.0f : a + 1.0f; }

NNCORE_TIMES_DERIVATIVE_LOOP(nncore_times_tanh_derivative_f32, nncore_tanh_derivativef)
NNCORE_TIMES_DERIVATIVE_LOOP(nncore_times_sigmoid_derivative_f32, nncore_sigmoid_derivativef)
NNCORE_TIMES_DERIVATIVE_LOOP(nncore_times_relu_derivative_f32, nncore_relu_derivativef)
NNCORE_TIMES_DERIVATIVE_LOOP(nncore_times_leaky_relu_derivative_f32,
                             nncore_leaky_relu_derivativef)
NNCORE_TIMES_DERIVATIVE_LOOP(nncore_times_elu_derivative_f32, nncore_elu_derivativef)
NNCORE_TIMES_DERIVATIVE_LOOP(nncore_times_softplus_derivative_f32, nncore_softplus_derivativef)
NNCORE_TIMES_DERIVATIVE_LOOP(nncore_times_gelu_derivative_f32, nncore_gelu_derivativef)
NNCORE_TIMES_DERIVATIVE_LOOP(nncore_times_silu_derivative_f32, nncore_silu_derivativef)

/* The kernels' entry points to the loops above, by activation code: each runs the loop of
   `code` and returns 1, or returns 0 where it has none (the caller's own loop then runs). */
static int nncore_bias_activation_f32(int code, float *z, const float *b, ptrdiff_t n,
                                      ptrdiff_t m) {
    switch (code) {
    case NNCORE_IDENTITY: nncore_bias_identity_f32(z, b, n, m); return 1;
    case NNCORE_TANH: nncore_bias_tanh_f32(z, b, n, m); return 1;
    case NNCORE_RELU: nncore_bias_relu_f32(z, b, n, m); return 1;
    case NNCORE_SIGMOID: nncore_bias_sigmoid_f32(z, b, n, m); return 1;
    case NNCORE_LEAKY_RELU: nncore_bias_leaky_relu_f32(z, b, n, m); return 1;
    case NNCORE_ELU: nncore_bias_elu_f32(z, b, n, m); return 1;
    case NNCORE_SOFTPLUS: nncore_bias_softplus_f32(z, b, n, m); return 1;
    }
    return 0;
}

static int nncore_bias_keep_activation_f32(int code, float *z, const float *b, float *a,
                                           ptrdiff_t n, ptrdiff_t m) {
    switch (code) {
    case NNCORE_GELU: nncore_bias_keep_gelu_f32(z, b, a, n, m); return 1;
    case NNCORE_SILU: nncore_bias_keep_silu_f32(z, b, a, n, m); return 1;
    }
    return 0;
}

static int nncore_times_derivative_f32(int code, const float *g, const float *s,
                                       const float *shift, float *out, ptrdiff_t n,
                                       ptrdiff_t m) {
    switch (code) {
    case NNCORE_TANH: nncore_times_tanh_derivative_f32(g, s, shift, out, n, m); return 1;
    case NNCORE_RELU: nncore_times_relu_derivative_f32(g, s, shift, out, n, m); return 1;
    case NNCORE_SIGMOID: nncore_times_sigmoid_derivative_f32(g, s, shift, out, n, m); return 1;
    case NNCORE_LEAKY_RELU:
        nncore_times_leaky_relu_derivative_f32(g, s, shift, out, n, m);
        return 1;
    case NNCORE_ELU: nncore_times_elu_derivative_f32(g, s, shift, out, n, m); return 1;
    case NNCORE_SOFTPLUS:
        nncore_times_softplus_derivative_f32(g, s, shift, out, n, m);
        return 1;
    case NNCORE_GELU: nncore_times_gelu_derivative_f32(g, s, shift, out, n, m); return 1;
    case NNCORE_SILU: nncore_times_silu_derivative_f32(g, s, shift, out, n, m); return 1;
    }
    return 0;
}

/* sums[j] = sum_i g[i, j] over (n, m) with rows ld apart: the bias gradients (ld > m when
   the two threads of a step each sum some of the columns). Accumulated in double (the
   float64 rounding of a sum of n floats), in blocks of NNCORE_COLUMN_BLOCK columns kept on
   the stack; the float64 path is _column_sums in _kernels.pyx, in the same order. */
#define NNCORE_COLUMN_BLOCK 256
NNCORE_CLONES static void nncore_column_sums_f32(const float *g, float *sums, ptrdiff_t n,
                                                 ptrdiff_t m, ptrdiff_t ld) {
    double acc[NNCORE_COLUMN_BLOCK];
    for (ptrdiff_t start = 0; start < m; start += NNCORE_COLUMN_BLOCK) {
        ptrdiff_t width = m - start < NNCORE_COLUMN_BLOCK ? m - start : NNCORE_COLUMN_BLOCK;
        for (ptrdiff_t j = 0; j < width; j++) acc[j] = 0.0;
        for (ptrdiff_t i = 0; i < n; i++) {
            const float *row = g + i * ld + start;
            for (ptrdiff_t j = 0; j < width; j++) acc[j] += row[j];
        }
        for (ptrdiff_t j = 0; j < width; j++) sums[start + j] = (float) acc[j];
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


/* dst = src^T for a float32 matrix: src is (rows, cols) with row stride ld, dst is
   (cols, rows), contiguous. _gemm's copy of a small B^T (see SMALL_TRANSPOSE in
   _kernels.pxd). 4x4 tiles are turned in registers with the compilers' vector shuffles
   (GCC's and Clang's vector extensions: SSE2 shuffles on every x86-64, NEON on aarch64);
   the edges that do not fill a tile go element by element. A 64x64 matrix takes 0.33 us
   here against 1.2 us element by element, at every CPU level alike (8x8 tiles were faster
   with AVX-512, 0.22 us, but slower with AVX2 and 5x slower on the baseline). */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)  /* Clang, GCC 12 and later */
#define NNCORE_SHUFFLE4(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#elif __has_builtin(__builtin_shuffle)  /* GCC 10 and 11 */
#define NNCORE_SHUFFLE4(a, b, i, j, k, l) __builtin_shuffle(a, b, (nncore_i32x4){i, j, k, l})
#endif
#endif
#if defined(__GNUC__) && defined(NNCORE_SHUFFLE4)
typedef float nncore_f32x4 __attribute__((vector_size(16)));
typedef int nncore_i32x4 __attribute__((vector_size(16)));
NNCORE_INLINE void nncore_transpose_tile4(const float *src, ptrdiff_t ld, float *dst,
                                          ptrdiff_t ldd) {
    nncore_f32x4 r0, r1, r2, r3;
    memcpy(&r0, src, sizeof r0);
    memcpy(&r1, src + ld, sizeof r1);
    memcpy(&r2, src + 2 * ld, sizeof r2);
    memcpy(&r3, src + 3 * ld, sizeof r3);
    /* interleave rows 0/1 and 2/3, then take the halves: column j of the tile is row j */
    nncore_f32x4 t0 = NNCORE_SHUFFLE4(r0, r1, 0, 4, 1, 5);
    nncore_f32x4 t1 = NNCORE_SHUFFLE4(r0, r1, 2, 6, 3, 7);
    nncore_f32x4 t2 = NNCORE_SHUFFLE4(r2, r3, 0, 4, 1, 5);
    nncore_f32x4 t3 = NNCORE_SHUFFLE4(r2, r3, 2, 6, 3, 7);
    nncore_f32x4 c0 = NNCORE_SHUFFLE4(t0, t2, 0, 1, 4, 5);
    nncore_f32x4 c1 = NNCORE_SHUFFLE4(t0, t2, 2, 3, 6, 7);
    nncore_f32x4 c2 = NNCORE_SHUFFLE4(t1, t3, 0, 1, 4, 5);
    nncore_f32x4 c3 = NNCORE_SHUFFLE4(t1, t3, 2, 3, 6, 7);
    memcpy(dst, &c0, sizeof c0);
    memcpy(dst + ldd, &c1, sizeof c1);
    memcpy(dst + 2 * ldd, &c2, sizeof c2);
    memcpy(dst + 3 * ldd, &c3, sizeof c3);
}
#define NNCORE_TRANSPOSE_TILE 4
#else
#define NNCORE_TRANSPOSE_TILE 0
#endif

static void nncore_transpose_f32(const float *src, ptrdiff_t rows, ptrdiff_t cols,
                                 ptrdiff_t ld, float *dst) {
    ptrdiff_t i = 0, j;
#if NNCORE_TRANSPOSE_TILE
    for (; i + 4 <= rows; i += 4) {
        for (j = 0; j + 4 <= cols; j += 4)
            nncore_transpose_tile4(src + i * ld + j, ld, dst + j * rows + i, rows);
        for (; j < cols; j++)
            for (ptrdiff_t r = i; r < i + 4; r++) dst[j * rows + r] = src[r * ld + j];
    }
#endif
    for (; i < rows; i++)
        for (j = 0; j < cols; j++) dst[j * rows + i] = src[i * ld + j];
}

#endif /* NNCORE_SIMD_H */
