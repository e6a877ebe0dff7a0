import Datasets
import Foundation
import IR
import Linalg
import Runtime
import Support

/// Int8 weights rounded by GPTQ instead of to the nearest level: the per-channel scales and zero
/// points stay those of round-to-nearest (the weight's range), but the levels are chosen input
/// by input, each one's rounding error spread over the inputs not yet rounded through the
/// inverse Hessian of the layer's calibration inputs, so that the layer's output X·W moves least.
/// Filled by the static pass, read wherever an int8 weight is made (`QuantizedWeight`), so the
/// static pass, its quality search and the weight-only pass after it store the same levels.
public final class RoundedWeights: @unchecked Sendable {
  struct Entry {
    var axis: Int?
    var symmetric: Bool
    /// The int8 (or uint8) levels, in the weight's own layout.
    var bytes: [UInt8]
    var scales: [Float]
    var zeroPoints: [Int32]
    var zeroChannels: Int
    /// Against the float weight, as round-to-nearest's is.
    var sqnr: Double
  }

  var entries: [String: Entry] = [:]
  public init() {}

  func entry(_ name: String, axis: Int?, symmetric: Bool) -> Entry? {
    guard let e = entries[name], e.axis == axis, e.symmetric == symmetric else { return nil }
    return e
  }
}

/// What one weight's GPTQ needs: the matrix it multiplies, as K inputs × N outputs per group,
/// and how to unfold its activation into rows of K.
struct RoundingLayout {
  enum Kind { case matrix(transposed: Bool), convolution(Window) }
  /// A Conv's window: kernel, strides, pads (begin… end…), dilations, over 1 or 2 spatial axes.
  struct Window {
    var kernel: [Int], strides: [Int], pads: [Int], dilations: [Int]
  }
  var kind: Kind
  var groups: Int
  /// Inputs per group (K) and outputs per group (N).
  var k: Int, n: Int

  /// nil when the node's weight is not one GPTQ here handles (3-D kernels, SAME padding,
  /// batched MatMul weights), with the reason.
  static func of(_ node: Node, weight: Tensor) -> (layout: RoundingLayout?, why: String?) {
    let dims = weight.dims.map { Int($0) }
    switch node.opType {
    case "MatMul":
      guard dims.count == 2 else { return (nil, "a batched weight") }
      return (RoundingLayout(kind: .matrix(transposed: false), groups: 1, k: dims[0], n: dims[1]), nil)
    case "Gemm":
      guard dims.count == 2, (node.attribute("transA")?.int ?? 0) == 0 else { return (nil, "a transposed input") }
      let transB = (node.attribute("transB")?.int ?? 0) != 0
      return (RoundingLayout(kind: .matrix(transposed: transB), groups: 1, k: transB ? dims[1] : dims[0], n: transB ? dims[0] : dims[1]), nil)
    case "Conv":
      guard dims.count == 3 || dims.count == 4 else { return (nil, "a \(max(dims.count - 2, 0))-D kernel") }
      let pad = node.attribute("auto_pad")?.string ?? "NOTSET"
      guard pad == "NOTSET" || pad == "VALID" else { return (nil, "auto_pad \(pad)") }
      let spatial = dims.count - 2
      let groups = Int(node.attribute("group")?.int ?? 1)
      guard groups >= 1, dims[0] % groups == 0 else { return (nil, "groups that do not divide its channels") }
      func ints(_ name: String, _ count: Int, _ fallback: Int) -> [Int] {
        let v = node.attribute(name)?.ints?.map { Int($0) } ?? []
        return v.count == count ? v : [Int](repeating: fallback, count: count)
      }
      let window = Window(kernel: Array(dims[2...]), strides: ints("strides", spatial, 1),
                          pads: pad == "VALID" ? [Int](repeating: 0, count: 2 * spatial) : ints("pads", 2 * spatial, 0),
                          dilations: ints("dilations", spatial, 1))
      guard window.strides.allSatisfy({ $0 >= 1 }), window.dilations.allSatisfy({ $0 >= 1 }), window.pads.allSatisfy({ $0 >= 0 }) else {
        return (nil, "an unusual window")
      }
      return (RoundingLayout(kind: .convolution(window), groups: groups, k: dims[1] * dims[2...].reduce(1, *), n: dims[0] / groups), nil)
    default:
      return (nil, "not a Conv, MatMul or Gemm")
    }
  }

