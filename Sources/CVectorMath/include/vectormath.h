#ifndef COMPRESSOR_VECTORMATH_H
#define COMPRESSOR_VECTORMATH_H

#include <stdint.h>

// Loops of the runtime in C (Softmax, Sigmoid and SiLU, Tanh, Erf, depthwise convolution), compiled once
// per instruction set (AVX-512, AVX2 with FMA, baseline) and chosen at load by the CPU
// (target_clones): Swift code here is compiled for baseline x86-64, four lanes, and these loops
// were a third of EfficientNet's time and most of Whisper's attention. Each element's result is
// the same on every instruction set: the same operations in the same order, no contraction, and
// the exponential's explicit fused multiply-adds round once wherever they run (libm's fmaf on
// the baseline).

// y = e^x for x <= 0 (within 2 ulp; 0 below -87.3; NaN stays NaN).
void vm_exp_nonpositive(const float *x, float *y, long n);
// y = 1 / (1 + e^-x).
void vm_sigmoid(const float *x, float *y, long n);
// y = x * sigmoid(alpha * x) (Swish; SiLU with alpha 1).
void vm_swish(const float *x, float *y, long n, float alpha);
// p = v * sigmoid(v) with v = p + bias, in place (SiLU fused into a convolution's epilogue).
void vm_silu_bias(float *p, long n, float bias);
// y = tanh(x) within 2 ulp.
void vm_tanh(const float *x, float *y, long n);
// y = erf(x) within 3e-7.
void vm_erf(const float *x, float *y, long n);
// y = x · (0.5 · (erf(x / √2) + 1)), each operation rounded to float in that order.
void vm_gelu_erf(const float *x, float *y, long n);
// Softmax of one contiguous row (out may be in): a row of -inf gives NaN, as ONNX's Softmax does.
void vm_softmax_row(const float *in, float *out, long n);
// LayerNormalization of `rows` contiguous rows of n: y = (x − mean)·(1/√(variance + eps))·scale
// [+ bias], each step rounded in that order; scale and bias hold n values (bias may be null).
// Each row's mean and 1/√(variance + eps) are written to mean[r] and inv_std[r]. The sums run in
// sixteen lanes added in a fixed order: a row's bits depend on nothing but the row.
void vm_layer_norm(const float *x, long rows, long n, const float *scale, const float *bias, float eps, float *y,
                   float *mean, float *inv_std);
// A convolution's unfolded input (im2col) for input channels ch0…ch1−1 of x (each h × w): the
// row of tap (ky, kx) of channel ch starts at cols + ((ch·kh + ky)·kw + kx)·leading and holds
// the values that tap reads for output rows oy0…oy1−1 (ow columns each), zero where it falls in
// the padding, one output row after another.
void vm_im2col(const float *x, long ch0, long ch1, long h, long w, long kh, long kw, long oy0, long oy1, long ow,
               long sh, long sw, long dh, long dw, long pad_top, long pad_left, float *cols, long leading);
// The smallest and largest of x[0…n−1], how many are exactly 0, and whether any is NaN or
// infinite (then the extremes are not meaningful).
void vm_scan_extremes(const float *x, long n, float *lo, float *hi, long *zeros, int *nonfinite);
// y[j] = Σ_k a[j·lda + k]·x[k] for rows j0…j1−1, each row's sum in one fixed order (the same bits
// whichever rows a call covers).
void vm_rows_dot(const float *a, long lda, const float *x, long k, long j0, long j1, float *y);
// A depthwise convolution of one plane read from a zero-padded buffer: out[oy·ow + ox] =
// Σ_t filter[t] · in[oy·row_step + offsets[t] + ox], taps summed in order. row_width is the
// buffer's row length (row_step is a multiple of it). Reads up to 15 floats past the last one
// used, so the buffer needs that much (finite) slack; scratch holds the larger of (oh − 1)·
// row_step + ow and oh·ow, each rounded up to 16 (ow for each row).
void vm_depthwise_plane(const float *in, long row_step, long row_width, const long *offsets, const float *filter,
                        long taps, long oh, long ow, float *out, float *scratch);
