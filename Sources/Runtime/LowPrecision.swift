import IR
import Support

/// The float8 (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E8M0), float4 (E2M1) and 2- and 4-bit integer
/// element types. Tensors keep them as ONNX stores them (`raw_data`): one byte per float8
/// element, sub-byte elements packed low bits first. They are converted element by element
/// through Double, which holds every value of every one of them exactly, so Cast, QuantizeLinear
/// and DequantizeLinear round once, as their definitions (and ml_dtypes, which the reference
/// uses) do.
extension DataType {
  /// The types this file converts.
  public var isNarrow: Bool {
    (17...26).contains(rawValue)
  }

  var isNarrowInteger: Bool { self == .int4 || self == .uint4 || self == .int2 || self == .uint2 }

  /// (smallest, largest) value of a 2- or 4-bit integer type.
  var narrowIntegerRange: (Int, Int)? {
    switch self {
    case .int4: return (-8, 7)
    case .uint4: return (0, 15)
    case .int2: return (-2, 1)
    case .uint2: return (0, 3)
    default: return nil
    }
  }
}

/// A minifloat layout: sign, `exponentBits`, `mantissaBits`, and how it spells NaN and infinity.
struct MiniFloat {
  enum Specials {
    /// IEEE-like: all-ones exponent is infinity (zero mantissa) or NaN (E5M2).
    case ieee
    /// Only S.1111.111 is NaN; no infinity (E4M3FN).
    case finiteNaNAllOnes
    /// 0x80 (negative zero's code) is the only NaN; no infinity, no negative zero (the FNUZ types).
    case finiteNaNNegativeZero
    /// Neither NaN nor infinity (E2M1).
    case finite
  }

  let exponentBits: Int
  let mantissaBits: Int
  let bias: Int
  let specials: Specials

  static let e4m3fn = MiniFloat(exponentBits: 4, mantissaBits: 3, bias: 7, specials: .finiteNaNAllOnes)
  static let e4m3fnuz = MiniFloat(exponentBits: 4, mantissaBits: 3, bias: 8, specials: .finiteNaNNegativeZero)
  static let e5m2 = MiniFloat(exponentBits: 5, mantissaBits: 2, bias: 15, specials: .ieee)
  static let e5m2fnuz = MiniFloat(exponentBits: 5, mantissaBits: 2, bias: 16, specials: .finiteNaNNegativeZero)
  static let e2m1 = MiniFloat(exponentBits: 2, mantissaBits: 1, bias: 1, specials: .finite)

  static func of(_ type: DataType) -> MiniFloat? {
    switch type {
    case .float8e4m3fn: return .e4m3fn
    case .float8e4m3fnuz: return .e4m3fnuz
    case .float8e5m2: return .e5m2
    case .float8e5m2fnuz: return .e5m2fnuz
    case .float4e2m1: return .e2m1
    default: return nil
    }
  }

  var signBit: UInt8 { UInt8(1) << UInt8(exponentBits + mantissaBits) }
  private var exponentMask: Int { (1 << exponentBits) - 1 }
  private var mantissaMask: Int { (1 << mantissaBits) - 1 }

  /// The largest finite value.
  var maxFinite: Double {
    switch specials {
    case .ieee: return (2 - 1 / Double(1 << mantissaBits)) * pow2(exponentMask - 1 - bias)
    case .finiteNaNAllOnes: return (2 - 2 / Double(1 << mantissaBits)) * pow2(exponentMask - bias)
    case .finiteNaNNegativeZero, .finite: return (2 - 1 / Double(1 << mantissaBits)) * pow2(exponentMask - bias)
    }
  }

  private var nanCode: UInt8 {
    switch specials {
    case .ieee: return UInt8(exponentMask << mantissaBits) | UInt8(1 << (mantissaBits - 1))
    case .finiteNaNAllOnes: return UInt8(exponentMask << mantissaBits | mantissaMask)
    case .finiteNaNNegativeZero: return 0x80
    case .finite: return 0
    }
  }

  func decode(_ bits: UInt8) -> Double {
    let sign: Double = bits & signBit != 0 ? -1 : 1
    let e = Int(bits >> UInt8(mantissaBits)) & exponentMask, m = Int(bits) & mantissaMask
    switch specials {
    case .ieee where e == exponentMask: return m == 0 ? sign * .infinity : .nan
    case .finiteNaNAllOnes where e == exponentMask && m == mantissaMask: return .nan
    case .finiteNaNNegativeZero where bits == 0x80: return .nan
    default: break
    }
    if e == 0 { return sign * Double(m) * pow2(1 - bias - mantissaBits) }
    return sign * (1 + Double(m) / Double(1 << mantissaBits)) * pow2(e - bias)
  }

