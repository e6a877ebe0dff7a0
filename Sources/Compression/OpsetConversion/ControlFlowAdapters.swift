import IR
import Runtime
import Support

/// Scan 8 runs its body over a batch: every state and scan input has a leading batch axis, and
/// an optional sequence_lens input gives each batch entry its length. Scan 9 has neither; it
/// scans one sequence (and gained per-input axes and directions).
enum ControlFlowAdapters {
  static let table: [String: [Int64: OpsetAdapter]] = [
    "Scan": [9: batchAsLoop],
  ]

  /// The batch becomes a Loop over its entries: each iteration Gathers entry b of every state and
  /// scan input, runs Scan 9 with the unchanged body on it, and returns the final states and scan
  /// outputs as Loop scan outputs, which Loop stacks along a new first axis — the batch axis Scan 8
  /// returns. `directions` becomes `scan_input_directions`. A node with sequence_lens (entries of
  /// different lengths) has no counterpart.
  static let batchAsLoop = OpsetAdapter.rewrite(
    "batched Scan → Loop over the batch with Scan 9 inside (Gather per entry, outputs stacked)"
  ) { node, ctx in
    guard let body = node.attribute("body")?.value, case .graph(let scanBody) = body,
          let scanInputs = node.attribute("num_scan_inputs")?.int, scanInputs > 0,
          node.inputs.count >= 1 + Int(scanInputs) else {
      throw CompressorError.invalid("\(node.displayName) needs a body, num_scan_inputs and that many inputs after sequence_lens")
    }
    if !node.inputs[0].isEmpty {
      throw ctx.refuse(node, "sequence_lens '\(node.inputs[0])' gives batch entries their own lengths, which Scan 9 cannot")
    }
    let batched = Array(node.inputs.dropFirst())
    guard batched.allSatisfy({ !$0.isEmpty }) else { throw CompressorError.invalid("\(node.displayName) omits a state or scan input") }
    let states = batched.count - Int(scanInputs)
    guard states >= 0, node.outputs.count >= states else {
      throw CompressorError.invalid("\(node.displayName) has fewer outputs than states")
    }

    // Trip count: the batch size, read from the first batched input at run time.
    let shape = ctx.fresh(ctx.base(node, "batch_shape"))
    let batch = ctx.fresh(ctx.base(node, "batch_size"))
    ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "shape")), opType: "Shape", inputs: [batched[0]], outputs: [shape]))
    ctx.insertBefore(Node(name: ctx.fresh(ctx.base(node, "batch_gather")), opType: "Gather",
                          inputs: [shape, ctx.constant(NDArray([Int64(0)], shape: []), ctx.base(node, "zero"))], outputs: [batch],
                          attributes: [Attribute(name: "axis", value: .int(0))]))

    let iteration = ctx.fresh(ctx.base(node, "batch_index")), condIn = ctx.fresh(ctx.base(node, "cond_in"))
    let condOut = ctx.fresh(ctx.base(node, "cond_out"))
    var inner = [Node]()
    var entries = [String]()
    for value in batched {
      let entry = ctx.fresh("\(value)_entry")
      inner.append(Node(name: ctx.fresh(ctx.base(node, "entry_gather")), opType: "Gather", inputs: [value, iteration],
                        outputs: [entry], attributes: [Attribute(name: "axis", value: .int(0))]))
      entries.append(entry)
    }
    let perEntry = node.outputs.map { ctx.fresh(($0.isEmpty ? ctx.base(node, "unused") : $0) + "_entry") }
    var scanAttributes = [Attribute(name: "body", value: .graph(scanBody)),
                          Attribute(name: "num_scan_inputs", value: .int(scanInputs))]
    if let directions = node.attribute("directions")?.ints {
      scanAttributes.append(Attribute(name: "scan_input_directions", value: .ints(directions)))
    }
    inner.append(Node(name: ctx.fresh(ctx.base(node, "entry_scan")), opType: "Scan", inputs: entries, outputs: perEntry,
                      attributes: scanAttributes))
    inner.append(Node(name: ctx.fresh(ctx.base(node, "cond")), opType: "Identity", inputs: [condIn], outputs: [condOut]))

    func scalar(_ name: String, _ type: DataType) -> ValueInfo {
      ValueInfo(name: name, type: .tensor(type, TensorShape([])))
    }
    // The body's declared output types, without shapes (the Loop adds the batch axis).
    let outputTypes: [ValueInfo] = zip(perEntry, scanBody.outputs.map(\.type)).map { name, type in
      if case .tensor(let element, _)? = type?.kind { return ValueInfo(name: name, type: .tensor(element, nil)) }
      return ValueInfo(name: name, type: type)
    }
    var loopInputs = [batch, ""]
    var bodyInputs = [scalar(iteration, .int64), scalar(condIn, .bool)]
    var bodyOutputs = [scalar(condOut, .bool)]
    var loopOutputs = [String]()
    if ctx.target < 11 {
      // Loop before 11 needs a loop-carried value; an unused one is passed through.
      var truth = NDArray(uninitialized: .bool, [])
      truth.mutableElements(UInt8.self)[0] = 1
      let carried = ctx.constant(truth, ctx.base(node, "carried"))
      let carriedIn = ctx.fresh(ctx.base(node, "carried_in")), carriedOut = ctx.fresh(ctx.base(node, "carried_out"))
      inner.append(Node(name: ctx.fresh(ctx.base(node, "carried")), opType: "Identity", inputs: [carriedIn], outputs: [carriedOut]))
      loopInputs.append(carried)
      bodyInputs.append(scalar(carriedIn, .bool))
      bodyOutputs.append(scalar(carriedOut, .bool))
      loopOutputs.append(ctx.fresh(ctx.base(node, "carried_final")))
    }
    let loopBody = Graph(name: ctx.fresh(ctx.base(node, "batch_body")), nodes: inner, inputs: bodyInputs,
                         outputs: bodyOutputs + outputTypes)
    node.opType = "Loop"
    node.inputs = loopInputs
    node.outputs = loopOutputs + node.outputs.enumerated().map { i, o in o.isEmpty ? ctx.fresh(ctx.base(node, "unused_\(i)")) : o }
    node.attributes = [Attribute(name: "body", value: .graph(loopBody))]
  }
}
