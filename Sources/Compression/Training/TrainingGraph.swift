import Foundation
import IR
import Runtime
import Support

/// A model prepared for training: which initializers train, which nodes lie between them and
/// the loss, a forward pass that keeps what the backward pass needs (batch statistics,
/// dropout masks, fake quantization), reverse-mode differentiation over the IR, and the
/// trained values written back into the model.
final class TrainingGraph {
  struct Options {
    /// BatchNormalization keeps its running statistics instead of using the batch's.
    var freezeBatchNorm = false
    /// Initializers that never train (besides scalars, running statistics and quantization parameters).
    var frozen: Set<String> = []
    /// Quantization scales train too (LSQ), as logarithms so they stay positive and move by ratios.
    var learnScales = false
  }

  /// Every value of one forward pass, and each node's outputs (with the extra ones training adds).
  struct Trace {
    var values: [String: NDArray]
    var nodeOutputs: [Int: [NDArray]]
  }

  private(set) var graph: Graph
  let executor: Executor
  private let order: [Int]
  private let options: Options
  /// Trainable tensors by initializer name, float; `parameterNames` in first-use order.
  var parameters: [String: NDArray] = [:]
  private(set) var parameterNames: [String] = []
  /// Every other initializer (running statistics change during training).
  private var constants: [String: NDArray] = [:]
  /// Quantized weights that train as float masters: initializer → its node (for axis, zero point
  /// and scale names) and stored type.
  private var masters: [String: (node: Node, type: DataType)] = [:]
  /// Scales trained as log s (`learnScales`): `parameters` holds log s, the graph sees s.
  private var logScales: Set<String> = []
  /// Values that depend on a trainable parameter through differentiable inputs.
  private var requiresGradient: Set<String> = []
  /// Nodes the backward pass visits.
  private var backwardNodes: Set<Int> = []
  private let opsets: [String: Int64]

  /// `lossTensors`: the values the loss reads (graph outputs and matched intermediate tensors).
  init(model: Model, lossTensors: [String], options: Options, threads: Int) throws {
    self.options = options
    graph = model.graph
    executor = try Executor(model: model, threads: threads)
    var opsets = [String: Int64]()
    for o in model.opsetImports { opsets[o.isDefaultDomain ? "" : o.domain] = o.version }
    self.opsets = opsets
    order = try executor.topologicalOrder(graph)
    for t in graph.initializers {
      var a = try NDArray(t)
      a.makeAligned()
      constants[t.name] = a
    }
    try prepareQuantizedWeights()
    try findParameters(lossTensors: lossTensors)
  }

  /// DequantizeLinear of a quantized weight initializer becomes FakeQuantize of a float master.
  private func prepareQuantizedWeights() throws {
    for (i, n) in graph.nodes.enumerated() where n.opType == "DequantizeLinear" && n.isDefaultDomain && n.inputs.count >= 2 {
      guard let q = constants[n.inputs[0]], [DataType.int8, .uint8, .int32].contains(q.dataType),
            let scale = constants[n.inputs[1]], n.inputs.count < 3 || n.inputs[2].isEmpty || constants[n.inputs[2]] != nil,
            (n.attribute("block_size")?.int ?? 0) == 0 else { continue }
      let zero = n.inputs.count > 2 && !n.inputs[2].isEmpty ? constants[n.inputs[2]] : nil
      let params = try QuantParameters(scales: scale.floats(), zeroPoints: zero?.floats() ?? [],
                                       axis: Int(n.attribute("axis")?.int ?? 1), type: q.dataType, shape: q.shape)
      if masters[n.inputs[0]] == nil {
        let levels = try q.floats()
        constants[n.inputs[0]] = NDArray.filled(q.shape) { out, count in
          for k in 0..<count { out[k] = (levels[k] - params.zeroPoint(k)) * params.scale(k) }
        }
        masters[n.inputs[0]] = (n, q.dataType)
      }
      var fake = n
      fake.opType = FakeQuantize.opType
      fake.attributes.append(Attribute(name: FakeQuantize.storedTypeAttribute, value: .int(Int64(q.dataType.rawValue))))
      graph.nodes[i] = fake
    }
  }

  private func rule(_ n: Node) -> GradientRule? {
    n.opType == FakeQuantize.opType ? Gradients.rules[n.opType] : Gradients.rule(for: n)
  }

