import Foundation
import IR
import Support

/// Random generators: RandomUniform, RandomNormal (and their *Like forms, which take the shape
/// and, by default, the type of an input), Bernoulli and Multinomial.
///
/// Samples come from xoshiro256** seeded through SplitMix64. With a `seed` attribute a node draws
/// the same values on every run and in every process; without one, its seed is a hash of its
/// first output's name, so runs stay reproducible (as every compressor result is) rather than
/// drawing fresh values per session as ONNX Runtime does. No implementation can equal another's
/// values — ONNX leaves the generator unspecified — so tests check ranges and moments instead.
extension Kernels {
  static let random: [String: Kernel] = [
    "RandomUniform": { c in
      let shape = try randomShape(c)
      return [try uniform(c, shape: shape, type: try randomType(c, default: .float))]
    },
    "RandomUniformLike": { c in
      let x = try c.input(0)
      return [try uniform(c, shape: x.shape, type: try randomType(c, default: x.dataType))]
    },
    "RandomNormal": { c in
      let shape = try randomShape(c)
      return [try normal(c, shape: shape, type: try randomType(c, default: .float))]
    },
    "RandomNormalLike": { c in
      let x = try c.input(0)
      return [try normal(c, shape: x.shape, type: try randomType(c, default: x.dataType))]
    },
    "Bernoulli": { c in
      let p = try c.input(0)
      let type = try randomType(c, default: p.dataType)
      var generator = RandomGenerator(c)
      let values = try p.converted(to: .double).elements(Double.self).map { generator.unit() < $0 ? 1.0 : 0 }
      return [try randomOutput(c, values, type: type, shape: p.shape)]
    },
    "Multinomial": { c in [try multinomial(c)] },
  ]
}

/// xoshiro256** (Blackman and Vigna): small, fast, and its streams are well distributed.
struct RandomGenerator {
  private var s: (UInt64, UInt64, UInt64, UInt64)

  init(seed: UInt64) {
    // SplitMix64 spreads any seed, 0 included, over the four words of state.
    var z = seed
    func next() -> UInt64 {
      z &+= 0x9E37_79B9_7F4A_7C15
      var r = z
      r = (r ^ (r >> 30)) &* 0xBF58_476D_1CE4_E5B9
      r = (r ^ (r >> 27)) &* 0x94D0_49BB_1331_11EB
      return r ^ (r >> 31)
    }
    s = (next(), next(), next(), next())
  }

  /// Seeded by the node's `seed` attribute (its bits), else by a stable hash (FNV-1a) of its
  /// first output's name.
  init(_ c: KernelContext) {
    if let seed = c.node.attribute("seed")?.float {
      self.init(seed: UInt64(seed.bitPattern))
    } else {
      var h: UInt64 = 0xCBF2_9CE4_8422_2325
      for b in (c.node.outputs.first ?? "").utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
      self.init(seed: h)
    }
  }

  mutating func next() -> UInt64 {
    let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
    let t = s.1 << 17
    s.2 ^= s.0
    s.3 ^= s.1
    s.1 ^= s.2
    s.0 ^= s.3
    s.2 ^= t
    s.3 = s.3 << 45 | s.3 >> 19
    return result
  }

  /// Uniform in [0, 1), 53 random bits.
  mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

  /// Standard normal, by Box–Muller (1 − u keeps the logarithm finite).
  mutating func gaussian() -> Double {
    let u = 1 - unit(), v = unit()
    return (-2 * Foundation.log(u)).squareRoot() * cos(2 * Double.pi * v)
  }
}

private func randomShape(_ c: KernelContext) throws -> [Int] {
  guard let shape = c.ints("shape") else { throw c.fail("the shape attribute is required") }
  try NDArray.checkAllocation(shape, .double, c)
  return shape
}

/// The `dtype` attribute, or `fallback` when absent.
private func randomType(_ c: KernelContext, default fallback: DataType) throws -> DataType {
  guard c.node.attribute("dtype") != nil else { return fallback }
  return DataType(rawValue: Int32(clamping: c.int("dtype", 1)))
}

private func randomOutput(_ c: KernelContext, _ values: [Double], type: DataType, shape: [Int]) throws -> NDArray {
  do { return try NDArray(doubles: values, as: type, shape: shape) } catch { throw c.unsupported("dtype \(type) is not supported") }
}

private func uniform(_ c: KernelContext, shape: [Int], type: DataType) throws -> NDArray {
  guard type.isFloatingPoint else { throw c.fail("dtype \(type) is not a floating-point type") }
  let low = Double(c.float("low", 0)), high = Double(c.float("high", 1))
  guard low <= high else { throw c.fail("low \(low) is above high \(high)") }
  var generator = RandomGenerator(c)
  let values = (0..<shape.reduce(1, *)).map { _ in low + (high - low) * generator.unit() }
  return try randomOutput(c, values, type: type, shape: shape)
}

private func normal(_ c: KernelContext, shape: [Int], type: DataType) throws -> NDArray {
  guard type.isFloatingPoint else { throw c.fail("dtype \(type) is not a floating-point type") }
  let mean = Double(c.float("mean", 0)), scale = Double(c.float("scale", 1))
  var generator = RandomGenerator(c)
  let values = (0..<shape.reduce(1, *)).map { _ in mean + scale * generator.gaussian() }
  return try randomOutput(c, values, type: type, shape: shape)
}

/// [batch, sample_size] class indices drawn from each row of unnormalized log-probabilities.
private func multinomial(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  guard x.rank == 2 else { throw c.fail("input must be [batch, classes], not \(x.shape)") }
  let batch = x.shape[0], classes = x.shape[1], samples = c.int("sample_size", 1)
  guard samples >= 0 else { throw c.fail("sample_size \(samples) is negative") }
  let type = DataType(rawValue: Int32(clamping: c.int("dtype", Int(DataType.int32.rawValue))))
  guard type == .int32 || type == .int64 else { throw c.fail("dtype must be int32 or int64, not \(type)") }
  try NDArray.checkAllocation([batch, samples], type, c)
  let logits = try x.converted(to: .double).elements(Double.self)
  var generator = RandomGenerator(c)
  var values = [Double]()
  values.reserveCapacity(batch * samples)
  var cumulative = [Double](repeating: 0, count: classes)
  for b in 0..<batch {
    let row = (0..<classes).map { logits[b * classes + $0] }
    let top = row.max() ?? 0
    var total = 0.0
    for k in 0..<classes {
      total += top.isFinite ? Foundation.exp(row[k] - top) : 0
      cumulative[k] = total
    }
    for _ in 0..<samples {
      let u = generator.unit() * total
      // The first class whose cumulative weight passes u (a binary search would do for many classes).
      var k = 0
      while k < classes - 1 && cumulative[k] <= u { k += 1 }
      values.append(Double(k))
    }
  }
  return try NDArray(doubles: values, as: type, shape: [batch, samples])
}