  /// The weight of group `g` as K×N row-major (row r: input r's weight to every output).
  func matrix(_ w: [Float], group g: Int) -> [Float] {
    var out = [Float](repeating: 0, count: k * n)
    switch kind {
    case .matrix(let transposed):
      if !transposed { return w }
      for r in 0..<k { for c in 0..<n { out[r * n + c] = w[c * k + r] } }
    case .convolution:
      // Conv [C_out, C_in/groups, kh, kw]: output o of group g is row g·n + o, its K inputs in order.
      for c in 0..<n { for r in 0..<k { out[r * n + c] = w[(g * n + c) * k + r] } }
    }
    return out
  }

  /// Where element (r, c) of group g's K×N matrix lies in the weight.
  func index(row r: Int, column c: Int, group g: Int) -> Int {
    switch kind {
    case .matrix(let transposed): return transposed ? c * k + r : r * n + c
    case .convolution: return (g * n + c) * k + r
    }
  }

  /// The output channel (the weight's channel axis) of column c of group g.
  func channel(column c: Int, group g: Int) -> Int { g * n + c }

  /// Adds XᵀX of one activation value's rows, per group, into `sums` (groups × K × K, upper
  /// triangles); returns the rows added per group, or nil when the value does not fit.
  func addGram(_ value: NDArray, into sums: UnsafeMutablePointer<Float>, scratch: inout [Float]) -> Int? {
    guard value.dataType == .float else { return nil }
    switch kind {
    case .matrix:
      guard value.rank >= 1, value.shape[value.rank - 1] == k, k > 0 else { return nil }
      let rows = value.count / k
      value.elements(Float.self).withPointer { x in
        guard let x else { return }
        Linalg.addGram(x, rows: rows, k: k, into: sums)
      }
      return rows
    case .convolution(let w):
      let spatial = w.kernel.count
      guard value.rank == spatial + 2 else { return nil }
      let batch = value.shape[0], channels = value.shape[1]
      let perGroup = channels / groups
      guard perGroup * groups == channels, perGroup * w.kernel.reduce(1, *) == k else { return nil }
      // 1-D as 2-D with one row.
      let inH = spatial == 2 ? value.shape[2] : 1, inW = value.shape[spatial + 1]
      let (kh, kw) = spatial == 2 ? (w.kernel[0], w.kernel[1]) : (1, w.kernel[0])
      let (sh, sw) = spatial == 2 ? (w.strides[0], w.strides[1]) : (1, w.strides[0])
      let (dh, dw) = spatial == 2 ? (w.dilations[0], w.dilations[1]) : (1, w.dilations[0])
      let (top, left) = spatial == 2 ? (w.pads[0], w.pads[1]) : (0, w.pads[0])
      let (bottom, right) = spatial == 2 ? (w.pads[2], w.pads[3]) : (0, w.pads[1])
      let outH = (inH + top + bottom - dh * (kh - 1) - 1) / sh + 1, outW = (inW + left + right - dw * (kw - 1) - 1) / sw + 1
      guard outH > 0, outW > 0 else { return nil }
      let positions = outH * outW
      let block = max(1, min(positions, 16_384 / max(k, 1)))
      if scratch.count < block * k { scratch = [Float](repeating: 0, count: block * k) }
      value.elements(Float.self).withPointer { x in
        guard let x else { return }
        scratch.withUnsafeMutableBufferPointer { sp in
          guard let rows = sp.baseAddress else { return }
          for b in 0..<batch {
            for g in 0..<groups {
              let plane = x + (b * channels + g * perGroup) * inH * inW
              var start = 0
              while start < positions {
                let count = min(block, positions - start)
                // Each output position's window, K values in the weight's (channel, kh, kw) order.
                for p in 0..<count {
                  let oy = (start + p) / outW, ox = (start + p) % outW
                  var t = p * k
                  for ci in 0..<perGroup {
                    let src = plane + ci * inH * inW
                    for i in 0..<kh {
                      let iy = oy * sh - top + i * dh
                      for j in 0..<kw {
                        let ix = ox * sw - left + j * dw
                        rows[t] = iy >= 0 && iy < inH && ix >= 0 && ix < inW ? src[iy * inW + ix] : 0
                        t += 1
                      }
                    }
                  }
                }
                Linalg.addGram(rows, rows: count, k: k, into: sums + g * k * k)
                start += count
              }
            }
          }
        }
      }
      return batch * positions
    }
  }
}

