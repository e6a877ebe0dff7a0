import Datasets
import Foundation
import IR
import Linalg
import Runtime
import Support

/// Low-rank factorization: a MatMul or Gemm by a K×N weight W becomes two products by A (K×r)
/// and B (r×N) — fewer parameters and MACs whenever r·(K+N) < K·N — with the Gemm's bias, alpha
/// and beta kept on the second. A convolution is the same problem on its kernel seen as a matrix:
/// `channel` scheme, K = C·kh·kw inputs and N = O outputs, becomes a kh×kw convolution to r
/// channels and a 1×1 convolution to O (bias on the second); `spatial` scheme, K = C·kh and
/// N = O·kw, becomes a kh×1 convolution to r channels and a 1×kw one to O (strides, pads and
/// dilations split by axis). Grouped and depthwise convolutions are left alone, with the reason.
/// The factors come from a truncated SVD (LAPACK gesdd), split as U·√S and √S·Vᵀ so both have
/// similar ranges (for quantization after).
///
/// With calibration data the factorization is data-aware: it minimizes the error of the layer's
/// *output* X·W over the observed inputs X instead of the weight error — W is whitened by the
/// Cholesky factor L of the input covariance XᵀX/n (M = Lᵀ·W), M is truncated, and A = L⁻ᵀ·U·√S.
/// For a channel-scheme convolution X is its input patches; the spatial scheme stays weight-space.
/// The report gives the output error of both the plain and the data-aware factors at the chosen
/// rank, and the weight error.
///
/// Rank: fixed, a ratio of min(K, N), the smallest keeping `energy` of the (whitened) spectrum,
/// or a global budget of parameters or MACs met greedily — each step takes the rank cut that
/// loses the least output energy per parameter (MAC) saved.
public struct FactorizeLayers: Pass {
  public static let name = "factorize"
  public enum RankRule: Equatable, Sendable {
    case rank(Int), ratio(Double), energy(Double), parameters(Double), macs(Double)
  }
  public enum ConvScheme: String, CaseIterable, Sendable { case channel, spatial }
  public var rule: RankRule
  public var convScheme: ConvScheme
  /// Matrices with more elements than this use a randomized SVD (nil: always LAPACK's full gesdd).
  public var randomizedAbove: Int?
  public var data: String?
  public var threads: Int
  public var samples: Int
  public init(rule: RankRule, convScheme: ConvScheme = .channel, randomizedAbove: Int? = nil, data: String? = nil,
              threads: Int = 1, samples: Int = 256) {
    self.rule = rule; self.convScheme = convScheme; self.randomizedAbove = randomizedAbove
    self.data = data; self.threads = threads; self.samples = samples
  }

