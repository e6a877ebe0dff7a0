import IR
import Support

/// If, Loop and Scan infer their subgraphs with the values around them in scope. An If whose
/// condition is known takes that branch; otherwise a branch that cannot run is dropped, and of
/// two that can, a dimension on which they agree stays and one on which they differ becomes a
/// fresh symbol (`if_1`). Loop-carried and Scan
/// state values that change shape between iterations get fresh symbols where they change, and
/// the body is inferred again with them; the number of Loop iterations is the trip count when
/// nothing else can end the loop, else a fresh symbol (`loop_1`).
extension ShapeRules {
  static let controlFlow: [String: ShapeRule] = [
    "If": { c in
      let thenBranch = try c.graph("then_branch"), elseBranch = try c.graph("else_branch")
      if let cond = c.elements(0)?.first ?? nil, let taken = truth(cond) {
        return try c.inferSubgraph(taken ? thenBranch : elseBranch, inputs: [])
      }
      // A branch that cannot run with these shapes is not the one the model takes (an 8 kHz
      // branch given a 16 kHz frame): the other one decides.
      var failure: CompressorError?
      func attempt(_ g: Graph) throws -> [InferredTensor]? {
        do {
          return try c.inferSubgraph(g, inputs: [])
        } catch let e as CompressorError where e.kind == .invalidInput {
          failure = failure ?? e
          return nil
        }
      }
      let a = try attempt(thenBranch), b = try attempt(elseBranch)
      guard let a, let b else {
        if let taken = a ?? b { return taken }
        throw failure ?? c.fail("neither branch can run")
      }
      guard a.count == b.count else { throw c.fail("the branches have \(a.count) and \(b.count) outputs") }
      return zip(a, b).map { join($0, $1, c, "if") }
    },
    "Loop": { c in try loop(c) },
    "Scan": { c in try scan(c) },
  ]
}

/// What holds for both of two values: dimensions they agree on, fresh symbols where they differ.
private func join(_ a: InferredTensor, _ b: InferredTensor, _ c: ShapeContext, _ hint: String) -> InferredTensor {
  var out = InferredTensor(type: a.type ?? b.type, shape: nil)
  if let s = a.shape, let t = b.shape, s.count == t.count {
    out.shape = zip(s, t).map { x, y in x == y ? x : c.fresh(hint) }
  }
  if let x = a.elements, x == b.elements { out.elements = x }
  return out
}

/// A value's type and shape only: what is known of it in every iteration.
private func stateOf(_ v: InferredTensor) -> InferredTensor { InferredTensor(type: v.type, shape: v.shape) }

private func loop(_ c: ShapeContext) throws -> [InferredTensor] {
  let body = try c.graph("body")
  let carried = (2..<max(2, c.inputCount)).map { stateOf(c.input($0)) }
  let scanCount = body.outputs.count - 1 - carried.count
  guard scanCount >= 0 else { throw c.fail("the body has \(body.outputs.count) outputs for \(carried.count) loop-carried values") }
  let fixed: [InferredTensor] = [InferredTensor(type: .int64, shape: []), InferredTensor(type: .bool, shape: [])]
  var state = carried
  var outs = try c.inferSubgraph(body, inputs: fixed + state)
  let changed = zip(state, outs.dropFirst()).map { join($0, stateOf($1), c, "loop") }
  if zip(changed, state).contains(where: { $0.shape != $1.shape }) {
    state = changed
    outs = try c.inferSubgraph(body, inputs: fixed + state)
  }
  // The trip count decides the number of iterations when the condition can never end the loop.
  let condKnownTrue = !c.has(1) || (c.elements(1)?.first ?? nil).flatMap(truth) == true
  let bodyKeepsGoing = body.outputs.first.map { o in body.inputs.count > 1 && o.name == body.inputs[1].name } == true
    || (outs.first?.elements?.first ?? nil).flatMap(truth) == true
  let trips: DimExpr? = c.has(0) && condKnownTrue && bodyKeepsGoing ? (c.elements(0)?.first ?? nil) : nil
  let iterations = trips ?? c.fresh("loop")
  let finals = zip(state, outs.dropFirst()).map { join($0, stateOf($1), c, "loop") }
  let scans = outs.dropFirst(1 + carried.count).map { o in
    InferredTensor(type: o.type, shape: o.shape.map { [iterations] + $0 })
  }
  return finals + scans
}

private func scan(_ c: ShapeContext) throws -> [InferredTensor] {
  let body = try c.graph("body")
  let batched = c.opset < 9
  let first = batched ? 1 : 0
  let inputs = (first..<c.inputCount).map { c.input($0) }
  let scanInputs = c.int("num_scan_inputs", 0)
  guard scanInputs > 0, scanInputs <= inputs.count else { throw c.fail("num_scan_inputs \(scanInputs) does not fit \(inputs.count) inputs") }
  let stateCount = inputs.count - scanInputs
  let inAxes = batched ? Array(repeating: 0, count: scanInputs) : c.ints("scan_input_axes") ?? Array(repeating: 0, count: scanInputs)
  guard inAxes.count == scanInputs else { throw c.fail("scan_input_axes has \(inAxes.count) values for \(scanInputs) scan inputs") }
  // Before opset 9 every input has a leading batch axis, and scan inputs scan their axis 1.
  let lead = batched ? 1 : 0
  var length: DimExpr?
  var slices = [InferredTensor]()
  for (k, x) in inputs[stateCount...].enumerated() {
    guard var s = x.shape.map({ Array($0.dropFirst(lead)) }) else { slices.append(InferredTensor(type: x.type, shape: nil)); continue }
    let axis = try c.axis(inAxes[k], rank: s.count)
    length = try c.same(length, s[axis], "the scanned lengths")
    s.remove(at: axis)
    slices.append(InferredTensor(type: x.type, shape: s))
  }
  var state = inputs[..<stateCount].map { v in InferredTensor(type: v.type, shape: v.shape.map { Array($0.dropFirst(lead)) }) }
  var outs = try c.inferSubgraph(body, inputs: state + slices)
  let changed = zip(state, outs).map { join($0, stateOf($1), c, "scan") }
  if zip(changed, state).contains(where: { $0.shape != $1.shape }) {
    state = changed
    outs = try c.inferSubgraph(body, inputs: state + slices)
  }
  let scanOutputs = outs.count - stateCount
  guard scanOutputs >= 0 else { throw c.fail("the body has \(outs.count) outputs for \(stateCount) state values") }
  let outAxes = c.ints("scan_output_axes") ?? Array(repeating: 0, count: scanOutputs)
  let batch = batched ? (inputs.lazy.compactMap { $0.shape?.first }.first ?? nil) : nil
  let finals = zip(state, outs).map { s, o in
    let j = join(s, stateOf(o), c, "scan")
    return batched ? InferredTensor(type: j.type, shape: j.shape.map { [batch] + $0 }) : j
  }
  let stacked = try outs[stateCount...].enumerated().map { k, o -> InferredTensor in
    guard var s = o.shape else { return InferredTensor(type: o.type, shape: nil) }
    let axis = batched ? 0 : try c.axis(k < outAxes.count ? outAxes[k] : 0, rank: s.count + 1)
    s.insert(length, at: axis)
    return InferredTensor(type: o.type, shape: batched ? [batch] + s : s)
  }
  return finals + stacked
}
