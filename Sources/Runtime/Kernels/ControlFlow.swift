import Foundation
import IR
import Support

/// If, Loop and Scan: subgraphs run by the executor with this node's scope as their outer scope.
/// If and Loop pass any value (a branch may return a sequence, a loop may carry one); Scan's
/// state and scan values are tensors.
extension Kernels {
  static let controlFlow: [String: Kernel] = [
    "Scan": { c in try scan(c) },
  ]

  static let controlFlowValues: [String: ValueKernel] = [
    "If": { c in
      let cond = try c.tensor(0)
      guard cond.count == 1 else { throw c.fail("the condition must have one element, it has \(cond.count)") }
      // A bool read in place (no array made on every inference); other types as integers.
      let isTrue = cond.dataType == .bool ? cond.elements(UInt8.self)[0] != 0 : try cond.integers()[0] != 0
      return try c.runSubgraph(isTrue ? "then_branch" : "else_branch", feeds: [])
    },
    "Loop": { c in try loop(c) },
  ]
}

private func loop(_ c: KernelContext) throws -> [Value] {
  let body = try c.graph("body")
  let maxTrips = try c.optionalTensor(0).map { try $0.integers().first ?? 0 }
  let condInput = try c.optionalTensor(1)
  var cond = try condInput.map { try $0.integers().first ?? 0 != 0 } ?? true
  // Loop-carried values may be sequences or optionals (a list built one element per iteration).
  var carried = try (2..<max(2, c.values.count)).map { try c.value($0) }
  let carriedCount = carried.count
  let scanCount = body.outputs.count - 1 - carriedCount
  guard scanCount >= 0 else { throw c.fail("the body has \(body.outputs.count) outputs for \(carriedCount) loop-carried values") }
  var scans = [[NDArray]](repeating: [], count: scanCount)
  var trip: Int64 = 0
  // A model from the internet must not hang the tool: no loop runs more than this many times
  // (COMPRESSOR_LOOP_LIMIT, default 100,000,000).
  let limit = getenv("COMPRESSOR_LOOP_LIMIT").flatMap { Int64(String(cString: $0)) } ?? 100_000_000
  while cond && (maxTrips.map { trip < $0 } ?? true) {
    if trip >= limit { throw c.fail("the loop ran \(limit) iterations without ending") }
    let outs = try c.runSubgraph("body", feeds: [.tensor(NDArray([trip], shape: [])), .tensor(NDArray(bools: [cond], shape: []))] + carried)
    guard case .tensor(let condOut) = outs[0] else { throw c.fail("the body's condition output must be a tensor") }
    cond = try condOut.integers().first ?? 0 != 0
    carried = Array(outs[1..<(1 + carriedCount)])
    for k in 0..<scanCount {
      guard case .tensor(let t) = outs[1 + carriedCount + k] else {
        throw c.fail("scan output \(k) of the body must be a tensor, not a \(outs[1 + carriedCount + k].typeDescription)")
      }
      scans[k].append(t)
    }
    trip += 1
    if maxTrips == nil && condInput == nil { throw c.fail("a Loop without trip count or condition never ends") }
  }
  let stacked = try scans.enumerated().map { k, items -> Value in
    guard let first = items.first else {
      // No iteration ran: an empty scan output of unknown element shape.
      return .tensor(NDArray(zeros: .float, [0]))
    }
    return .tensor(try stack(c, items, like: first))
  }
  return carried + stacked
}

/// Stacks equally shaped tensors along a new leading axis.
private func stack(_ c: KernelContext, _ items: [NDArray], like first: NDArray) throws -> NDArray {
  try NDArray.checkAllocation([items.count] + first.shape, first.dataType, c)
  var out = NDArray(uninitialized: first.dataType, [items.count] + first.shape)
  let bytes = first.storage.byteCount
  let dst = out.mutableBytes()
  for (i, item) in items.enumerated() {
    guard item.shape == first.shape, item.dataType == first.dataType else {
      throw c.fail("scan outputs change shape between iterations (\(first.shape) then \(item.shape))")
    }
    if bytes > 0, let src = item.storage.base { (dst + i * bytes).copyMemory(from: src, byteCount: bytes) }
  }
  return out
}