  struct Layer {
    var node: Int
    var weight: String
    var k: Int
    var n: Int
    var w: [Float]  // K×N
    var transposed: Bool
    /// nil for Gemm/MatMul; for a Conv, its kernel dims [O, C, kh, kw].
    var kernel: [Int]?
    var spectrum: [Double] = []  // whitened (data) or plain singular values, descending
    var rowsPerSample: Double = 1
    var rank: Int?
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    var initializers = [String: Tensor]()
    for t in model.graph.initializers { initializers[t.name] = t }
    let uses = model.graph.uses()
    var layers = [Layer]()
    for (i, n) in model.graph.nodes.enumerated() where n.isDefaultDomain && n.outputs.count == 1 {
      func skip(_ why: String) { changes.append(.init(target: label(n), action: "skipped", detail: why)) }
      switch n.opType {
      case "ConvTranspose":
        skip("ConvTranspose is not factorized")
        continue
      case "Conv":
        guard n.inputs.count >= 2, let t = initializers[n.inputs[1]], t.dataType == .float, t.dims.count == 4 else {
          skip("not a 2-D convolution with a float initializer kernel"); continue
        }
        guard (n.attribute("group")?.int ?? 1) == 1 else { skip("grouped or depthwise convolution"); continue }
        let counts = [("strides", 2), ("dilations", 2), ("pads", 4)].map { (n.attribute($0.0)?.ints?.count ?? $0.1) == $0.1 }
        guard counts.allSatisfy({ $0 }) else { skip("strides, dilations or pads do not fit a 2-D kernel"); continue }
        let positive = ["strides", "dilations"].allSatisfy { n.attribute($0)?.ints?.allSatisfy { $0 >= 1 } ?? true }
        guard positive, n.attribute("pads")?.ints?.allSatisfy({ $0 >= 0 }) ?? true else {
          skip("strides or dilations below 1, or negative pads"); continue
        }
        guard uses[t.name] == 1 else { skip("weight '\(t.name)' has other readers"); continue }
        let autoPad = n.attribute("auto_pad")?.string ?? "NOTSET"
        guard autoPad == "NOTSET" || autoPad == "VALID" else { skip("auto_pad \(autoPad) does not split by axis"); continue }
        let kernel = t.dims.map { Int($0) }
        let values = try NDArray(t).floats()
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
          throw CompressorError.invalid("weight '\(t.name)' holds \(values[bad]) at element \(bad); compressor will not factorize it")
        }
        let (o, c, kh, kw) = (kernel[0], kernel[1], kernel[2], kernel[3])
        if convScheme == .channel && kh * kw == 1 { skip("a 1×1 convolution has no channel scheme (it is a matrix product)"); continue }
        if convScheme == .spatial && (kh == 1 || kw == 1) { skip("a \(kh)×\(kw) kernel has no spatial scheme"); continue }
        // K×N as x·W: rows are what one output position reads, columns what it writes.
        let (k, nOut) = convScheme == .channel ? (c * kh * kw, o) : (c * kh, o * kw)
        var w = [Float](repeating: 0, count: k * nOut)
        for oi in 0..<o { for ci in 0..<c { for i in 0..<kh { for j in 0..<kw {
          let v = values[((oi * c + ci) * kh + i) * kw + j]
          if convScheme == .channel { w[((ci * kh + i) * kw + j) * nOut + oi] = v } else { w[(ci * kh + i) * nOut + oi * kw + j] = v }
        } } } }
        layers.append(Layer(node: i, weight: t.name, k: k, n: nOut, w: w, transposed: false, kernel: kernel))
        continue
      case "MatMul", "Gemm":
        break
      default:
        continue
      }
      guard n.inputs.count >= 2, let t = initializers[n.inputs[1]], initializers[n.inputs[0]] == nil else {
        skip("its weight is computed, not an initializer"); continue
      }
      guard t.dataType == .float, t.dims.count == 2 else { skip("weight '\(t.name)' is not a 2-D float matrix"); continue }
      guard uses[t.name] == 1 else { skip("weight '\(t.name)' has other readers"); continue }
      if n.opType == "Gemm" && (n.attribute("transA")?.int ?? 0) != 0 { skip("Gemm with transA"); continue }
      let transposed = n.opType == "Gemm" && (n.attribute("transB")?.int ?? 0) != 0
      var w = try NDArray(t).floats()
      if let bad = w.firstIndex(where: { !$0.isFinite }) {
        throw CompressorError.invalid("weight '\(t.name)' holds \(w[bad]) at element \(bad); compressor will not factorize it")
      }
      let rows = Int(t.dims[0]), cols = Int(t.dims[1])
      if transposed { w = TensorEdits.transposed(w, rows: rows, cols: cols) }
      let (k, nOut) = transposed ? (cols, rows) : (rows, cols)
      if k < 2 || nOut < 2 { skip("a \(k)×\(nOut) weight cannot get thinner"); continue }
      layers.append(Layer(node: i, weight: t.name, k: k, n: nOut, w: w, transposed: transposed))
    }
    guard !layers.isEmpty else { return PassResult(pass: Self.name, changes: changes) }

