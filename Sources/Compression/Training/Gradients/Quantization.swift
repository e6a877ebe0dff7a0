import Foundation
import IR
import Runtime
import Support

/// Quantization-aware training: QuantizeLinear → DequantizeLinear pairs train with the
/// straight-through estimator (the rounding passes the gradient, the clamping stops it), and
/// quantized weights train as float masters behind a FakeQuantize node the engine inserts.
extension Gradients {
  static let quantization: [String: GradientRule] = [
    // dQ/dx = 1/s inside the representable range, 0 where the value was clamped;
    // dQ/ds = −x/s² inside (the rounding passes straight through), 0 where clamped.
    "QuantizeLinear": GradientRule([0, 1]) { c in
      let x = try c.input(0).asFloat(), params = try QuantParameters(c, scale: 1, zeroPoint: 2, type: c.outputs[0].dataType, shape: x.shape)
      let dy = c.gradient()
      var dScale = [Float](repeating: 0, count: params.scales.count)
      let dx = NDArray.filled(x.shape) { out, n in
        x.withFloats { xs in dy.withFloats { g in
          for i in 0..<n {
            let s = params.scale(i), q = (xs[i] / s).rounded(.toNearestOrEven) + params.zeroPoint(i)
            let inside = q >= params.low && q <= params.high
            out[i] = inside ? g[i] / s : 0
            if inside { dScale[params.channel(i)] -= g[i] * xs[i] / (s * s) }
          }
        } }
      }
      return [c.needs(0) ? dx : nil, c.needs(1) ? NDArray(dScale, shape: try c.input(1).shape) : nil]
    },
    // dDQ/dq = s, dDQ/ds = q − z.
    "DequantizeLinear": GradientRule([0, 1]) { c in
      let q = try c.input(0), params = try QuantParameters(c, scale: 1, zeroPoint: 2, type: q.dataType, shape: q.shape)
      let dy = c.gradient(), levels = try q.asFloat()
      var dScale = [Float](repeating: 0, count: params.scales.count)
      let dq = NDArray.filled(q.shape) { out, n in
        dy.withFloats { g in levels.withFloats { l in
          for i in 0..<n {
            out[i] = g[i] * params.scale(i)
            dScale[params.channel(i)] += g[i] * (l[i] - params.zeroPoint(i))
          }
        } }
      }
      return [c.needs(0) ? dq : nil, c.needs(1) ? NDArray(dScale, shape: try c.input(1).shape) : nil]
    },
    // Both at once on a float master: d/dw = 1 inside the range; d/ds = (q − z) − w/s inside,
    // (q − z) at the clamped ends (LSQ, Esser et al. 2020).
    FakeQuantize.opType: GradientRule([0, 1]) { c in
      let w = try c.input(0), params = try QuantParameters(c, scale: 1, zeroPoint: 2, type: FakeQuantize.storedType(c.node), shape: w.shape)
      let dy = c.gradient()
      var dScale = [Float](repeating: 0, count: params.scales.count)
      let dw = NDArray.filled(w.shape) { out, n in
        w.withFloats { ws in dy.withFloats { g in
          for i in 0..<n {
            let s = params.scale(i), z = params.zeroPoint(i)
            let unclamped = (ws[i] / s).rounded(.toNearestOrEven) + z
            let inside = unclamped >= params.low && unclamped <= params.high
            out[i] = inside ? g[i] : 0
            let q = min(max(unclamped, params.low), params.high)
            dScale[params.channel(i)] += g[i] * ((q - z) - (inside ? ws[i] / s : 0))
          }
        } }
      }
      return [c.needs(0) ? dw : nil, c.needs(1) ? NDArray(dScale, shape: try c.input(1).shape) : nil]
    },
  ]
}

/// Scale and zero point of one element (per tensor or per axis) and the stored type's range.
struct QuantParameters {
  var scales: [Float]
  var zeroPoints: [Float]
  /// Elements per step of the quantization axis, and its length (1 per tensor).
  var inner = 1, channels = 1
  var low: Float, high: Float

  init(scales: [Float], zeroPoints: [Float], axis: Int, type: DataType, shape: [Int]) throws {
    self.scales = scales
    self.zeroPoints = zeroPoints.isEmpty ? [Float](repeating: 0, count: scales.count) : zeroPoints
    (low, high) = try Self.range(type)
    if scales.count > 1 {
      let a = axis < 0 ? axis + shape.count : axis
      guard a >= 0 && a < shape.count, shape[a] == scales.count, self.zeroPoints.count == scales.count else {
        throw CompressorError.invalid("\(scales.count) scales do not fit axis \(axis) of \(shape)")
      }
      channels = scales.count
      inner = shape[(a + 1)...].reduce(1, *)
    }
  }

  init(_ c: GradientContext, scale: Int, zeroPoint: Int, type: DataType, shape: [Int]) throws {
    guard c.int("block_size", 0) == 0 else { throw c.fail("blocked quantization does not train") }
    try self.init(scales: try c.input(scale).floats(), zeroPoints: try c.optionalInput(zeroPoint)?.floats() ?? [],
                  axis: c.int("axis", 1), type: type, shape: shape)
  }

  @inline(__always) func channel(_ i: Int) -> Int { channels == 1 ? 0 : (i / inner) % channels }
  @inline(__always) func scale(_ i: Int) -> Float { scales[channel(i)] }
  @inline(__always) func zeroPoint(_ i: Int) -> Float { zeroPoints[channel(i)] }

  static func range(_ type: DataType) throws -> (Float, Float) {
    switch type {
    case .uint8: return (0, 255)
    case .int8: return (-128, 127)
    case .uint16: return (0, 65535)
    case .int16: return (-32768, 32767)
    case .int32: return (-2_147_483_648, 2_147_483_520)  // the largest Float below 2³¹
    default: throw CompressorError.unsupported("fake quantization to \(type) is not supported")
    }
  }
}

/// The engine's stand-in for DequantizeLinear of a quantized weight: the float master weight is
/// rounded to the stored grid and back on every forward pass, and written back quantized.
enum FakeQuantize {
  static let opType = "compressor.FakeQuantize"
  static let storedTypeAttribute = "stored_type"

  static func storedType(_ node: Node) -> DataType {
    DataType(rawValue: Int32(clamping: node.attribute(storedTypeAttribute)?.int ?? 3))
  }

  /// The master weights rounded to the grid: (clamp(round(w/s) + z) − z)·s.
  static func forward(_ w: NDArray, _ params: QuantParameters) -> NDArray {
    NDArray.filled(w.shape) { out, n in
      w.withFloats { ws in
        for i in 0..<n {
          let s = params.scale(i), z = params.zeroPoint(i)
          let q = min(max((ws[i] / s).rounded(.toNearestOrEven) + z, params.low), params.high)
          out[i] = (q - z) * s
        }
      }
    }
  }
}
