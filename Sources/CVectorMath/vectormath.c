#include "vectormath.h"
#include "window.h"

#include <stdint.h>
#include <string.h>

// x86-64-v3 is AVX2 with FMA: the exponential's polynomial is fused multiply-adds, which round
// once and so give the same bits wherever they run (the baseline clone calls libm's fmaf, slow
// but exact, on processors from before 2013).
#define CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))

static inline uint32_t bits_of(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static inline float float_of(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

// Rounding x*log2(e) to an integer n by adding 1.5*2^23 leaves n in the low mantissa bits, from
// which 2^n is built directly; a degree-7 polynomial takes e^r for the rest, in fused
// multiply-adds (explicit: contraction is off, so no other expression changes with the
// instruction set): a third fewer operations on the chain SiLU, Softmax and GELU wait on.
static inline float exp_nonpositive(float x) {
  const float magic = 12582912.0f;
  float clamped = x < -87.3f ? -87.3f : x;
  float shifted = clamped * 1.442695041f + magic;
  float n = shifted - magic;
  float r = __builtin_fmaf(-n, 1.42860677e-06f, __builtin_fmaf(-n, 0.693145752f, clamped));
  float p = 1.0f / 5040;
  p = __builtin_fmaf(p, r, 1.0f / 720);
  p = __builtin_fmaf(p, r, 1.0f / 120);
  p = __builtin_fmaf(p, r, 1.0f / 24);
  p = __builtin_fmaf(p, r, 1.0f / 6);
  p = __builtin_fmaf(p, r, 0.5f);
  p = __builtin_fmaf(p, r, 1);
  p = __builtin_fmaf(p, r, 1);
  uint32_t integer = bits_of(shifted) - bits_of(magic);
  float scale = float_of((integer + 127u) << 23);
  float y = p * scale;
  y = x < -87.3f ? 0 : y;
  return x != x ? x : y;
}

// e = e^-|x| <= 1 never overflows; x < 0 takes e / (1 + e).
static inline float sigmoid(float x) {
  float e = exp_nonpositive(x > 0 ? -x : x);
  float s = 1 / (1 + e);
  return x < 0 ? e * s : s;
}

// Several vectors in flight per step: an exponential is a chain of ~30 dependent operations, and
// one vector at a time left the out-of-order core waiting on it (SiLU 20% faster with four, Erf
// and Tanh 5–8% with two — four spill their constants). The same operations on each element,
// so the same bits.
#define PRAGMA(x) _Pragma(#x)
#define INTERLEAVED(ways) PRAGMA(clang loop interleave_count(ways))

// y[i] = f(x[i]) for an elementwise f: in place as a loop of its own, since a loop reading one
// array and writing another that overlaps it is not vectorized.
#define ELEMENTWISE(f, ways)                                             \
  do {                                                                   \
    if (x == y) {                                                        \
      INTERLEAVED(ways) for (long i = 0; i < n; i++) y[i] = f(y[i]);     \
    } else {                                                             \
      INTERLEAVED(ways) for (long i = 0; i < n; i++) y[i] = f(x[i]);     \
    }                                                                    \
  } while (0)

CLONES void vm_exp_nonpositive(const float *x, float *y, long n) { ELEMENTWISE(exp_nonpositive, 4); }

CLONES void vm_sigmoid(const float *x, float *y, long n) { ELEMENTWISE(sigmoid, 4); }

CLONES void vm_swish(const float *x, float *y, long n, float alpha) {
#define SWISH(v) ((v) * sigmoid(alpha * (v)))
  ELEMENTWISE(SWISH, 4);
#undef SWISH
}

CLONES void vm_silu_bias(float *p, long n, float bias) {
  INTERLEAVED(4) for (long i = 0; i < n; i++) {
    float v = p[i] + bias;
    p[i] = v * sigmoid(v);
  }
}

// The odd Taylor series through x^11 below |x| = 0.4, where (1 - e)/(1 + e) with e = e^-2|x|
// would lose digits, and that formula above.
static inline float tanh_approximation(float x) {
  float a = x < 0 ? -x : x;
  float e = exp_nonpositive(-2 * a);
  float large = (1 - e) / (1 + e);
  float s = a * a;
  float p = -1382.0f / 155925;
  p = p * s + 62.0f / 2835;
  p = p * s - 17.0f / 315;
  p = p * s + 2.0f / 15;
  p = p * s - 1.0f / 3;
  p = p * s + 1;
  float r = a < 0.4f ? a * p : large;
  return x < 0 ? -r : r;
}

CLONES void vm_tanh(const float *x, float *y, long n) { ELEMENTWISE(tanh_approximation, 2); }

// The odd Taylor series below |x| = 0.5, Abramowitz & Stegun 7.1.28 (1 - (1 + a1 x + ... +
// a6 x^6)^-16) above, saturating to +-1.
static inline float erf_approximation(float v) {
  float a = v < 0 ? -v : v;
  float s = a * a;
  float t = 1.0f / 9360;
  t = t * s - 1.0f / 1320;
  t = t * s + 1.0f / 216;
  t = t * s - 1.0f / 42;
  t = t * s + 1.0f / 10;
  t = t * s - 1.0f / 3;
  t = t * s + 1;
  float small = 1.128379167f * a * t;
  float q = 0.0000430638f;
  q = q * a + 0.0002765672f;
  q = q * a + 0.0001520143f;
  q = q * a + 0.0092705272f;
  q = q * a + 0.0422820123f;
  q = q * a + 0.0705230784f;
  q = q * a + 1;
  float q2 = q * q, q4 = q2 * q2, q8 = q4 * q4, q16 = q8 * q8;
  float large = a > 9 ? 1 : 1 - 1 / q16;
  float r = a < 0.5f ? small : large;
  r = v < 0 ? -r : r;
  return v != v ? v : r;
}

CLONES void vm_erf(const float *x, float *y, long n) { ELEMENTWISE(erf_approximation, 2); }

// GELU as exporters decompose it — Div by √2, Erf, Add 1, Mul by 0.5, Mul by x — with the same
// operations in the same order, so the same bits as those five nodes, in one pass instead of five.
CLONES void vm_gelu_erf(const float *x, float *y, long n) {
#define GELU(v) ((v) * (0.5f * (erf_approximation((v) / 1.41421354f) + 1.0f)))
  ELEMENTWISE(GELU, 2);
#undef GELU
}

// Sixteen lanes as one value: one zmm register with AVX-512, two ymm with AVX2, four xmm
// otherwise; the lanes are combined in one fixed order, so the result is the same on each.
typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

static inline float row_maximum(const float *in, long n) {
  // Sixteen running maxima (one is a serial chain of compares); NaN never wins a compare.
  v16 lanes;
  for (int j = 0; j < 16; j++) lanes[j] = -__builtin_inff();
  long k = 0;
  for (; k + 16 <= n; k += 16) {
    v16 v;
    memcpy(&v, in + k, sizeof v);
    v16i greater = v > lanes;
    lanes = (v16)(((v16i)v & greater) | ((v16i)lanes & ~greater));
  }
  float m = -__builtin_inff();
  for (int j = 0; j < 16; j++) m = lanes[j] > m ? lanes[j] : m;
  for (; k < n; k++) m = in[k] > m ? in[k] : m;
  return m;
}

CLONES float vm_row_maximum(const float *in, long n) { return row_maximum(in, n); }

CLONES void vm_softmax_row(const float *in, float *out, long n) {
  float m = row_maximum(in, n);
  // In place (attention's score rows) as a loop of its own: a loop reading one array and writing
  // another that overlaps it is not vectorized.
  if (in == out) {
    INTERLEAVED(4) for (long i = 0; i < n; i++) out[i] = exp_nonpositive(out[i] - m);
  } else {
    INTERLEAVED(4) for (long i = 0; i < n; i++) out[i] = exp_nonpositive(in[i] - m);
  }
  v16 acc = {0};
  long k = 0;
  for (; k + 16 <= n; k += 16) {
    v16 v;
    memcpy(&v, out + k, sizeof v);
    acc += v;
  }
  float sum = 0;
  for (int j = 0; j < 16; j++) sum += acc[j];
  for (; k < n; k++) sum += out[k];
  float r = 1 / sum;
  for (long i = 0; i < n; i++) out[i] *= r;
}

// A row's sum from sixteen lanes (lane l takes k ≡ l mod 16, in order) added in one fixed order,
// then the tail in order: the same bits on every instruction set.
static inline __attribute__((always_inline)) float row_sum(const float *x, long n, float shift, int squares) {
  v16 acc = {0};
  long k = 0;
  for (; k + 16 <= n; k += 16) {
    v16 v;
    memcpy(&v, x + k, sizeof v);
    v -= shift;
    acc += squares ? v * v : v;
  }
  float sum = 0;
  for (int j = 0; j < 16; j++) sum += acc[j];
  for (; k < n; k++) {
    float d = x[k] - shift;
    sum += squares ? d * d : d;
  }
  return sum;
}

CLONES void vm_layer_norm(const float *x, long rows, long n, const float *scale, const float *bias, float eps, float *y,
                          float *mean, float *inv_std) {
  for (long r = 0; r < rows; r++) {
    const float *in = x + r * n;
    float *out = y + r * n;
    float mu = row_sum(in, n, 0.0f, 0) / (float)n;
    float rs = 1.0f / __builtin_sqrtf(row_sum(in, n, mu, 1) / (float)n + eps);
    mean[r] = mu;
    inv_std[r] = rs;
    if (bias) {
      for (long i = 0; i < n; i++) out[i] = (in[i] - mu) * rs * scale[i] + bias[i];
    } else {
      for (long i = 0; i < n; i++) out[i] = (in[i] - mu) * rs * scale[i];
    }
  }
}

// Each output row's window columns inside the input, [lo, hi), are copied (stride 1) or gathered
// (stride > 1) and the rest zeroed, in loops the compiler vectorizes: one call per tap and band
// where the Swift loop made three calls per output row (ResNet's 7-wide rows: 28-byte copies).
typedef float im2col_v16 __attribute__((vector_size(64), aligned(4)));
typedef float im2col_v8 __attribute__((vector_size(32), aligned(4)));

static inline __attribute__((always_inline)) void im2col_row(const float *plane, long h, long w, long ky, long shift, long lo,
                                                             long hi, long oy0, long oy1, long ow, long sh, long sw, long dh,
                                                             long pad_top, float *dst) {
  for (long oy = oy0; oy < oy1; oy++, dst += ow) {
    long iy = oy * sh - pad_top + ky * dh;
    if (iy < 0 || iy >= h) {
      for (long ox = 0; ox < ow; ox++) dst[ox] = 0.0f;
      continue;
    }
    const float *src = plane + iy * w + shift;
    for (long ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
    if (sw == 1) {
      for (long ox = lo; ox < hi; ox++) dst[ox] = src[ox];
    } else if (sw == 2) {
      // Even lanes of 16 consecutive inputs are 8 outputs (the load stays inside the row): the
      // compiler does not find this shuffle in the strided loop.
      long ox = lo;
      for (; ox + 8 <= hi && shift + 2 * ox + 16 <= w; ox += 8) {
        im2col_v16 v;
        memcpy(&v, src + 2 * ox, sizeof v);
        im2col_v8 even = __builtin_shufflevector(v, v, 0, 2, 4, 6, 8, 10, 12, 14);
        memcpy(dst + ox, &even, sizeof even);
      }
      for (; ox < hi; ox++) dst[ox] = src[2 * ox];
    } else {
      for (long ox = lo; ox < hi; ox++) dst[ox] = src[ox * sw];
    }
    for (long ox = hi; ox < ow; ox++) dst[ox] = 0.0f;
  }
}

// Rows ch0 ..< ch1 of channels' taps: one call for a range of channels, so a convolution over a
// few positions (a 1-D signal of 4 frames, a 1×1 map) does not pay a call per row. Each tap
// column's live outputs are worked out once, not per channel: their two divisions cost more than
// copying a row of one or two positions (silero-vad's 3-tap layers over 2 and 1 frames).
CLONES void vm_im2col(const float *x, long ch0, long ch1, long h, long w, long kh, long kw, long oy0, long oy1, long ow,
                      long sh, long sw, long dh, long dw, long pad_top, long pad_left, float *cols, long leading) {
  enum { cached = 16 };
  long los[cached], his[cached];
  for (long kx = 0; kx < kw && kx < cached; kx++) live_columns(kx * dw - pad_left, w, ow, sw, &los[kx], &his[kx]);
  if (oy1 - oy0 == 1 && ow <= 4 && kw <= cached) {
    // One output row of a few positions (1-D signals of a few frames): a short gather per tap,
    // without the general row's zero runs and stride cases.
    for (long ch = ch0; ch < ch1; ch++) {
      const float *plane = x + ch * h * w;
      float *dst = cols + ch * kh * kw * leading;
      for (long ky = 0; ky < kh; ky++) {
        long iy = oy0 * sh - pad_top + ky * dh;
        int inside = iy >= 0 && iy < h;
        const float *row = plane + (inside ? iy : 0) * w;
        for (long kx = 0; kx < kw; kx++, dst += leading) {
          long shift = kx * dw - pad_left, lo = inside ? los[kx] : ow, hi = inside ? his[kx] : ow;
          for (long ox = 0; ox < ow; ox++) dst[ox] = ox >= lo && ox < hi ? row[shift + ox * sw] : 0.0f;
        }
      }
    }
    return;
  }
  for (long ch = ch0; ch < ch1; ch++) {
    const float *plane = x + ch * h * w;
    float *dst = cols + ch * kh * kw * leading;
    for (long ky = 0; ky < kh; ky++)
      for (long kx = 0; kx < kw; kx++, dst += leading) {
        long shift = kx * dw - pad_left, lo, hi;
        if (kx < cached) {
          lo = los[kx];
          hi = his[kx];
        } else {
          live_columns(shift, w, ow, sw, &lo, &hi);
        }
        im2col_row(plane, h, w, ky, shift, lo, hi, oy0, oy1, ow, sh, sw, dh, pad_top, dst);
      }
  }
}

typedef float v16f __attribute__((vector_size(64), aligned(4)));
// Macros, not functions: a function taking or returning a 64-byte vector has a different ABI
// in each clone.
#define load16(p) ({ v16f v_; memcpy(&v_, (p), sizeof v_); v_; })
#define store16(p, v) do { v16f w_ = (v); memcpy((p), &w_, sizeof w_); } while (0)

// The sums of NV vectors of one plane side by side: vector j is Σ_t filter[t] · in[src[j] +
// offsets[t] + 0…15], taps in order, stored at dst + out[j]. An FMA's result is ready four
// cycles after it issues and two issue a cycle, so eight independent chains keep the units busy
// where one vector's 25 taps alone (a 14 × 14 plane's last vectors) waited on each other; the
// vectors of a group may come from different output rows. Each element's sum is the same
// whichever group it is in.
#define DEPTHWISE_GROUP(NV)                                                                   \
  static inline __attribute__((always_inline)) void depthwise_group_##NV(                     \
      const float *in, const long *src, const long *offsets, const float *filter, long taps,  \
      float *dst, const long *out) {                                                          \
    v16f a[NV];                                                                               \
    for (int v = 0; v < NV; v++) a[v] = 0.0f + filter[0] * load16(in + src[v] + offsets[0]); \
    for (long t = 1; t < taps; t++) {                                                         \
      const float *s = in + offsets[t];                                                       \
      float f = filter[t];                                                                    \
      for (int v = 0; v < NV; v++) a[v] += f * load16(s + src[v]);                            \
    }                                                                                         \
    for (int v = 0; v < NV; v++) store16(dst + out[v], a[v]);                                 \
  }
DEPTHWISE_GROUP(1)
DEPTHWISE_GROUP(2)
DEPTHWISE_GROUP(3)
DEPTHWISE_GROUP(4)
DEPTHWISE_GROUP(5)
DEPTHWISE_GROUP(6)
DEPTHWISE_GROUP(7)
DEPTHWISE_GROUP(8)

__attribute__((always_inline)) static inline void depthwise_group(const float *in, const long *src, const long *offsets,
                                                                  const float *filter, long taps, float *dst,
                                                                  const long *out, int count) {
  switch (count) {
  case 1: depthwise_group_1(in, src, offsets, filter, taps, dst, out); return;
  case 2: depthwise_group_2(in, src, offsets, filter, taps, dst, out); return;
  case 3: depthwise_group_3(in, src, offsets, filter, taps, dst, out); return;
  case 4: depthwise_group_4(in, src, offsets, filter, taps, dst, out); return;
  case 5: depthwise_group_5(in, src, offsets, filter, taps, dst, out); return;
  case 6: depthwise_group_6(in, src, offsets, filter, taps, dst, out); return;
  case 7: depthwise_group_7(in, src, offsets, filter, taps, dst, out); return;
  default: depthwise_group_8(in, src, offsets, filter, taps, dst, out); return;
  }
}

CLONES void vm_depthwise_plane(const float *in, long row_step, long row_width, const long *offsets, const float *filter,
                               long taps, long oh, long ow, float *out, float *scratch) {
  if (oh <= 0 || ow <= 0) return;
  // Consecutive output rows that read consecutive buffer rows are one span, the columns between
  // rows computed and dropped (a 7-wide row alone would not fill a vector); otherwise each row's
  // vectors, into rows of the scratch `pitch` apart. Either way vectors go eight at a time.
  int span = row_step == row_width;
  long per_row = (ow + 15) / 16, pitch = span ? row_step : per_row * 16;
  long vectors = span ? ((oh - 1) * row_step + ow + 15) / 16 : oh * per_row;
  long src[8], dst[8];
  int count = 0;
  for (long v = 0; v < vectors; v++) {
    long row = span ? 0 : v / per_row, column = span ? v * 16 : v % per_row * 16;
    src[count] = row * row_step + column;
    dst[count] = row * pitch + column;
    if (++count == 8 || v + 1 == vectors) {
      depthwise_group(in, src, offsets, filter, taps, scratch, dst, count);
      count = 0;
    }
  }
  for (long oy = 0; oy < oh; oy++) memcpy(out + oy * ow, scratch + oy * pitch, (size_t)ow * sizeof(float));
}

// Swift's min and max, NaN handling included: the unfused nodes' kernels are Swift, and a fused
// epilogue must give their bits.
static inline float swift_min(float x, float y) { return y < x ? y : x; }
static inline float swift_max(float x, float y) { return y >= x ? y : x; }

static inline __attribute__((always_inline)) void bias_activation(float *p, long n, float bias, const float *residual, int kind,
                                                                  float alpha, float beta) {
  if (residual) {
    for (long i = 0; i < n; i++) p[i] = (p[i] + bias) + residual[i];
    bias = 0.0f;
  }
  switch (kind) {
  case VM_ACTIVATION_NONE:
    if (bias != 0.0f) for (long i = 0; i < n; i++) p[i] += bias;
    break;
  case VM_ACTIVATION_RELU:
    for (long i = 0; i < n; i++) p[i] = swift_max(p[i] + bias, 0.0f);
    break;
  case VM_ACTIVATION_CLIP:
    for (long i = 0; i < n; i++) p[i] = swift_min(swift_max(p[i] + bias, alpha), beta);
    break;
  case VM_ACTIVATION_HARD_SWISH:
    INTERLEAVED(4) for (long i = 0; i < n; i++) {
      float v = p[i] + bias;
      p[i] = v * swift_max(0.0f, swift_min(1.0f, v / 6 + 0.5f));
    }
    break;
  case VM_ACTIVATION_HARD_SIGMOID:
    for (long i = 0; i < n; i++) p[i] = swift_max(0.0f, swift_min(1.0f, alpha * (p[i] + bias) + beta));
    break;
  case VM_ACTIVATION_LEAKY_RELU:
    for (long i = 0; i < n; i++) {
      float v = p[i] + bias;
      p[i] = v < 0 ? alpha * v : v;
    }
    break;
  case VM_ACTIVATION_SILU:
    vm_silu_bias(p, n, bias);
    break;
  }
}

CLONES void vm_bias_activation(float *p, long n, float bias, const float *residual, int kind, float alpha, float beta) {
  bias_activation(p, n, bias, residual, kind, alpha, beta);
}

CLONES void vm_bias_activation_planes(float *p, long planes, long n, long stride, const float *biases, const float *residual,
                                      int kind, float alpha, float beta) {
  for (long c = 0; c < planes; c++)
    bias_activation(p + c * stride, n, biases ? biases[c] : 0.0f, residual ? residual + c * stride : 0, kind, alpha, beta);
}

// The larger of a and b lane by lane, NaN where either is: a NaN input wins a max pool, as in
// the runtime's scalar loops (b > a || b ≠ b ? b : a).
#define MAX_NAN(a, b) ({ v16f a_ = (a), b_ = (b); v16i m_ = (b_ > a_) | (b_ != b_); \
  (v16f)(((v16i)b_ & m_) | ((v16i)a_ & ~m_)); })