    // Input covariances for the data-aware factorization.
    var covariance = [String: (c: [Float], rows: Int)]()
    var samplesUsed = 0
    var modelMACs: Int?
    if let data {
      let wanted = Dictionary(layers.filter { $0.kernel == nil }.map { (model.graph.nodes[$0.node].inputs[0], $0.k) },
                              uniquingKeysWith: { a, _ in a })
      let convOutputs = Dictionary(layers.filter { $0.kernel != nil }.map { (model.graph.nodes[$0.node].outputs[0], 0) },
                                   uniquingKeysWith: { a, _ in a })
      // Channel-scheme convolutions: the covariance of their input patches, keyed by their output.
      var patchLayers = [String: [(key: String, geometry: PatchGeometry)]]()
      if convScheme == .channel {
        for l in layers {
          guard let kernel = l.kernel else { continue }
          let n = model.graph.nodes[l.node]
          patchLayers[n.inputs[0], default: []].append((n.outputs[0], PatchGeometry(n, kernel: kernel)))
        }
      }
      final class Sums { var c: [String: [Float]] = [:]; var rows: [String: Int] = [:]; var positions: [String: Int] = [:] }
      let sums = Sums()
      func record(_ name: String, _ value: NDArray) {
        if let convs = patchLayers[name], value.dataType == .float, value.rank == 4 {
          let x = value.elements(Float.self)
          for conv in convs {
            var c = sums.c[conv.key] ?? [Float](repeating: 0, count: conv.geometry.k * conv.geometry.k)
            sums.rows[conv.key, default: 0] += conv.geometry.accumulate(x, shape: value.shape, into: &c)
            sums.c[conv.key] = c
          }
        }
        if convOutputs[name] != nil, value.rank == 4 { sums.positions[name, default: 0] += value.shape[0] * value.shape[2] * value.shape[3] }
        guard let k = wanted[name], value.dataType == .float, value.rank >= 1, value.shape.last == k else { return }
        let rows = value.count / k
        var c = sums.c[name] ?? [Float](repeating: 0, count: k * k)
        value.elements(Float.self).withPointer { x in
          guard let x else { return }
          c.withUnsafeMutableBufferPointer { cp in
            guard let cb = cp.baseAddress else { return }
            Linalg.gemm(m: k, n: k, k: rows, a: x, b: x, beta: 1, c: cb, transposeA: true)
          }
        }
        sums.c[name] = c
        sums.rows[name, default: 0] += rows
      }
      let executor = try Executor(model: model, threads: threads)
      executor.observer = { node, _, outputs in for (name, value) in zip(node.outputs, outputs) { record(name, value) } }
      let dataset = try Dataset(path: data, inputNames: model.graph.feedNames)
      samplesUsed = try dataset.forEachChunk(rows: 8, limit: samples) { feeds in
        for (name, value) in feeds { record(name, value) }
        _ = try executor.run(feeds)
      }
      if samplesUsed == 0 { throw CompressorError.usage("the data holds no samples") }
      if case .macs = rule {
        modelMACs = try ShapeInference(model: model, bindings: dataset.sampleShapes()).totalMACs
      }
      for (name, c) in sums.c { covariance[name] = (c, sums.rows[name] ?? 0) }
      for l in layers.indices where layers[l].kernel != nil {
        // Output positions per sample: each reads K and writes N once.
        layers[l].rowsPerSample = Double(sums.positions[model.graph.nodes[layers[l].node].outputs[0]] ?? 0) / Double(max(samplesUsed, 1))
      }
    }
    Linalg.setThreads(threads)

    // Spectra: whitened when the layer's inputs were observed, plain otherwise.
    var whitening = [Int: [Double]]()  // layer → L (K×K, row-major lower)
    var decompositions = [Int: Linalg.SVD<Float>]()
    for (l, layer) in layers.enumerated() {
      let input = model.graph.nodes[layer.node].inputs[0]
      var matrix = layer.w
      let key = layer.kernel == nil ? input : model.graph.nodes[layer.node].outputs[0]
      if let (c, rows) = covariance[key], rows > 0, let lower = Self.whitener(c, k: layer.k, rows: rows) {
        whitening[l] = lower
        let m = Linalg.gemmTransposedA(lower, layer.w.map(Double.init), k: layer.k, m: layer.k, n: layer.n)
        matrix = m.map { Float($0) }
        if layer.kernel == nil { layers[l].rowsPerSample = Double(rows) / Double(max(samplesUsed, 1)) }
      }
      let d = try decompose(matrix, m: layer.k, n: layer.n, name: layer.weight)
      decompositions[l] = d
      layers[l].spectrum = d.s.map(Double.init)
    }