enum WeightRounding {
  /// Hessians above this many floats in all are not collected (those weights keep
  /// round-to-nearest): 512 MB.
  static let budget = 128 << 20
  /// Nor is one weight's above this many inputs (its Cholesky factorizations are K³).
  static let largestK = 4096

  struct Request {
    var weight: String
    var node: Node
    var layout: RoundingLayout
  }

  /// XᵀX of each request's node input over the calibration samples, per group, and the rows
  /// seen, keyed by the node's first output (names of nodes need not be unique); one pass over
  /// the data.
  static func hessians(model: Model, requests: [Request], data: Dataset, maxSamples: Int?, threads: Int) throws
    -> [String: (sums: [Float], rows: Int)] {
    final class Sums {
      var byNode: [String: (request: Request, sums: [Float], rows: Int, refused: Bool)] = [:]
      var scratch: [Float] = []
    }
    let state = Sums()
    for r in requests {
      state.byNode[r.node.outputs.first ?? ""] = (r, [Float](repeating: 0, count: r.layout.groups * r.layout.k * r.layout.k), 0, false)
    }
    let executor = try Executor(model: model, threads: threads)
    executor.observer = { node, inputs, _ in
      let key = node.outputs.first ?? ""
      guard var entry = state.byNode[key], !entry.refused, let value = inputs.first ?? nil else { return }
      state.byNode[key] = nil  // the sums are changed in place, not copied
      let added = entry.sums.withUnsafeMutableBufferPointer { sp -> Int? in
        guard let base = sp.baseAddress else { return nil }
        return entry.request.layout.addGram(value, into: base, scratch: &state.scratch)
      }
      if let added { entry.rows += added } else { entry.refused = true }
      state.byNode[key] = entry
    }
    let used = try data.forEachChunk(rows: 8, limit: maxSamples ?? Int.max) { chunk in _ = try executor.run(chunk) }
    if used == 0 { throw CompressorError.usage("the calibration data holds no samples") }
    var result = [String: (sums: [Float], rows: Int)]()
    for (key, e) in state.byNode where !e.refused && e.rows > 0 { result[key] = (e.sums, e.rows) }
    return result
  }

