import IR
import Runtime
import Support

/// Operators that select or generate indices: TopK's k became an input at 10, Scatter was
/// renamed ScatterElements at 11, Range computes in float for half-precision types from 27.
enum IndexingAdapters {
  static let table: [String: [Int64: OpsetAdapter]] = [
    "TopK": [10: kToInput],
    "Scatter": [11: scatterElements],
    "Range": [27: halfPrecisionStash],
  ]

  /// TopK 10: `k` → input 1, a 1-D int64 tensor of one element.
  static let kToInput = OpsetAdapter.rewrite("k attribute → input") { node, ctx in
    guard try ctx.moveIntegersToInput(&node, attribute: "k", input: 1) else {
      throw CompressorError.invalid("\(node.displayName) has no k attribute, which TopK requires before opset 10")
    }
  }

  /// Scatter (removed at 11) is ScatterElements under its old name: same inputs, same axis.
  static let scatterElements = OpsetAdapter.rewrite("Scatter → ScatterElements (same inputs and axis)") { node, _ in
    node.opType = "ScatterElements"
  }

  /// Range 27 accumulates float16 and bfloat16 ranges in float unless `stash_type` says otherwise;
  /// before, it computed in the input's type, which stash_type set to that type keeps.
  static let halfPrecisionStash = OpsetAdapter.rewrite("stash_type set to the input's type for float16/bfloat16") { node, ctx in
    guard let start = node.inputs.first, let type = ctx.facts.elementType(start) else {
      throw ctx.refuse(node, "opset 27 computes float16/bfloat16 ranges in float and the type of the inputs is not known")
    }
    if type == .float16 || type == .bfloat16 { node.setAttribute("stash_type", .int(Int64(type.rawValue))) }
  }
}
