import Datasets
import Foundation
import IR
import Runtime
import Support

/// 4-bit weights for MatMul: each column of W [K, N] is cut into blocks of `blockSize` rows with
/// one symmetric scale per block (values −7…7). Written either as ONNX Runtime's com.microsoft
/// MatMulNBits (any opset; B packed [N, blocks, blockSize/2], zero point 8) or as a standard
/// blocked int4 DequantizeLinear (opset 21 and later) in front of the unchanged MatMul. Without a
/// chosen format, QDQ where the model's opset has it (21), else MatMulNBits. With calibration
/// data, GPTQ rounds a weight where it measures better than round-to-nearest, and AWQ rescales
/// the input channels of an activation's readers first where that measures better.
public struct QuantizeWeights4Bit: Pass {
  public static let name = "quantize-weights-4bit"
  public enum Format: String, Sendable { case qdq, matmulnbits }
  public var blockSize: Int
  public var format: Format?
  public var filter: NodeFilter
  /// Where the Hessians H = XᵀX of `gptq` and `awq` come from.
  public var calibration: Calibration?
  /// GPTQ instead of round-to-nearest (needs `calibration`).
  public var gptq: Bool
  /// AWQ's activation-aware scales before rounding (needs `calibration`).
  public var awq: Bool
  public struct Calibration: Sendable {
    public var data: String
    public var maxSamples: Int?
    public var threads: Int
    public init(data: String, maxSamples: Int?, threads: Int) { self.data = data; self.maxSamples = maxSamples; self.threads = threads }
  }
  public init(blockSize: Int, format: Format?, filter: NodeFilter = .init(), calibration: Calibration? = nil,
              gptq: Bool = false, awq: Bool = false) {
    self.blockSize = blockSize; self.format = format; self.filter = filter; self.calibration = calibration; self.gptq = gptq; self.awq = awq
  }

  /// A MatMul whose weight this pass makes 4-bit, if its weight is `w`.
  private func isCandidate(_ n: Node, weight w: Tensor) -> Bool {
    n.isDefaultDomain && n.opType == "MatMul" && n.inputs.count == 2 && filter.refusal(n) == nil
      && w.dataType == .float && w.dims.count == 2 && Int(w.dims[0]) >= blockSize
  }

  /// The Hessians of the activations that eligible MatMuls read, when GPTQ or AWQ is asked for.
  private func hessians(_ model: Model) throws -> [String: (hessian: [Double], rows: Int)] {
    guard let calibration, gptq || awq else { return [:] }
    let index = model.graph.initializersByName
    var widths = [String: Int]()
    for n in model.graph.nodes where n.inputs.count == 2 {
      guard let w = index[n.inputs[1]], isCandidate(n, weight: w) else { continue }
      widths[n.inputs[0]] = Int(w.dims[0])
    }
    let dataset = try Dataset(path: calibration.data, inputNames: model.graph.feedNames)
    return try LayerHessians.collect(model: model, widths: widths, data: dataset, maxSamples: calibration.maxSamples,
                                     threads: calibration.threads)
  }

