import IR
import Support

/// The Reduce* operators take `axes` as an input from opset 13 (ReduceSum) or 18 (the others).
/// A node without axes reduces over every dimension in both forms: the input is left out and
/// `noop_with_empty_axes` keeps its default 0.
enum ReductionAdapters {
  static let table: [String: [Int64: OpsetAdapter]] = {
    var t: [String: [Int64: OpsetAdapter]] = ["ReduceSum": [13: axesToInput]]
    for op in ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
               "ReduceProd", "ReduceSumSquare"] {
      t[op] = [18: axesToInput]
    }
    t["ReduceLogSum", default: [:]][28] = ElementwiseAdapters.floatingPointOnly
    t["ReduceLogSumExp", default: [:]][28] = ElementwiseAdapters.floatingPointOnly
    return t
  }()

  static let axesToInput = OpsetAdapter.rewrite("axes attribute → input") { node, ctx in
    // An empty list also means "every axis" in the old form; left out, it means the same in the new.
    if let a = try ctx.attributeValue(node, "axes"), a.ints?.isEmpty == true {
      node.removeAttribute("axes")
      return
    }
    try ctx.moveIntegersToInput(&node, attribute: "axes", input: 1)
  }
}
