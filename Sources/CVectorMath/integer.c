#include "vectormath.h"
#include "window.h"

#include <immintrin.h>
#include <string.h>

// y = x · W in integers for ONNX Runtime's dynamically quantized recurrences: x uint8 (k), W
// int8 (k × n), y int32 — exact, as ONNX Runtime's u8×s8 kernels are. W is packed once into
// groups of 16 columns × 4 steps of k (64 bytes: column j's 4 bytes together), the layout of
// AVX-512 VNNI's vpdpbusd, which multiplies 4 unsigned by 4 signed bytes and adds them to a
// 32-bit lane. A float product of the same integers moves four times the bytes: an LSTM's
// recurrent weights are read once per step, so their size is its speed.

int vm_u8s8_supported(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
}

long vm_u8s8_packed_size(long k, long n) { return ((k + 3) / 4) * 4 * ((n + 15) / 16) * 16; }

void vm_u8s8_pack(const int8_t *w, long k, long n, int8_t *packed) {
  long quads = (k + 3) / 4, groups = (n + 15) / 16;
  for (long g = 0; g < groups; g++) {
    for (long q = 0; q < quads; q++) {
      int8_t *out = packed + (g * quads + q) * 64;
      for (long j = 0; j < 16; j++) {
        for (long t = 0; t < 4; t++) {
          long row = q * 4 + t, col = g * 16 + j;
          out[j * 4 + t] = row < k && col < n ? w[row * n + col] : 0;
        }
      }
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512vnni")))
void vm_u8s8_gemv(const uint8_t *x, long k, long n, const int8_t *packed, int32_t *y) {
  long quads = (k + 3) / 4, groups = (n + 15) / 16;
  // x in whole quads, zero past k (so padded weights meet zeros).
  uint8_t tail[4] = {0, 0, 0, 0};
  if (k % 4) memcpy(tail, x + (k / 4) * 4, (size_t)(k % 4));
  for (long g = 0; g < groups; g++) {
    const int8_t *wg = packed + g * quads * 64;
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    long q = 0;
    // Two accumulators: vpdpbusd's latency is 5 cycles.
    for (; q + 2 <= k / 4; q += 2) {
      int32_t x0, x1;
      memcpy(&x0, x + q * 4, 4);
      memcpy(&x1, x + q * 4 + 4, 4);
      acc0 = _mm512_dpbusd_epi32(acc0, _mm512_set1_epi32(x0), _mm512_loadu_si512(wg + q * 64));
      acc1 = _mm512_dpbusd_epi32(acc1, _mm512_set1_epi32(x1), _mm512_loadu_si512(wg + q * 64 + 64));
    }
    for (; q < quads; q++) {
      int32_t x0;
      if (q < k / 4) memcpy(&x0, x + q * 4, 4); else memcpy(&x0, tail, 4);
      acc0 = _mm512_dpbusd_epi32(acc0, _mm512_set1_epi32(x0), _mm512_loadu_si512(wg + q * 64));
    }
    __m512i sum = _mm512_add_epi32(acc0, acc1);
    long width = n - g * 16 < 16 ? n - g * 16 : 16;
    _mm512_mask_storeu_epi32(y + g * 16, (__mmask16)((1u << width) - 1), sum);
  }
}

// Y (m × n, int32, rows ldy apart) = X (m × k, uint8, rows ldx apart) · W (k × n, int8, packed by
// vm_u8s8_pack), for columns in groups first_group…end_group−1 (16 columns each): a MatMulInteger's
// rows against its constant weights. Two groups (32 columns) of W stay in L1 while up to 8 rows of
// X pass over them, 16 accumulators, so each 64-byte load of W serves 8 rows. Exact.
__attribute__((target("avx512f,avx512bw,avx512vnni")))
void vm_u8s8_gemm(const uint8_t *x, long m, long k, long ldx, long n, const int8_t *packed, long first_group,
                  long end_group, int32_t *y, long ldy) {
  long quads = (k + 3) / 4, whole = k / 4, groups = (n + 15) / 16;
  if (end_group > groups) end_group = groups;
  for (long g = first_group; g < end_group; g += 2) {
    int pair = g + 1 < end_group;
    const int8_t *w0 = packed + g * quads * 64, *w1 = packed + (g + pair) * quads * 64;
    long width0 = n - g * 16 < 16 ? n - g * 16 : 16;
    long width1 = pair ? (n - (g + 1) * 16 < 16 ? n - (g + 1) * 16 : 16) : 0;
    for (long i0 = 0; i0 < m; i0 += 8) {
      long rows = m - i0 < 8 ? m - i0 : 8;
      __m512i acc[8][2];
      for (long r = 0; r < 8; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
      const uint8_t *xr[8];
      // Rows past m read row 0 again and are not stored.
      for (long r = 0; r < 8; r++) xr[r] = x + (i0 + (r < rows ? r : 0)) * ldx;
      for (long q = 0; q < whole; q++) {
        __m512i a = _mm512_loadu_si512(w0 + q * 64), b = _mm512_loadu_si512(w1 + q * 64);
        for (long r = 0; r < 8; r++) {
          int32_t v;
          memcpy(&v, xr[r] + q * 4, 4);
          __m512i xv = _mm512_set1_epi32(v);
          acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], xv, a);
          acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], xv, b);
        }
      }
      if (whole < quads) {
        __m512i a = _mm512_loadu_si512(w0 + whole * 64), b = _mm512_loadu_si512(w1 + whole * 64);
        for (long r = 0; r < 8; r++) {
          uint8_t tail[4] = {0, 0, 0, 0};
          memcpy(tail, xr[r] + whole * 4, (size_t)(k % 4));
          int32_t v;
          memcpy(&v, tail, 4);
          __m512i xv = _mm512_set1_epi32(v);
          acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], xv, a);
          acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], xv, b);
        }
      }
      for (long r = 0; r < rows; r++) {
        int32_t *out = y + (i0 + r) * ldy + g * 16;
        _mm512_mask_storeu_epi32(out, (__mmask16)((1u << width0) - 1), acc[r][0]);
        if (pair) _mm512_mask_storeu_epi32(out + 16, (__mmask16)((1u << width1) - 1), acc[r][1]);
      }
    }
  }
}

