import Foundation
import IR
import Support

/// Signal processing: DFT (forward, inverse, one-sided both ways), STFT, the Hann, Hamming and
/// Blackman windows and MelWeightMatrix. Complex values are a trailing dimension of 2 (real,
/// imaginary); real signals have a trailing 1. Transforms compute in Double.
extension Kernels {
  static let signal: [String: Kernel] = [
    "DFT": { c in [try dft(c)] },
    "STFT": { c in [try stft(c)] },
    "HannWindow": { c in [try window(c) { n, size in 0.5 - 0.5 * cos(2 * Double.pi * n / size) }] },
    "HammingWindow": { c in [try window(c) { n, size in 25.0 / 46 - 21.0 / 46 * cos(2 * Double.pi * n / size) }] },
    "BlackmanWindow": { c in
      [try window(c) { n, size in 0.42 - 0.5 * cos(2 * Double.pi * n / size) + 0.08 * cos(4 * Double.pi * n / size) }]
    },
    "MelWeightMatrix": { c in [try melWeightMatrix(c)] },
  ]
}

/// The longest transform accepted: the naive transform of a length that is not a power of two
/// costs n² per signal.
private let maxTransformLength = 1 << 24

/// An in-place discrete Fourier transform of one complex signal of length n (re, im), forward
/// (e^−2πikt/n) or backward (e^+2πikt/n, unnormalized). Radix 2 for powers of two, the direct
/// sum with a table of n twiddles otherwise.
struct FourierTransform {
  let n: Int
  private let cosines: [Double], sines: [Double]

  init(length n: Int) {
    self.n = n
    cosines = (0..<n).map { cos(2 * Double.pi * Double($0) / Double(n)) }
    sines = (0..<n).map { sin(2 * Double.pi * Double($0) / Double(n)) }
  }

  func callAsFunction(_ re: inout [Double], _ im: inout [Double], inverse: Bool) {
    guard n > 1 else { return }
    let sign: Double = inverse ? 1 : -1
    if n & (n - 1) == 0 {
      // Bit-reversal permutation, then butterflies of growing span.
      var j = 0
      for i in 1..<n {
        var bit = n >> 1
        while j & bit != 0 { j ^= bit; bit >>= 1 }
        j |= bit
        if i < j { re.swapAt(i, j); im.swapAt(i, j) }
      }
      var span = 1
      while span < n {
        let step = n / (2 * span)
        for start in stride(from: 0, to: n, by: 2 * span) {
          for k in 0..<span {
            let wr = cosines[k * step], wi = sign * sines[k * step]
            let a = start + k, b = a + span
            let tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr
            re[b] = re[a] - tr
            im[b] = im[a] - ti
            re[a] += tr
            im[a] += ti
          }
        }
        span *= 2
      }
      return
    }
    var outRe = [Double](repeating: 0, count: n), outIm = [Double](repeating: 0, count: n)
    for k in 0..<n {
      var sr = 0.0, si = 0.0, idx = 0
      for t in 0..<n {
        let wr = cosines[idx], wi = sign * sines[idx]
        sr += re[t] * wr - im[t] * wi
        si += re[t] * wi + im[t] * wr
        idx += k
        if idx >= n { idx -= n }
      }
      outRe[k] = sr
      outIm[k] = si
    }
    re = outRe
    im = outIm
  }
}

