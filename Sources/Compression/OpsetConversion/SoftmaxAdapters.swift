import IR
import Support

/// Softmax, LogSoftmax and Hardmax before opset 13 coerce their input to 2-D — [d0·…·d(axis-1),
/// d(axis)·…·d(n-1)] — and normalize each row, so `axis` names where the flattening splits; from
/// 13 they normalize along that one axis. The default axis also moved, from 1 to -1.
enum SoftmaxAdapters {
  static let table: [String: [Int64: OpsetAdapter]] = [
    "Softmax": [13: oneAxis],
    "LogSoftmax": [13: oneAxis],
    "Hardmax": [13: oneAxis],
  ]

  /// When the axis is the last one, both readings agree and only the (changed) default is made
  /// explicit. Otherwise the old coercion is spelled out: Flatten at `axis` gives exactly the old
  /// 2-D view, the operator normalizes its rows (axis 1), and a Reshape to the input's shape
  /// (read at run time, so any rank and symbolic sizes work) restores the layout.
  static let oneAxis = OpsetAdapter.rewrite(
    "axis made explicit; unless it is the last axis, Flatten(axis) → op(axis 1) → Reshape to the input's shape"
  ) { node, ctx in
    guard let x = node.inputs.first, !x.isEmpty, let y = node.outputs.first, !y.isEmpty else {
      throw CompressorError.invalid("\(node.displayName) has no input or output")
    }
    let axis = try ctx.attributeValue(node, "axis")?.int ?? 1
    var isLast = axis == -1
    if let r = ctx.facts.rank(x), r > 0 { isLast = isLast || (axis < 0 ? axis + Int64(r) : axis) == Int64(r - 1) }
    if isLast {
      node.setAttribute("axis", .int(axis))
      return
    }
    let flat = ctx.fresh(ctx.base(node, "2d_input"))
    let shape = ctx.fresh(ctx.base(node, "input_shape"))
    let rows = ctx.fresh(ctx.base(node, "2d_output"))
    ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "flatten")), opType: "Flatten", inputs: [x], outputs: [flat],
                          attributes: [Attribute(name: "axis", value: .int(axis))]))
    ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "shape")), opType: "Shape", inputs: [x], outputs: [shape]))
    node.inputs[0] = flat
    node.outputs[0] = rows
    node.setAttribute("axis", .int(1))
    // allowzero (14 on) keeps a zero-sized dimension of the input as zero rather than copying one.
    let allowZero: [Attribute] = ctx.target >= 14 ? [Attribute(name: "allowzero", value: .int(1))] : []
    ctx.insertAfter(Node(name: ctx.fresh(ctx.base(node, "reshape")), opType: "Reshape", inputs: [rows, shape], outputs: [y],
                         attributes: allowZero))
  }
}
