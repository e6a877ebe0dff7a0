#include "vectormath.h"

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