// A 2-D max pool of one plane without dilation (padding never wins: each window is clamped to
// the input). Each output row first takes the column-wise max of its input rows into col
// (column 0 at col, with pad_left values of −∞ before it and enough after for 16 outputs past
// ow, left −∞), then each output the max of its window's columns of that: 16 outputs a vector,
// strides 1 and 2 (the even lanes of two vectors), others one at a time. One call a plane: the
// Swift loop it replaces ran a row at a time in eight lanes, and MaxPool took twice ONNX
// Runtime's time on ResNet's 112 × 112 maps.
CLONES void vm_max_pool_plane(const float *in, long h, long w, long kh, long kw, long sh, long sw, long pad_top,
                              long pad_left, long oh, long ow, float *col, float *out) {
  for (long oy = 0; oy < oh; oy++, out += ow) {
    long y0 = oy * sh - pad_top, y1 = y0 + kh;
    if (y0 < 0) y0 = 0;
    if (y1 > h) y1 = h;
    if (y0 >= y1) {
      for (long ox = 0; ox < ow; ox++) out[ox] = -__builtin_inff();
      continue;
    }
    memcpy(col, in + y0 * w, (size_t)w * sizeof(float));
    for (long iy = y0 + 1; iy < y1; iy++) {
      const float *row = in + iy * w;
      long ix = 0;
      for (; ix + 16 <= w; ix += 16) store16(col + ix, MAX_NAN(load16(col + ix), load16(row + ix)));
      for (; ix < w; ix++) col[ix] = row[ix] > col[ix] || row[ix] != row[ix] ? row[ix] : col[ix];
    }
    long ox = 0;
    if (sw <= 2) {
      for (; ox < ow; ox += 16) {
        const float *start = col + ox * sw - pad_left;
        v16f acc;
        for (int j = 0; j < 16; j++) acc[j] = -__builtin_inff();
        for (long kx = 0; kx < kw; kx++) {
          v16f v = load16(start + kx);
          if (sw == 2) {
            v16f next = load16(start + kx + 16);
            v = __builtin_shufflevector(v, next, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
          }
          acc = MAX_NAN(acc, v);
        }
        if (ox + 16 <= ow) {
          store16(out + ox, acc);
        } else {
          for (long j = 0; j < ow - ox; j++) out[ox + j] = acc[j];
        }
      }
    } else {
      for (; ox < ow; ox++) {
        const float *start = col + ox * sw - pad_left;
        float acc = -__builtin_inff();
        for (long kx = 0; kx < kw; kx++) acc = start[kx] > acc || start[kx] != start[kx] ? start[kx] : acc;
        out[ox] = acc;
      }
    }
  }
}

// y[j] = Σ_k a[j·lda + k]·x[k] for rows j0…j1−1: a recurrence's R·h at batch 1, rows shared among
// the threads (memory-bound: R is read whole on every step). Four rows at a time, each with 16
// partial sums (lane l takes k ≡ l mod 16, in order) added in one fixed order, then the tail of
// k in order: a row's bits do not depend on which rows are computed with it.
CLONES void vm_rows_dot(const float *a, long lda, const float *x, long k, long j0, long j1, float *y) {
  long j = j0;
  for (; j + 4 <= j1; j += 4) {
    const float *r0 = a + j * lda, *r1 = r0 + lda, *r2 = r1 + lda, *r3 = r2 + lda;
    v16f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    long i = 0;
    for (; i + 16 <= k; i += 16) {
      v16f v = load16(x + i);
      s0 += load16(r0 + i) * v;
      s1 += load16(r1 + i) * v;
      s2 += load16(r2 + i) * v;
      s3 += load16(r3 + i) * v;
    }
    float t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    for (int l = 0; l < 16; l++) { t0 += s0[l]; t1 += s1[l]; t2 += s2[l]; t3 += s3[l]; }
    for (; i < k; i++) { t0 += r0[i] * x[i]; t1 += r1[i] * x[i]; t2 += r2[i] * x[i]; t3 += r3[i] * x[i]; }
    y[j] = t0; y[j + 1] = t1; y[j + 2] = t2; y[j + 3] = t3;
  }
  for (; j < j1; j++) {
    const float *r = a + j * lda;
    v16f s = {0};
    long i = 0;
    for (; i + 16 <= k; i += 16) s += load16(r + i) * load16(x + i);
    float t = 0;
    for (int l = 0; l < 16; l++) t += s[l];
    for (; i < k; i++) t += r[i] * x[i];
    y[j] = t;
  }
}

// One pass over a calibration tensor, sixteen lanes at a time: its extremes, its exact zeros,
// and whether any value is NaN or infinite (x·0 is NaN exactly then, and the caller rescans).
// Min and max do not depend on order, so every instruction set gives the same answer.
CLONES void vm_scan_extremes(const float *x, long n, float *lo, float *hi, long *zeros, int *nonfinite) {
  float first = n > 0 ? x[0] : 0;
  v16 mn, mx, poison = {0};
  v16i z = {0};
  for (int j = 0; j < 16; j++) mn[j] = mx[j] = first;
  long k = 0;
  for (; k + 16 <= n; k += 16) {
    v16 v;
    memcpy(&v, x + k, sizeof v);
    v16i less = v < mn, greater = v > mx;
    mn = (v16)(((v16i)v & less) | ((v16i)mn & ~less));
    mx = (v16)(((v16i)v & greater) | ((v16i)mx & ~greater));
    poison += v * 0;
    z -= (v16i)(v == 0);
  }
  float a = first, b = first, p = 0;
  long count = 0;
  for (int j = 0; j < 16; j++) {
    a = mn[j] < a ? mn[j] : a;
    b = mx[j] > b ? mx[j] : b;
    p += poison[j];
    count += z[j];
  }
  for (; k < n; k++) {
    float v = x[k];
    a = v < a ? v : a;
    b = v > b ? v : b;
    p += v * 0;
    count += v == 0;
  }
  *lo = a;
  *hi = b;
  *zeros = count;
  *nonfinite = p != 0;
}