  /// Gemm with a constant weight and nothing MatMul + Add cannot say (no transA, alpha = beta =
  /// 1) becomes MatMul (weight transposed to [K, N] if transB) + Add, so its weight can be
  /// 4-bit: exporters write linear layers as Gemm (GPT-2's Conv1D, torch's Linear at rank 2).
  private func splitGemms(_ model: inout Model, names: inout NameScope) -> [PassResult.Change] {
    var changes = [PassResult.Change]()
    let uses = model.graph.uses()
    var index = [String: Int]()
    for (i, t) in model.graph.initializers.enumerated() { index[t.name] = i }
    var nodes = [Node]()
    for n in model.graph.nodes {
      guard n.isDefaultDomain, n.opType == "Gemm", filter.refusal(n) == nil, (2...3).contains(n.inputs.count), n.outputs.count == 1,
            let wi = index[n.inputs[1]], uses[n.inputs[1]] == 1, n.attribute("transA")?.int ?? 0 == 0,
            n.attribute("alpha")?.float ?? 1 == 1, n.attribute("beta")?.float ?? 1 == 1 || n.inputs.count == 2 else {
        nodes.append(n); continue
      }
      let w = model.graph.initializers[wi]
      let transB = n.attribute("transB")?.int ?? 0 != 0
      guard w.dataType == .float, w.dims.count == 2, Int(w.dims[transB ? 1 : 0]) >= blockSize,
            let values = try? NDArray(w).floats() else { nodes.append(n); continue }
      if transB {
        let (rows, cols) = (Int(w.dims[0]), Int(w.dims[1]))
        let t = TensorEdits.transposed(values, rows: rows, cols: cols)
        model.graph.initializers[wi] = Tensor(name: w.name, dataType: .float, dims: [w.dims[1], w.dims[0]],
                                              data: ByteBuffer(copying: t.withUnsafeBytes { Array($0) }))
      }
      let hasBias = n.inputs.count == 3 && !n.inputs[2].isEmpty
      let product = hasBias ? names.fresh("\(n.outputs[0]).matmul") : n.outputs[0]
      nodes.append(Node(name: n.name, opType: "MatMul", inputs: [n.inputs[0], n.inputs[1]], outputs: [product]))
      if hasBias { nodes.append(Node(name: names.fresh("\(n.name).bias"), opType: "Add", inputs: [product, n.inputs[2]], outputs: n.outputs)) }
      changes.append(.init(target: label(n), action: "rewritten", detail: "Gemm as MatMul\(hasBias ? " + Add" : "")\(transB ? " (weight transposed to [K, N])" : "") for a 4-bit weight"))
    }
    model.graph.nodes = nodes
    return changes
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var names = NameScope(model)
    var changes = splitGemms(&model, names: &names)
    let opset = model.defaultOpsetVersion ?? 1
    let format = self.format ?? (opset >= 21 ? .qdq : .matmulnbits)
    if format == .qdq && opset < 21 {
      throw CompressorError.unsupported("4-bit DequantizeLinear needs opset 21 and the model imports opset \(opset); use --format matmulnbits")
    }
    let hessians = try self.hessians(model)
    var rounded = [String: Rounded]()
    if awq {
      let scaled = try scaleActivations(&model, hessians: hessians, names: &names)
      changes += scaled.changes
      rounded = scaled.rounded
    }
    let uses = model.graph.uses()
    var index = [String: Int]()
    for (i, t) in model.graph.initializers.enumerated() { index[t.name] = i }
    var nodes = [Node]()
    var added = [Tensor]()
    var replaced = Set<String>()
    var totals = (rtn: 0.0, gptq: 0.0, weights: 0)
    for n in model.graph.nodes {
      guard n.isDefaultDomain, ["MatMul", "Gemm", "Conv", "ConvTranspose", "Gather"].contains(n.opType) else { nodes.append(n); continue }
      func skip(_ why: String) { changes.append(.init(target: label(n), action: "skipped", detail: why)); nodes.append(n) }
      if let why = filter.refusal(n) { skip(why); continue }
      guard n.opType == "MatMul" else { skip("4-bit applies to MatMul (and plain Gemm) weights; \(n.opType) is left to the int8 pass"); continue }
      guard n.inputs.count == 2, let wi = index[n.inputs[1]] else { skip("its weight input is computed, not an initializer"); continue }
      let w = model.graph.initializers[wi]
      guard w.dataType == .float, w.dims.count == 2 else { skip("weight '\(w.name)' is not a 2-D float matrix"); continue }
      guard uses[w.name] == 1 else { skip("weight '\(w.name)' has other readers"); continue }
      let k = Int(w.dims[0]), cols = Int(w.dims[1])
      guard k >= blockSize else { skip("K = \(k) is smaller than the block size \(blockSize)"); continue }
      let values = try NDArray(w).floats()
      if let bad = values.firstIndex(where: { !$0.isFinite }) {
        throw CompressorError.invalid("weight '\(w.name)' holds \(values[bad]) at element \(bad); compressor will not quantize it")
      }
      let blocks = (k + blockSize - 1) / blockSize
      var chosen = Int4Blocks.roundToNearest(values, k: k, n: cols, blockSize: blockSize)
      var method = ""
      var errors = [String: Double]()
      if let r = rounded[w.name] {
        // Rounded with its activation's AWQ scales (or measured against them).
        (chosen, method, errors) = (r.blocks, r.method, r.errors)
        if let rtn = errors["outputErrorRTN"], let better = errors["outputErrorGPTQ"] {
          totals.rtn += rtn; totals.gptq += min(better, rtn); totals.weights += 1
        }
      } else if gptq {
        // GPTQ where it measures better than round-to-nearest on the layer's own inputs.
        if let (h, rows) = hessians[n.inputs[0]], let g = Int4Blocks.gptq(values, hessian: h, k: k, n: cols, blockSize: blockSize) {
          let rtn = Int4Blocks.outputError(values, chosen.values(k: k, n: cols, blockSize: blockSize), hessian: h, k: k, n: cols)
          let better = Int4Blocks.outputError(values, g.values(k: k, n: cols, blockSize: blockSize), hessian: h, k: k, n: cols)
          errors = ["outputErrorRTN": rtn, "outputErrorGPTQ": better]
          totals.rtn += rtn; totals.gptq += min(better, rtn); totals.weights += 1
          if better <= rtn { chosen = g }
          method = String(format: better <= rtn ? "; GPTQ: output error %.3g (round-to-nearest %.3g)" : "; round-to-nearest kept: output error %.3g (GPTQ %.3g)",
                          min(better, rtn), max(better, rtn))
          if rows < k { method += Self.fewRows(rows, k) }
        } else {
          method = "; round-to-nearest (no usable calibration inputs for GPTQ)"
        }
      }
      let q = chosen.q
      var scales = chosen.scales  // [blocks, N] for qdq; [N, blocks] for nbits
      if format == .matmulnbits {
        for b in 0..<blocks { for col in 0..<cols { scales[col * blocks + b] = chosen.scales[b * cols + col] } }
      }
      var signal = 0.0, noise = 0.0
      for r in 0..<k {
        for col in 0..<cols {
          let v = values[r * cols + col], e = v - Float(q[r * cols + col]) * chosen.scales[(r / blockSize) * cols + col]
          signal += Double(v * v)
          noise += Double(e * e)
        }
      }
      let sqnr = noise == 0 ? "inf" : String(format: "%.1f", 10 * log10(signal / noise))
      let scaleName = names.fresh("\(w.name).scale")
      switch format {
      case .qdq:
        let packed = packNibbles(q.map { UInt8(bitPattern: $0) & 0x0F })
        let int4Name = names.fresh("\(w.name).int4")
        model.graph.initializers[wi] = Tensor(name: int4Name, dataType: .int4, dims: w.dims, data: ByteBuffer(copying: packed))
        added.append(Tensor(name: scaleName, dataType: .float, dims: [Int64(blocks), Int64(cols)],
                            data: ByteBuffer(copying: scales.withUnsafeBytes { Array($0) })))
        nodes.append(Node(name: names.fresh("\(w.name).dequantize"), opType: "DequantizeLinear", inputs: [int4Name, scaleName],
                          outputs: [w.name], attributes: [Attribute(name: "axis", value: .int(0)),
                                                          Attribute(name: "block_size", value: .int(Int64(blockSize)))]))
        nodes.append(n)
      case .matmulnbits:
        // B: [N, blocks, blockSize/2] bytes of unsigned nibbles (value + 8), low nibble first.
        var b = [UInt8](repeating: 0, count: cols * blocks * blockSize / 2)
        for col in 0..<cols {
          for r in 0..<(blocks * blockSize) {
            let v = r < k ? UInt8(Int(q[r * cols + col]) + 8) : 8
            let at = col * blocks * blockSize / 2 + r / 2
            b[at] |= r % 2 == 0 ? v : v << 4
          }
        }
        let nbitsName = names.fresh("\(w.name).nbits")
        model.graph.initializers[wi] = Tensor(name: nbitsName, dataType: .uint8,
                                              dims: [Int64(cols), Int64(blocks), Int64(blockSize / 2)], data: ByteBuffer(copying: b))
        added.append(Tensor(name: scaleName, dataType: .float, dims: [Int64(cols * blocks)],
                            data: ByteBuffer(copying: scales.withUnsafeBytes { Array($0) })))
        nodes.append(Node(name: n.name, opType: "MatMulNBits", domain: "com.microsoft",
                          inputs: [n.inputs[0], nbitsName, scaleName], outputs: n.outputs,
                          attributes: [Attribute(name: "K", value: .int(Int64(k))), Attribute(name: "N", value: .int(Int64(cols))),
                                       Attribute(name: "bits", value: .int(4)), Attribute(name: "block_size", value: .int(Int64(blockSize)))]))
      }
      replaced.insert(w.name)
      changes.append(.init(target: w.name, action: "quantized",
                           detail: "int4, blocks of \(blockSize) along K (\(blocks)×\(cols) scales), \(format.rawValue), for \(label(n)); SQNR \(sqnr) dB\(method)",
                           values: errors.isEmpty ? nil : errors))
    }
    model.graph.nodes = nodes
    model.graph.initializers += added
    if gptq && totals.weights > 0 {
      changes.append(.init(target: "model", action: "gptq",
                           detail: String(format: "mean output error over %d weights: %.4g with GPTQ (or round-to-nearest where better), %.4g with round-to-nearest alone",
                                          totals.weights, totals.gptq / Double(totals.weights), totals.rtn / Double(totals.weights)),
                           values: ["weights": Double(totals.weights), "meanOutputErrorGPTQ": totals.gptq / Double(totals.weights),
                                    "meanOutputErrorRTN": totals.rtn / Double(totals.weights)]))
    }
    if format == .matmulnbits && !replaced.isEmpty && !model.opsetImports.contains(where: { $0.domain == "com.microsoft" }) {
      model.opsetImports.append(OpsetImport(domain: "com.microsoft", version: 1))
    }
    return PassResult(pass: Self.name, changes: changes)
  }