// A depthwise convolution (one filter of kh × kw per channel) of `planes` ≤ 16 channels at once,
// side by side in vectors (depthwise.c; AVX-512 machines only): x is the first channel's plane
// (h × w, planes consecutive), filter planes × kh·kw weights, out the first output plane (oh ×
// ow each), of which rows [oy0, oy1) are computed: taps summed in order with fused
// multiply-adds, then the bias (planes values, or NULL) and the activation `kind` (as
// vm_bias_activation, no residual). workspace: vm_depthwise_channels_workspace(…, oy1 − oy0)
// floats.
long vm_depthwise_channels_workspace(long kh, long kw, long sh, long sw, long dh, long dw, long ow, long rows);
void vm_depthwise_channels(const float *x, long planes, long h, long w, const float *filter, long kh, long kw, long sh,
                           long sw, long dh, long dw, long pad_top, long pad_left, long oh, long ow, long oy0, long oy1,
                           const float *bias, int kind, float alpha, float beta, float *out, float *workspace);
// A convolution's epilogue, in place: p = act((p + bias) + residual) (residual may be NULL),
// with alpha and beta the activation's parameters (Clip's bounds, LeakyRelu's slope,
// HardSigmoid's α and β). The same bits as the unfused Add and activation nodes.
enum {
  VM_ACTIVATION_NONE, VM_ACTIVATION_RELU, VM_ACTIVATION_CLIP, VM_ACTIVATION_HARD_SWISH, VM_ACTIVATION_HARD_SIGMOID,
  VM_ACTIVATION_LEAKY_RELU, VM_ACTIVATION_SILU
};
void vm_bias_activation(float *p, long n, float bias, const float *residual, int kind, float alpha, float beta);
// The same on `planes` runs of n values, `stride` apart, plane c with biases[c] (none: 0) and
// the residual's run at the same offset: one call for the channels of a small map.
void vm_bias_activation_planes(float *p, long planes, long n, long stride, const float *biases, const float *residual,
                               int kind, float alpha, float beta);
// A 2-D max pool of one plane (h × w) without dilation into out (oh × ow); NaN wins. col: a
// buffer of −∞ with pad_left values before it and max(w, ow rounded up to 16 · sw + kw) after
// it, of which the first w are overwritten.
void vm_max_pool_plane(const float *in, long h, long w, long kh, long kw, long sh, long sw, long pad_top,
                       long pad_left, long oh, long ow, float *col, float *out);
// The largest value of a row (NaN ignored; -inf for an empty row).
float vm_row_maximum(const float *in, long n);

// Matrix products (gemm.c), only where vm_gemm_supported() (AVX-512); the runtime uses OpenBLAS
// elsewhere. C (m × n, rows ldc apart) = A (m × k, rows lda apart) · B (k × n, rows ldb apart).
// Rows of C are taken in panels of vm_gemm_panel_rows() (8): [first_panel, end_panel) computes
// those rows only, so threads can share them. b_in_memory: B is not in cache (a MatMul's weights,
// not a convolution's freshly unfolded input), so its next panel is fetched ahead. workspace:
// vm_gemm_workspace_size() floats per calling thread.
int vm_gemm_supported(void);
long vm_gemm_panel_rows(void);
long vm_gemm_workspace_size(void);
void vm_gemm(long m, long first_panel, long end_panel, long n, long k, const float *a, long lda, const float *b, long ldb,
             int b_in_memory, float *c, long ldc, float *workspace);

// A 2-D convolution's window over one image (its channels planes of h × w) and output width ow.
typedef struct {
  const float *x;
  long h, w, kh, kw, sh, sw, dh, dw, pad_top, pad_left, ow;
} vm_window;
// vm_gemm with B the window's unfolded input (rows (c·kh + ky)·kw + kx, k of them; columns the
// output positions p0 … p0 + n − 1 in row-major order), unfolded panel by panel as it is used:
// the same sums as vm_gemm over the matrix vm_im2col makes. Stride 1 along rows (sw) only.
void vm_gemm_window(long m, long first_panel, long end_panel, long p0, long n, long k, const float *a, long lda,
                    const vm_window *win, float *c, long ldc, float *workspace);