private func dft(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  guard x.dataType.isFloatingPoint else { throw c.fail("input is \(x.dataType), not a floating-point type") }
  guard x.rank >= 2, let last = x.shape.last, last == 1 || last == 2 else {
    throw c.fail("input \(x.shape) must end in a dimension of 1 (real) or 2 (complex)")
  }
  let axisValue: Int
  if c.opset >= 20 {
    axisValue = try c.optionalInput(2)?.integers().first ?? -2
  } else {
    axisValue = c.int("axis", 1)
  }
  let axis = try c.axis(axisValue, rank: x.rank)
  guard axis != x.rank - 1 else { throw c.fail("axis \(axisValue) is the real/imaginary dimension") }
  let inverse = c.int("inverse", 0) != 0, onesided = c.int("onesided", 0) != 0
  let m = x.shape[axis]
  var n = inverse && onesided ? 2 * (m - 1) : m
  if let length = try c.optionalInput(1)?.integers().first { n = length }
  guard n > 0, n <= maxTransformLength else { throw c.fail("dft_length \(n) must lie in 1...\(maxTransformLength)") }
  let complexInput = last == 2
  // Inverse one-sided (IRFFT): the spectrum's first n/2+1 bins, extended by Hermitian symmetry,
  // give a real signal. Forward one-sided keeps the first n/2+1 bins of the transform.
  let outLength = inverse ? n : (onesided ? n / 2 + 1 : n)
  let outLast = inverse && onesided ? 1 : 2
  var outShape = x.shape
  outShape[axis] = outLength
  outShape[x.rank - 1] = outLast
  try NDArray.checkAllocation(outShape, .double, c)
  let src = try x.converted(to: .double).elements(Double.self)
  var out = NDArray(zeros: .double, outShape)
  let dst = out.mutableElements(Double.self)
  let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)..<(x.rank - 1)].reduce(1, *)
  let transform = FourierTransform(length: n)
  var re = [Double](repeating: 0, count: n), im = [Double](repeating: 0, count: n)
  for o in 0..<outer {
    for i in 0..<inner {
      for k in 0..<n { re[k] = 0; im[k] = 0 }
      func at(_ k: Int) -> Int { ((o * m + k) * inner + i) * last }
      if inverse && onesided {
        let given = min(m, n / 2 + 1)
        for k in 0..<given {
          re[k] = src[at(k)]
          im[k] = complexInput ? src[at(k) + 1] : 0
        }
        for k in 1..<max(1, (n + 1) / 2) where k < given {
          re[n - k] = re[k]
          im[n - k] = -im[k]
        }
      } else {
        for k in 0..<min(m, n) {
          re[k] = src[at(k)]
          im[k] = complexInput ? src[at(k) + 1] : 0
        }
      }
      transform(&re, &im, inverse: inverse)
      let scale = inverse ? 1 / Double(n) : 1
      for k in 0..<outLength {
        let base = ((o * outLength + k) * inner + i) * outLast
        dst[base] = re[k] * scale
        if outLast == 2 { dst[base + 1] = im[k] * scale }
      }
    }
  }
  return try out.converted(to: x.dataType)
}

/// Short-time Fourier transform of [batch, length, 1 or 2] signals: frames of frame_length every
/// frame_step samples, each multiplied by the window, transformed; [batch, frames, bins, 2].
private func stft(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  guard x.dataType.isFloatingPoint else { throw c.fail("signal is \(x.dataType), not a floating-point type") }
  guard x.rank == 3, x.shape[2] == 1 || x.shape[2] == 2 else {
    throw c.fail("signal \(x.shape) must be [batch, length, 1 or 2]")
  }
  guard let step = try c.input(1).integers().first, step > 0 else { throw c.fail("frame_step must be positive") }
  let window = try c.optionalInput(2).map { try $0.converted(to: .double) }
  let length: Int
  if let given = try c.optionalInput(3)?.integers().first {
    length = given
  } else if let window {
    length = window.count
  } else {
    length = x.shape[1]
  }
  guard length > 0, length <= x.shape[1], length <= maxTransformLength else {
    throw c.fail("frame_length \(length) must lie in 1...\(x.shape[1]) (the signal's length)")
  }
  if let window, window.rank != 1 || window.count != length {
    throw c.fail("window \(window.shape) must have frame_length = \(length) values")
  }
  let onesided = c.int("onesided", 1) != 0 && x.shape[2] == 1
  let batch = x.shape[0], samples = x.shape[1], channels = x.shape[2]
  let frames = (samples - length) / step + 1, bins = onesided ? length / 2 + 1 : length
  try NDArray.checkAllocation([batch, frames, bins, 2], .double, c)
  let src = try x.converted(to: .double).elements(Double.self)
  let w = window.map { Array($0.elements(Double.self)) } ?? [Double](repeating: 1, count: length)
  var out = NDArray(zeros: .double, [batch, frames, bins, 2])
  let dst = out.mutableElements(Double.self)
  let transform = FourierTransform(length: length)
  var re = [Double](repeating: 0, count: length), im = [Double](repeating: 0, count: length)
  for b in 0..<batch {
    for f in 0..<frames {
      for t in 0..<length {
        let at = (b * samples + f * step + t) * channels
        re[t] = src[at] * w[t]
        im[t] = channels == 2 ? src[at + 1] * w[t] : 0
      }
      transform(&re, &im, inverse: false)
      for k in 0..<bins {
        let base = ((b * frames + f) * bins + k) * 2
        dst[base] = re[k]
        dst[base + 1] = im[k]
      }
    }
  }
  return try out.converted(to: x.dataType)
}

