import IR
import Runtime
import Support

/// BatchNormalization (the per-activation mode went at 9, the training outputs changed at 14),
/// GroupNormalization (scale and bias per channel instead of per group from 21) and Dropout
/// (a bool mask from 10, the ratio as an input from 12).
enum NormalizationAdapters {
  static let table: [String: [Int64: OpsetAdapter]] = [
    "BatchNormalization": [9: withoutSpatial, 14: runningStatistics],
    "GroupNormalization": [21: scalePerChannel],
    "Dropout": [10: boolMask, 12: ratioToInput],
  ]

  /// BatchNormalization 9 removed `spatial`; 1 (the default) is the only behaviour left. spatial 0
  /// on a 2-D input [N, C] is the same computation; on higher ranks it normalizes per activation.
  static let withoutSpatial = OpsetAdapter.rewrite("spatial attribute removed (1 is the only behaviour left)") { node, ctx in
    let spatial = try ctx.attributeValue(node, "spatial")?.int ?? 1
    if spatial == 0 && ctx.facts.rank(node.inputs.first ?? "") != 2 {
      throw ctx.refuse(node, "spatial 0 (statistics per activation) was removed")
    }
    node.removeAttribute("spatial")
  }

  /// From 14 a BatchNormalization in training mode says so (`training_mode` 1) and returns the
  /// running mean and variance only; the batch statistics (saved_mean, saved_var) are gone.
  static let runningStatistics = OpsetAdapter.rewrite("training outputs: training_mode 1, saved_mean/saved_var dropped") { node, ctx in
    while let last = node.outputs.last, last.isEmpty, node.outputs.count > 1 { node.outputs.removeLast() }
    guard node.outputs.count > 1 else { return }
    for saved in node.outputs.dropFirst(3) where !saved.isEmpty {
      guard ctx.isUnused(saved) else {
        throw ctx.refuse(node, "its batch statistic output '\(saved)' (saved_mean/saved_var) was removed")
      }
      ctx.dropValueInfo(saved)
    }
    node.outputs = Array(node.outputs.prefix(3))
    node.setAttribute("training_mode", .int(1))
  }

  /// GroupNormalization 21 takes scale and bias per channel [C] where 18 took them per group
  /// [G]: each is repeated C/G times (Reshape [G, 1] → Expand [G, C/G] → Reshape [C], with C
  /// read from the input at run time). 21 also computes its statistics in float unless
  /// `stash_type` says otherwise, where 18 used the input's type: set to that type when it is not float.
  static let scalePerChannel = OpsetAdapter.rewrite(
    "scale and bias repeated per channel (Reshape → Expand → Reshape); stash_type set to the input's type"
  ) { node, ctx in
    guard node.inputs.count >= 3 else { throw CompressorError.invalid("\(node.displayName) needs an input, scale and bias") }
    guard let groups = try ctx.attributeValue(node, "num_groups")?.int, groups > 0 else {
      throw CompressorError.invalid("\(node.displayName) has no positive num_groups")
    }
    let x = node.inputs[0]
    guard let type = ctx.facts.elementType(x) else {
      throw ctx.refuse(node, "statistics are computed in the input's type before 21 and in float from 21, and the type of '\(x)' is not known")
    }
    if type != .float { node.setAttribute("stash_type", .int(Int64(type.rawValue))) }
    let channels = ctx.fresh(ctx.base(node, "channels"))
    ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "channels_shape")), opType: "Shape", inputs: [x], outputs: [channels],
                          attributes: [Attribute(name: "start", value: .int(1)), Attribute(name: "end", value: .int(2))]))
    let perGroup = ctx.fresh(ctx.base(node, "channels_per_group"))
    ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "channels_div")), opType: "Div",
                          inputs: [channels, ctx.int64s([groups], ctx.base(node, "num_groups"))], outputs: [perGroup]))
    let expandShape = ctx.fresh(ctx.base(node, "expand_shape"))
    ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "expand_shape_concat")), opType: "Concat",
                          inputs: [ctx.int64s([1], ctx.base(node, "one")), perGroup], outputs: [expandShape],
                          attributes: [Attribute(name: "axis", value: .int(0))]))
    let column = ctx.int64s([-1, 1], ctx.base(node, "column_shape"))
    let flat = ctx.int64s([-1], ctx.base(node, "flat_shape"))
    for index in [1, 2] {
      let what = index == 1 ? "scale" : "bias"
      let grouped = ctx.fresh(ctx.base(node, "\(what)_column")), repeated = ctx.fresh(ctx.base(node, "\(what)_repeated"))
      let perChannel = ctx.fresh(ctx.base(node, "\(what)_per_channel"))
      ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "\(what)_reshape")), opType: "Reshape",
                            inputs: [node.inputs[index], column], outputs: [grouped]))
      ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "\(what)_expand")), opType: "Expand",
                            inputs: [grouped, expandShape], outputs: [repeated]))
      ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "\(what)_flatten")), opType: "Reshape",
                            inputs: [repeated, flat], outputs: [perChannel]))
      node.inputs[index] = perChannel
    }
  }

  /// Dropout 10 made the mask bool (it was the input's type). At inference it is all true from
  /// 10 on, while ONNX Runtime writes zeros for the old float mask: a mask nobody reads is
  /// dropped, one that is read has no counterpart.
  static let boolMask = OpsetAdapter.rewrite("unread mask output dropped (its type became bool)") { node, ctx in
    guard node.outputs.count > 1 else { return }
    let mask = node.outputs[1]
    if !mask.isEmpty {
      guard ctx.isUnused(mask) else { throw ctx.refuse(node, "its mask output '\(mask)' changed type from the input's to bool") }
      ctx.dropValueInfo(mask)
    }
    node.outputs = [node.outputs[0]]
  }

  /// Dropout 12: `ratio` → input 1 (float). Without training_mode the output is the input in both
  /// forms; the inference mask is all true from 12 and unspecified before (ONNX Runtime writes
  /// false), so a mask that is read has no counterpart and one that is not is dropped.
  static let ratioToInput = OpsetAdapter.rewrite("ratio attribute → input; unread mask output dropped") { node, ctx in
    if node.outputs.count > 1 {
      let mask = node.outputs[1]
      if !mask.isEmpty {
        guard ctx.isUnused(mask) else {
          throw ctx.refuse(node, "its mask output '\(mask)' is unspecified at inference before opset 12 (ONNX Runtime writes false) and all true from 12")
        }
        ctx.dropValueInfo(mask)
      }
      node.outputs = [node.outputs[0]]
    }
    guard let ratio = try ctx.attributeValue(node, "ratio")?.float else { return }
    node.removeAttribute("ratio")
    node.setInput(1, ctx.constant(NDArray([ratio], shape: []), ctx.base(node, "ratio")))
  }
}
