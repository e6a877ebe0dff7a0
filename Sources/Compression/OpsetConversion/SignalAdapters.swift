import IR
import Runtime
import Support

/// DFT's axis became an input at 20 (so that it may be computed), with a new default (-2 where
/// the attribute's was 1); the old axis is always written out.
enum SignalAdapters {
  static let table: [String: [Int64: OpsetAdapter]] = [
    "DFT": [20: axisToInput],
  ]

  static let axisToInput = OpsetAdapter.rewrite("axis attribute (default 1) → input 2") { node, ctx in
    let axis = try ctx.attributeValue(node, "axis")?.int ?? 1
    node.removeAttribute("axis")
    node.setInput(2, ctx.constant(NDArray([axis], shape: []), ctx.base(node, "axis")))
  }
}
