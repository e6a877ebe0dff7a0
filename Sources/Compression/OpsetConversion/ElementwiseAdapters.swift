import IR
import Support

/// Element-wise operators: Clip's bounds became inputs at 11; Erf (13) and ReduceLogSum /
/// ReduceLogSumExp (28) stopped accepting integer tensors.
enum ElementwiseAdapters {
  static let table: [String: [Int64: OpsetAdapter]] = [
    "Clip": [11: boundsToInputs],
    "Erf": [13: floatingPointOnly],
  ]

  /// Clip: `min` and `max` → inputs 1 and 2, typed like the input. An absent bound of the old
  /// form means ±FLT_MAX, which for float and float16 data clips nothing (the new form's absent
  /// bound); for double data (or an unknown type) it is written out so that the clamp stays exact.
  static let boundsToInputs = OpsetAdapter.rewrite("min/max attributes → inputs typed like the input") { node, ctx in
    guard let x = node.inputs.first, !x.isEmpty else { throw CompressorError.invalid("\(node.displayName) has no input") }
    let type = ctx.facts.elementType(x)
    let spellDefaults = type != .float && type != .float16
    for (index, name, fallback) in [(1, "min", -Double(Float.greatestFiniteMagnitude)), (2, "max", Double(Float.greatestFiniteMagnitude))] {
      let bound = try ctx.attributeValue(node, name)
      node.removeAttribute(name)
      if let v = bound?.float {
        node.setInput(index, try ctx.scalar(Double(v), like: x, for: node, name))
      } else if spellDefaults {
        node.setInput(index, try ctx.scalar(fallback, like: x, for: node, name))
      }
    }
    node.trimOmittedInputs()
  }

  /// The newer schema lost the integer types: a node on floating-point data is unchanged; one on
  /// integers (or on data of unknown type) has no counterpart.
  static let floatingPointOnly = OpsetAdapter.rewrite("unchanged for floating-point data (integer types were dropped)") { node, ctx in
    guard let x = node.inputs.first, let type = ctx.facts.elementType(x) else {
      throw ctx.refuse(node, "opset \(ctx.version) accepts only floating-point data and the type of its input is not known")
    }
    guard type.isFloatingPoint else {
      throw ctx.refuse(node, "opset \(ctx.version) accepts only floating-point data and the input is \(type)")
    }
  }
}