// A ConvInteger's input unfolded (im2col, in bytes): row r = (ch·kh + ky)·kw + kx, ld bytes
// apart, holds the byte tap r reads for each output position, or `pad` where it falls in the
// padding (the zero point, so a padded tap adds nothing once the zero points are taken out).
void vm_u8_im2col(const uint8_t *x, long c, long h, long w, long kh, long kw, long sh, long sw, long dh, long dw,
                  long pad_top, long pad_left, long oh, long ow, uint8_t pad, uint8_t *cols, long ld) {
  for (long ch = 0; ch < c; ch++) {
    const uint8_t *plane = x + ch * h * w;
    for (long ky = 0; ky < kh; ky++) {
      for (long kx = 0; kx < kw; kx++) {
        uint8_t *row = cols + ((ch * kh + ky) * kw + kx) * ld;
        long shift = kx * dw - pad_left, lo, hi;
        live_columns(shift, w, ow, sw, &lo, &hi);
        for (long oy = 0; oy < oh; oy++, row += ow) {
          long iy = oy * sh - pad_top + ky * dh;
          if (iy < 0 || iy >= h) {
            memset(row, pad, (size_t)ow);
            continue;
          }
          const uint8_t *src = plane + iy * w + shift;
          if (lo > 0) memset(row, pad, (size_t)lo);
          if (sw == 1) {
            memcpy(row + lo, src + lo, (size_t)(hi - lo));
          } else {
            for (long ox = lo; ox < hi; ox++) row[ox] = src[ox * sw];
          }
          if (hi < ow) memset(row + hi, pad, (size_t)(ow - hi));
        }
      }
    }
  }
}