  /// Round-to-nearest-even encoding. Out of range: the largest finite value when saturating
  /// (E2M1 always saturates), else infinity (E5M2) or NaN.
  func encode(_ x: Double, saturate: Bool) -> UInt8 {
    let negative = x.sign == .minus
    let sign: UInt8 = negative ? signBit : 0
    if x.isNaN {
      // ml_dtypes (the reference's conversions) gives E2M1's NaN the code of -0 for +NaN.
      if specials == .finite { return negative ? 0 : signBit }
      return specials == .finiteNaNNegativeZero ? nanCode : nanCode | (negative ? signBit : 0)
    }
    let magnitude = x.magnitude
    func overflow() -> UInt8 {
      if saturate || specials == .finite { return sign | encodeMagnitude(maxFinite) }
      if specials == .ieee { return sign | UInt8(exponentMask << mantissaBits) }
      return specials == .finiteNaNNegativeZero ? nanCode : nanCode | sign
    }
    if magnitude.isInfinite { return overflow() }
    // The spacing of representable values around `magnitude`.
    let minNormalExponent = 1 - bias
    let exponent = magnitude == 0 ? minNormalExponent : max(Int(magnitude.exponent), minNormalExponent)
    let quantum = pow2(exponent - mantissaBits)
    let rounded = (magnitude / quantum).rounded(.toNearestOrEven) * quantum
    if rounded > maxFinite { return overflow() }
    // FNUZ types have no negative zero (its code is NaN).
    if rounded == 0 { return specials == .finiteNaNNegativeZero ? 0 : sign }
    return sign | encodeMagnitude(rounded)
  }

  /// The code of a representable positive value.
  private func encodeMagnitude(_ v: Double) -> UInt8 {
    let e = Int(v.exponent)
    if e < 1 - bias {
      return UInt8(Int((v / pow2(1 - bias - mantissaBits)).rounded()))
    }
    let m = Int(((v / pow2(e) - 1) * Double(1 << mantissaBits)).rounded())
    return UInt8(((e + bias) << mantissaBits) | m)
  }
}

private func pow2(_ e: Int) -> Double { Double(sign: .plus, exponent: e, significand: 1) }

/// FLOAT8E8M0: an exponent only, 2^(code − 127); 0xFF is NaN.
enum E8M0 {
  static func decode(_ bits: UInt8) -> Double { bits == 0xFF ? .nan : pow2(Int(bits) - 127) }

  /// As the reference (onnx.numpy_helper.to_float8e8m0) computes it from the float32 bits:
  /// `up` rounds any fraction up, `nearest` rounds half up, `down` truncates; saturating keeps
  /// 0xFE from rounding into NaN.
  static func encode(_ x: Double, saturate: Bool, roundMode: String) -> UInt8 {
    let bits = Float(x).bitPattern
    var exponent = Int((bits >> 23) & 0xFF)
    if exponent == 0xFF { return 0xFF }
    let fraction = bits & 0x7F_FFFF
    var roundUp = false
    switch roundMode {
    case "nearest":
      let g = bits & 0x40_0000 != 0, r = bits & 0x20_0000 != 0, s = bits & 0x1F_FFFF != 0, lsb = exponent > 0
      roundUp = g && (r || s || lsb)
    case "down": roundUp = false
    default: roundUp = fraction > 0
    }
    if saturate && exponent == 0xFE { roundUp = false }
    if roundUp { exponent += 1 }
    return UInt8(truncatingIfNeeded: exponent)
  }
}

extension NDArray {
  /// Every element of a narrow-typed tensor as Double (NaN codes as NaN).
  func narrowValues() -> [Double] {
    let n = count
    let bytes = elements(UInt8.self)
    func byte(_ i: Int) -> UInt8 { i < bytes.count ? bytes[i] : 0 }
    switch dataType {
    case .float8e8m0: return (0..<n).map { E8M0.decode(byte($0)) }
    case .float4e2m1: return (0..<n).map { MiniFloat.e2m1.decode(nibble(byte($0 / 2), $0)) }
    case .int4, .uint4, .int2, .uint2: return narrowIntegers().map(Double.init)
    default:
      guard let f = MiniFloat.of(dataType) else { return [] }
      // One table of 256 values instead of decoding each element.
      let table = (0...255).map { f.decode(UInt8($0)) }
      return (0..<n).map { table[Int(byte($0))] }
    }
  }

