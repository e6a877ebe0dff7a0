import Foundation
import IR
import Runtime
import Support

/// A float weight quantized to 8 bits along one axis (or as a whole): the integer tensor, its
/// scales and zero points, and how much signal survived. Every pass that stores int8 weights
/// goes through here, so all of them treat zero channels and non-finite values the same way.
struct QuantizedWeight {
  var values: Tensor
  var scale: Tensor
  var zeroPoint: Tensor?
  /// Scales per channel (one element when per-tensor).
  var scales: [Float]
  var zeroPoints: [Int32]
  var sqnr: Double
  var zeroChannels: Int
  var axis: Int?

  /// Symmetric: int8 in [-127, 127] with zero point 0 (no zero-point tensor). Asymmetric: uint8
  /// over [min(0, lo), max(0, hi)] per channel with a zero point each. A channel of zeros gets
  /// scale 1; ±inf or NaN anywhere is refused (exit 65 naming the tensor).
  /// With `rounded` holding levels for this weight (GPTQ, same axis and scheme), those levels.
  init(_ t: Tensor, axis: Int?, symmetric: Bool, names: (values: String, scale: String, zeroPoint: String),
       rounded: RoundedWeights? = nil) throws {
    if let e = rounded?.entry(t.name, axis: axis, symmetric: symmetric) {
      let scaleDims: [Int64] = axis == nil ? [] : [Int64(e.scales.count)]
      values = Tensor(name: names.values, dataType: symmetric ? .int8 : .uint8, dims: t.dims, data: ByteBuffer(copying: e.bytes))
      scale = Tensor(name: names.scale, dataType: .float, dims: scaleDims, data: ByteBuffer(copying: e.scales.withUnsafeBytes { Array($0) }))
      zeroPoint = symmetric ? nil : Tensor(name: names.zeroPoint, dataType: .uint8, dims: scaleDims,
                                           data: ByteBuffer(copying: e.zeroPoints.map { UInt8($0) }))
      scales = e.scales
      zeroPoints = e.zeroPoints
      sqnr = e.sqnr
      zeroChannels = e.zeroChannels
      self.axis = axis
      return
    }
    let values = try NDArray(t).floats()
    t.data.releaseResidentPages()  // read once; a mapped file's pages may go
    if let bad = values.firstIndex(where: { !$0.isFinite }) {
      throw CompressorError.invalid("weight '\(t.name)' holds \(values[bad]) at element \(bad); compressor will not quantize it")
    }
    let dims = t.dims.map { Int($0) }
    if let axis, axis < 0 || axis >= dims.count {
      throw CompressorError.invalid("weight '\(t.name)' has rank \(dims.count), too few for its channel axis \(axis)")
    }
    let channels = axis.map { dims[$0] } ?? 1
    let inner = axis.map { dims[($0 + 1)...].reduce(1, *) } ?? max(values.count, 1)
    var lo = [Float](repeating: 0, count: channels), hi = [Float](repeating: 0, count: channels)
    for (i, v) in values.enumerated() {
      let c = (i / inner) % channels
      lo[c] = min(lo[c], v)
      hi[c] = max(hi[c], v)
    }
    var scales = [Float](repeating: 1, count: channels), zps = [Int32](repeating: 0, count: channels)
    var zeroChannels = 0
    for c in 0..<channels {
      if let p = affineParameters(lo: lo[c], hi: hi[c], symmetric: symmetric) {
        (scales[c], zps[c]) = p
      } else {
        zeroChannels += 1  // keeps scale 1, zero point 0
      }
    }
    var signal = 0.0, noise = 0.0
    let (qmin, qmax): (Float, Float) = symmetric ? (-127, 127) : (0, 255)
    var bytes = [UInt8](repeating: 0, count: values.count)
    for (i, v) in values.enumerated() {
      let c = (i / inner) % channels
      let q = max(qmin, min(qmax, (v / scales[c]).rounded(.toNearestOrEven) + Float(zps[c])))
      bytes[i] = symmetric ? UInt8(bitPattern: Int8(q)) : UInt8(q)
      let back = (q - Float(zps[c])) * scales[c]
      signal += Double(v) * Double(v)
      noise += Double(v - back) * Double(v - back)
    }
    let scaleDims: [Int64] = axis == nil ? [] : [Int64(channels)]
    self.values = Tensor(name: names.values, dataType: symmetric ? .int8 : .uint8, dims: t.dims, data: ByteBuffer(copying: bytes))
    self.scale = Tensor(name: names.scale, dataType: .float, dims: scaleDims,
                        data: ByteBuffer(copying: scales.withUnsafeBytes { Array($0) }))
    self.zeroPoint = symmetric ? nil : Tensor(name: names.zeroPoint, dataType: .uint8, dims: scaleDims,
                                              data: ByteBuffer(copying: zps.map { UInt8($0) }))
    self.scales = scales
    self.zeroPoints = zps
    self.sqnr = noise == 0 ? .infinity : 10 * log10(signal / noise)
    self.zeroChannels = zeroChannels
    self.axis = axis
  }