  /// Fewer calibration rows than inputs: H is singular but for the damping, and GPTQ fits those rows.
  private static func fewRows(_ rows: Int, _ k: Int) -> String {
    "; only \(rows) calibration rows for \(k) inputs: GPTQ may fit them rather than the data (give more samples)"
  }

  /// A weight's int4 blocks as decided before it is written, with what its report row says of them.
  private struct Rounded {
    var blocks: Int4Blocks
    var method: String
    var errors: [String: Double]
  }

  /// One way of rounding a weight, measured in the unscaled space.
  private struct Candidate {
    var name: String
    /// Its report key: outputError<key>.
    var key: String
    var blocks: Int4Blocks
    var energy: Double
    /// Needs the activation divided by the AWQ scales.
    var scaled: Bool
  }

  /// Each weight of a group rounded every way asked for: round-to-nearest and, with α > 0, AWQ's
  /// scales; with GPTQ also GPTQ, and GPTQ of the scaled problem (diag(s)·W against the Hessian
  /// of x/s, D⁻¹HD⁻¹). Every error is measured against the unscaled W and H.
  private func measure(_ weights: [ActivationAwareScales.Weight], _ choice: ActivationAwareScales.Choice,
                       hessian h: [Double], k: Int) -> [[Candidate]] {
    let s = choice.scales, searched = choice.alpha > 0
    let awqName = String(format: "AWQ α %.2f", choice.alpha)
    let ones = [Float](repeating: 1, count: k)
    let scaledHessian = gptq && searched ? ActivationAwareScales.scaledHessian(h, by: s) : []
    return weights.enumerated().map { i, w in
      var c = [Candidate(name: "round-to-nearest", key: "RTN", blocks: choice.rtn[i], energy: choice.rtnEnergy[i], scaled: false)]
      if searched { c.append(Candidate(name: awqName, key: "AWQ", blocks: choice.scaled[i], energy: choice.scaledEnergy[i], scaled: true)) }
      if gptq, let q = Int4Blocks.gptq(w.values, hessian: h, k: k, n: w.n, blockSize: blockSize) {
        let energy = ActivationAwareScales.errorEnergy(w.values, q, scales: ones, hessian: h, k: k, n: w.n, blockSize: blockSize)
        c.append(Candidate(name: "GPTQ", key: "GPTQ", blocks: q, energy: energy, scaled: false))
      }
      if gptq && searched, let q = Int4Blocks.gptq(ActivationAwareScales.scaled(w.values, by: s, n: w.n), hessian: scaledHessian,
                                                   k: k, n: w.n, blockSize: blockSize) {
        let energy = ActivationAwareScales.errorEnergy(w.values, q, scales: s, hessian: h, k: k, n: w.n, blockSize: blockSize)
        c.append(Candidate(name: awqName + " + GPTQ", key: "AWQGPTQ", blocks: q, energy: energy, scaled: true))
      }
      return c
    }
  }

