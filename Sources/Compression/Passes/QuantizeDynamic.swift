import Foundation
import IR
import Runtime
import Support

/// Dynamic quantization, as ONNX Runtime's quantize_dynamic writes it: weights stored as
/// symmetric int8 per output channel, activations quantized at run time to uint8 by
/// DynamicQuantizeLinear (one per activation, shared by its readers), products in int32 by
/// MatMulInteger / ConvInteger, then Cast and one Mul by (activation scale × weight scales) give
/// the float output under its old name (plus the bias). MatMul with a 2-D weight, Gemm without
/// transA/alpha/beta (a transB weight is stored transposed) and Conv are rewritten; everything
/// else, and weights other nodes also read, is left to the int8 weight-only pass that follows.
public struct QuantizeDynamic: Pass {
  public static let name = "quantize-dynamic"
  public var filter: NodeFilter
  public init(filter: NodeFilter = .init()) { self.filter = filter }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    let opset = model.defaultOpsetVersion ?? 1
    var initializers = [String: Tensor]()
    for t in model.graph.initializers { initializers[t.name] = t }
    let uses = model.graph.uses()
    var nodes = [Node]()
    var added = [Tensor]()
    var removed = Set<String>()
    var names = NameScope(model)
    /// Per activation: its DynamicQuantizeLinear's outputs (uint8 values, scale, zero point).
    var quantizedActivations = [String: (values: String, scale: String, zeroPoint: String)]()
    for g in model.graph.nestedGraphs {
      for n in g.nodes where n.isDefaultDomain && ["MatMul", "Gemm", "Conv"].contains(n.opType) {
        changes.append(.init(target: label(n), action: "skipped", detail: "inside a subgraph: its weight is left to the weight-only pass"))
      }
    }
    for n in model.graph.nodes {
      guard n.isDefaultDomain, ["MatMul", "Gemm", "Conv"].contains(n.opType) else { nodes.append(n); continue }
      func skip(_ why: String) { changes.append(.init(target: label(n), action: "skipped", detail: why)); nodes.append(n) }
      if let why = filter.refusal(n) { skip(why); continue }
      guard opset >= 11 else { skip("opset \(opset) has no DynamicQuantizeLinear (needs 11)"); continue }
      guard n.inputs.count >= 2, n.outputs.count == 1, initializers[n.inputs[0]] == nil,
            var w = initializers[n.inputs[1]] else { skip("its weight is computed, not an initializer"); continue }
      guard w.dataType == .float else { skip("weight '\(w.name)' is \(w.dataType), not float"); continue }
      guard uses[w.name] == 1 else { skip("weight '\(w.name)' has other readers"); continue }
      if w.elementCount < 256 { skip("weight '\(w.name)' has \(w.elementCount) elements, fewer than 256"); continue }
      var bias: Tensor?
      var conv = false
      switch n.opType {
      case "MatMul":
        guard w.dims.count == 2 else { skip("weight '\(w.name)' is not a 2-D matrix"); continue }
      case "Gemm":
        guard w.dims.count == 2 else { skip("weight '\(w.name)' is not a 2-D matrix"); continue }
        let transA = n.attribute("transA")?.int ?? 0, alpha = n.attribute("alpha")?.float ?? 1, beta = n.attribute("beta")?.float ?? 1
        guard transA == 0, alpha == 1, beta == 1 || n.inputs.count < 3 else { skip("Gemm with transA, alpha or beta has no integer form"); continue }
        if n.inputs.count > 2, !n.inputs[2].isEmpty {
          guard let c = initializers[n.inputs[2]], c.dataType == .float else { skip("its bias is computed, not an initializer"); continue }
          bias = c
        }
        if (n.attribute("transB")?.int ?? 0) != 0 {
          // W [N, K] → [K, N], MatMulInteger's layout.
          let rows = Int(w.dims[0]), cols = Int(w.dims[1])
          w = NDArray(TensorEdits.transposed(try NDArray(w).floats(), rows: rows, cols: cols), shape: [cols, rows]).irTensor(name: w.name)
        }
      default:
        conv = true
        guard w.dims.count >= 3 else { skip("weight '\(w.name)' is not a convolution kernel"); continue }
        if n.inputs.count > 2, !n.inputs[2].isEmpty {
          guard let c = initializers[n.inputs[2]], c.dataType == .float else { skip("its bias is computed, not an initializer"); continue }
          bias = c
        }
      }
      let x = n.inputs[0], y = n.outputs[0]
      let q = try QuantizedWeight(w, axis: conv ? 0 : 1, symmetric: true,
                                  names: (names.fresh("\(w.name).int8"), names.fresh("\(w.name).scale"),
                                          names.fresh("\(w.name).zero_point")))
      let channels = q.scales.count
      var scale = q.scale
      if conv { scale.dims = [1, Int64(channels)] + Array(repeating: 1, count: w.dims.count - 2) }
      added += [q.values, scale]
      removed.insert(w.name)
      let xq: (values: String, scale: String, zeroPoint: String)
      if let known = quantizedActivations[x] {
        xq = known
      } else {
        xq = (names.fresh("\(x).quantized"), names.fresh("\(x).scale"), names.fresh("\(x).zero_point"))
        quantizedActivations[x] = xq
        nodes.append(Node(name: names.fresh("\(x).dynamic_quantize"), opType: "DynamicQuantizeLinear", inputs: [x],
                          outputs: [xq.values, xq.scale, xq.zeroPoint]))
      }
      let yInt32 = names.fresh("\(y).int32"), yFloat = names.fresh("\(y).float"), yScale = names.fresh("\(y).scale")
      var integer = Node(name: label(n), opType: conv ? "ConvInteger" : "MatMulInteger",
                         inputs: [xq.values, q.values.name, xq.zeroPoint], outputs: [yInt32])
      if conv { integer.attributes = n.attributes.filter { ["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"].contains($0.name) } }
      let product = bias == nil ? y : names.fresh("\(y).unbiased")
      nodes += [integer,
                Node(name: names.fresh("\(y).cast"), opType: "Cast", inputs: [yInt32], outputs: [yFloat],
                     attributes: [Attribute(name: "to", value: .int(Int64(DataType.float.rawValue)))]),
                Node(name: names.fresh("\(y).rescale"), opType: "Mul", inputs: [xq.scale, scale.name], outputs: [yScale]),
                Node(name: names.fresh("\(y).dequantize"), opType: "Mul", inputs: [yFloat, yScale], outputs: [product])]
      if let b = bias {
        var shaped = b
        if conv {
          shaped.name = names.fresh("\(b.name).channels")
          shaped.dims = [1, b.dims.first ?? 1] + Array(repeating: 1, count: w.dims.count - 2)
          added.append(shaped)
        }
        nodes.append(Node(name: names.fresh("\(y).bias"), opType: "Add", inputs: [product, shaped.name], outputs: [y]))
      }
      var detail = "\(conv ? "ConvInteger" : "MatMulInteger"): activation uint8 at run time, weight \(q.scheme) SQNR \(q.sqnrText) dB"
      if q.zeroChannels > 0 { detail += "; \(q.zeroChannels) all-zero channel(s) given scale 1" }
      changes.append(.init(target: label(n), action: "quantized", detail: detail, values: q.metrics))
    }
    model.graph.nodes = nodes
    model.graph.initializers.removeAll { removed.contains($0.name) }
    model.graph.initializers += added
    model.graph.inputs.removeAll { removed.contains($0.name) }
    return PassResult(pass: Self.name, changes: changes)
  }
}
