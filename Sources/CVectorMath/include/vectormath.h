#ifndef COMPRESSOR_VECTORMATH_H
#define COMPRESSOR_VECTORMATH_H

// Transcendental loops of the runtime (Softmax, Sigmoid and SiLU, Tanh, Erf) in C, compiled once
// per instruction set (AVX-512, AVX2, baseline) and chosen at load by the CPU (target_clones):
// Swift code here is compiled for baseline x86-64, four lanes, and these loops were a third of
// EfficientNet's time and most of Whisper's attention. Each element's result is the same on
// every instruction set (the same operations in the same order, no contraction into FMA).

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
// Softmax of one contiguous row (out may be in): a row of -inf gives NaN, as ONNX's Softmax does.
void vm_softmax_row(const float *in, float *out, long n);
// The largest value of a row (NaN ignored; -inf for an empty row).
float vm_row_maximum(const float *in, long n);

#endif