  /// Trainable: float initializers with more than one element that reach the loss through
  /// differentiable inputs. A node on such a path without a gradient is an error naming it.
  private func findParameters(lossTensors: [String]) throws {
    var candidates = Set<String>()
    for (name, a) in constants where a.dataType == .float && a.count > 1 && !options.frozen.contains(name) {
      candidates.insert(name)
    }
    // Running statistics and quantization parameters never train.
    for n in graph.nodes {
      if n.opType == "BatchNormalization" { for k in [3, 4] where k < n.inputs.count { candidates.remove(n.inputs[k]) } }
      if ["QuantizeLinear", "DequantizeLinear", FakeQuantize.opType].contains(n.opType) {
        for k in [1, 2] where k < n.inputs.count { candidates.remove(n.inputs[k]) }
      }
    }
    if options.learnScales {
      for n in graph.nodes where ["QuantizeLinear", "DequantizeLinear", FakeQuantize.opType].contains(n.opType) && n.inputs.count > 1 {
        if let scale = constants[n.inputs[1]], scale.dataType == .float, !options.frozen.contains(n.inputs[1]) {
          candidates.insert(n.inputs[1])
          logScales.insert(n.inputs[1])
        }
      }
    }
    // Live: nodes the loss depends on.
    var live = Set(lossTensors), liveNodes = Set<Int>()
    for i in order.reversed() where graph.nodes[i].outputs.contains(where: live.contains) {
      liveNodes.insert(i)
      for name in graph.nodes[i].inputs where !name.isEmpty { live.insert(name) }
    }
    // Forward: which values depend on a parameter through differentiable inputs.
    var depends = Set<String>()
    var firstUse = [String]()
    for i in order where liveNodes.contains(i) {
      let n = graph.nodes[i]
      let r = rule(n)
      var reached = false
      for (k, name) in n.inputs.enumerated() where !name.isEmpty {
        let isParameter = candidates.contains(name)
        guard isParameter || depends.contains(name) else { continue }
        guard let r else {
          let what = isParameter ? "trainable weight '\(name)'" : "a value computed from trainable weights ('\(name)')"
          throw CompressorError.unsupported("\(n.displayName) has no gradient, but \(what) reaches the loss through it")
        }
        guard r.isDifferentiable(k) else { continue }
        if isParameter && !firstUse.contains(name) { firstUse.append(name) }
        reached = true
      }
      if reached {
        backwardNodes.insert(i)
        for o in n.outputs where !o.isEmpty { depends.insert(o) }
      }
    }
    parameterNames = firstUse
    for name in firstUse {
      var value = constants.removeValue(forKey: name)
      if logScales.contains(name), let s = value { value = s.mapFloats { log(max($0, 1e-30)) } }
      parameters[name] = value
      depends.insert(name)
    }
    logScales.formIntersection(firstUse)
    requiresGradient = depends
  }

  /// The number of trainable elements.
  var parameterCount: Int { parameterNames.reduce(0) { $0 + (parameters[$1]?.count ?? 0) } }

  // MARK: Forward

  /// Runs the graph on `feeds`. Training uses batch statistics (unless frozen) and dropout.
  func forward(_ feeds: [String: NDArray], training: Bool, rng: inout SplitMix64) throws -> Trace {
    var values = constants
    for (k, v) in parameters { values[k] = logScales.contains(k) ? v.mapFloats { exp($0) } : v }
    for (k, v) in feeds { values[k] = v }
    var nodeOutputs = [Int: [NDArray]]()
    for i in order {
      let n = graph.nodes[i]
      let inputs: [NDArray?] = try n.inputs.map { name in
        if name.isEmpty { return nil }
        guard let v = values[name] else { throw CompressorError.invalid("\(n.displayName): input '\(name)' has no value") }
        return v
      }
      let outputs = try run(n, inputs, training: training, rng: &rng)
      for (k, name) in n.outputs.enumerated() where !name.isEmpty && k < outputs.count { values[name] = outputs[k] }
      if backwardNodes.contains(i) { nodeOutputs[i] = outputs }
    }
    return Trace(values: values, nodeOutputs: nodeOutputs)
  }

  private func run(_ n: Node, _ inputs: [NDArray?], training: Bool, rng: inout SplitMix64) throws -> [NDArray] {
    switch n.opType {
    case FakeQuantize.opType:
      guard let w = inputs.first ?? nil, let name = n.inputs.first, let master = masters[name],
            inputs.count > 1, let scale = inputs[1] else {
        throw CompressorError.invalid("\(n.displayName): the quantized weight has no master")
      }
      let zero = inputs.count > 2 ? inputs[2] : nil
      let params = try QuantParameters(scales: scale.floats(), zeroPoints: zero?.floats() ?? [],
                                       axis: Int(n.attribute("axis")?.int ?? 1), type: master.type, shape: w.shape)
      return [FakeQuantize.forward(w, params)]
    case "BatchNormalization" where training && !options.freezeBatchNorm && n.isDefaultDomain:
      guard inputs.count >= 5, let x = inputs[0], let scale = inputs[1], let bias = inputs[2],
            var mean = constants[n.inputs[3]], var variance = constants[n.inputs[4]] else {
        throw CompressorError.invalid("\(n.displayName): BatchNormalization needs initializer statistics to train")
      }
      let momentum = n.attribute("momentum")?.float ?? 0.9
      let r = try batchNormTraining(x: x.asFloat(), scale: scale, bias: bias, runningMean: &mean, runningVar: &variance,
                                    epsilon: n.attribute("epsilon")?.float ?? 1e-5, momentum: momentum)
      constants[n.inputs[3]] = mean
      constants[n.inputs[4]] = variance
      return [r.y, r.mean, r.inverseStd]
    case "Dropout" where n.isDefaultDomain:
      guard let x = inputs.first ?? nil else { throw CompressorError.invalid("\(n.displayName): input 0 is required") }
      var ratio = n.attribute("ratio")?.float ?? 0.5
      if inputs.count > 1, let r = inputs[1] { ratio = try r.floats().first ?? ratio }
      guard training, ratio > 0 else { return [x] }
      let keep = 1 / (1 - min(ratio, 0.999))
      var mask = [Float](repeating: 0, count: x.count)
      for k in mask.indices where rng.nextFloat() >= ratio { mask[k] = keep }
      let m = NDArray(mask, shape: x.shape)
      return [NDArray.zipMap(try x.asFloat(), m) { $0 * $1 }, m]
    default:
      return try executor.evaluate(n, inputs)
    }
  }