    // Ranks.
    func maxUseful(_ l: Layer) -> Int { (l.k * l.n - 1) / (l.k + l.n) }
    switch rule {
    case .rank(let r):
      for l in layers.indices {
        let full = min(layers[l].k, layers[l].n)
        layers[l].rank = min(r, full)
      }
    case .ratio(let f):
      for l in layers.indices { layers[l].rank = max(1, Int((Double(min(layers[l].k, layers[l].n)) * f).rounded())) }
    case .energy(let e):
      for l in layers.indices {
        let squares = layers[l].spectrum.map { $0 * $0 }, total = squares.reduce(0, +)
        var kept = 0.0, r = 0
        while r < squares.count && (total == 0 ? r < 1 : kept / total < e) { kept += squares[r]; r += 1 }
        layers[l].rank = max(1, r)
      }
    case .parameters(let f), .macs(let f):
      let byMACs = { if case .macs = rule { return true } else { return false } }()
      let weightOf = { (l: Layer) -> Double in byMACs ? l.rowsPerSample : 1 }
      let layerTotal = layers.reduce(0.0) { $0 + weightOf($1) * Double($1.k * $1.n) }
      // Everything the factorization does not touch still counts toward the budget.
      let others = byMACs ? max(0, Double(modelMACs ?? 0) - layerTotal)
        : Double(model.graph.initializers.reduce(0) { $0 + $1.elementCount }) - layerTotal
      var total = others + layerTotal
      let goal = f * total
      func loss(_ l: Layer, _ r: Int?) -> Double {
        guard let r else { return 0 }
        let squares = l.spectrum.map { $0 * $0 }, all = squares.reduce(0, +)
        return all == 0 ? 0 : squares[min(r, squares.count)...].reduce(0, +) / all
      }
      while total > goal {
        var best: (layer: Int, rank: Int, cost: Double, saved: Double)?
        for (i, l) in layers.enumerated() {
          let top = maxUseful(l)
          guard top >= 1 else { continue }
          let next = l.rank.map { $0 - max(1, top / 64) } ?? top
          guard next >= 1 else { continue }
          let before = Double(l.rank.map { $0 * (l.k + l.n) } ?? l.k * l.n), after = Double(next * (l.k + l.n))
          let saved = (before - after) * weightOf(l)
          guard saved > 0 else { continue }
          let cost = (loss(l, next) - loss(l, l.rank)) / saved
          if cost < (best?.cost ?? .infinity) { best = (i, next, cost, saved) }
        }
        guard let step = best else { break }
        layers[step.layer].rank = step.rank
        total -= step.saved
      }
    }