/// A window of `size` values f(n, N), N = size when periodic (the default), size − 1 when symmetric.
private func window(_ c: KernelContext, _ f: (Double, Double) -> Double) throws -> NDArray {
  guard let size = try c.input(0).integers().first, size >= 0, size <= maxTransformLength else {
    throw c.fail("size must be a scalar in 0...\(maxTransformLength)")
  }
  let periodic = c.int("periodic", 1) != 0
  let span = Double(periodic ? size : size - 1)
  let values = (0..<size).map { n in span > 0 ? f(Double(n), span) : 1 }
  return try signalOutput(c, values, shape: [size])
}

private func signalOutput(_ c: KernelContext, _ values: [Double], shape: [Int]) throws -> NDArray {
  let type = DataType(rawValue: Int32(clamping: c.int("output_datatype", 1)))
  do { return try NDArray(doubles: values, as: type, shape: shape) } catch {
    throw c.unsupported("output_datatype \(type) is not supported")
  }
}

/// [dft_length/2 + 1, num_mel_bins] triangular filters between the mel-spaced edges, by the
/// reference's integer bin arithmetic (edges floored to DFT bins).
private func melWeightMatrix(_ c: KernelContext) throws -> NDArray {
  func scalar(_ i: Int) throws -> Double {
    guard let v = try c.input(i).converted(to: .double).elements(Double.self).first else { throw c.fail("input \(i) is empty") }
    return v
  }
  let mels = try scalar(0), dftLength = try scalar(1), rate = try scalar(2), low = try scalar(3), high = try scalar(4)
  guard mels >= 1, mels < 1e6, dftLength >= 1, dftLength < Double(maxTransformLength), rate > 0, rate.isFinite, low >= 0,
        high >= low, high.isFinite else {
    throw c.fail("num_mel_bins, dft_length and sample_rate must be positive and 0 ≤ lower_edge_hertz ≤ upper_edge_hertz")
  }
  let count = Int(mels), spectrum = Int(dftLength) / 2 + 1
  func mel(_ hz: Double) -> Double { 2595 * log1p(hz / 700) / log(10) }
  let lowMel = mel(low), step = (mel(high) - lowMel) / Double(count + 2)
  let edges: [Int] = (0..<(count + 2)).map { k in
    let hz = 700 * expm1((Double(k) * step + lowMel) / 2595 * log(10))
    // Past the spectrum either way is an error below; clamped first so the conversion is safe.
    return Int(min(max(((dftLength + 1) * hz / rate).rounded(.down), -1), Double(spectrum + 1)))
  }
  try NDArray.checkAllocation([spectrum, count], .double, c)
  var values = [Double](repeating: 0, count: spectrum * count)
  func set(_ j: Int, _ i: Int, _ v: Double) throws {
    guard j >= 0 && j < spectrum else { throw c.fail("upper_edge_hertz reaches past the spectrum's \(spectrum) bins") }
    values[j * count + i] = v
  }
  for i in 0..<count {
    let left = edges[i], center = edges[i + 1], right = edges[i + 2]
    if center == left {
      try set(center, i, 1)
    } else {
      for j in left...max(left, center) { try set(j, i, Double(j - left) / Double(center - left)) }
    }
    if right > center {
      for j in center..<right { try set(j, i, Double(right - j) / Double(right - center)) }
    }
  }
  return try signalOutput(c, values, shape: [spectrum, count])
}
