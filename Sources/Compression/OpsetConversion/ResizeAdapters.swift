import IR
import Runtime
import Support

/// Upsample (removed at 10) and Resize, whose coordinate conventions became attributes at 11,
/// and the sampling operators whose conventions were renamed or given new defaults.
enum ResizeAdapters {
  static let table: [String: [Int64: OpsetAdapter]] = [
    "Upsample": [9: scalesToInput, 10: upsampleToResize],
    "Resize": [11: explicitConventions, 13: withoutTFHalfPixel],
    "GridSample": [20: renamedModes],
    "RoiAlign": [16: outputHalfPixel],
  ]

  /// Upsample 7 → 9: the `scales` attribute → input 1 (float).
  static let scalesToInput = OpsetAdapter.rewrite("scales attribute → input") { node, ctx in
    guard let scales = try ctx.attributeValue(node, "scales")?.value, case .floats(let values) = scales else {
      throw CompressorError.invalid("\(node.displayName) has no scales attribute, which Upsample requires before opset 9")
    }
    node.removeAttribute("scales")
    node.setInput(1, ctx.constant(NDArray(values, shape: [values.count]), ctx.base(node, "scales")))
  }

  /// Upsample 9 → Resize 10: the same inputs and modes. Upsample's scales are 1 or more by
  /// definition, which the next step needs to choose the rounding of nearest mode.
  static let upsampleToResize = OpsetAdapter.rewrite("Upsample → Resize (same inputs and mode)") { node, ctx in
    guard node.inputs.count == 2, let y = node.outputs.first, !y.isEmpty else {
      throw CompressorError.invalid("\(node.displayName) must have an input and scales")
    }
    node.opType = "Resize"
    ctx.markUpsampling(y)
  }

  /// Resize 10 → 11: inputs (X, scales) become (X, roi, scales), and the conventions opset 10
  /// left implicit are spelled out as ONNX Runtime implements them: asymmetric coordinates
  /// (x_original = x_resized / scale) and, in nearest mode, the input index rounded down when the
  /// axis grows and up when it shrinks. An axis shrunk by 1/2^k lands on whole indices (x · 2^k,
  /// exact in floating point), where both roundings agree. A node whose other axes both grow and
  /// shrink, or whose scales are only known at run time (unless it was an Upsample, which only
  /// grows), has no single nearest_mode.
  static let explicitConventions = OpsetAdapter.rewrite(
    "(X, scales) → (X, roi, scales); coordinate_transformation_mode asymmetric; nearest_mode floor (growing) or ceil (shrinking)"
  ) { node, ctx in
    guard node.inputs.count == 2, let y = node.outputs.first, !y.isEmpty else {
      throw CompressorError.invalid("\(node.displayName) must have an input and scales")
    }
    let mode = try ctx.attributeValue(node, "mode")?.string ?? "nearest"
    if mode == "nearest" {
      var rounding = "floor"
      if !ctx.isUpsampling(y) {
        guard let scales = ctx.facts.constantFloats(node.inputs[1]) else {
          throw ctx.refuse(node, "nearest mode rounds down when an axis grows and up when it shrinks, and the scales are computed at run time")
        }
        func landsOnWholeIndices(_ s: Float) -> Bool {
          guard s > 0 && s <= 1 else { return false }
          let inverse = 1 / s
          return inverse == inverse.rounded() && inverse.significandBitPattern == 0  // 1/s is a power of two
        }
        let grows = scales.contains { $0 > 1 }, shrinks = scales.contains { $0 < 1 && !landsOnWholeIndices($0) }
        if grows && shrinks {
          throw ctx.refuse(node, "nearest mode rounds down on growing axes and up on shrinking ones, and scales \(scales) do both")
        }
        if shrinks { rounding = "ceil" }
      }
      node.setAttribute("nearest_mode", .string(Array(rounding.utf8)))
    }
    node.setAttribute("coordinate_transformation_mode", .string(Array("asymmetric".utf8)))
    // roi is a required input at 11 and 12 (unused outside tf_crop_and_resize), optional from 13.
    let roi = ctx.target >= 13 ? "" : ctx.constant(NDArray([Float](), shape: [0]), ctx.base(node, "roi"))
    node.inputs = [node.inputs[0], roi, node.inputs[1]]
  }

  /// Resize 13 dropped the coordinate mode tf_half_pixel_for_nn, x_original = (x + 0.5) / scale,
  /// which is half_pixel's coordinate plus 0.5. For nearest mode the half is moved into the
  /// rounding: round_prefer_floor(c + 0.5) = ceil(c) and floor(c + 0.5) = round_prefer_ceil(c),
  /// so those two become half_pixel with ceil or round_prefer_ceil. The other roundings and the
  /// interpolating modes have no counterpart; every other node is unchanged.
  static let withoutTFHalfPixel = OpsetAdapter.rewrite(
    "tf_half_pixel_for_nn → half_pixel with the rounding shifted by a half (nearest mode); other nodes unchanged"
  ) { node, ctx in
    guard try ctx.attributeValue(node, "coordinate_transformation_mode")?.string == "tf_half_pixel_for_nn" else { return }
    let mode = try ctx.attributeValue(node, "mode")?.string ?? "nearest"
    let rounding = try ctx.attributeValue(node, "nearest_mode")?.string ?? "round_prefer_floor"
    guard mode == "nearest", let shifted = ["round_prefer_floor": "ceil", "floor": "round_prefer_ceil"][rounding] else {
      throw ctx.refuse(node, "coordinate_transformation_mode tf_half_pixel_for_nn was removed and no other mode computes the same coordinates with mode \(mode), nearest_mode \(rounding)")
    }
    node.setAttribute("coordinate_transformation_mode", .string(Array("half_pixel".utf8)))
    node.setAttribute("nearest_mode", .string(Array(shifted.utf8)))
  }

  /// GridSample 20 renamed its modes (bilinear → linear, bicubic → cubic); the default is the same mode.
  static let renamedModes = OpsetAdapter.rewrite("mode bilinear → linear, bicubic → cubic") { node, ctx in
    guard let mode = try ctx.attributeValue(node, "mode")?.string else { return }
    let renamed = ["bilinear": "linear", "bicubic": "cubic"][mode] ?? mode
    node.setAttribute("mode", .string(Array(renamed.utf8)))
  }

  /// RoiAlign 16 added coordinate_transformation_mode with default half_pixel; the old behaviour is output_half_pixel.
  static let outputHalfPixel = OpsetAdapter.rewrite("coordinate_transformation_mode output_half_pixel made explicit") { node, ctx in
    if node.attribute("coordinate_transformation_mode") == nil {
      node.setAttribute("coordinate_transformation_mode", .string(Array("output_half_pixel".utf8)))
    }
  }
}
