import CVectorMath

/// The runtime's transcendental loops — e^x for Softmax, Sigmoid and SiLU, Tanh, Erf — over
/// contiguous arrays, in CVectorMath: C compiled for AVX-512, AVX2 and baseline x86-64 and
/// chosen at load by the CPU, where Swift here is compiled for baseline x86-64 (four lanes).
/// Branch-free approximations (e^x within 2 ulp, erf within 3e-7) whose every element is the
/// same bits on every instruction set, so fused and unfused nodes agree.
enum FastMath {
  static func expNonPositive(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) { vm_exp_nonpositive(x, y, n) }
  static func sigmoid(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) { vm_sigmoid(x, y, n) }
  static func swish(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, alpha: Float) { vm_swish(x, y, n, alpha) }
  /// p = v·σ(v) with v = p + bias, in place.
  static func siluWithBias(_ p: UnsafeMutablePointer<Float>, _ n: Int, bias: Float) { vm_silu_bias(p, n, bias) }
  static func tanh(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) { vm_tanh(x, y, n) }
  static func erf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) { vm_erf(x, y, n) }
  /// x·(0.5·(erf(x/√2) + 1)): the same bits as the Div, Erf, Add, Mul, Mul exporters write.
  static func gelu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) { vm_gelu_erf(x, y, n) }
  /// Softmax of one contiguous row into `row` (which may be `input`); a row of −∞ gives NaN.
  static func softmaxRow(_ input: UnsafePointer<Float>, _ row: UnsafeMutablePointer<Float>, _ n: Int) { vm_softmax_row(input, row, n) }
  /// The largest of n values (NaN ignored).
  static func rowMaximum(_ input: UnsafePointer<Float>, _ n: Int) -> Float { vm_row_maximum(input, n) }

  /// One element through an array function: the same bits as in an array.
  @inline(__always)
  static func scalar(_ x: Float, _ f: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Float {
    var x = x, y: Float = 0
    f(&x, &y, 1)
    return y
  }
}