// The unfolded input (k rows of `positions` bytes, ld apart) in vpdpbusd's layout: for each
// group of 16 positions and each quad of rows, 64 bytes holding position j's 4 bytes together;
// zero past k (the padded weights are zero too) and past the positions.
void vm_u8_pack_quads(const uint8_t *cols, long k, long positions, long ld, uint8_t *packed) {
  long quads = (k + 3) / 4, groups = (positions + 15) / 16;
  for (long g = 0; g < groups; g++) {
    long width = positions - g * 16 < 16 ? positions - g * 16 : 16;
    for (long q = 0; q < quads; q++) {
      uint8_t *out = packed + (g * quads + q) * 64;
      if (width < 16) memset(out, 0, 64);
      for (long t = 0; t < 4; t++) {
        long r = q * 4 + t;
        if (r >= k) {
          for (long j = 0; j < width; j++) out[j * 4 + t] = 0;
          continue;
        }
        const uint8_t *src = cols + r * ld + g * 16;
        for (long j = 0; j < width; j++) out[j * 4 + t] = src[j];
      }
    }
  }
}

// y[o·positions + p] = Σ_k w[o][k]·x[k][p] − w_zero[o]·Σ_k x[k][p] + terms[o], for output
// channels in 8-row blocks first_block…end_block−1: w int8, rows of quads·4 bytes (zero past k);
// x packed by vm_u8_pack_quads. 8 channels × 32 positions per pass (16 accumulators), the
// positions' byte sums from the same loads (vpdpbusd by ones). Exact (wrapping int32).
__attribute__((target("avx512f,avx512bw,avx512vnni")))
void vm_s8u8_conv(const int8_t *w, long m, long quads, const uint8_t *packed, long positions, const int32_t *w_zero,
                  const int32_t *terms, int32_t *y, long first_block, long end_block) {
  long groups = (positions + 15) / 16, blocks = (m + 7) / 8;
  if (end_block > blocks) end_block = blocks;
  const __m512i ones = _mm512_set1_epi8(1);
  for (long b = first_block; b < end_block; b++) {
    long o0 = b * 8, rows = m - o0 < 8 ? m - o0 : 8;
    const int8_t *wr[8];
    for (long r = 0; r < 8; r++) wr[r] = w + (o0 + (r < rows ? r : 0)) * quads * 4;
    for (long g = 0; g < groups; g += 2) {
      int pair = g + 1 < groups;
      const uint8_t *x0 = packed + g * quads * 64, *x1 = packed + (g + pair) * quads * 64;
      __m512i acc[8][2], sum0 = _mm512_setzero_si512(), sum1 = _mm512_setzero_si512();
      for (long r = 0; r < 8; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
      for (long q = 0; q < quads; q++) {
        __m512i a = _mm512_loadu_si512(x0 + q * 64), c = _mm512_loadu_si512(x1 + q * 64);
        sum0 = _mm512_dpbusd_epi32(sum0, a, ones);
        sum1 = _mm512_dpbusd_epi32(sum1, c, ones);
        for (long r = 0; r < 8; r++) {
          int32_t v;
          memcpy(&v, wr[r] + q * 4, 4);
          __m512i wv = _mm512_set1_epi32(v);
          acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], a, wv);
          acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], c, wv);
        }
      }
      long width0 = positions - g * 16 < 16 ? positions - g * 16 : 16;
      long width1 = pair ? (positions - (g + 1) * 16 < 16 ? positions - (g + 1) * 16 : 16) : 0;
      for (long r = 0; r < rows; r++) {
        long o = o0 + r;
        __m512i z = _mm512_set1_epi32(w_zero[o]), t = _mm512_set1_epi32(terms[o]);
        int32_t *out = y + o * positions + g * 16;
        __m512i v0 = _mm512_add_epi32(_mm512_sub_epi32(acc[r][0], _mm512_mullo_epi32(z, sum0)), t);
        _mm512_mask_storeu_epi32(out, (__mmask16)((1u << width0) - 1), v0);
        if (pair) {
          __m512i v1 = _mm512_add_epi32(_mm512_sub_epi32(acc[r][1], _mm512_mullo_epi32(z, sum1)), t);
          _mm512_mask_storeu_epi32(out + 16, (__mmask16)((1u << width1) - 1), v1);
        }
      }
    }
  }
}