/// Scan (opset 9 and later): state variables, then scan inputs sliced along their scan axes.
/// Opset 8's Scan has a leading batch axis on every input and output and an optional first
/// input of sequence lengths; it runs as one opset-9 scan per batch entry.
private func scan(_ c: KernelContext) throws -> [NDArray] {
  if c.opset < 9 { return try scanWithBatch(c) }
  return try scanSequence(c, inputs: try (0..<c.inputs.count).map { try c.input($0) })
}

private func scanWithBatch(_ c: KernelContext) throws -> [NDArray] {
  if c.optionalInput(0) != nil { throw c.unsupported("Scan's sequence_lens input is not supported") }
  let inputs = try (1..<max(1, c.inputs.count)).map { try c.input($0) }
  guard let batch = inputs.first?.shape.first else { throw c.fail("no inputs") }
  var perBatch = [[NDArray]]()
  for b in 0..<batch {
    let slices = try inputs.map { x -> NDArray in
      var shape = x.shape
      shape.removeFirst()
      return try x.slice(axes: [0], starts: [b], ends: [b + 1], steps: [1]).reshaped(shape)
    }
    perBatch.append(try scanSequence(c, inputs: slices, directionsAttribute: "directions"))
  }
  guard let first = perBatch.first else { return [] }
  return try first.indices.map { k in try stack(c, perBatch.map { $0[k] }, like: first[k]) }
}

private func scanSequence(_ c: KernelContext, inputs: [NDArray], directionsAttribute: String = "scan_input_directions") throws -> [NDArray] {
  let body = try c.graph("body")
  let scanInputs = c.int("num_scan_inputs", 0)
  guard scanInputs >= 1, scanInputs <= inputs.count else {
    throw c.fail("num_scan_inputs \(scanInputs) is not between 1 and the \(inputs.count) inputs")
  }
  let stateCount = inputs.count - scanInputs
  var state = Array(inputs[..<stateCount])
  let sequences = Array(inputs[stateCount...])
  let inAxes = c.ints("scan_input_axes") ?? Array(repeating: 0, count: scanInputs)
  let directions = c.ints(directionsAttribute) ?? Array(repeating: 0, count: scanInputs)
  guard inAxes.count == scanInputs, directions.count == scanInputs else {
    throw c.fail("scan_input_axes and \(directionsAttribute) must have one entry per scan input (\(scanInputs))")
  }
  guard let first = sequences.first else { throw c.fail("no scan inputs") }
  let axis0 = try c.axis(inAxes[0], rank: first.rank)
  let length = first.shape[axis0]
  let scanOutputs = body.outputs.count - stateCount
  guard scanOutputs >= 0 else { throw c.fail("the body has \(body.outputs.count) outputs for \(stateCount) state values") }
  var collected = [[NDArray]](repeating: [], count: scanOutputs)
  for t in 0..<length {
    var feeds = state
    for (k, seq) in sequences.enumerated() {
      let axis = try c.axis(inAxes[k], rank: seq.rank)
      guard seq.shape[axis] == length else { throw c.fail("scan input \(k) has \(seq.shape[axis]) steps, scan input 0 has \(length)") }
      let i = directions[k] == 1 ? length - 1 - t : t
      var shape = seq.shape
      shape.remove(at: axis)
      feeds.append(try seq.slice(axes: [axis], starts: [i], ends: [i + 1], steps: [1]).reshaped(shape))
    }
    let outs = try c.runTensorSubgraph("body", feeds: feeds)
    state = Array(outs[..<stateCount])
    for k in 0..<scanOutputs { collected[k].append(outs[stateCount + k]) }
  }
  let outAxes = c.ints("scan_output_axes") ?? Array(repeating: 0, count: scanOutputs)
  let outDirections = c.ints("scan_output_directions") ?? Array(repeating: 0, count: scanOutputs)
  guard outAxes.count == scanOutputs, outDirections.count == scanOutputs else {
    throw c.fail("scan_output_axes and scan_output_directions need one entry per scan output (\(scanOutputs))")
  }
  let stacked = try collected.enumerated().map { k, items -> NDArray in
    guard let f = items.first else { return NDArray(zeros: .float, [0]) }
    let ordered = outDirections[k] == 1 ? items.reversed() : items
    var s = try stack(c, Array(ordered), like: f)
    let axis = try c.axis(outAxes[k], rank: f.rank + 1)
    if axis != 0 {
      var perm = Array(1...f.rank)
      perm.insert(0, at: axis)
      s = s.transposed(perm)
    }
    return s
  }
  return state + stacked
}
