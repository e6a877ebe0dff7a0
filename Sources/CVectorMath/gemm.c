#include "vectormath.h"
#include "transpose.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// C = A·B for the runtime's convolutions and its MatMuls with few rows. OpenBLAS repacks both
// operands on every call and blocks for large square products; a convolution's product is M =
// output channels (16…2048), N = positions of a band (49…3136), K = input channels × taps, and a
// transformer's linear layer at small batch has 2…320 rows.
//
// The micro-kernel keeps an 8 × 32 tile of C in 16 AVX-512 registers: per step of k it loads
// 32 values of B (two vectors) and broadcasts 8 values of A. K is cut into blocks of GEMM_KC so
// one B panel (GEMM_KC × 32) stays in L1 while every 8-row panel of A passes over it. A's rows
// are read where they lie (a convolution's weights: eight streams the prefetchers follow, as fast
// as a packed copy within 2%, and no second copy of every weight in memory) or from 8-row panels
// packed per call (vm_gemm_packed_b). Each element of C is summed in the same order (k
// ascending, one FMA per k, blocks added in order) whatever the split of M and N among threads,
// so results do not depend on the thread count.

#define GEMM_MR 8
#define GEMM_NR 32
#define GEMM_KC 256

int vm_gemm_supported(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

long vm_gemm_panel_rows(void) { return GEMM_MR; }

static inline long smaller(long a, long b) { return a < b ? a : b; }

// The workspace from its first cache line on: loads split across lines cost a tenth.
static inline float *line_aligned(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

// Copies rows k0…k0+kc of B's columns j…j+width into a dense kc × 32 panel, zero past width:
// the panel is then in L1 for every panel of A that passes over it. With `fetch_next`, the next
// panel's lines are asked into L2 meanwhile: a MatMul's weights come from memory as 256 pieces of
// 128 bytes, rows apart, which no hardware prefetcher follows (BERT-sized products with 8 to 50
// rows 5–10% faster). A convolution's unfolded input was just written and is in cache already.
__attribute__((target("avx512f")))
static void pack_b(const float *b, long ldb, long kc, long width, float *panel, int fetch_next) {
  __mmask16 low = width >= 16 ? 0xffff : (__mmask16)((1u << width) - 1);
  __mmask16 high = width <= 16 ? 0 : width >= 32 ? 0xffff : (__mmask16)((1u << (width - 16)) - 1);
  for (long kk = 0; kk < kc; kk++) {
    if (fetch_next) {
      _mm_prefetch((const char *)(b + kk * ldb + GEMM_NR), _MM_HINT_T1);
      _mm_prefetch((const char *)(b + kk * ldb + GEMM_NR + 16), _MM_HINT_T1);
    }
    _mm512_store_ps(panel + kk * GEMM_NR, _mm512_maskz_loadu_ps(low, b + kk * ldb));
    _mm512_store_ps(panel + kk * GEMM_NR + 16, _mm512_maskz_loadu_ps(high, b + kk * ldb + 16));
  }
}

// c (rows × width, ldc) = or += A · bpanel over kc steps; rows ≤ 8, width ≤ 32. Element (r, k)
// of A is a[r·row_stride + k·k_stride] (a row-major matrix: lda, 1; a packed panel: 1, 8); rows
// past `rows` read row 0 again and are not stored. When `prefetching`, the 8 × kc values of A
// the next call reads (rows `next`, next_stride apart) are fetched into L1 meanwhile, one line
// every other step: a convolution's weights come from memory (ResNet-18 holds 45 MB of them),
// and 8 rows read 1 KB at a time, 512 rows apart, are streams the hardware prefetchers never
// lock onto — ResNet's 512-channel 3 × 3 products ran at 80% of the speed they have with their
// weights in cache, and as fast with this (ResNet-18 6% faster).
__attribute__((target("avx512f"), always_inline))
static inline void micro_kernel_body(long kc, const float *a, long row_stride, long k_stride, const float *const *arows,
                                     const int32_t *ashifts, const float *bpanel, float *c, long ldc, long rows,
                                     long width, int accumulate, const float *next, long next_stride,
                                     const int prefetching, const int half, const int gathered) {
  // prefetching: 1 into L1 (the next rows of A), 2 into L2 (the next packed panel of B).
  // gathered: row r of A starts at arows[r] (all 8 set), element k at ashifts[k] past it.
  const float *a0 = a, *a1 = a + (rows > 1) * row_stride, *a2 = a + (rows > 2) * 2 * row_stride;
  const float *a3 = a + (rows > 3) * 3 * row_stride, *a4 = a + (rows > 4) * 4 * row_stride;
  const float *a5 = a + (rows > 5) * 5 * row_stride, *a6 = a + (rows > 6) * 6 * row_stride;
  const float *a7 = a + (rows > 7) * 7 * row_stride;
  if (gathered) {
    a0 = arows[0], a1 = arows[1], a2 = arows[2], a3 = arows[3];
    a4 = arows[4], a5 = arows[5], a6 = arows[6], a7 = arows[7];
  }
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
  __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
  __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
  __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps();
  __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  // The tile of C is read at the end (after the first block of k): fetched now, it arrives
  // while the products run instead of stalling the stores.
  if (accumulate) {
    for (long r = 0; r < rows; r++) {
      _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
      _mm_prefetch((const char *)(c + r * ldc + width - 1), _MM_HINT_T0);
    }
  }
  for (long kk = 0; kk < kc; kk++) {
    __m512 b0 = _mm512_loadu_ps(bpanel), b1 = _mm512_loadu_ps(bpanel + 16);
    bpanel += GEMM_NR;
    long at = gathered ? ashifts[kk] : kk * k_stride;
    __m512 x;
#define STEP(r)                                        \
    x = _mm512_set1_ps(a##r[at]);                      \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0);         \
    c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1);
    STEP(0) STEP(1) STEP(2) STEP(3)
    if (!half) { STEP(4) STEP(5) STEP(6) STEP(7) }
#undef STEP
    if (prefetching && !(kk & 1)) {
      long line = kk >> 1;  // 16 floats a line: row line % 8, line / 8 lines in
      const char *line_at = (const char *)(next + (line & 7) * next_stride + (line >> 3) * 16);
      if (prefetching == 2) {
        _mm_prefetch(line_at, _MM_HINT_T1);
      } else {
        _mm_prefetch(line_at, _MM_HINT_T0);
      }
    }
  }
  __m512 tile[GEMM_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                             {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
  __mmask16 low = width >= 16 ? 0xffff : (__mmask16)((1u << width) - 1);
  __mmask16 high = width <= 16 ? 0 : width >= 32 ? 0xffff : (__mmask16)((1u << (width - 16)) - 1);
  for (long r = 0; r < rows; r++) {
    float *row = c + r * ldc;
    __m512 v0 = tile[r][0], v1 = tile[r][1];
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(low, row));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(high, row + 16));
    }
    _mm512_mask_storeu_ps(row, low, v0);
    _mm512_mask_storeu_ps(row + 16, high, v1);
  }
}

// The loop compiled five times: a call that fetches nothing tests nothing per step, one fetches
// into L1 (A's next rows) or into L2 (B's next packed panel), and a tile of at most 4 rows (a
// convolution's product over 1–4 positions, taken the other way round; the last panel of a
// MatMul's rows) does half the multiplications. Each element's sum is the same in all five.
__attribute__((target("avx512f"), noinline))
static void micro_kernel(long kc, const float *a, long row_stride, long k_stride, const float *bpanel, float *c, long ldc,
                         long rows, long width, int accumulate, const float *next, long next_stride, int far) {
  if (next && far && rows <= 4) {
    micro_kernel_body(kc, a, row_stride, k_stride, 0, 0, bpanel, c, ldc, rows, width, accumulate, next, next_stride, 2, 1, 0);
  } else if (next && far) {
    micro_kernel_body(kc, a, row_stride, k_stride, 0, 0, bpanel, c, ldc, rows, width, accumulate, next, next_stride, 2, 0, 0);
  } else if (next) {
    micro_kernel_body(kc, a, row_stride, k_stride, 0, 0, bpanel, c, ldc, rows, width, accumulate, next, next_stride, 1, 0, 0);
  } else if (rows <= 4) {
    micro_kernel_body(kc, a, row_stride, k_stride, 0, 0, bpanel, c, ldc, rows, width, accumulate, 0, 0, 0, 1, 0);
  } else {
    micro_kernel_body(kc, a, row_stride, k_stride, 0, 0, bpanel, c, ldc, rows, width, accumulate, 0, 0, 0, 0, 0);
  }
}

// The same with A's rows gathered (row r at arows[r], element k at shifts[k] past it) and B a
// packed panel, the next one asked into L2 meanwhile.
__attribute__((target("avx512f"), noinline))
static void micro_kernel_gathered(long kc, const float *const *arows, const int32_t *shifts, const float *bpanel, float *c,
                                  long ldc, long rows, long width, int accumulate, const float *next, long next_stride) {
  if (next) {
    micro_kernel_body(kc, 0, 0, 0, arows, shifts, bpanel, c, ldc, rows, width, accumulate, next, next_stride, 2, 0, 1);
  } else {
    micro_kernel_body(kc, 0, 0, 0, arows, shifts, bpanel, c, ldc, rows, width, accumulate, 0, 0, 0, 0, 1);
  }
}

// One cache line more, for line_aligned.
long vm_gemm_workspace_size(void) { return GEMM_KC * GEMM_NR + 16; }

// A convolution's product with its unfolded input never written out: each 32-column panel of B
// is unfolded straight from the image into the L1 panel (positions p0 + j … of the output, row
// (c·kh + ky)·kw + kx of the window), instead of im2col writing the whole band to memory and
// pack_b copying it again (the two were 16% of ResNet-18). The panel holds the same values, so
// every sum is the same as vm_gemm's on an unfolded band.

typedef struct {
  long row, column, offset, count;  // input row and column of tap (0, 0), place in the panel, columns
} window_segment;

// The pieces of positions p … p + width − 1 that lie on one output row each, with where tap
// (0, 0) of their first position reads (stride 1 along the row).
static long window_segments(const vm_window *win, long p, long width, window_segment *segments) {
  long count = 0;
  for (long at = 0; at < width;) {
    long oy = (p + at) / win->ow, ox = (p + at) % win->ow;
    long run = smaller(width - at, win->ow - ox);
    segments[count++] = (window_segment){oy * win->sh - win->pad_top, ox - win->pad_left, at, run};
    at += run;
  }
  return count;
}

// Rows k0 … k0 + kc − 1 of the unfolded window over the segments' positions, into a kc × width
// panel (width 32: a panel of B; 8: a panel of A in the transposed product, positions × taps),
// zero where a tap reads padding and past the segments. Stride 1 along rows: a tap's columns
// are consecutive, one masked load and store per 16. Inlined with width a constant.
__attribute__((target("avx512f"), always_inline))
static inline void pack_window(const vm_window *win, const window_segment *segments, long nsegments, long k0, long kc,
                               float *panel, const long width) {
  long taps = win->kh * win->kw;
  long ky = k0 % taps / win->kw, kx = k0 % win->kw;
  const float *plane = win->x + k0 / taps * win->h * win->w;
  for (long kk = 0; kk < kc; kk++) {
    float *row = panel + kk * width;
    if (width == GEMM_NR) {
      _mm512_store_ps(row, _mm512_setzero_ps());
      _mm512_store_ps(row + 16, _mm512_setzero_ps());
    } else {
      _mm256_storeu_ps(row, _mm256_setzero_ps());
    }
    long dy = ky * win->dh, dx = kx * win->dw;
    for (long s = 0; s < nsegments; s++) {
      const window_segment *g = segments + s;
      long iy = g->row + dy, shift = g->column + dx;
      if ((unsigned long)iy >= (unsigned long)win->h) continue;
      long lo = shift < 0 ? -shift : 0, hi = win->w - shift < g->count ? win->w - shift : g->count;
      if (lo >= hi) continue;
      // Lanes lo … hi − 1 of the segment; masked lanes are neither read nor written.
      uint32_t lanes = (hi >= 32 ? 0xffffffffu : (1u << hi) - 1) & ~((1u << lo) - 1);
      const float *src = plane + iy * win->w + shift;
      float *dst = row + g->offset;
      __mmask16 first = (__mmask16)lanes, second = (__mmask16)(lanes >> 16);
      _mm512_mask_storeu_ps(dst, first, _mm512_maskz_loadu_ps(first, src));
      if (second) _mm512_mask_storeu_ps(dst + 16, second, _mm512_maskz_loadu_ps(second, src + 16));
    }
    if (++kx == win->kw) {
      kx = 0;
      if (++ky == win->kh) {
        ky = 0;
        plane += win->h * win->w;
      }
    }
  }
}

// B read from memory (b, ldb), or (win set) unfolded from a convolution's window at positions
// p0 + j …: each panel built in L1 just before every panel of A passes over it.
__attribute__((target("avx512f"), always_inline))
static inline void gemm_direct(long m, long first_panel, long end_panel, long n, long k, const float *a, long lda,
                               const float *b, long ldb, int b_in_memory, const vm_window *win, long p0, float *c, long ldc,
                               float *workspace) {
  long panels = (m + GEMM_MR - 1) / GEMM_MR;
  if (end_panel > panels) end_panel = panels;
  if (k == 0) {
    for (long i = first_panel * GEMM_MR; i < m && i < end_panel * GEMM_MR; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
    return;
  }
  float *packed = line_aligned(workspace);
  window_segment segments[GEMM_NR];
  for (long k0 = 0; k0 < k; k0 += GEMM_KC) {
    long kc = smaller(k - k0, GEMM_KC);
    // As many panels of B as fill GEMM_KC × 32 floats (one panel when kc is GEMM_KC; sixteen for
    // a 1 × 1 layer over 16 channels), then each 8-row panel of A across all of them: C is then
    // written 8 rows at a time in runs of up to 2 KB, where one panel at a time wrote every row of
    // C 128 bytes at once — 96 rows of a 1 × 1 layer's output, 50 KB apart, more streams than the
    // caches follow (EfficientNet's 16 → 96-channel layer over 112 × 112 ran at 20 GFLOP/s).
    long block = GEMM_KC / kc * GEMM_NR;
    for (long j0 = 0; j0 < n; j0 += block) {
      long j1 = smaller(n, j0 + block);
      for (long j = j0; j < j1; j += GEMM_NR) {
        long width = smaller(n - j, GEMM_NR);
        float *panel = packed + (j - j0) / GEMM_NR * kc * GEMM_NR;
        if (win) {
          pack_window(win, segments, window_segments(win, p0 + j, width, segments), k0, kc, panel, GEMM_NR);
        } else {
          pack_b(b + k0 * ldb + j, ldb, kc, width, panel, b_in_memory && j + GEMM_NR < n);
        }
      }
      for (long p = first_panel; p < end_panel; p++) {
        long rows = smaller(m - p * GEMM_MR, GEMM_MR);
        for (long j = j0; j < j1; j += GEMM_NR) {
          long width = smaller(n - j, GEMM_NR);
          // A's rows are first read with the first panel of B; the others find them in cache.
          const float *next = j == 0 && p + 1 < end_panel ? a + (p + 1) * GEMM_MR * lda + k0 : 0;
          micro_kernel(kc, a + p * GEMM_MR * lda + k0, lda, 1, packed + (j - j0) / GEMM_NR * kc * GEMM_NR,
                       c + p * GEMM_MR * ldc + j, ldc, rows, width, k0 > 0, next, lda, 0);
        }
      }
    }
  }
}

__attribute__((target("avx512f")))
void vm_gemm(long m, long first_panel, long end_panel, long n, long k, const float *a, long lda, const float *b, long ldb,
             int b_in_memory, float *c, long ldc, float *workspace) {
  gemm_direct(m, first_panel, end_panel, n, k, a, lda, b, ldb, b_in_memory, 0, 0, c, ldc, workspace);
}

__attribute__((target("avx512f")))
void vm_gemm_window(long m, long first_panel, long end_panel, long p0, long n, long k, const float *a, long lda,
                    const vm_window *win, float *c, long ldc, float *workspace) {
  gemm_direct(m, first_panel, end_panel, n, k, a, lda, 0, 0, 0, win, p0, c, ldc, workspace);
}

// Channels ch0 … ch1 − 1 (planes of h × w) into planes of rows × wp, zero where a value falls
// outside the input: padded row r, column q holds input row row0 + r, column col0 + q.
void vm_pad_planes(const float *x, long ch0, long ch1, long h, long w, long row0, long rows, long col0, long wp, float *out) {
  long lo = col0 < 0 ? -col0 : 0, hi = w - col0 < wp ? w - col0 : wp;
  if (hi < lo) hi = lo;
  for (long ch = ch0; ch < ch1; ch++) {
    const float *plane = x + ch * h * w;
    for (long r = 0; r < rows; r++, out += wp) {
      long iy = row0 + r;
      if (iy < 0 || iy >= h || hi == lo) {
        memset(out, 0, (size_t)wp * sizeof(float));
        continue;
      }
      memset(out, 0, (size_t)lo * sizeof(float));
      memcpy(out + lo, plane + iy * w + col0 + lo, (size_t)(hi - lo) * sizeof(float));
      memset(out + hi, 0, (size_t)(wp - hi) * sizeof(float));
    }
  }
}

// The other way round: B constant (a MatMul's weights; a convolution's weights as B = Wᵀ when
// the output has few positions), packed once into GEMM_KC × 32 panels (read in place, its rows a
// page or more apart would miss the TLB on every step of k), and A packed per call into 8-row
// panels of a block of GEMM_MC rows. The same micro-kernel, so the same order of summation for
// every element.

#define GEMM_MC 128

long vm_gemm_packed_b_size(long k, long n) {
  return ((n + GEMM_NR - 1) / GEMM_NR) * GEMM_NR * k;
}

// Layout: for each block of GEMM_KC values of k, for each panel of 32 columns, the panel's rows
// k0…k1 one after another, 32 values each (columns past n are zero). B is k × n with rows ldb
// apart, or given as Bᵀ (n × k, rows ldb apart) when transposed.
void vm_gemm_pack_b(const float *b, long k, long n, long ldb, int transposed, float *packed) {
  long panels = (n + GEMM_NR - 1) / GEMM_NR;
  float *out = packed;
  for (long k0 = 0; k0 < k; k0 += GEMM_KC) {
    long kc = smaller(k - k0, GEMM_KC);
    for (long p = 0; p < panels; p++) {
      for (long kk = 0; kk < kc; kk++) {
        for (long col = p * GEMM_NR; col < (p + 1) * GEMM_NR; col++) {
          *out++ = col >= n ? 0.0f : transposed ? b[col * ldb + k0 + kk] : b[(k0 + kk) * ldb + col];
        }
      }
    }
  }
}

long vm_gemm_a_workspace_size(void) { return GEMM_MC * GEMM_KC + 16; }

// Rows i…i+rows (≤ 8) of A, columns k0…k0+kc, into a kc × 8 panel (zero past rows). A is m × k
// with rows lda apart, or given as Aᵀ (k × m, rows lda apart) when transposed: then each step of
// k is 8 consecutive values.
static void pack_a_panel(const float *a, long lda, int transposed, long i, long rows, long k0, long kc, float *panel) {
  if (transposed) {
    for (long kk = 0; kk < kc; kk++) {
      const float *src = a + (k0 + kk) * lda + i;
      float *dst = panel + kk * GEMM_MR;
      for (long r = 0; r < GEMM_MR; r++) dst[r] = r < rows ? src[r] : 0.0f;
    }
    return;
  }
  for (long r = 0; r < GEMM_MR; r++) {
    const float *src = a + (i + r) * lda + k0;
    if (r < rows) {
      for (long kk = 0; kk < kc; kk++) panel[kk * GEMM_MR + r] = src[kk];
    } else {
      for (long kk = 0; kk < kc; kk++) panel[kk * GEMM_MR + r] = 0.0f;
    }
  }
}

// A from memory, or (win set) the rows p0 … of a convolution's unfolded window.
__attribute__((target("avx512f"), always_inline))
static inline void gemm_packed_b(long m, long n, long first_panel, long end_panel, long k, const float *a, long lda,
                                 int a_transposed, const vm_window *win, long p0, const float *packed_b, float *c, long ldc,
                                 float *workspace) {
  long panels = (n + GEMM_NR - 1) / GEMM_NR;
  if (end_panel > panels) end_panel = panels;
  long c0 = first_panel * GEMM_NR, c1 = smaller(end_panel * GEMM_NR, n);
  if (c1 <= c0) return;
  if (k == 0) {
    for (long i = 0; i < m; i++) memset(c + i * ldc + c0, 0, (size_t)(c1 - c0) * sizeof(float));
    return;
  }
  float *apack = line_aligned(workspace);
  for (long i0 = 0; i0 < m; i0 += GEMM_MC) {
    long mc = smaller(m - i0, GEMM_MC);
    for (long k0 = 0; k0 < k; k0 += GEMM_KC) {
      long kc = smaller(k - k0, GEMM_KC);
      for (long i = 0; i < mc; i += GEMM_MR) {
        if (win) {
          window_segment segments[GEMM_MR];
          long rows = smaller(mc - i, GEMM_MR);
          pack_window(win, segments, window_segments(win, p0 + i0 + i, rows, segments), k0, kc, apack + i * kc, GEMM_MR);
        } else {
          pack_a_panel(a, lda, a_transposed, i0 + i, smaller(mc - i, GEMM_MR), k0, kc, apack + i * kc);
        }
      }
      const float *bblock = packed_b + k0 * panels * GEMM_NR;
      for (long p = first_panel; p < end_panel; p++) {
        long width = smaller(n - p * GEMM_NR, GEMM_NR);
        const float *bpanel = bblock + p * kc * GEMM_NR;
        // The next panel (this block's, or the next block's first) is asked into L2 by the first
        // four tiles, a quarter each: B comes from memory (ResNet-18's last stage reads 9.4 MB of
        // weights per call), and a tile that waited for it ran a third slower.
        const float *following = p + 1 < end_panel ? bpanel + kc * GEMM_NR
                                 : k0 + kc < k ? packed_b + (k0 + kc) * panels * GEMM_NR + first_panel * smaller(k - k0 - kc, GEMM_KC) * GEMM_NR
                                 : 0;
        for (long i = 0; i < mc; i += GEMM_MR) {
          long rows = smaller(mc - i, GEMM_MR), tile = i / GEMM_MR;
          const float *next = following && tile < 4 ? following + tile * 8 * kc : 0;
          micro_kernel(kc, apack + i * kc, 1, GEMM_MR, bpanel, c + (i0 + i) * ldc + p * GEMM_NR, ldc, rows, width, k0 > 0,
                       next, kc, 1);
        }
      }
    }
  }
}

__attribute__((target("avx512f")))
void vm_gemm_packed_b(long m, long n, long first_panel, long end_panel, long k, const float *a, long lda, int a_transposed,
                      const float *packed_b, float *c, long ldc, float *workspace) {
  gemm_packed_b(m, n, first_panel, end_panel, k, a, lda, a_transposed, 0, 0, packed_b, c, ldc, workspace);
}

__attribute__((target("avx512f")))
void vm_gemm_packed_b_window(long m, long n, long first_panel, long end_panel, long k, long p0, const vm_window *win,
                             const float *packed_b, float *c, long ldc, float *workspace) {
  gemm_packed_b(m, n, first_panel, end_panel, k, 0, 0, 0, win, p0, packed_b, c, ldc, workspace);
}

// A convolution's product over any output positions — several images' small maps, strided
// windows — as positions × channels: position i's row of the unfolded input is read in place,
// its tap t at x[bases[i] + shifts[t]] in a zero-padded copy of the input, and the kernel
// broadcasts it as it reads A. No unfolding, no packing of A, no output position wasted (a
// panel of 8 positions may span output rows and images). B is the transposed weights, packed
// once (vm_gemm_pack_b's layout) or, with packed_b 0, gathered here panel by panel from the
// weights w (n rows of k) into the workspace: each panel then serves every position.
// Row kk of the panel is element kidx[k0 + kk] of each weight row (rows ldw apart), or element
// k0 + kk without kidx: a window's taps that read the input where others read padding.
__attribute__((target("avx512f")))
static void gather_b_panel(const float *w, long n, long ldw, const int32_t *kidx, long col0, long k0, long kc, float *panel) {
  long width = smaller(n - col0, GEMM_NR);
  __mmask16 low = width >= 16 ? 0xffff : (__mmask16)((1u << width) - 1);
  __mmask16 high = width <= 16 ? 0 : width >= 32 ? 0xffff : (__mmask16)((1u << (width - 16)) - 1);
  __m512i index = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                     _mm512_set1_epi32((int)ldw));
  const float *first = w + col0 * ldw, *second = first + 16 * ldw;
  for (long kk = 0; kk < kc; kk++) {
    long at = kidx ? kidx[k0 + kk] : k0 + kk;
    _mm512_store_ps(panel + kk * GEMM_NR, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), low, index, first + at, 4));
    _mm512_store_ps(panel + kk * GEMM_NR + 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), high, index, second + at, 4));
  }
}

