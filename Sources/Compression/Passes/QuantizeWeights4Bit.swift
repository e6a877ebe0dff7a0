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
  public init(blockSize: Int, format: Format?, filter: NodeFilter = .init()) {
    self.blockSize = blockSize; self.format = format; self.filter = filter
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
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
    var names = NameScope(model)
    for n in model.graph.nodes {
      guard n.isDefaultDomain, ["MatMul", "Gemm", "Conv", "ConvTranspose", "Gather"].contains(n.opType) else { nodes.append(n); continue }
      func skip(_ why: String) { changes.append(.init(target: label(n), action: "skipped", detail: why)); nodes.append(n) }
      if let why = filter.refusal(n) { skip(why); continue }
      guard n.opType == "MatMul" else { skip("4-bit applies to MatMul weights; \(n.opType) is left to the int8 pass"); continue }
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
      var scales = [Float](repeating: 1, count: blocks * cols)  // [blocks, N] for qdq; [N, blocks] for nbits
      var q = [Int8](repeating: 0, count: k * cols)            // row-major [K, N]
      var signal = 0.0, noise = 0.0
      for col in 0..<cols {
        for b in 0..<blocks {
          let rows = (b * blockSize)..<min(k, (b + 1) * blockSize)
          var m: Float = 0
          for r in rows { m = max(m, abs(values[r * cols + col])) }
          let s = m == 0 ? 1 : m / 7
          scales[format == .qdq ? b * cols + col : col * blocks + b] = s
          for r in rows {
            let v = values[r * cols + col]
            let qv = Int8(max(-7, min(7, (v / s).rounded(.toNearestOrEven))))
            q[r * cols + col] = qv
            signal += Double(v * v)
            noise += Double((v - Float(qv) * s) * (v - Float(qv) * s))
          }
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
                           detail: "int4, blocks of \(blockSize) along K (\(blocks)×\(cols) scales), \(format.rawValue), for \(label(n)); SQNR \(sqnr) dB"))
    }
    model.graph.nodes = nodes
    model.graph.initializers += added
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