  /// The DequantizeLinear that gives the float weight back under `output`.
  func dequantize(output: String, nodeName: String) -> Node {
    var inputs = [values.name, scale.name]
    if let zeroPoint { inputs.append(zeroPoint.name) }
    let attributes = axis.map { [Attribute(name: "axis", value: .int(Int64($0)))] } ?? []
    return Node(name: nodeName, opType: "DequantizeLinear", inputs: inputs, outputs: [output], attributes: attributes)
  }

  /// The float tensor its DequantizeLinear gives back, under `name`.
  func dequantized(name: String) -> Tensor {
    let inner = axis.map { a in values.dims[(a + 1)...].reduce(1) { $0 * Int($1) } } ?? max(values.elementCount, 1)
    let channels = scales.count
    var out = [Float](repeating: 0, count: values.elementCount)
    values.data.withUnsafeBytes { raw in
      for i in out.indices {
        let c = (i / inner) % channels
        let q = zeroPoint == nil ? Float(Int8(bitPattern: raw[i])) : Float(raw[i])
        out[i] = (q - Float(zeroPoints[c])) * scales[c]
      }
    }
    return Tensor(name: name, dataType: .float, dims: values.dims, data: ByteBuffer(copying: out.withUnsafeBytes { Array($0) }))
  }

  var sqnrText: String { sqnr.isInfinite ? "inf" : String(format: "%.1f", sqnr) }

  /// "int8 per-channel (axis 0, 16 scales)" and the like, for reports.
  var scheme: String {
    let type = zeroPoint == nil ? "int8 symmetric" : "uint8 asymmetric"
    let layout = axis.map { "per-channel (axis \($0), \(scales.count) scales)" } ?? "per-tensor"
    return "\(type) \(layout)"
  }

  /// Numbers for the report row.
  var metrics: [String: Double] {
    var m: [String: Double] = ["scaleMin": Double(scales.min() ?? 0), "scaleMax": Double(scales.max() ?? 0),
                               "zeroChannels": Double(zeroChannels)]
    if sqnr.isFinite { m["sqnrDb"] = (sqnr * 10).rounded() / 10 }
    if zeroPoint != nil { m["zeroPointMin"] = Double(zeroPoints.min() ?? 0); m["zeroPointMax"] = Double(zeroPoints.max() ?? 0) }
    return m
  }
}

/// The scale and zero point mapping [lo, hi] (a range holding 0) onto int8 [-127, 127] with zero
/// point 0 (symmetric) or onto uint8 [0, 255] — int16 [-32767, 32767] or uint16 [0, 65535] with
/// `bits` 16; nil for a zero range, or one so small (subnormal)
/// that its reciprocal would be infinite — such values are zero for all purposes.
func affineParameters(lo: Float, hi: Float, symmetric: Bool, bits: Int = 8) -> (scale: Float, zeroPoint: Int32)? {
  let levels = Float((1 << bits) - 1)
  let scale = symmetric ? max(-lo, hi) / (levels / 2).rounded(.down) : (hi - lo) / levels
  guard scale.isNormal else { return nil }
  return (scale, symmetric ? 0 : Int32(max(0, min(levels, (-lo / scale).rounded(.toNearestOrEven)))))
}

/// Which nodes a quantizing pass may touch: `--include` / `--exclude` patterns, each a node-name
/// glob ("encoder.layer.0.*") or an op type ("MatMul"). An empty include list means every node;
/// an exclude match always wins.
public struct NodeFilter: Equatable {
  public var include: [String]
  public var exclude: [String]
  public init(include: [String] = [], exclude: [String] = []) { self.include = include; self.exclude = exclude }

  static func matches(_ pattern: String, _ n: Node) -> Bool {
    pattern == n.opType || fnmatch(pattern, n.name, 0) == 0
  }

  /// nil when the node may be quantized, else the reason it may not.
  func refusal(_ n: Node) -> String? {
    if let p = exclude.first(where: { Self.matches($0, n) }) { return "excluded by --exclude '\(p)'" }
    if !include.isEmpty && !include.contains(where: { Self.matches($0, n) }) { return "not matched by --include" }
    return nil
  }
}
