#include "vectormath.h"
#include "transpose.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

// A depthwise convolution 16 channels at a time, channels side by side (AVX-512 machines only).
//
// Computed plane by plane (vm_depthwise_plane) each vector holds 16 positions of one channel:
// a 14 × 14 map's rows fill 14 of 16 lanes at best, every tap reads 16 values one float past the
// last tap's (15 of 16 loads split across two cache lines), and a padded copy, the sums' copy-out
// and the bias and activation are passes of their own — MobileNetV3's 5 × 5 layers ran at 12–16
// GFLOP/s. Here a band of the 16 planes' input rows is transposed (16 × 16 blocks in registers)
// into a zero-padded buffer of positions × 16 channels, each tap of each output position is one
// aligned load and one fused multiply-add for 16 channels, and the sums go back to the 16 planes
// through the same transposition, the bias and the activation applied in registers on the way.

#define LANES 16

// Up to 16 planes' `count` (≤ 16) consecutive values from x (planes `plane_stride` apart), as
// `count` vectors of 16 channels at out, 16 floats apart (channels past `planes` are zero).
__attribute__((target("avx512f"), always_inline))
static inline void channels_last(const float *x, long plane_stride, long planes, long count, float *out) {
  __mmask16 valid = (__mmask16)((1u << count) - 1);
  __m512 r[LANES];
  for (long i = 0; i < LANES; i++)
    r[i] = i < planes ? _mm512_maskz_loadu_ps(valid, x + i * plane_stride) : _mm512_setzero_ps();
  transpose16_registers(r);
  for (long j = 0; j < count; j++) _mm512_store_ps(out + j * LANES, r[j]);
}

// Swift's max and min lane by lane (y ≥ x ? y : x; y < x ? y : x): a NaN x stays NaN, as in the
// unfused activation nodes.
__attribute__((target("avx512f"), always_inline))
static inline __m512 swift_max16(__m512 x, __m512 y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, x, _CMP_GE_OQ), x, y); }
__attribute__((target("avx512f"), always_inline))
static inline __m512 swift_min16(__m512 x, __m512 y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, x, _CMP_LT_OQ), x, y); }

// The activations of vm_bias_activation on a vector, the same bits (SiLU is applied to the sums
// before the transposition instead: it has its own vectorized loop).
__attribute__((target("avx512f"), always_inline))
static inline __m512 activate(__m512 v, int kind, float alpha, float beta) {
  __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  switch (kind) {
  case VM_ACTIVATION_RELU:
    return swift_max16(v, zero);
  case VM_ACTIVATION_CLIP:
    return swift_min16(swift_max16(v, _mm512_set1_ps(alpha)), _mm512_set1_ps(beta));
  case VM_ACTIVATION_HARD_SWISH: {
    __m512 gate = _mm512_add_ps(_mm512_div_ps(v, _mm512_set1_ps(6.0f)), _mm512_set1_ps(0.5f));
    return _mm512_mul_ps(v, swift_max16(zero, swift_min16(one, gate)));
  }
  case VM_ACTIVATION_HARD_SIGMOID: {
    __m512 linear = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(alpha), v), _mm512_set1_ps(beta));
    return swift_max16(zero, swift_min16(one, linear));
  }
  case VM_ACTIVATION_LEAKY_RELU:
    return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), _mm512_set1_ps(alpha), v);
  default:
    return v;
  }
}

// NV consecutive output positions of one row: position j reads at in + j·step + offsets[t] for
// tap t, and its 16 sums (taps in order, then the bias) go to out + j·16. NV independent chains
// of fused multiply-adds, the tap's 16 weights loaded once for all of them.
#define DEPTHWISE_RUN(NV)                                                                              \
  __attribute__((target("avx512f"), always_inline)) static inline void depthwise_run_##NV(            \
      const float *in, long step, const long *offsets, const float *filters, long taps, const float *bias, \
      float *out) {                                                                                    \
    __m512 a[NV];                                                                                      \
    __m512 f = _mm512_load_ps(filters);                                                                \
    for (int j = 0; j < NV; j++) a[j] = _mm512_mul_ps(f, _mm512_load_ps(in + j * step + offsets[0]));  \
    for (long t = 1; t < taps; t++) {                                                                  \
      const float *s = in + offsets[t];                                                                \
      f = _mm512_load_ps(filters + t * LANES);                                                         \
      for (int j = 0; j < NV; j++) a[j] = _mm512_fmadd_ps(f, _mm512_load_ps(s + j * step), a[j]);      \
    }                                                                                                  \
    if (bias) {                                                                                        \
      __m512 b = _mm512_load_ps(bias);                                                                 \
      for (int j = 0; j < NV; j++) a[j] = _mm512_add_ps(a[j], b);                                      \
    }                                                                                                  \
    for (int j = 0; j < NV; j++) _mm512_store_ps(out + j * LANES, a[j]);                               \
  }
DEPTHWISE_RUN(1)
DEPTHWISE_RUN(2)
DEPTHWISE_RUN(3)
DEPTHWISE_RUN(4)
DEPTHWISE_RUN(5)
DEPTHWISE_RUN(6)
DEPTHWISE_RUN(7)
DEPTHWISE_RUN(8)

// The workspace's parts, in floats, each a whole number of cache lines: the taps' weights (taps ×
// 16), the bias (16), the padded input band (rows × padded width × 16), the sums (positions
// rounded up to 16, × 16) and the taps' offsets (longs).
typedef struct {
  long filters, bias, input, sums, offsets, padded_width, input_rows;
} depthwise_layout;

