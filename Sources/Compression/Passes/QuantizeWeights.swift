import Foundation
import IR
import Runtime
import Support

/// Weight-only quantization: every float weight of MatMul, Gemm, Conv, ConvTranspose and Gather
/// (embeddings) is stored as int8 with one scale per output channel (symmetric, zero point 0),
/// followed by a DequantizeLinear that gives back a float tensor under the weight's old name,
/// so compute stays float and every consumer is unchanged. Per-channel needs opset 13; older
/// models get one scale per tensor (opset 10–12) or are left alone (before 10), with the reason
/// in the report. A channel of zeros gets scale 1, so every scale is finite and positive.
public struct QuantizeWeights: Pass {
  public static let name = "quantize-weights"
  /// Smaller tensors (biases, norms) stay float: their bytes do not matter, their precision does.
  public var minimumElements: Int
  public init(minimumElements: Int = 256) { self.minimumElements = minimumElements }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    let opset = model.defaultOpsetVersion ?? 1
    // Which input of which op is a weight, and the axis of its output channels.
    func weightAxis(_ n: Node, _ input: Int, rank: Int) -> Int? {
      switch (n.opType, input) {
      case ("Conv", 1): return 0
      case ("ConvTranspose", 1): return 1
      case ("Gemm", 1): return (n.attribute("transB")?.int ?? 0) != 0 ? 0 : 1
      case ("MatMul", 1): return rank >= 2 ? rank - 1 : nil
      case ("Gather", 0): return (n.attribute("axis")?.int ?? 0) == 0 ? 0 : nil
      default: return nil
      }
    }
    var weights = [String: (axis: Int, reader: String)]()
    var conflicting = Set<String>()
    let ranks = Dictionary(model.graph.initializers.map { ($0.name, $0.dims.count) }, uniquingKeysWith: { a, _ in a })
    let weightInput = ["Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "Gather": 0]
    var dequantized = Set<String>()
    model.graph.forEachGraph { g in for n in g.nodes where n.opType == "DequantizeLinear" { dequantized.formUnion(n.outputs) } }
    // Readers anywhere, subgraphs included: If/Loop bodies read the main graph's weights.
    model.graph.forEachGraph { g in
      for n in g.nodes where n.isDefaultDomain {
        guard let wi = weightInput[n.opType], wi < n.inputs.count else { continue }
        let name = n.inputs[wi]
        guard let rank = ranks[name] else {
          if n.opType != "Gather" {
            let why = dequantized.contains(name) ? "its weight '\(name)' was quantized by an earlier pass"
              : "its weight input '\(name)' is computed, not an initializer"
            changes.append(.init(target: label(n), action: "skipped", detail: why))
          }
          continue
        }
        if let axis = weightAxis(n, wi, rank: rank) {
          if let seen = weights[name], seen.axis != axis { conflicting.insert(name) }
          weights[name] = (axis, label(n))
        } else {
          changes.append(.init(target: label(n), action: "skipped", detail: "\(n.opType) along this axis has no per-channel layout"))
        }
      }
    }
    var newNodes = [Node]()
    for (index, t) in model.graph.initializers.enumerated() {
      guard let (axis, reader) = weights[t.name] else { continue }
      func skip(_ why: String) { changes.append(.init(target: t.name, action: "skipped", detail: why)) }
      if t.dataType != .float { skip("\(t.dataType), not float"); continue }
      if t.elementCount < minimumElements { skip("\(t.elementCount) elements, fewer than \(minimumElements)"); continue }
      if conflicting.contains(t.name) { skip("read as a weight along different axes"); continue }
      if opset < 10 { skip("opset \(opset) has no DequantizeLinear (needs 10)"); continue }
      let perChannel = opset >= 13
      let values = try NDArray(t).floats()
      if let bad = values.firstIndex(where: { !$0.isFinite }) {
        throw CompressorError.invalid("weight '\(t.name)' holds \(values[bad]) at element \(bad); compressor will not quantize it")
      }
      let dims = t.dims.map { Int($0) }
      let channels = perChannel ? dims[axis] : 1
      let inner = perChannel ? dims[(axis + 1)...].reduce(1, *) : values.count
      var scales = [Float](repeating: 0, count: channels)
      for (i, v) in values.enumerated() {
        let c = perChannel ? (i / inner) % channels : 0
        scales[c] = max(scales[c], abs(v))
      }
      var zeroChannels = 0
      for c in 0..<channels {
        if scales[c] == 0 { scales[c] = 1; zeroChannels += 1 } else { scales[c] /= 127 }
      }
      var q = [Int8](repeating: 0, count: values.count)
      var signal = 0.0, noise = 0.0
      for (i, v) in values.enumerated() {
        let s = scales[perChannel ? (i / inner) % channels : 0]
        let r = (v / s).rounded(.toNearestOrEven)
        q[i] = Int8(max(-127, min(127, r)))
        let back = Float(q[i]) * s
        signal += Double(v) * Double(v)
        noise += Double(v - back) * Double(v - back)
      }
      let qName = "\(t.name).int8", sName = "\(t.name).scale"
      model.graph.initializers[index] = Tensor(name: qName, dataType: .int8, dims: t.dims,
                                               data: ByteBuffer(copying: q.withUnsafeBytes { Array($0) }))
      model.graph.initializers.append(Tensor(name: sName, dataType: .float, dims: perChannel ? [Int64(channels)] : [],
                                             data: ByteBuffer(copying: scales.withUnsafeBytes { Array($0) })))
      var attributes = [Attribute]()
      if perChannel { attributes.append(Attribute(name: "axis", value: .int(Int64(axis)))) }
      newNodes.append(Node(name: "\(t.name).dequantize", opType: "DequantizeLinear", inputs: [qName, sName],
                           outputs: [t.name], attributes: attributes))
      let sqnr = noise == 0 ? "inf" : String(format: "%.1f", 10 * log10(signal / noise))
      var detail = "int8 \(perChannel ? "per-channel (axis \(axis), \(channels) scales)" : "per-tensor (opset \(opset))") for \(reader); SQNR \(sqnr) dB"
      if zeroChannels > 0 { detail += "; \(zeroChannels) all-zero channel(s) given scale 1" }
      changes.append(.init(target: t.name, action: "quantized", detail: detail))
    }
    model.graph.nodes.insert(contentsOf: newNodes, at: 0)
    if newNodes.isEmpty == false && model.irVersion < 4 {
      // IR 3 lists initializers as graph inputs; the quantized names replace the float ones.
      let replaced = Set(newNodes.map { $0.outputs[0] })
      model.graph.inputs.removeAll { replaced.contains($0.name) }
    }
    return PassResult(pass: Self.name, changes: changes)
  }
}