  /// GPTQ levels for one group's K×N matrix `w` (row r: input r), with fixed scales and zero
  /// points per column and levels in qmin…qmax, inputs taken in order of decreasing H diagonal. `hessian` is the upper triangle of XᵀX
  /// (K×K). Returns the levels (K×N), or nil when H, damped by 1% of its mean diagonal, is not
  /// positive definite. An input never active in calibration is rounded to nearest on its own.
  static func gptq(_ weights: [Float], hessian: UnsafePointer<Float>, k: Int, n: Int, scales: [Float], zeroPoints: [Float],
                   qmin: Float, qmax: Float) -> [Float]? {
    guard k > 0, n > 0 else { return nil }
    // Most active inputs first ("act-order"): their errors are spread over the most inputs still
    // free to absorb them. On the suite's weight-only int8 it took PP-OCRv4's detector's held-out
    // IoU from 0.984 to 0.991 and its recognizer's cosine from 0.9981 to 0.9987.
    let order = (0..<k).sorted { hessian[$0 * k + $0] != hessian[$1 * k + $1] ? hessian[$0 * k + $0] > hessian[$1 * k + $1] : $0 < $1 }
    func hv(_ a: Int, _ b: Int) -> Float { a <= b ? hessian[a * k + b] : hessian[b * k + a] }
    var h = [Double](repeating: 0, count: k * k)
    for i in 0..<k { for j in 0..<k { h[i * k + j] = Double(hv(order[i], order[j])) } }
    var mean = 0.0
    for i in 0..<k { mean += h[i * k + i] }
    mean /= Double(k)
    guard mean > 0, mean.isFinite else { return nil }
    for i in 0..<k where h[i * k + i] == 0 { h[i * k + i] = 1 }
    for i in 0..<k { h[i * k + i] += 0.01 * mean }
    guard let ud = Linalg.inverseCholeskyUpper(h, n: k) else { return nil }
    h = []
    let u = ud.map { Float($0) }
    var w = [Float](repeating: 0, count: k * n)
    for i in 0..<k { for c in 0..<n { w[i * n + c] = weights[order[i] * n + c] } }
    var levels = [Float](repeating: 0, count: k * n)
    // Lazy batches (Frantar et al.): rows inside a block of 128 update each other one by one;
    // the rows after it get the whole block's errors in one product.
    let blockSize = 128
    var errors = [Float](repeating: 0, count: blockSize * n)
    var panel = [Float](repeating: 0, count: blockSize * k)
    var row = [Float](repeating: 0, count: blockSize)
    var start = 0
    while start < k {
      let end = min(k, start + blockSize)
      for r in start..<end {
        let d = u[r * k + r]
        for c in 0..<n {
          let v = w[r * n + c], s = scales[c], z = zeroPoints[c]
          let level = max(qmin, min(qmax, (v / s).rounded(.toNearestOrEven) + z))
          levels[r * n + c] = level
          errors[(r - start) * n + c] = (v - (level - z) * s) / d
        }
        let rest = end - r - 1
        guard rest > 0 else { continue }
        for j in 0..<rest { row[j] = u[r * k + r + 1 + j] }
        errors.withUnsafeBufferPointer { ep in
          w.withUnsafeMutableBufferPointer { wp in
            guard let e = ep.baseAddress, let base = wp.baseAddress else { return }
            Linalg.subtractOuter(row, e + (r - start) * n, m: rest, n: n, base + (r + 1) * n)
          }
        }
      }
      let rest = k - end, rows = end - start
      if rest > 0 {
        // W[end…, :] −= U[start..<end, end…]ᵀ · E
        for i in 0..<rows { for j in 0..<rest { panel[i * rest + j] = u[(start + i) * k + end + j] } }
        panel.withUnsafeBufferPointer { pp in
          errors.withUnsafeBufferPointer { ep in
            w.withUnsafeMutableBufferPointer { wp in
              guard let p = pp.baseAddress, let e = ep.baseAddress, let base = wp.baseAddress else { return }
              Linalg.gemm(m: rest, n: n, k: rows, alpha: -1, a: p, b: e, beta: 1, c: base + end * n, transposeA: true, parallel: false)
            }
          }
        }
      }
      start = end
    }
    var inOrder = [Float](repeating: 0, count: k * n)
    for i in 0..<k { for c in 0..<n { inOrder[order[i] * n + c] = levels[i * n + c] } }
    return inOrder
  }

  /// H made whole from its upper triangle (K×K), for `outputEnergy`'s one sgemm.
  static func wholeHessian(_ hessian: UnsafePointer<Float>, k: Int) -> [Float] {
    var full = [Float](repeating: 0, count: k * k)
    for i in 0..<k { for j in i..<k { let v = hessian[i * k + j]; full[i * k + j] = v; full[j * k + i] = v } }
    return full
  }

