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