    // Rewrite.
    var newNodes = [Int: [Node]]()
    var newInitializers = [Tensor]()
    var names = NameScope(model)
    var removed = Set<String>()
    for (l, layer) in layers.enumerated() {
      let node = model.graph.nodes[layer.node]
      let full = min(layer.k, layer.n)
      func skip(_ why: String) { changes.append(.init(target: label(node), action: "skipped", detail: why)) }
      guard var r = layer.rank else { skip("the budget did not need it"); continue }
      var note = ""
      if case .rank(let asked) = rule, asked > full { note = "; rank \(asked) clamped to \(full)" }
      r = min(r, full)
      guard r * (layer.k + layer.n) < layer.k * layer.n else {
        skip("rank \(r) saves nothing for a \(layer.k)×\(layer.n) weight (r·(K+N) ≥ K·N)\(note)"); continue
      }
      guard let d = decompositions[l] else { continue }
      let plain = whitening[l] == nil ? d : try decompose(layer.w, m: layer.k, n: layer.n, name: layer.weight)
      let (a, b) = Self.factors(d, k: layer.k, n: layer.n, r: r, whitener: whitening[l])
      let (pa, pb) = whitening[l] == nil ? (a, b) : Self.factors(plain, k: layer.k, n: layer.n, r: r, whitener: nil)
      let weightError = Self.relativeError(layer.w, a, b, k: layer.k, n: layer.n, r: r, whitener: nil)
      let squares = layer.spectrum.map { $0 * $0 }, all = squares.reduce(0, +)
      let energy = all == 0 ? 1 : squares.prefix(r).reduce(0, +) / all
      var values: [String: Double] = ["rank": Double(r), "parametersBefore": Double(layer.k * layer.n),
                                      "parametersAfter": Double(r * (layer.k + layer.n)), "keptEnergy": energy,
                                      "weightError": weightError]
      var detail = String(format: "%d×%d → rank %d: parameters %d → %d, kept energy %.4f, weight error %.4f",
                          layer.k, layer.n, r, layer.k * layer.n, r * (layer.k + layer.n), energy, weightError)
      if data != nil && layer.rowsPerSample > 0 {
        // Each observed row (token, output position) costs K·N MACs before and r·(K+N) after.
        values["macsBefore"] = (layer.rowsPerSample * Double(layer.k * layer.n)).rounded()
        values["macsAfter"] = (layer.rowsPerSample * Double(r * (layer.k + layer.n))).rounded()
        detail += String(format: ", MACs per sample %.0f → %.0f", values["macsBefore"] ?? 0, values["macsAfter"] ?? 0)
      }
      if let lower = whitening[l] {
        let aware = Self.relativeError(layer.w, a, b, k: layer.k, n: layer.n, r: r, whitener: lower)
        let plainOut = Self.relativeError(layer.w, pa, pb, k: layer.k, n: layer.n, r: r, whitener: lower)
        values["outputError"] = aware
        values["plainOutputError"] = plainOut
        detail += String(format: ", output error %.4f (data-aware) vs %.4f (plain SVD)", aware, plainOut)
      }
      detail += note
      let aName = names.fresh("\(layer.weight).low_rank_a"), bName = names.fresh("\(layer.weight).low_rank_b")
      let mid = names.fresh("\(node.outputs[0]).low_rank"), firstName = names.fresh("\(label(node)).low_rank")
      removed.insert(layer.weight)
      var second = node
      second.inputs[0] = mid
      second.inputs[1] = bName
      if let kernel = layer.kernel {
        let (first, aTensor, bTensor, last) = convPair(node, kernel: kernel, a: a, b: b, r: r, names: (aName, bName, mid, firstName))
        newInitializers += [aTensor, bTensor]
        detail += " (\(convScheme.rawValue) scheme)"
        newNodes[layer.node] = [first, last]
      } else {
        newInitializers.append(NDArray(a, shape: [layer.k, r]).irTensor(name: aName))
        newInitializers.append(NDArray(b, shape: [r, layer.n]).irTensor(name: bName))
        let first = Node(name: firstName, opType: "MatMul", inputs: [node.inputs[0], aName], outputs: [mid])
        if node.opType == "Gemm" { second.attributes = node.attributes.filter { $0.name != "transB" } }
        newNodes[layer.node] = [first, second]
      }
      changes.append(.init(target: label(node), action: "factorized", detail: detail, values: values))
    }
    var nodes = [Node]()
    for (i, n) in model.graph.nodes.enumerated() { nodes += newNodes[i] ?? [n] }
    model.graph.nodes = nodes
    model.graph.initializers.removeAll { removed.contains($0.name) }
    model.graph.initializers += newInitializers
    model.graph.inputs.removeAll { removed.contains($0.name) }
    return PassResult(pass: Self.name, changes: changes)
  }

  /// The two convolutions replacing `node`: A (K×r) becomes the first kernel, B (r×N) the second.
  private func convPair(_ node: Node, kernel: [Int], a: [Float], b: [Float], r: Int, names: (a: String, b: String, mid: String, node: String))
    -> (Node, Tensor, Tensor, Node) {
    let (o, c, kh, kw) = (kernel[0], kernel[1], kernel[2], kernel[3])
    let ints = { (name: String, fallback: [Int64]) -> [Int64] in node.attribute(name)?.ints ?? fallback }
    let strides = ints("strides", [1, 1]), dilations = ints("dilations", [1, 1]), pads = ints("pads", [0, 0, 0, 0])
    var first = Node(name: names.node, opType: "Conv", inputs: [node.inputs[0], names.a], outputs: [names.mid])
    var second = node
    second.inputs[0] = names.mid
    second.inputs[1] = names.b
    let keep = node.attributes.filter { !["kernel_shape", "strides", "dilations", "pads", "group"].contains($0.name) }
    var k1 = [Float](repeating: 0, count: r * c * kh * (convScheme == .channel ? kw : 1))
    var k2 = [Float](repeating: 0, count: o * r * (convScheme == .channel ? 1 : kw))
    let kCount = convScheme == .channel ? c * kh * kw : c * kh
    for j in 0..<r { for q in 0..<kCount { k1[j * kCount + q] = a[q * r + j] } }
    if convScheme == .channel {
      for oi in 0..<o { for j in 0..<r { k2[oi * r + j] = b[j * o + oi] } }
      first.attributes = keep + [Attribute(name: "kernel_shape", value: .ints([Int64(kh), Int64(kw)])),
                                 Attribute(name: "strides", value: .ints(strides)), Attribute(name: "dilations", value: .ints(dilations)),
                                 Attribute(name: "pads", value: .ints(pads))]
      second.attributes = keep + [Attribute(name: "kernel_shape", value: .ints([1, 1]))]
      return (first, NDArray(k1, shape: [r, c, kh, kw]).irTensor(name: names.a),
              NDArray(k2, shape: [o, r, 1, 1]).irTensor(name: names.b), second)
    }
    // Spatial: B's columns are (o, j) pairs.
    for oi in 0..<o { for j in 0..<r { for x in 0..<kw { k2[(oi * r + j) * kw + x] = b[j * (o * kw) + oi * kw + x] } } }
    first.attributes = keep + [Attribute(name: "kernel_shape", value: .ints([Int64(kh), 1])),
                               Attribute(name: "strides", value: .ints([strides[0], 1])),
                               Attribute(name: "dilations", value: .ints([dilations[0], 1])),
                               Attribute(name: "pads", value: .ints([pads[0], 0, pads[2], 0]))]
    second.attributes = keep + [Attribute(name: "kernel_shape", value: .ints([1, Int64(kw)])),
                                Attribute(name: "strides", value: .ints([1, strides[1]])),
                                Attribute(name: "dilations", value: .ints([1, dilations[1]])),
                                Attribute(name: "pads", value: .ints([0, pads[1], 0, pads[3]]))]
    return (first, NDArray(k1, shape: [r, c, kh, 1]).irTensor(name: names.a),
            NDArray(k2, shape: [o, r, 1, kw]).irTensor(name: names.b), second)
  }

  /// LAPACK's thin SVD, or above `randomizedAbove` elements a randomized one (Halko, Martinsson
  /// and Tropp): the range of A·Ω for a Gaussian Ω of rank + 16 columns, two power iterations,
  /// then the exact SVD of the small projected matrix. Only the leading `sketch` singular
  /// triples are accurate, so this serves ranks well below min(m, n).
  private func decompose(_ a: [Float], m: Int, n: Int, name: String) throws -> Linalg.SVD<Float> {
    guard let limit = randomizedAbove, a.count > limit else { return try Self.svd(a, m: m, n: n, name: name) }
    let sketch = min(min(m, n), Self.sketchRank(rule, m: m, n: n) + 16)
    var rng = SplitMix64(seed: 0x5eed)
    var omega = [Float](repeating: 0, count: n * sketch)
    for i in omega.indices {
      // Box–Muller from two uniforms.
      let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300), u2 = Double(rng.next() >> 11) / Double(1 << 53)
      omega[i] = Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
    func product(_ x: [Float], _ y: [Float], _ rows: Int, _ inner: Int, _ cols: Int, transposeX: Bool = false) -> [Float] {
      var out = [Float](repeating: 0, count: rows * cols)
      x.withUnsafeBufferPointer { xp in y.withUnsafeBufferPointer { yp in out.withUnsafeMutableBufferPointer { op in
        guard let xb = xp.baseAddress, let yb = yp.baseAddress, let ob = op.baseAddress else { return }
        Linalg.gemm(m: rows, n: cols, k: inner, a: xb, b: yb, c: ob, transposeA: transposeX)
      } } }
      return out
    }
    func basis(_ y: [Float], _ rows: Int) throws -> [Float] { try Self.svd(y, m: rows, n: sketch, name: name).u }
    var q = try basis(product(a, omega, m, n, sketch), m)                 // m×l
    for _ in 0..<2 {
      let z = try basis(product(a, q, n, m, sketch, transposeX: true), n)  // Aᵀ·Q, n×l
      q = try basis(product(a, z, m, n, sketch), m)
    }
    let small = product(q, a, sketch, m, n, transposeX: true)             // Qᵀ·A, l×n
    let d = try Self.svd(small, m: sketch, n: n, name: name)
    return Linalg.SVD(u: product(q, d.u, m, sketch, sketch), s: d.s, vt: d.vt)
  }

  /// The largest rank the rule can ask for, for the randomized sketch.
  static func sketchRank(_ rule: RankRule, m: Int, n: Int) -> Int {
    let full = min(m, n)
    switch rule {
    case .rank(let r): return min(r, full)
    case .ratio(let f): return Int((Double(full) * f).rounded(.up))
    default: return (m * n - 1) / (m + n)
    }
  }

  static func svd(_ m: [Float], m rows: Int, n cols: Int, name: String) throws -> Linalg.SVD<Float> {
    do { return try Linalg.svd(m, m: rows, n: cols) } catch {
      throw CompressorError.unsupported("the SVD of weight '\(name)' did not converge")
    }
  }

  /// L with L·Lᵀ = XᵀX/n + δ·I, δ a small multiple of the mean variance (so that inputs that never
  /// vary keep the matrix definite); nil if it still is not.
  static func whitener(_ c: [Float], k: Int, rows: Int) -> [Double]? {
    let cov = c.map { Double($0) / Double(rows) }
    let mean = (0..<k).reduce(0.0) { $0 + cov[$1 * k + $1] } / Double(k)
    var damping = max(mean, 1e-12) * 1e-6
    for _ in 0..<6 {
      var damped = cov
      for i in 0..<k { damped[i * k + i] += damping }
      if let l = Linalg.cholesky(damped, n: k) { return l }
      damping *= 100
    }
    return nil
  }

  /// A = (L⁻ᵀ)·U_r·√S_r and B = √S_r·Vᵀ_r from the SVD of W (or of M = Lᵀ·W).
  static func factors(_ d: Linalg.SVD<Float>, k: Int, n: Int, r: Int, whitener: [Double]?) -> ([Float], [Float]) {
    let full = d.s.count
    var a = [Double](repeating: 0, count: k * r), b = [Float](repeating: 0, count: r * n)
    for j in 0..<r {
      let root = Double(d.s[j]).squareRoot()
      for i in 0..<k { a[i * r + j] = Double(d.u[i * full + j]) * root }
      for c in 0..<n { b[j * n + c] = Float(Double(d.vt[j * n + c]) * root) }
    }
    if let l = whitener { Linalg.solveLowerTransposed(l, n: k, &a, k: r) }
    return (a.map { Float($0) }, b)
  }

  /// ‖W − A·B‖ / ‖W‖, or with a whitener L the output error ‖Lᵀ(W − A·B)‖ / ‖Lᵀ·W‖.
  static func relativeError(_ w: [Float], _ a: [Float], _ b: [Float], k: Int, n: Int, r: Int, whitener: [Double]?) -> Double {
    var ab = [Float](repeating: 0, count: k * n)
    a.withUnsafeBufferPointer { ap in
      b.withUnsafeBufferPointer { bp in
        ab.withUnsafeMutableBufferPointer { cp in
          guard let x = ap.baseAddress, let y = bp.baseAddress, let z = cp.baseAddress else { return }
          Linalg.gemm(m: k, n: n, k: r, a: x, b: y, c: z)
        }
      }
    }
    var diff = zip(w, ab).map { Double($0) - Double($1) }
    var reference = w.map(Double.init)
    if let l = whitener {
      diff = Linalg.gemmTransposedA(l, diff, k: k, m: k, n: n)
      reference = Linalg.gemmTransposedA(l, reference, k: k, m: k, n: n)
    }
    let num = diff.reduce(0) { $0 + $1 * $1 }, den = reference.reduce(0) { $0 + $1 * $1 }
    return den == 0 ? 0 : (num / den).squareRoot()
  }
}