  /// AWQ for each activation the 4-bit MatMuls read: the grid's best scales (`ActivationAwareScales`)
  /// are applied — weight rows × s, 1/s into the producer or a Mul — only when they beat the
  /// unscaled weights over all the readers (with GPTQ, each weight rounded the better way on
  /// either side). The scales are the activation's, so the choice is per group; each weight then
  /// keeps its best rounding on the chosen side. Returns the report rows and every measured
  /// weight's blocks.
  private func scaleActivations(_ model: inout Model, hessians: [String: (hessian: [Double], rows: Int)],
                                names: inout NameScope) throws -> (changes: [PassResult.Change], rounded: [String: Rounded]) {
    let graph = model.graph
    var scaling = ActivationScaling(graph)
    var changes = [PassResult.Change]()
    var rounded = [String: Rounded]()
    var sums = [String: (total: Double, weights: Int)]()  // per report key, over the weights that have it
    var (weightCount, groupCount, scaledCount) = (0, 0, 0)
    for g in ActivationScaling.groups(in: graph, accepts: isCandidate) {
      let readers = g.readers.map { label(graph.nodes[$0.node]) }.joined(separator: ", ")
      guard let (h, rows) = hessians[g.value] else {
        changes.append(.init(target: g.value, action: "skipped",
                             detail: "AWQ for \(readers): no usable calibration inputs (not float, or another width)"))
        continue
      }
      let weights = try ActivationScaling.weights(of: g, in: graph)
      // A non-finite weight is refused by name when it is written.
      guard weights.allSatisfy({ $0.values.allSatisfy(\.isFinite) }) else { continue }
      let k = g.inputs
      let problem = weights.map { ActivationAwareScales.Weight(values: $0.values, n: $0.values.count / k) }
      guard let choice = ActivationAwareScales.search(problem, hessian: h, rows: rows, k: k, blockSize: blockSize) else {
        changes.append(.init(target: g.value, action: "skipped",
                             detail: "AWQ for \(readers): their outputs are zero on the calibration data"))
        continue
      }
      let searched = choice.alpha > 0
      let candidates = measure(problem, choice, hessian: h, k: k)
      func best(_ c: [Candidate], scaled: Bool) -> Candidate? { c.filter { $0.scaled == scaled }.min { $0.energy < $1.energy } }
      let unscaledBest = candidates.compactMap { best($0, scaled: false) }
      let scaledBest = candidates.compactMap { best($0, scaled: true) }
      let apply = scaledBest.count == candidates.count
        && scaledBest.map(\.energy).reduce(0, +) < unscaledBest.map(\.energy).reduce(0, +)
      let kept = apply ? scaledBest : unscaledBest
      // Each weight's and the group's errors relative to their outputs; AWQ at α 0 is round-to-nearest.
      func relative(_ energy: Double, _ i: Int) -> Double { choice.weightEnergy[i] > 0 ? energy / choice.weightEnergy[i] : 0 }
      var groupEnergy = [String: Double]()
      for (i, c) in candidates.enumerated() {
        var errors = [String: Double]()
        for x in c { errors["outputError" + x.key] = relative(x.energy, i) }
        if !searched { errors["outputErrorAWQ"] = errors["outputErrorRTN"] }
        if !searched, let q = errors["outputErrorGPTQ"] { errors["outputErrorAWQGPTQ"] = q }
        errors["outputErrorKept"] = relative(kept[i].energy, i)
        let others = c.filter { $0.key != kept[i].key }.map { String(format: "%@ %.3g", $0.name, relative($0.energy, i)) }
        var method = String(format: "; %@: output error %.3g", kept[i].name, relative(kept[i].energy, i))
        if !others.isEmpty { method += " (\(others.joined(separator: ", ")))" }
        if !searched { method += "; no AWQ scales beat round-to-nearest on '\(g.value)'" }
        if searched && !apply { method += "; the AWQ scales of '\(g.value)' do worse over its readers and were not applied" }
        if gptq && rows < k { method += Self.fewRows(rows, k) }
        rounded[weights[i].name] = Rounded(blocks: kept[i].blocks, method: method, errors: errors)
        for (key, e) in errors { sums[key, default: (0, 0)].total += e; sums[key, default: (0, 0)].weights += 1 }
        for x in c { groupEnergy[x.key, default: 0] += x.energy }
        groupEnergy["Kept", default: 0] += kept[i].energy
      }
      weightCount += weights.count
      groupCount += 1
      let total = choice.weightEnergy.reduce(0, +)
      var values = ["alpha": choice.alpha, "channels": Double(k), "applied": apply ? 1 : 0]
      for (key, e) in groupEnergy where candidates.allSatisfy({ c in key == "Kept" || c.contains { $0.key == key } }) {
        values["outputError" + key] = e / total
      }
      if !searched { values["outputErrorAWQ"] = values["outputErrorRTN"] }
      if !searched, let q = values["outputErrorGPTQ"] { values["outputErrorAWQGPTQ"] = q }
      var detail = String(format: "α %.2f for %@: output error %.3g with round-to-nearest, %.3g with AWQ", choice.alpha, readers,
                          values["outputErrorRTN"] ?? 0, values["outputErrorAWQ"] ?? 0)
      if let q = values["outputErrorGPTQ"] { detail += String(format: ", %.3g with GPTQ", q) }
      if let q = values["outputErrorAWQGPTQ"], searched { detail += String(format: ", %.3g with AWQ + GPTQ", q) }
      if apply {
        let placement = scaling.scale(g, weights: weights, by: choice.scales, names: &names, naming: ("awq", "awq_scaled"))
        values["folded"] = placement == .mul ? 0 : 1
        scaledCount += 1
        detail += String(format: "; scales applied (%@), output error %.3g", placement.description, values["outputErrorKept"] ?? 0)
      } else {
        detail += searched ? "; scales not applied: the unscaled weights do better" : "; no α beat round-to-nearest: unchanged"
      }
      changes.append(.init(target: g.value, action: "awq", detail: detail, values: values))
    }
    scaling.apply(to: &model)
    if weightCount > 0 {
      var values = ["weights": Double(weightCount), "activations": Double(groupCount), "activationsScaled": Double(scaledCount)]
      for (key, sum) in sums { values["mean" + key.prefix(1).uppercased() + key.dropFirst()] = sum.total / Double(sum.weights) }
      var detail = String(format: "mean output error over %d weights: %.4g kept, %.4g with round-to-nearest, %.4g with AWQ",
                          weightCount, values["meanOutputErrorKept"] ?? 0, values["meanOutputErrorRTN"] ?? 0, values["meanOutputErrorAWQ"] ?? 0)
      if let q = values["meanOutputErrorGPTQ"], let aq = values["meanOutputErrorAWQGPTQ"] {
        detail += String(format: ", %.4g with GPTQ, %.4g with AWQ + GPTQ", q, aq)
      }
      detail += "; scales applied on \(scaledCount) of \(groupCount) activations"
      changes.append(.init(target: "model", action: "awq-total", detail: detail, values: values))
    }
    return (changes, rounded)
  }

  private func packNibbles(_ nibbles: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: (nibbles.count + 1) / 2)
    for (i, v) in nibbles.enumerated() { out[i / 2] |= i % 2 == 0 ? v : v << 4 }
    return out
  }
}
