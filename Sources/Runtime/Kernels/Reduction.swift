import Foundation
import IR
import Support

/// Reduce* operators, ArgMax and ArgMin. Axes come from the attribute before opset 18 (13 for
/// ReduceSum) and from the optional second input after.
extension Kernels {
  static let reduction: [String: Kernel] = {
    var k = [String: Kernel]()
    let ops: [(String, Double, (Double, Double) -> Double, (Double, Int) -> Double)] = [
      ("ReduceSum", 0, +, { s, _ in s }),
      ("ReduceMean", 0, +, { s, n in n > 0 ? s / Double(n) : .nan }),
      ("ReduceMax", -.infinity, { Swift.max($0, $1) }, { s, _ in s }),
      ("ReduceMin", .infinity, { Swift.min($0, $1) }, { s, _ in s }),
      ("ReduceProd", 1, *, { s, _ in s }),
      ("ReduceSumSquare", 0, { $0 + $1 * $1 }, { s, _ in s }),
      ("ReduceL1", 0, { $0 + Swift.abs($1) }, { s, _ in s }),
      ("ReduceL2", 0, { $0 + $1 * $1 }, { s, _ in s.squareRoot() }),
      ("ReduceLogSum", 0, +, { s, _ in Foundation.log(s) }),
      ("ReduceLogSumExp", 0, { $0 + Foundation.exp($1) }, { s, _ in Foundation.log(s) }),
    ]
    for (op, start, step, finish) in ops {
      k[op] = { c in [try reduce(c, op: op, start: start, step: step, finish: finish)] }
    }
    k["ArgMax"] = { c in [try argExtreme(c, max: true)] }
    k["ArgMin"] = { c in [try argExtreme(c, max: false)] }
    return k
  }()
}

private func reduce(_ c: KernelContext, op: String, start: Double, step: (Double, Double) -> Double,
                    finish: (Double, Int) -> Double) throws -> NDArray {
  let x = try c.input(0)
  let axesFromInput = c.opset >= (op == "ReduceSum" ? 13 : 18)
  var axes: [Int]?
  if axesFromInput {
    if let a = c.optionalInput(1) { axes = try a.integers() }
  } else {
    axes = c.ints("axes")
  }
  let keep = c.int("keepdims", 1) != 0
  if (axes ?? []).isEmpty && axesFromInput && c.int("noop_with_empty_axes", 0) != 0 { return x }
  let chosen = (axes ?? []).isEmpty ? Array(0..<x.rank) : (axes ?? [])
  let reduced = Set(try chosen.map { try c.axis($0, rank: x.rank) })
  // Float tensors reduced over their trailing axes (LayerNorm, pooling heads): one pass per row.
  if x.dataType == .float, !reduced.isEmpty, reduced == Set((x.rank - reduced.count)..<x.rank),
     ["ReduceSum", "ReduceMean", "ReduceSumSquare", "ReduceMax", "ReduceMin"].contains(op) {
    let inner = x.shape[(x.rank - reduced.count)...].reduce(1, *), rows = inner == 0 ? 0 : x.count / inner
    let kept = Array(x.shape[..<(x.rank - reduced.count)])
    var out = NDArray(uninitialized: .float, keep ? kept + Array(repeating: 1, count: reduced.count) : kept)
    let src = x.elements(Float.self), dst = out.mutableElements(Float.self)
    if inner > 0 {
      withExtendedLifetime((src, dst)) {
        guard let sp = src.baseAddress, let dp = dst.baseAddress else { return }
        let kind = op == "ReduceMax" ? 0 : (op == "ReduceMin" ? 1 : (op == "ReduceSumSquare" ? 2 : 3))
        Parallel.forEach(rows, costPerItem: inner) { part in
          for r in part {
            let row = sp + r * inner
            var acc: Float
            switch kind {
            case 0: acc = row[0]; for i in 1..<inner { acc = Swift.max(acc, row[i]) }
            case 1: acc = row[0]; for i in 1..<inner { acc = Swift.min(acc, row[i]) }
            default:
              // Sixteen partial sums, as GlobalAveragePool: one running sum cannot be vectorized
              // (squeeze-excitation means over 112×112 planes were serial additions).
              var lanes = SIMD16<Float>(repeating: 0)
              var i = 0
              while i + 16 <= inner {
                let v = UnsafeRawPointer(row + i).loadUnaligned(as: SIMD16<Float>.self)
                lanes += kind == 2 ? v * v : v
                i += 16
              }
              acc = lanes.sum()
              while i < inner { acc += kind == 2 ? row[i] * row[i] : row[i]; i += 1 }
            }
            dp[r] = op == "ReduceMean" ? acc / Float(inner) : acc
          }
        }
      }
      return out
    }
  }
  let v = try x.converted(to: .double).elements(Double.self)
  var outShape = [Int]()
  for (i, d) in x.shape.enumerated() {
    if reduced.contains(i) { if keep { outShape.append(1) } } else { outShape.append(d) }
  }
  let keptShape = x.shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
  let outCount = keptShape.reduce(1, *)
  var acc = [Double](repeating: start, count: outCount)
  var counts = [Int](repeating: 0, count: outCount)
  let outStrides = strides(keptShape)
  let inStrides = strides(x.shape)
  for i in 0..<x.count {
    var rest = i, o = 0
    for d in 0..<x.rank {
      let idx = rest / inStrides[d]
      rest %= inStrides[d]
      if !reduced.contains(d) { o += idx * outStrides[d] }
    }
    acc[o] = step(acc[o], v[i])
    counts[o] += 1
  }
  var result = zip(acc, counts).map { finish($0, $1) }
  if !x.dataType.isFloatingPoint && (op == "ReduceMax" || op == "ReduceMin") {
    // The empty set's maximum (minimum) is the type's lowest (highest) value, not ∓infinity.
    let (lowest, highest): (Double, Double) = x.dataType == .bool ? (0, 1)
      : x.dataType.rawValue == DataType.uint8.rawValue ? (0, 255) : (-9.2233720368547758e18, 9.2233720368547758e18)
    for i in result.indices where counts[i] == 0 { result[i] = op == "ReduceMax" ? lowest : highest }
  }
  return try NDArray(doubles: result, as: x.dataType, shape: outShape)
}

private func argExtreme(_ c: KernelContext, max isMax: Bool) throws -> NDArray {
  let x = try c.input(0)
  let axis = try c.axis(c.int("axis", 0), rank: x.rank)
  let keep = c.int("keepdims", 1) != 0, last = c.int("select_last_index", 0) != 0
  let v = try x.converted(to: .double).elements(Double.self)
  let outer = x.shape[..<axis].reduce(1, *), n = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
  var shape = x.shape
  if keep { shape[axis] = 1 } else { shape.remove(at: axis) }
  var out = NDArray(uninitialized: .int64, shape)
  let e = out.mutableElements(Int64.self)
  for o in 0..<outer {
    for i in 0..<inner {
      var best = 0
      for k in 1..<Swift.max(n, 1) {
        let a = v[(o * n + k) * inner + i], b = v[(o * n + best) * inner + i]
        if isMax ? (a > b || (last && a == b)) : (a < b || (last && a == b)) { best = k }
      }
      e[o * inner + i] = Int64(best)
    }
  }
  return out
}