// C (m positions × n channels, rows ldc apart) = the unfolded input at m output positions (rows
// of A: position i's tap t at x[bases[i] + shifts[t]], x a zero-padded copy of the input) · B,
// the transposed weights (k × n) packed by vm_gemm_pack_b, or, with packed_b 0, gathered from
// the weights w (n rows ldw apart) a panel at a time: element kk of a row is w[kidx[kk]], or
// w[kk] when kidx is 0. Columns in 32-column panels [first_panel, end_panel) only. workspace:
// vm_gemm_workspace_size() floats. The same sums as the other products of the same rows and
// weights.
void vm_gemm_gathered(long m, long n, long first_panel, long end_panel, long k, const float *x, const long *bases,
                      const int32_t *shifts, const float *packed_b, const float *w, long ldw, const int32_t *kidx, float *c,
                      long ldc, float *workspace);
// out[o·ldc + q] = t[q·columns + o] for q < rows, o < columns (AVX-512 machines only).
void vm_transpose(const float *t, long rows, long columns, float *out, long ldc);
// Channels ch0 … ch1 − 1 (planes of h × w) copied into planes of rows × wp, zero outside the
// input: padded row r, column q holds input row row0 + r, column col0 + q.
void vm_pad_planes(const float *x, long ch0, long ch1, long h, long w, long row0, long rows, long col0, long wp, float *out);

// C (m × n, rows ldc apart) = A · B with B constant, packed once by vm_gemm_pack_b (B is k × n,
// or given as Bᵀ) into vm_gemm_packed_b_size(k, n) floats. A is m × k (rows lda apart) or given
// as Aᵀ (k × m). Columns are taken in panels of 32: [first_panel, end_panel) computes those
// columns of C only. workspace: vm_gemm_a_workspace_size() floats per calling thread.
long vm_gemm_packed_b_size(long k, long n);
void vm_gemm_pack_b(const float *b, long k, long n, long ldb, int transposed, float *packed);
long vm_gemm_a_workspace_size(void);
void vm_gemm_packed_b(long m, long n, long first_panel, long end_panel, long k, const float *a, long lda, int a_transposed,
                      const float *packed_b, float *c, long ldc, float *workspace);
// vm_gemm_packed_b with A the unfolded window's positions p0 … p0 + m − 1 as rows (the
// transposed convolution product: positions × channels), unfolded 8 positions at a time.
void vm_gemm_packed_b_window(long m, long n, long first_panel, long end_panel, long k, long p0, const vm_window *win,
                             const float *packed_b, float *c, long ldc, float *workspace);

// Integer row × matrix (integer.c), where vm_u8s8_supported() (AVX-512 VNNI): y (n, int32) =
// x (k, uint8) · W (k × n, int8), W packed once by vm_u8s8_pack into vm_u8s8_packed_size(k, n)
// bytes. Exact.
int vm_u8s8_supported(void);
long vm_u8s8_packed_size(long k, long n);
void vm_u8s8_pack(const int8_t *w, long k, long n, int8_t *packed);
void vm_u8s8_gemv(const uint8_t *x, long k, long n, const int8_t *packed, int32_t *y);
// Y (m × n, int32, rows ldy apart) = X (m × k, uint8, rows ldx apart) · W packed by vm_u8s8_pack,
// columns of 16-column groups first_group…end_group−1 only (a thread's share). Exact.
void vm_u8s8_gemm(const uint8_t *x, long m, long k, long ldx, long n, const int8_t *packed, long first_group,
                  long end_group, int32_t *y, long ldy);
// A 2-D convolution's uint8 input unfolded (im2col): row (ch·kh + ky)·kw + kx, ld bytes apart,
// holds that tap's byte for each output position; `pad` where it falls in the padding.
void vm_u8_im2col(const uint8_t *x, long c, long h, long w, long kh, long kw, long sh, long sw, long dh, long dw,
                  long pad_top, long pad_left, long oh, long ow, uint8_t pad, uint8_t *cols, long ld);
// The unfolded input packed for vm_s8u8_conv: ((positions + 15) / 16) · ((k + 3) / 4) · 64 bytes.
void vm_u8_pack_quads(const uint8_t *cols, long k, long positions, long ld, uint8_t *packed);
// y (m × positions, int32) = w (m × quads·4, int8) · x (packed) − w_zero[o]·Σ_k x[k][p] + terms[o],
// output channels in 8-row blocks first_block…end_block−1 (a thread's share). Exact.
void vm_s8u8_conv(const int8_t *w, long m, long quads, const uint8_t *packed, long positions, const int32_t *w_zero,
                  const int32_t *terms, int32_t *y, long first_block, long end_block);

#endif