static depthwise_layout layout_of(long kh, long kw, long sh, long sw, long dh, long dw, long ow, long rows) {
  depthwise_layout l;
  l.padded_width = (ow - 1) * sw + (kw - 1) * dw + 1;
  l.input_rows = (rows - 1) * sh + (kh - 1) * dh + 1;
  l.filters = kh * kw * LANES;
  l.bias = LANES;
  l.input = l.input_rows * l.padded_width * LANES;
  l.sums = (rows * ow + LANES - 1) / LANES * LANES * LANES;
  l.offsets = kh * kw * 2;
  return l;
}

long vm_depthwise_channels_workspace(long kh, long kw, long sh, long sw, long dh, long dw, long ow, long rows) {
  depthwise_layout l = layout_of(kh, kw, sh, sw, dh, dw, ow, rows);
  return l.filters + l.bias + l.input + l.sums + l.offsets + LANES;
}

__attribute__((target("avx512f")))
void vm_depthwise_channels(const float *x, long planes, long h, long w, const float *filter, long kh, long kw, long sh,
                           long sw, long dh, long dw, long pad_top, long pad_left, long oh, long ow, long oy0, long oy1,
                           const float *bias, int kind, float alpha, float beta, float *out, float *workspace) {
  long rows = oy1 - oy0, taps = kh * kw;
  if (rows <= 0 || ow <= 0 || planes <= 0) return;
  depthwise_layout l = layout_of(kh, kw, sh, sw, dh, dw, ow, rows);
  float *filters = (float *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
  float *biases = filters + l.filters, *input = biases + l.bias, *sums = input + l.input;
  long *offsets = (long *)(sums + l.sums);
  long wp = l.padded_width;

  // Tap t's 16 channels' weights side by side, zero past `planes`.
  __mmask16 live = (__mmask16)((1u << planes) - 1);
  __m512i index = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                     _mm512_set1_epi32((int)taps));
  for (long t = 0; t < taps; t++)
    _mm512_store_ps(filters + t * LANES, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, index, filter + t, 4));
  if (bias) _mm512_store_ps(biases, _mm512_maskz_loadu_ps(live, bias));

  // The input rows the band reads, padded: buffer row r is input row oy0·sh − pad_top + r, buffer
  // column q input column q − pad_left; zero outside the input.
  long q0 = pad_left > 0 ? pad_left : 0, q1 = w + pad_left < wp ? w + pad_left : wp;
  for (long r = 0; r < l.input_rows; r++) {
    long iy = oy0 * sh - pad_top + r;
    float *row = input + r * wp * LANES;
    if (iy < 0 || iy >= h || q1 <= q0) {
      memset(row, 0, (size_t)(wp * LANES) * sizeof(float));
      continue;
    }
    memset(row, 0, (size_t)(q0 * LANES) * sizeof(float));
    for (long q = q0; q < q1; q += LANES) {
      long count = q1 - q < LANES ? q1 - q : LANES;
      channels_last(x + iy * w + (q - pad_left), h * w, planes, count, row + q * LANES);
    }
    memset(row + q1 * LANES, 0, (size_t)((wp - q1) * LANES) * sizeof(float));
  }

  // Where tap (ky, kx) of output (0, 0) reads, in floats.
  for (long ky = 0; ky < kh; ky++)
    for (long kx = 0; kx < kw; kx++) offsets[ky * kw + kx] = (ky * dh * wp + kx * dw) * LANES;

  const float *b = bias ? biases : 0;
  long step = sw * LANES;
  for (long oy = 0; oy < rows; oy++) {
    const float *in = input + oy * sh * wp * LANES;
    float *dst = sums + oy * ow * LANES;
    long ox = 0;
    for (; ox + 8 <= ow; ox += 8) depthwise_run_8(in + ox * step, step, offsets, filters, taps, b, dst + ox * LANES);
    switch (ow - ox) {
    case 1: depthwise_run_1(in + ox * step, step, offsets, filters, taps, b, dst + ox * LANES); break;
    case 2: depthwise_run_2(in + ox * step, step, offsets, filters, taps, b, dst + ox * LANES); break;
    case 3: depthwise_run_3(in + ox * step, step, offsets, filters, taps, b, dst + ox * LANES); break;
    case 4: depthwise_run_4(in + ox * step, step, offsets, filters, taps, b, dst + ox * LANES); break;
    case 5: depthwise_run_5(in + ox * step, step, offsets, filters, taps, b, dst + ox * LANES); break;
    case 6: depthwise_run_6(in + ox * step, step, offsets, filters, taps, b, dst + ox * LANES); break;
    case 7: depthwise_run_7(in + ox * step, step, offsets, filters, taps, b, dst + ox * LANES); break;
    default: break;
    }
  }

  // Back to the planes, 16 positions at a time, through the activation.
  long positions = rows * ow, plane = oh * ow;
  if (kind == VM_ACTIVATION_SILU) vm_silu_bias(sums, positions * LANES, -0.0f);
  float *first = out + oy0 * ow;
  for (long p = 0; p < positions; p += LANES) {
    long count = positions - p < LANES ? positions - p : LANES;
    __mmask16 valid = (__mmask16)((1u << count) - 1);
    __m512 r[LANES];
    for (long j = 0; j < LANES; j++) r[j] = _mm512_load_ps(sums + (p + j) * LANES);
    transpose16_registers(r);
    for (long c = 0; c < planes; c++) _mm512_mask_storeu_ps(first + c * plane + p, valid, activate(r[c], kind, alpha, beta));
  }
}