  // MARK: Backward

  /// Gradients of the trainable parameters, given the gradients of the loss tensors.
  func backward(_ trace: Trace, seeds: [String: NDArray]) throws -> [String: NDArray] {
    var grads = seeds
    for i in order.reversed() where backwardNodes.contains(i) {
      var n = graph.nodes[i]
      let outGrads = n.outputs.map { $0.isEmpty ? nil : grads[$0] }
      if outGrads.allSatisfy({ $0 == nil }) { continue }
      guard let r = rule(n), let outputs = trace.nodeOutputs[i] else { continue }
      if n.opType == "BatchNormalization" && outputs.count >= 3 {
        n.attributes.append(Attribute(name: "training_mode", value: .int(1)))
      }
      let inputs: [NDArray?] = n.inputs.map { $0.isEmpty ? nil : trace.values[$0] }
      let needs = n.inputs.enumerated().map { k, name in !name.isEmpty && r.isDifferentiable(k) && requiresGradient.contains(name) }
      let context = GradientContext(node: n, inputs: inputs, outputs: outputs, outputGradients: outGrads, needs: needs,
                                    opset: opsets[n.isDefaultDomain ? "" : n.domain] ?? 1, executor: executor)
      let inGrads = try r.function(context)
      for (k, name) in n.inputs.enumerated() where k < inGrads.count && needs[k] {
        guard var g = inGrads[k] else { continue }
        guard let v = inputs[k], g.shape == v.shape, g.dataType == .float else {
          throw CompressorError.internalError("\(n.displayName): the gradient of input \(k) has shape \(inGrads[k]?.shape ?? []), not \(inputs[k]?.shape ?? [])")
        }
        if var existing = grads.removeValue(forKey: name) {
          existing.add(g)
          g = existing
        }
        grads[name] = g
      }
      for o in n.outputs { grads.removeValue(forKey: o) }
    }
    var result = [String: NDArray]()
    for name in parameterNames {
      var g = grads[name] ?? NDArray(zeros: .float, parameters[name]?.shape ?? [])
      // d/d(log s) = s · d/ds.
      if logScales.contains(name), let t = parameters[name] { g = NDArray.zipMap(g, t) { $0 * exp($1) } }
      result[name] = g
    }
    return result
  }

  // MARK: Export

  /// Writes trained parameters and running statistics into `model`'s initializers; quantized
  /// weights are rounded back to their stored type with their scale and zero point.
  func write(into model: inout Model) throws {
    func value(_ name: String) -> NDArray? {
      guard let v = parameters[name] else { return constants[name] }
      return logScales.contains(name) ? v.mapFloats { exp($0) } : v
    }
    for (i, t) in model.graph.initializers.enumerated() {
      if let master = masters[t.name], let w = value(t.name) {
        let node = master.node, type = master.type
        guard let scale = value(node.inputs[1]) else { continue }
        let zero = node.inputs.count > 2 && !node.inputs[2].isEmpty ? value(node.inputs[2]) : nil
        let p = try QuantParameters(scales: scale.floats(), zeroPoints: zero?.floats() ?? [],
                                    axis: Int(node.attribute("axis")?.int ?? 1), type: type, shape: w.shape)
        let levels = NDArray.filled(w.shape) { out, n in
          w.withFloats { ws in
            for k in 0..<n { out[k] = min(max((ws[k] / p.scale(k)).rounded(.toNearestOrEven) + p.zeroPoint(k), p.low), p.high) }
          }
        }
        model.graph.initializers[i] = try levels.converted(to: type).irTensor(name: t.name)
      } else if let v = value(t.name), v.dataType == .float, t.dataType == .float {
        model.graph.initializers[i] = v.irTensor(name: t.name)
      }
    }
  }
}