  /// The elements of a 2- or 4-bit integer tensor, sign-extended for the signed types.
  func narrowIntegers() -> [Int] {
    let n = count
    let bytes = elements(UInt8.self)
    let signed = dataType == .int4 || dataType == .int2
    let bits = dataType == .int4 || dataType == .uint4 ? 4 : 2
    let perByte = 8 / bits, mask = (1 << bits) - 1
    return (0..<n).map { i in
      let b = i / perByte < bytes.count ? Int(bytes[i / perByte]) : 0
      let v = (b >> ((i % perByte) * bits)) & mask
      return signed && v >= 1 << (bits - 1) ? v - (1 << bits) : v
    }
  }

  /// A narrow-typed tensor from Double values. Floats round to nearest even (saturating as
  /// asked; E8M0 as `roundMode` says). 2- and 4-bit integers: `wrap` keeps the low bits of an
  /// integer source (as any integer narrowing does); a float source truncates toward zero and is
  /// 0 when out of range (undefined by ONNX; what ml_dtypes, the reference, gives).
  init(narrow values: [Double], as type: DataType, shape: [Int], saturate: Bool = true, roundMode: String = "up",
       wrap: Bool = false) throws {
    self.init(zeros: type, shape)
    let out = mutableElements(UInt8.self)
    switch type {
    case .float8e8m0:
      for (i, v) in values.enumerated() { out[i] = E8M0.encode(v, saturate: saturate, roundMode: roundMode) }
    case .float4e2m1:
      for (i, v) in values.enumerated() { out[i / 2] |= MiniFloat.e2m1.encode(v, saturate: true) << UInt8((i % 2) * 4) }
    case .int4, .uint4, .int2, .uint2:
      guard let (lo, hi) = type.narrowIntegerRange else { return }
      let bits = type == .int4 || type == .uint4 ? 4 : 2
      let perByte = 8 / bits, mask = (1 << bits) - 1
      for (i, v) in values.enumerated() {
        var q: Int
        if wrap {
          q = Int(Int64(clampingDouble: v))
        } else {
          let t = v.isFinite ? v.rounded(.towardZero) : 0
          q = t >= Double(lo) && t <= Double(hi) ? Int(t) : 0
        }
        q &= mask
        out[i / perByte] |= UInt8(q << ((i % perByte) * bits))
      }
    default:
      guard let f = MiniFloat.of(type) else { throw CompressorError.unsupported("cannot convert to \(type)") }
      for (i, v) in values.enumerated() { out[i] = f.encode(v, saturate: saturate) }
    }
  }

  /// One byte per element (for writing arrays numpy can hold): a float8 element's code, a
  /// float4 element's code in the low bits, a 2- or 4-bit integer sign-extended to 8 bits.
  public func unpackedNarrowBytes() -> [UInt8] {
    switch dataType {
    case .int4, .uint4, .int2, .uint2: return narrowIntegers().map { UInt8(truncatingIfNeeded: $0) }
    case .float4e2m1:
      let bytes = elements(UInt8.self)
      return (0..<count).map { i in i / 2 < bytes.count ? nibble(bytes[i / 2], i) : 0 }
    default: return Array(elements(UInt8.self).prefix(count))
    }
  }

  /// Cast between any two numeric types where either is narrow.
  func narrowConverted(to type: DataType, saturate: Bool = true, roundMode: String = "up") throws -> NDArray {
    let integerSource = !dataType.isFloatingPoint
    let values: [Double]
    if dataType.isNarrow {
      values = narrowValues()
    } else if dataType == .bool {
      values = elements(UInt8.self).map { $0 != 0 ? 1 : 0 }
    } else if integerSource {
      values = try integers().map(Double.init)
    } else {
      values = try floats().map(Double.init)
    }
    if type.isNarrow {
      return try NDArray(narrow: values, as: type, shape: shape, saturate: saturate, roundMode: roundMode, wrap: integerSource)
    }
    return try NDArray(doubles: values, as: type, shape: shape)
  }
}

private func nibble(_ byte: UInt8, _ i: Int) -> UInt8 { i % 2 == 0 ? byte & 0x0F : byte >> 4 }