__attribute__((target("avx512f")))
void vm_gemm_gathered(long m, long n, long first_panel, long end_panel, long k, const float *x, const long *bases,
                      const int32_t *shifts, const float *packed_b, const float *w, long ldw, const int32_t *kidx, float *c,
                      long ldc, float *workspace) {
  long panels = (n + GEMM_NR - 1) / GEMM_NR;
  if (end_panel > panels) end_panel = panels;
  float *gathered = line_aligned(workspace);
  for (long k0 = 0; k0 < k; k0 += GEMM_KC) {
    long kc = smaller(k - k0, GEMM_KC);
    for (long p = first_panel; p < end_panel; p++) {
      long width = smaller(n - p * GEMM_NR, GEMM_NR);
      const float *bpanel = packed_b ? packed_b + k0 * panels * GEMM_NR + p * kc * GEMM_NR : gathered;
      if (!packed_b) gather_b_panel(w, n, ldw, kidx, p * GEMM_NR, k0, kc, gathered);
      // Packed weights come from memory: the next panel is asked into L2 by the first four tiles
      // (as in gemm_packed_b).
      const float *following = !packed_b ? 0
                               : p + 1 < end_panel ? bpanel + kc * GEMM_NR
                               : k0 + kc < k ? packed_b + (k0 + kc) * panels * GEMM_NR + first_panel * smaller(k - k0 - kc, GEMM_KC) * GEMM_NR
                               : 0;
      for (long i = 0; i < m; i += GEMM_MR) {
        long rows = smaller(m - i, GEMM_MR), tile = i / GEMM_MR;
        const float *arows[GEMM_MR];
        for (long r = 0; r < GEMM_MR; r++) arows[r] = x + bases[i + (r < rows ? r : 0)];
        const float *next = following && tile < 4 ? following + tile * 8 * kc : 0;
        micro_kernel_gathered(kc, arows, shifts + k0, bpanel, c + i * ldc + p * GEMM_NR, ldc, rows, width, k0 > 0, next, kc);
      }
    }
  }
}

// out[o·ldc + q] = t[q·columns + o]: a positions × channels product back to channels ×
// positions, in 16 × 16 blocks transposed in registers (four rounds of shuffles), each channel's
// 16 positions stored as one line: the output is often larger than the cache, and the scalar
// loop was a fifth of a 3-channel stem's time.
__attribute__((target("avx512f"), always_inline))
static inline void transpose16(const float *src, long columns, float *dst, long ldc) {
  __m512 r[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * columns);
  transpose16_registers(r);
  for (int j = 0; j < 16; j++) _mm512_storeu_ps(dst + j * ldc, r[j]);
}

__attribute__((target("avx512f")))
void vm_transpose(const float *t, long rows, long columns, float *out, long ldc) {
  long q = 0;
  for (; q + 16 <= rows; q += 16) {
    long o = 0;
    for (; o + 16 <= columns; o += 16) transpose16(t + q * columns + o, columns, out + o * ldc + q, ldc);
    for (; o < columns; o++)
      for (long r = 0; r < 16; r++) out[o * ldc + q + r] = t[(q + r) * columns + o];
  }
  for (; q < rows; q++)
    for (long o = 0; o < columns; o++) out[o * ldc + q] = t[q * columns + o];
}