/// Where a convolution reads its input: the patch of C·kh·kw values behind each output position,
/// ordered (c, i, j) like the rows of the kernel seen as a K×O matrix.
struct PatchGeometry {
  var o: Int, c: Int, kh: Int, kw: Int
  var sh: Int, sw: Int, dh: Int, dw: Int
  var top: Int, left: Int, bottom: Int, right: Int
  var k: Int { c * kh * kw }

  init(_ n: Node, kernel: [Int]) {
    (o, c, kh, kw) = (kernel[0], kernel[1], kernel[2], kernel[3])
    let ints = { (name: String, fallback: [Int]) -> [Int] in n.attribute(name)?.ints?.map { Int($0) } ?? fallback }
    let strides = ints("strides", [1, 1]), dilations = ints("dilations", [1, 1]), pads = ints("pads", [0, 0, 0, 0])
    (sh, sw, dh, dw) = (strides[0], strides[1], dilations[0], dilations[1])
    (top, left, bottom, right) = (pads[0], pads[1], pads[2], pads[3])
  }

  /// Output rows and columns on an H×W input; nil when they overflow or the convolution's
  /// output for `n` samples would not fit the memory budget (the convolution itself is then
  /// refused when it runs, naming the node).
  func outputSize(n: Int, h: Int, w: Int) -> (oh: Int, ow: Int)? {
    func extent(_ size: Int, _ pad0: Int, _ pad1: Int, _ d: Int, _ k: Int, _ s: Int) -> Int? {
      let (a, o1) = size.addingReportingOverflow(pad0), (span, o2) = a.addingReportingOverflow(pad1)
      guard !o1, !o2, let reach = numberOfElements([d, k - 1]) else { return nil }
      return (span - reach - 1) / s + 1
    }
    guard let oh = extent(h, top, bottom, dh, kh, sh), let ow = extent(w, left, right, dw, kw, sw), oh > 0, ow > 0,
          let outputs = numberOfElements([n, o, oh, ow, 4]), outputs <= MemoryBudget.limit else { return nil }
    return (oh, ow)
  }

