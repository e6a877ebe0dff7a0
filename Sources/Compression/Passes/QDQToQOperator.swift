import IR
import Support

/// Rewrites the QDQ groups quantize-static writes into ONNX's integer operators: DequantizeLinear
/// inputs → Conv / MatMul → QuantizeLinear becomes one QLinearConv / QLinearMatMul reading and
/// writing the quantized tensors directly (a Relu between the node and its QuantizeLinear is
/// dropped when the zero point already clamps at 0). The DequantizeLinear nodes left unread
/// are removed by the dead-code pass that follows. Gemm has no standard integer operator and
/// stays in QDQ form, as does any group that does not match exactly (each with the reason).
public struct QDQToQOperator: Pass {
  public static let name = "qdq-to-qoperator"
  public init() {}

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    let g = model.graph
    var producer = [String: Int]()
    for (i, n) in g.nodes.enumerated() { for o in n.outputs { producer[o] = i } }
    var readers = [String: [Int]]()
    for (i, n) in g.nodes.enumerated() { for x in Set(n.inputs) where !x.isEmpty { readers[x, default: []].append(i) } }
    var uses = g.uses()
    for o in g.outputs { uses[o.name, default: 0] += 1 }
    var initializers = [String: Tensor]()
    for t in g.initializers { initializers[t.name] = t }
    var replaced = [Int: Node]()
    var dropped = Set<Int>()
    var added = [Tensor]()
    var names = NameScope(model)
    var zeroPoints = [String: String]()  // weight → the zero point made for it

    func dequantizer(_ name: String) -> Node? {
      // ONNX Runtime's com.microsoft pair too (16-bit activations), so its refusal is reported.
      guard let p = producer[name], g.nodes[p].opType == "DequantizeLinear",
            g.nodes[p].isDefaultDomain || g.nodes[p].domain == "com.microsoft" else { return nil }
      return g.nodes[p]
    }
    func zeroPointIsFloor(_ name: String) -> Bool {
      guard let t = initializers[name], t.elementCount == 1 else { return false }
      let byte = t.data.withUnsafeBytes { $0.first ?? 1 }
      return t.dataType == .uint8 ? byte == 0 : (t.dataType == .int8 && byte == 0x80)
    }

    for (i, n) in g.nodes.enumerated() where n.isDefaultDomain && (n.opType == "Conv" || n.opType == "MatMul") {
      func skip(_ why: String) { changes.append(.init(target: label(n), action: "skipped", detail: why)) }
      guard n.inputs.count >= 2, n.outputs.count == 1, let dx = dequantizer(n.inputs[0]), dx.inputs.count == 3 else { continue }
      guard let dw = dequantizer(n.inputs[1]), dw.inputs.count >= 2 else { skip("its second input is not dequantized"); continue }
      // The output's single reader is a QuantizeLinear, or a Relu whose single reader is.
      var out = n.outputs[0], relu: Int?
      guard uses[out] == 1, let r = readers[out]?.first else { skip("its output has several readers"); continue }
      if g.nodes[r].opType == "Relu" {
        relu = r
        out = g.nodes[r].outputs[0]
        guard uses[out] == 1, readers[out]?.first != nil else { skip("its Relu's output has several readers"); continue }
      }
      guard let qi = readers[out]?.first, g.nodes[qi].opType == "QuantizeLinear", g.nodes[qi].inputs.count == 3 else {
        skip("its output is not quantized"); continue
      }
      let q = g.nodes[qi]
      // QLinearConv and QLinearMatMul take 8-bit activations only.
      let eightBit: Set<DataType> = [.uint8, .int8]
      guard [dx.inputs[2], q.inputs[2]].allSatisfy({ initializers[$0].map { eightBit.contains($0.dataType) } ?? false }) else {
        skip("its activations are not 8-bit (QLinear operators take 8-bit activations only)"); continue
      }
      if relu != nil && !zeroPointIsFloor(q.inputs[2]) { skip("a Relu follows and the output zero point does not clamp at 0"); continue }
      var wZero = dw.inputs.count > 2 ? dw.inputs[2] : ""
      if wZero.isEmpty {
        guard let w = initializers[dw.inputs[0]], let s = initializers[dw.inputs[1]] else { skip("its weight is computed"); continue }
        if let made = zeroPoints[dw.inputs[0]] {
          wZero = made
        } else {
          wZero = names.fresh("\(dw.inputs[0]).zero_point")
          zeroPoints[dw.inputs[0]] = wZero
          let zeros = Tensor(name: wZero, dataType: w.dataType, dims: s.dims, data: ByteBuffer(copying: [UInt8](repeating: 0, count: s.elementCount)))
          initializers[wZero] = zeros
          added.append(zeros)
        }
      }
      var inputs = [dx.inputs[0], dx.inputs[1], dx.inputs[2], dw.inputs[0], dw.inputs[1], wZero, q.inputs[1], q.inputs[2]]
      let op = n.opType == "Conv" ? "QLinearConv" : "QLinearMatMul"
      if n.opType == "Conv", n.inputs.count > 2, !n.inputs[2].isEmpty {
        guard let db = dequantizer(n.inputs[2]), let b = initializers[db.inputs[0]], b.dataType == .int32 else {
          skip("its bias is not int32"); continue
        }
        inputs.append(b.name)
      }
      var fused = Node(name: n.name, opType: op, inputs: inputs, outputs: q.outputs)
      if n.opType == "Conv" { fused.attributes = n.attributes }
      replaced[i] = fused
      dropped.insert(qi)
      if let relu { dropped.insert(relu) }
      changes.append(.init(target: label(n), action: "converted", detail: "\(op)\(relu != nil ? " (Relu absorbed by the zero point)" : "")"))
    }
    for n in g.nodes where n.isDefaultDomain && n.opType == "Gemm" && n.inputs.first.flatMap(dequantizer) != nil {
      changes.append(.init(target: label(n), action: "skipped", detail: "ONNX has no integer Gemm; kept in QDQ form"))
    }
    model.graph.nodes = g.nodes.enumerated().compactMap { i, n in dropped.contains(i) ? nil : (replaced[i] ?? n) }
    model.graph.initializers += added
    return PassResult(pass: Self.name, changes: changes)
  }
}