  /// ‖X·E‖² = Σ_c eᵀHe over the columns of E (K×N), with H whole (`wholeHessian`).
  static func outputEnergy(_ e: [Float], full: [Float], k: Int, n: Int) -> Double {
    var he = [Float](repeating: 0, count: k * n)
    full.withUnsafeBufferPointer { hp in
      e.withUnsafeBufferPointer { ep in
        he.withUnsafeMutableBufferPointer { op in
          guard let h = hp.baseAddress, let x = ep.baseAddress, let o = op.baseAddress else { return }
          Linalg.gemm(m: k, n: n, k: k, a: h, b: x, c: o)
        }
      }
    }
    var total = 0.0
    for i in 0..<(k * n) { total += Double(e[i]) * Double(he[i]) }
    return total
  }

  /// Rounds each weight by GPTQ where its calibration inputs determine it — at least as many
  /// rows as the weight has inputs, else GPTQ would fit the few samples it saw — and where its
  /// layer's output error on them is lower than round-to-nearest's; records the levels in
  /// `store`. One report row per weight and one summary row.
  static func round(model: Model, weights: [(name: String, node: Node, axis: Int?)], symmetric: Bool, data: String,
                    maxSamples: Int?, threads: Int, into store: RoundedWeights) throws -> [PassResult.Change] {
    var changes = [PassResult.Change]()
    let initializers = model.graph.initializersByName
    var readers = [String: Int]()
    for w in weights { readers[w.name, default: 0] += 1 }
    var requests = [Request]()
    var axes = [String: Int?]()
    var floats = 0
    func nearest(_ name: String, _ why: String) {
      changes.append(.init(target: name, action: "rounded to nearest", detail: why))
    }
    for (name, node, axis) in weights {
      guard let t = initializers[name], t.dataType == .float else { continue }
      if readers[name, default: 0] > 1 { nearest(name, "read by several nodes"); continue }
      let (layout, why) = RoundingLayout.of(node, weight: t)
      guard let layout else { nearest(name, "GPTQ does not handle \(why ?? "this layout")"); continue }
      guard layout.k <= largestK else { nearest(name, "\(layout.k) inputs, more than GPTQ here takes (\(largestK))"); continue }
      let size = layout.groups * layout.k * layout.k
      guard floats + size <= budget else { nearest(name, "its Hessian would pass the memory budget for them all (512 MB)"); continue }
      floats += size
      requests.append(Request(weight: name, node: node, layout: layout))
      axes[name] = axis
    }
    guard !requests.isEmpty else { return changes }
    let dataset = try Dataset(path: data, inputNames: model.graph.feedNames)
    let found = try hessians(model: model, requests: requests, data: dataset, maxSamples: maxSamples, threads: threads)
    var rounded = 0, rtnTotal = 0.0, gptqTotal = 0.0
    for r in requests {
      let name = r.weight, layout = r.layout
      guard let (sums, rows) = found[r.node.outputs.first ?? ""], let t = initializers[name], let axis = axes[name] else {
        nearest(name, "its input was not seen as a float tensor of the expected shape"); continue
      }
      guard rows >= layout.k else {
        nearest(name, "\(rows) calibration rows for \(layout.k) inputs: GPTQ would fit the samples it saw"); continue
      }
      let q = try QuantizedWeight(t, axis: axis, symmetric: symmetric, names: (name, "", ""))
      let w = try NDArray(t).floats()
      let nearestValues = try NDArray(q.dequantized(name: name)).floats()
      var bytes = [UInt8](q.values.data.withUnsafeBytes { Array($0) })
      var rtnEnergy = 0.0, gptqEnergy = 0.0, signal = 0.0
      var levelsByGroup = [[Float]]()
      var failed = false
      sums.withUnsafeBufferPointer { sp in
        guard let base = sp.baseAddress else { failed = true; return }
        for g in 0..<layout.groups where !failed {
          let hessian = base + g * layout.k * layout.k
          let matrix = layout.matrix(w, group: g)
          let columns = (0..<layout.n).map { layout.channel(column: $0, group: g) }
          let scales = columns.map { q.scales[axis == nil ? 0 : $0] }
          let zeros = columns.map { Float(q.zeroPoints[axis == nil ? 0 : $0]) }
          guard let levels = gptq(matrix, hessian: hessian, k: layout.k, n: layout.n, scales: scales, zeroPoints: zeros,
                                  qmin: symmetric ? -127 : 0, qmax: symmetric ? 127 : 255) else { failed = true; return }
          var eG = [Float](repeating: 0, count: layout.k * layout.n), eR = eG
          for i in 0..<layout.k {
            for c in 0..<layout.n {
              let v = matrix[i * layout.n + c]
              eG[i * layout.n + c] = v - (levels[i * layout.n + c] - zeros[c]) * scales[c]
              eR[i * layout.n + c] = v - nearestValues[layout.index(row: i, column: c, group: g)]
            }
          }
          let full = wholeHessian(hessian, k: layout.k)
          gptqEnergy += outputEnergy(eG, full: full, k: layout.k, n: layout.n)
          rtnEnergy += outputEnergy(eR, full: full, k: layout.k, n: layout.n)
          signal += outputEnergy(matrix, full: full, k: layout.k, n: layout.n)
          levelsByGroup.append(levels)
        }
      }
      if failed { nearest(name, "its calibration Hessian is not positive definite"); continue }
      let rtnError = signal > 0 ? rtnEnergy / signal : 0, gptqError = signal > 0 ? gptqEnergy / signal : 0
      let values: [String: Double] = ["outputErrorNearest": rtnError, "outputErrorGPTQ": gptqError, "rows": Double(rows),
                                      "inputs": Double(layout.k)]
      guard gptqEnergy < rtnEnergy else {
        changes.append(.init(target: name, action: "rounded to nearest",
                             detail: String(format: "layer output error %.3g, GPTQ's %.3g on %d calibration rows", rtnError, gptqError, rows),
                             values: values))
        continue
      }
      var noise = 0.0, power = 0.0
      for (g, levels) in levelsByGroup.enumerated() {
        for i in 0..<layout.k {
          for c in 0..<layout.n {
            let at = layout.index(row: i, column: c, group: g)
            let level = levels[i * layout.n + c]
            bytes[at] = symmetric ? UInt8(bitPattern: Int8(level)) : UInt8(level)
            let ch = axis == nil ? 0 : layout.channel(column: c, group: g)
            let back = (level - Float(q.zeroPoints[ch])) * q.scales[ch]
            noise += Double(w[at] - back) * Double(w[at] - back)
            power += Double(w[at]) * Double(w[at])
          }
        }
      }
      store.entries[name] = .init(axis: axis, symmetric: symmetric, bytes: bytes, scales: q.scales, zeroPoints: q.zeroPoints,
                                  zeroChannels: q.zeroChannels, sqnr: noise == 0 ? .infinity : 10 * log10(power / noise))
      rounded += 1
      rtnTotal += rtnError
      gptqTotal += gptqError
      changes.append(.init(target: name, action: "rounded by GPTQ",
                           detail: String(format: "layer output error %.3g (round-to-nearest %.3g) on %d calibration rows, %d inputs",
                                          gptqError, rtnError, rows, layout.k),
                           values: values))
    }
    // No time in the row: reports are the same bytes run after run (timings live apart).
    changes.append(.init(target: "model", action: "weight rounding",
                         detail: String(format: "%d of %d weights rounded by GPTQ (mean layer output error %.3g, round-to-nearest %.3g), the rest to nearest",
                                        rounded, weights.count, rounded > 0 ? gptqTotal / Double(rounded) : 0,
                                        rounded > 0 ? rtnTotal / Double(rounded) : 0),
                         values: ["gptq": Double(rounded), "weights": Double(weights.count)]))
    return changes
  }
}
