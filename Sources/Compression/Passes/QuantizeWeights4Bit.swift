import Datasets
import Foundation
import IR
import Runtime
import Support

/// 4-bit weights for MatMul: each column of W [K, N] is cut into blocks of `blockSize` rows with
/// one symmetric scale per block (values −7…7). Written either as ONNX Runtime's com.microsoft
/// MatMulNBits (any opset; B packed [N, blocks, blockSize/2], zero point 8) or as a standard
/// blocked int4 DequantizeLinear (opset 21 and later) in front of the unchanged MatMul. Without a
/// chosen format, QDQ where the model's opset has it (21), else MatMulNBits.
public struct QuantizeWeights4Bit: Pass {
  public static let name = "quantize-weights-4bit"
  public enum Format: String, Sendable { case qdq, matmulnbits }
  public var blockSize: Int
  public var format: Format?
  public var filter: NodeFilter
  /// GPTQ instead of round-to-nearest, with Hessians from these calibration samples.
  public var gptq: GPTQData?
  public struct GPTQData: Sendable {
    public var data: String
    public var maxSamples: Int?
    public var threads: Int
    public init(data: String, maxSamples: Int?, threads: Int) { self.data = data; self.maxSamples = maxSamples; self.threads = threads }
  }
  public init(blockSize: Int, format: Format?, filter: NodeFilter = .init(), gptq: GPTQData? = nil) {
    self.blockSize = blockSize; self.format = format; self.filter = filter; self.gptq = gptq
  }

  /// The Hessians of the activations that eligible MatMuls read, when GPTQ is asked for.
  private func hessians(_ model: Model) throws -> [String: (hessian: [Double], rows: Int)] {
    guard let gptq else { return [:] }
    var index = [String: Tensor]()
    for t in model.graph.initializers { index[t.name] = t }
    var widths = [String: Int]()
    for n in model.graph.nodes where n.isDefaultDomain && n.opType == "MatMul" && n.inputs.count == 2 && filter.refusal(n) == nil {
      guard let w = index[n.inputs[1]], w.dataType == .float, w.dims.count == 2, Int(w.dims[0]) >= blockSize else { continue }
      widths[n.inputs[0]] = Int(w.dims[0])
    }
    let dataset = try Dataset(path: gptq.data, inputNames: model.graph.feedNames)
    return try LayerHessians.collect(model: model, widths: widths, data: dataset, maxSamples: gptq.maxSamples, threads: gptq.threads)
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
    let uses = model.graph.uses()
    var index = [String: Int]()
    for (i, t) in model.graph.initializers.enumerated() { index[t.name] = i }
    var nodes = [Node]()
    var added = [Tensor]()
    var replaced = Set<String>()
    let hessians = try self.hessians(model)
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
      if gptq != nil {
        // GPTQ where it measures better than round-to-nearest on the layer's own inputs.
        if let (h, rows) = hessians[n.inputs[0]], let g = Int4Blocks.gptq(values, hessian: h, k: k, n: cols, blockSize: blockSize) {
          let rtn = Int4Blocks.outputError(values, chosen.values(k: k, n: cols, blockSize: blockSize), hessian: h, k: k, n: cols)
          let better = Int4Blocks.outputError(values, g.values(k: k, n: cols, blockSize: blockSize), hessian: h, k: k, n: cols)
          errors = ["outputErrorRTN": rtn, "outputErrorGPTQ": better]
          totals.rtn += rtn; totals.gptq += min(better, rtn); totals.weights += 1
          if better <= rtn { chosen = g }
          method = String(format: better <= rtn ? "; GPTQ: output error %.3g (round-to-nearest %.3g)" : "; round-to-nearest kept: output error %.3g (GPTQ %.3g)",
                          min(better, rtn), max(better, rtn))
          // Fewer rows than inputs: H is singular but for the damping, and GPTQ fits those rows.
          if rows < k { method += "; only \(rows) calibration rows for \(k) inputs: GPTQ may fit them rather than the data (give more samples)" }
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
    if gptq != nil && totals.weights > 0 {
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

  private func packNibbles(_ nibbles: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: (nibbles.count + 1) / 2)
    for (i, v) in nibbles.enumerated() { out[i / 2] |= i % 2 == 0 ? v : v << 4 }
    return out
  }
}
