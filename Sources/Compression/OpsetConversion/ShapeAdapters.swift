import IR
import Support

/// Operators that read shapes, axes or index ranges from attributes in their older opsets and
/// from inputs in the newer ones (so that they may be computed): the values are the same, moved
/// to 1-D int64 constants.
enum ShapeAdapters {
  static let table: [String: [Int64: OpsetAdapter]] = [
    "Squeeze": [13: axesToInput],
    "Unsqueeze": [13: requiredAxesToInput],
    "Split": [13: splitToInput, 18: splitCountExplicit],
    "Slice": [10: sliceBoundsToInputs],
    "Pad": [11: padsToInputs],
  ]

  /// Squeeze: `axes` → input 1; without axes every dimension of size 1 goes, in both forms.
  static let axesToInput = OpsetAdapter.rewrite("axes attribute → input") { node, ctx in
    try ctx.moveIntegersToInput(&node, attribute: "axes", input: 1)
  }

  static let requiredAxesToInput = OpsetAdapter.rewrite("axes attribute → input") { node, ctx in
    guard try ctx.moveIntegersToInput(&node, attribute: "axes", input: 1) else {
      throw CompressorError.invalid("\(node.displayName) has no axes attribute, which Unsqueeze requires before opset 13")
    }
  }

  /// Split: `split` sizes → input 1; without them the split is into equal parts, in both forms.
  static let splitToInput = OpsetAdapter.rewrite("split attribute → input") { node, ctx in
    try ctx.moveIntegersToInput(&node, attribute: "split", input: 1)
  }

  /// From 18 a Split without sizes must say how many parts it makes (`num_outputs`); the count
  /// is its number of outputs. (18 also allows a smaller last part, which a valid 13 node never has.)
  static let splitCountExplicit = OpsetAdapter.rewrite("num_outputs set when no split sizes are given") { node, ctx in
    let hasSizes = node.inputs.count > 1 && !node.inputs[1].isEmpty
    if !hasSizes && node.attribute("num_outputs") == nil {
      node.setAttribute("num_outputs", .int(Int64(node.outputs.count)))
    }
  }

  /// Slice: `starts`, `ends` and `axes` → inputs 1, 2, 3 (steps stay 1: the old form has none).
  static let sliceBoundsToInputs = OpsetAdapter.rewrite("starts/ends/axes attributes → inputs") { node, ctx in
    guard node.attribute("starts") != nil, node.attribute("ends") != nil else {
      throw CompressorError.invalid("\(node.displayName) lacks starts or ends, which Slice requires before opset 10")
    }
    try ctx.moveIntegersToInput(&node, attribute: "starts", input: 1)
    try ctx.moveIntegersToInput(&node, attribute: "ends", input: 2)
    try ctx.moveIntegersToInput(&node, attribute: "axes", input: 3)
  }

  /// Pad: `pads` → input 1; the fill `value` of constant mode → input 2 with the data's element
  /// type, left out when it is 0 (the default of both forms). Other modes ignore the value.
  static let padsToInputs = OpsetAdapter.rewrite("pads/value attributes → inputs") { node, ctx in
    guard let x = node.inputs.first, !x.isEmpty else { throw CompressorError.invalid("\(node.displayName) has no input") }
    guard try ctx.moveIntegersToInput(&node, attribute: "pads", input: 1) else {
      throw CompressorError.invalid("\(node.displayName) has no pads attribute, which Pad requires before opset 11")
    }
    let mode = try ctx.attributeValue(node, "mode")?.string ?? "constant"
    if let value = try ctx.attributeValue(node, "value")?.float {
      node.removeAttribute("value")
      if mode == "constant" && value.bitPattern != 0 {
        node.setInput(2, try ctx.scalar(Double(value), like: x, for: node, "value"))
      }
    }
  }
}
