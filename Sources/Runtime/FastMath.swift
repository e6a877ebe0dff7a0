/// Branch-free float approximations the compiler can vectorize, for the hot loops of Softmax and
/// Erf (GELU), where the scalar libm calls cost more than the matrix products around them.
enum FastMath {
  /// e^x for x ≤ 0 (Softmax after subtracting the row's maximum), within 2 ulp; 0 below −87.3
  /// (where e^x is denormal), NaN for NaN.
  @inline(__always)
  static func expNonPositive(_ x: Float) -> Float {
    expNonPositive(SIMD8<Float>(repeating: x))[0]
  }

  /// `expNonPositive` on eight lanes at once. Rounding x·log₂e to an integer by adding 1.5·2²³
  /// leaves that integer in the low mantissa bits, from which 2ⁿ is built directly: only plain
  /// vector arithmetic, no per-lane conversions.
  @inline(__always)
  static func expNonPositive(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let clamped = x.replacing(with: -87.3, where: x .< -87.3)
    let shifted = clamped * 1.442695041 + magic
    let n = shifted - magic
    let r = clamped - n * 0.693145752 - n * 1.42860677e-06
    var p = SIMD8<Float>(repeating: 1.0 / 5040)
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    // shifted's bits minus magic's are n (two's complement); (n + 127) << 23 is 2ⁿ.
    let integer = unsafeBitCast(shifted, to: SIMD8<UInt32>.self) &- unsafeBitCast(magic, to: SIMD8<UInt32>.self)
    let scale = unsafeBitCast((integer &+ 127) &<< 23, to: SIMD8<Float>.self)
    return (p * scale).replacing(with: 0, where: x .< -87.3).replacing(with: x, where: x .!= x)
  }

  /// 1/(1 + e^−x) on eight lanes: e = e^−|x| ≤ 1 never overflows, and x < 0 takes e/(1 + e).
  @inline(__always)
  static func sigmoid(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let e = expNonPositive(x.replacing(with: -x, where: x .> 0))
    let s = 1 / (1 + e)
    return s.replacing(with: e * s, where: x .< 0)
  }

  /// tanh(x) on eight lanes within 2 ulp: the odd Taylor series through x¹¹ below |x| = 0.4, where
  /// (1 − e)/(1 + e) with e = e^−2|x| would lose digits, and that formula above.
  @inline(__always)
  static func tanh(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let a = x.replacing(with: -x, where: x .< 0)
    let e = expNonPositive(-2 * a)
    let large = (1 - e) / (1 + e)
    let s = a * a
    var p = SIMD8<Float>(repeating: -1382.0 / 155925)
    p = p * s + 62.0 / 2835
    p = p * s - 17.0 / 315
    p = p * s + 2.0 / 15
    p = p * s - 1.0 / 3
    p = p * s + 1
    let r = (a * p).replacing(with: large, where: .!(a .< 0.4))
    return r.replacing(with: -r, where: x .< 0)
  }

  /// erf(x) within 3e-7: the odd Taylor series below |x| = 0.5, Abramowitz & Stegun 7.1.28
  /// (1 − (1 + a₁x + … + a₆x⁶)⁻¹⁶) above, saturating to ±1.
  @inline(__always)
  static func erf(_ x: Float) -> Float {
    let a = Swift.abs(x)
    // Taylor: (2/√π)·(x − x³/3 + x⁵/10 − x⁷/42 + x⁹/216 − x¹¹/1320 + x¹³/9360).
    let s = a * a
    var t: Float = 1.0 / 9360
    t = t * s - 1.0 / 1320
    t = t * s + 1.0 / 216
    t = t * s - 1.0 / 42
    t = t * s + 1.0 / 10
    t = t * s - 1.0 / 3
    t = t * s + 1
    let small = 1.128379167 * a * t
    var q: Float = 0.0000430638
    q = q * a + 0.0002765672
    q = q * a + 0.0001520143
    q = q * a + 0.0092705272
    q = q * a + 0.0422820123
    q = q * a + 0.0705230784
    q = q * a + 1
    let q2 = q * q, q4 = q2 * q2, q8 = q4 * q4, q16 = q8 * q8
    let large = a > 9 ? 1 : 1 - 1 / q16
    let y = a < 0.5 ? small : large
    return x.isNaN ? x : (x < 0 ? -y : y)
  }
}