  /// Adds PᵀP over every output position of every sample of `x` [N, C, H, W] to `covariance`
  /// (K×K), in blocks of positions; returns the number of positions.
  func accumulate(_ x: Elements<Float>, shape: [Int], into covariance: inout [Float]) -> Int {
    let (n, h, w) = (shape[0], shape[2], shape[3])
    guard shape[1] == c, let (oh, ow) = outputSize(n: n, h: h, w: w) else { return 0 }
    let block = max(1, 4096 / max(1, k / 64))
    var patches = [Float](repeating: 0, count: block * k)
    var filled = 0
    func flush() {
      guard filled > 0 else { return }
      patches.withUnsafeBufferPointer { p in
        covariance.withUnsafeMutableBufferPointer { cp in
          guard let pb = p.baseAddress, let cb = cp.baseAddress else { return }
          Linalg.gemm(m: k, n: k, k: filled, a: pb, b: pb, beta: 1, c: cb, transposeA: true)
        }
      }
      filled = 0
    }
    for s in 0..<n {
      for oy in 0..<oh {
        for ox in 0..<ow {
          var q = filled * k
          for ci in 0..<c {
            for i in 0..<kh {
              let y = oy * sh - top + i * dh
              for j in 0..<kw {
                let xx = ox * sw - left + j * dw
                patches[q] = y >= 0 && y < h && xx >= 0 && xx < w ? x[((s * c + ci) * h + y) * w + xx] : 0
                q += 1
              }
            }
          }
          filled += 1
          if filled == block { flush() }
        }
      }
    }
    flush()
    return n * oh * ow
  }
}
