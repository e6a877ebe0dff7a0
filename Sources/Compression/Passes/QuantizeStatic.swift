import Datasets
import Foundation
import IR
import Runtime
import Support

/// Static quantization in QDQ form: activations get ranges from calibration data, and every
/// Conv, MatMul and Gemm of the main graph reads its activations through QuantizeLinear →
/// DequantizeLinear pairs, its weight as int8 per output channel and its bias as int32 (scale
/// = input scale × weight scale), each through a DequantizeLinear. Outputs of quantized nodes are
/// quantized too (after a single following Relu, which the zero point then absorbs), so runtimes
/// can fuse each group into an integer kernel; graph outputs stay float.
///
/// Only float32 values are touched: integer index arithmetic (Shape/Gather/Range chains) never
/// is. Softmax outputs get the fixed range [0, 1]. Values that are not Conv/MatMul/Gemm inputs
/// or outputs — LayerNorm internals, residual sums, attention-mask additions — stay float.
public struct QuantizeStatic: Pass {
  public static let name = "quantize-static"
  public var calibrator: Calibrator
  /// Calibration samples: a directory or one data file.
  public var data: String
  /// int8 activations with zero point 0; otherwise uint8 with a zero point.
  public var symmetricActivations: Bool
  public var symmetricWeights: Bool
  public var filter: NodeFilter
  /// Keep the most sensitive nodes float until this quality holds (nil: quantize every node).
  public var target: QualityTarget?
  /// The weight-only pass that follows, applied to each candidate before it is scored, so the
  /// score is that of the model the command writes.
  public var weightsOfFloatNodes: QuantizeWeights?
  /// Where the search leaves the nodes it kept entirely float (read by that weight-only pass).
  public var keptFloat: KeptFloatNodes?
  /// Ends the search with the best model so far (nil: no limit).
  public var maxSeconds: Double?
  /// Measure every node's sensitivity to `target`'s metric instead of quantizing (`--analyze`).
  public var analyze = false
  /// Per-node decisions from a file (`--overrides`): nodes left float, calibration methods.
  public var overrides = QuantizeOverrides()
  /// SmoothQuant's α (`--smooth-alpha`: `SmoothActivations`), before calibration; nil: none.
  public var smoothAlpha: Float?
  /// Cross-layer equalization before calibration (`--equalize`: `EqualizeCrossLayer`).
  public var equalize = false
  /// Subtract each quantized node's weight-rounding shift ε·E[x] from its bias (`--bias-correction`).
  public var biasCorrection = false
  /// GPTQ for the weights of the nodes it quantizes (`WeightRounding`), its levels recorded here
  /// for every int8 weight made after it — the weight-only pass's too; nil: round to nearest.
  public var rounded: RoundedWeights?
  /// What `equalize` and `biasCorrection` are measured with against plain PTQ when there is no
  /// `target` (nil: not measured).
  public var comparison: QualityTarget?

  public init(calibrator: Calibrator, data: String, symmetricActivations: Bool = false, symmetricWeights: Bool = true,
              filter: NodeFilter = .init(), target: QualityTarget? = nil, weightsOfFloatNodes: QuantizeWeights? = nil) {
    self.calibrator = calibrator
    self.data = data
    self.symmetricActivations = symmetricActivations
    self.symmetricWeights = symmetricWeights
    self.filter = filter
    self.target = target
    self.weightsOfFloatNodes = weightsOfFloatNodes
  }

  static let quantizable: Set<String> = ["Conv", "MatMul", "Gemm"]

  /// One node to quantize: which inputs are activations, which is the weight and the bias, and
  /// where its output is quantized.
  struct Plan {
    var node: Int
    var activations: [Int]
    var weight: (input: Int, axis: Int)?
    var bias: Int?
    var outputAnchor: String?
    /// One weight scale, not one per channel (`--overrides` weights: per-tensor).
    var perTensorWeight = false

    /// The axis of the weight's scales: nil for one scale (per tensor).
    func weightAxis(perChannel: Bool) -> Int? { perChannel && !perTensorWeight ? weight?.axis : nil }
  }

  /// An activation's quantization parameters; `type` is uint8/int8, or uint16/int16 for
  /// `--overrides` bits: 16.
  struct Params {
    var scale: Float
    var zeroPoint: Int32
    var type: DataType
  }

  /// Activations' width and zero-point scheme, per tensor, where `--overrides` gives them.
  struct ActivationKind: Equatable { var bits: Int; var symmetric: Bool }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    let opset = model.defaultOpsetVersion ?? 1
    let graph = model.graph
    // Subgraph nodes are never calibrated (the executor's observer sees the main graph only).
    for g in graph.nestedGraphs {
      for n in g.nodes where n.isDefaultDomain && Self.quantizable.contains(n.opType) {
        changes.append(.init(target: label(n), action: "skipped", detail: "inside a subgraph: its activations are not calibrated"))
      }
    }
    guard opset >= 10 else {
      for n in graph.nodes where n.isDefaultDomain && Self.quantizable.contains(n.opType) {
        changes.append(.init(target: label(n), action: "skipped", detail: "opset \(opset) has no QuantizeLinear (needs 10)"))
      }
      return PassResult(pass: Self.name, changes: changes)
    }
    let perChannel = opset >= 13
    let plain = model
    var algorithmChanges = [PassResult.Change]()
    if let alpha = smoothAlpha {
      algorithmChanges += try SmoothActivations(alpha: alpha, calibrator: calibrator, data: data).run(&model, context).changes
    }
    if equalize { algorithmChanges += try EqualizeCrossLayer().run(&model, context).changes }
    var setup = try calibrate(model, perChannel: perChannel, withMeans: biasCorrection)
    // GPTQ's levels for this model's weights; the pass rounds with them from here on (bias
    // correction takes off what they shift, and the comparison below scores them).
    var levels = rounded.map { _ in RoundedWeights() }
    var roundingChanges = try levels.map { try roundWeights(model, setup: setup, perChannel: perChannel, into: $0) } ?? []
    if let measured = levels, !measured.entries.isEmpty, let goal = target ?? comparison {
      // Kept only where it measures better, like the algorithms below: GPTQ fits each layer to
      // float inputs, and with quantized activations a model can come out worse.
      let compared = try compareRounding(model, setup: setup, levels: measured, goal: goal, perChannel: perChannel)
      if !compared.applied { levels = nil }
      roundingChanges.append(compared.change)
    }
    var withLevels = self
    withLevels.rounded = levels
    var corrections = [Int: BiasCorrection.Correction]()
    if biasCorrection {
      let found = try withLevels.correctBiases(model, setup: setup, perChannel: perChannel)
      corrections = found.corrections
      algorithmChanges += found.changes
    }
    keptFloat?.nodes = setup.floatByOverrides
    if equalize || biasCorrection || smoothAlpha != nil, let goal = target ?? comparison {
      // Kept only where they measure better, as GPTQ keeps round-to-nearest where it is better.
      let compared = try withLevels.compareWithPlain(plain, model, setup: setup, corrections: corrections, goal: goal,
                                                     perChannel: perChannel)
      if let chosen = compared.plainIsBetter {
        // What the algorithms would have done is not what the model got: only the comparison stays.
        algorithmChanges = []
        model = plain
        setup = chosen.setup
        if let own = chosen.rounding { (levels, roundingChanges) = own }
        corrections = [:]
      }
      algorithmChanges.append(compared.change)
    }
    algorithmChanges += roundingChanges
    rounded?.entries = levels?.entries ?? [:]
    changes += setup.changes
    let rangeChanges = setup.rangeChanges
    let (plans, params) = (setup.plans, setup.params)

    // 4. Rewrite every planned node, or search for the fewest float nodes that meet the target.
    if analyze, let target {
      changes += try analyzeNodes(model, target: target, plans: plans, params: params, perChannel: perChannel,
                                  corrections: corrections, context: context)
    } else if let target {
      changes += try search(&model, target: target, plans: plans, params: params, perChannel: perChannel,
                            corrections: corrections, context: context)
    } else {
      let corrected = Dictionary(corrections.values.map { ($0.bias.name, $0.bias) }, uniquingKeysWith: { a, _ in a })
      model.graph.initializers = model.graph.initializers.map { corrected[$0.name] ?? $0 }
      changes += try rewrite(&model, plans: plans, params: params, perChannel: perChannel)
    }
    return PassResult(pass: Self.name, changes: changes + algorithmChanges + rangeChanges)
  }

  /// What calibration decides: the nodes to quantize (and why others are not), each
  /// activation's parameters, and, for bias correction, each quantized node's input means.
  struct Setup {
    var plans: [Plan]
    var params: [String: Params]
    var changes: [PassResult.Change]
    var rangeChanges: [PassResult.Change]
    var floatByOverrides: Set<String>
    var means: [String: [Double]]
  }

  func calibrate(_ model: Model, perChannel: Bool, withMeans: Bool) throws -> Setup {
    var changes = [PassResult.Change]()
    let graph = model.graph
    let initializers = graph.initializersByName
    let consumers = graph.readers()
    let graphOutputs = Set(graph.outputs.map(\.name))
    let uses = graph.uses()

    // 1. Which nodes, and which of their values.
    var plans = [Plan]()
    var floatByOverrides = Set<String>()
    var methods = [String: CalibrationMethod]()
    var kinds = [String: ActivationKind]()
    for (i, n) in graph.nodes.enumerated() where n.isDefaultDomain && Self.quantizable.contains(n.opType) {
      func skip(_ why: String) { changes.append(.init(target: label(n), action: "skipped", detail: why)) }
      if let why = filter.refusal(n) { skip(why); continue }
      let rule = overrides.rule(for: n)
      if let rule, rule.skip {
        skip("kept float by --overrides '\(rule.pattern)'\(rule.floatWeights ? ", its weight too" : "")")
        if rule.floatWeights { floatByOverrides.insert(label(n)) }
        continue
      }
      guard n.inputs.count >= 2, n.outputs.count == 1 else { skip("unexpected inputs or outputs"); continue }
      var plan = Plan(node: i, activations: [])
      var ok = true
      for (slot, name) in n.inputs.prefix(2).enumerated() {
        if let t = initializers[name] {
          guard slot == 1, t.dataType == .float else { skip("input '\(name)' is a \(t.dataType) initializer in position \(slot)"); ok = false; break }
          guard let axis = QuantizeWeights.channelAxis(n, rank: t.dims.count) else { skip("weight '\(name)' has no per-channel layout"); ok = false; break }
          // Its scales, zero points and QDQ nodes would outweigh it.
          guard t.elementCount >= 16 else { skip("weight '\(name)' has \(t.elementCount) elements, too few to gain from quantization"); ok = false; break }
          plan.weight = (1, axis)
        } else {
          if (n.opType == "Conv" || n.opType == "Gemm") && slot == 1 { skip("its weight '\(name)' is computed, not an initializer"); ok = false; break }
          plan.activations.append(slot)
        }
      }
      guard ok else { continue }
      if n.opType == "Gemm" {
        let transA = n.attribute("transA")?.int ?? 0, alpha = n.attribute("alpha")?.float ?? 1, beta = n.attribute("beta")?.float ?? 1
        if plan.weight != nil && n.inputs.count > 2, let b = initializers[n.inputs[2]], b.dims.count == 1, b.dataType == .float,
           transA == 0, alpha == 1, beta == 1 {
          plan.bias = 2
        }
      } else if n.opType == "Conv", n.inputs.count > 2, let b = initializers[n.inputs[2]], b.dataType == .float {
        plan.bias = 2
      }
      // The output, or the output of a Relu that alone reads it (its zero point absorbs the Relu).
      var anchor = n.outputs[0]
      if let readers = consumers[anchor], readers.count == 1, uses[anchor] == 1, !graphOutputs.contains(anchor),
         graph.nodes[readers[0]].opType == "Relu", graph.nodes[readers[0]].isDefaultDomain, graph.nodes[readers[0]].outputs.count == 1 {
        anchor = graph.nodes[readers[0]].outputs[0]
      }
      plan.outputAnchor = graphOutputs.contains(anchor) ? nil : anchor
      plan.perTensorWeight = rule?.perTensorWeight ?? false
      // The first node in graph order that names a shared tensor's method or kind decides it.
      let activations = plan.activations.map({ n.inputs[$0] }) + (plan.outputAnchor.map { [$0] } ?? [])
      if let rule, rule.bits != nil || rule.symmetric != nil {
        let kind = ActivationKind(bits: rule.bits ?? 8, symmetric: rule.symmetric ?? symmetricActivations)
        for name in activations where kinds[name] == nil { kinds[name] = kind }
      }
      if let method = rule?.calibration {
        for name in activations where methods[name] == nil { methods[name] = method }
      }
      plans.append(plan)
    }

    // 2. Calibrate every activation involved.
    var wanted = Set<String>()
    for p in plans {
      for a in p.activations { wanted.insert(graph.nodes[p.node].inputs[a]) }
      if let o = p.outputAnchor { wanted.insert(o) }
    }
    let dataset = try Dataset(path: data, inputNames: graph.feedNames)
    var calibrator = self.calibrator
    if withMeans {
      // The data input of each node: channels on axis 1 for a Conv, last for a MatMul/Gemm.
      for p in plans where p.weight != nil {
        let n = graph.nodes[p.node]
        calibrator.channelAxes[n.inputs[0]] = n.opType == "Conv" ? 1 : -1
      }
    }
    // 16 bits: the range itself, since with 65536 levels clipping costs more than rounding (the
    // other methods trade one for the other at 8-bit resolution).
    for (name, kind) in kinds where kind.bits == 16 && methods[name] == nil { methods[name] = .minmax }
    let (ranges, samples) = try calibrator.run(model: model, tensors: wanted.sorted(), data: dataset, methods: methods)
    var producers = [String: Node]()
    for n in graph.nodes { for o in n.outputs { producers[o] = n } }

    // 3. Quantization parameters per activation.
    var params = [String: Params]()
    var rangeChanges = [PassResult.Change]()
    for name in wanted.sorted() {
      guard let r = ranges[name] else { continue }
      if let other = r.otherType {
        rangeChanges.append(.init(target: name, action: "skipped", detail: "\(other) values; only float32 activations are quantized"))
        continue
      }
      var lo = r.lo, hi = r.hi, note = ""
      if producers[name]?.opType == "Softmax" { lo = 0; hi = 1; note = "; Softmax output: fixed range [0, 1]" }
      var scale: Float = 1, zp: Int32 = 0
      let kind = kinds[name] ?? ActivationKind(bits: 8, symmetric: symmetricActivations)
      if let p = affineParameters(lo: lo, hi: hi, symmetric: kind.symmetric, bits: kind.bits) {
        (scale, zp) = p
      } else {
        note += "; constant zero: scale 1"
      }
      let type: DataType = kind.bits == 16 ? (kind.symmetric ? .int16 : .uint16) : (kind.symmetric ? .int8 : .uint8)
      params[name] = Params(scale: scale, zeroPoint: zp, type: type)
      var detail = String(format: "range [%g, %g] (seen [%g, %g] over %d samples) → %@ scale %g zero point %d; clipped %.4f%%",
                          lo, hi, r.observedMin, r.observedMax, samples, "\(type)", scale, zp, r.clippedFraction * 100)
      if r.excluded > 0 { detail += "; \(r.excluded) non-finite or |x| ≥ 1e6 values left out of the range" }
      var values: [String: Double] = [
        "lo": Double(lo), "hi": Double(hi), "observedMin": Double(r.observedMin), "observedMax": Double(r.observedMax),
        "scale": Double(scale), "zeroPoint": Double(zp), "clippedFraction": r.clippedFraction,
        "excluded": Double(r.excluded), "samples": Double(samples),
      ]
      if let chosen = r.chosen {
        // auto: the winner and every candidate's error where it lands (the readers' outputs).
        detail += "; auto chose \(chosen) (readers' relative error: "
          + r.errors.map { String(format: "%@ %.3g", $0.method.description, $0.error) }.joined(separator: ", ") + ")"
        for e in r.errors { values["error.\(e.method)"] = e.error }
      }
      rangeChanges.append(.init(target: name, action: "calibrated", detail: detail + note, values: values))
    }

    var means = [String: [Double]]()
    for (name, r) in ranges { if let m = r.channelMeans { means[name] = m } }
    return Setup(plans: plans, params: params, changes: changes, rangeChanges: rangeChanges, floatByOverrides: floatByOverrides,
                 means: means)
  }

  /// Quantizes every node of `plans` with the calibrated `params`: weights and biases first, then
  /// activation pairs after their producers.
  func rewrite(_ model: inout Model, plans: [Plan], params: [String: Params], perChannel: Bool) throws -> [PassResult.Change] {
    let graph = model.graph
    var changes = [PassResult.Change]()
    let initializers = graph.initializersByName
    var newInitializers = [Tensor]()
    var removedInitializers = Set<String>()
    var front = [Node]()
    var quantizedWeights = [String: QuantizedWeight]()
    var rewired = [Int: [Int: String]]()  // node → input slot → new name
    var fullyQuantized = Set<String>()  // anchors: every reader takes the dequantized value
    var inputOnly = [String: Set<Int>]()  // activations: only the quantized readers do
    var names = NameScope(model)
    for p in plans {
      let n = graph.nodes[p.node]
      if let bad = p.activations.first(where: { params[n.inputs[$0]] == nil }) {
        changes.append(.init(target: label(n), action: "skipped", detail: "activation '\(n.inputs[bad])' is not float32"))
        continue
      }
      let types = Set(p.activations.compactMap { params[n.inputs[$0]]?.type } + [p.outputAnchor.flatMap { params[$0]?.type }].compactMap { $0 })
      let typeNames = types.isEmpty ? [symmetricActivations ? "int8" : "uint8"] : types.map { "\($0)" }.sorted()
      var detail = "QDQ: activations \(typeNames.map { "\($0) \($0.hasPrefix("u") ? "asymmetric" : "symmetric")" }.joined(separator: " and ")) per-tensor"
      var values = [String: Double]()
      var weightScales: [Float]?
      if let (wi, _) = p.weight {
        let name = n.inputs[wi]
        let q: QuantizedWeight
        if let seen = quantizedWeights[name] {
          q = seen
        } else {
          guard let t = initializers[name] else { continue }
          q = try QuantizedWeight(t, axis: p.weightAxis(perChannel: perChannel), symmetric: symmetricWeights,
                                  names: (names.fresh("\(name).int8"), names.fresh("\(name).scale"),
                                          names.fresh("\(name).zero_point")), rounded: rounded)
          quantizedWeights[name] = q
          newInitializers.append(q.values)
          newInitializers.append(q.scale)
          if let zp = q.zeroPoint { newInitializers.append(zp) }
          removedInitializers.insert(name)
          front.append(q.dequantize(output: name, nodeName: names.fresh("\(name).dequantize")))
        }
        weightScales = q.scales
        detail += ", weight \(q.scheme) SQNR \(q.sqnrText) dB"
        values = q.metrics
      }
      if let bi = p.bias, let ws = weightScales, let xs = params[n.inputs[0]]?.scale, let b = initializers[n.inputs[bi]] {
        let bias = try NDArray(b).floats()
        let channels = bias.count
        if ws.count == 1 || ws.count == channels, bias.allSatisfy(\.isFinite) {
          let scales = (0..<channels).map { xs * ws[ws.count == 1 ? 0 : $0] }
          let q = zip(bias, scales).map { Double($0 / $1).rounded(.toNearestOrEven) }
          if q.allSatisfy({ abs($0) < 2_147_483_647 }) && scales.allSatisfy(\.isNormal) {
            let qName = names.fresh("\(b.name).int32"), sName = names.fresh("\(b.name).scale")
            let ints = q.map { Int32($0) }
            newInitializers.append(Tensor(name: qName, dataType: .int32, dims: b.dims,
                                          data: ByteBuffer(copying: ints.withUnsafeBytes { Array($0) })))
            newInitializers.append(Tensor(name: sName, dataType: .float, dims: perChannel ? [Int64(channels)] : [],
                                          data: ByteBuffer(copying: (perChannel ? scales : [scales[0]]).withUnsafeBytes { Array($0) })))
            let dqName = names.fresh("\(b.name).dequantized")
            front.append(Node(name: names.fresh("\(b.name).dequantize"), opType: "DequantizeLinear", inputs: [qName, sName], outputs: [dqName],
                              attributes: perChannel ? [Attribute(name: "axis", value: .int(0))] : []))
            rewired[p.node, default: [:]][bi] = dqName
            detail += ", bias int32"
          } else {
            detail += ", bias float (too large for int32 at this scale)"
          }
        }
      }
      for a in p.activations { inputOnly[n.inputs[a], default: []].insert(p.node) }
      if let o = p.outputAnchor, params[o] != nil { fullyQuantized.insert(o); detail += ", output quantized" }
      changes.append(.init(target: label(n), action: "quantized", detail: detail, values: values.isEmpty ? nil : values))
    }
    let paired = fullyQuantized.union(inputOnly.keys).filter { params[$0] != nil }
    // Each pair's names, allocated in name order so that the same model always gets the same ones.
    var pairNames = [String: (scale: String, zeroPoint: String, quantized: String, dequantized: String)]()
    for name in paired.sorted() {
      pairNames[name] = (names.fresh("\(name).scale"), names.fresh("\(name).zero_point"),
                         names.fresh("\(name).quantized"), names.fresh("\(name).dequantized"))
    }
    for (name, readers) in inputOnly where !fullyQuantized.contains(name) {
      guard let dequantized = pairNames[name]?.dequantized else { continue }
      for r in readers {
        for (slot, input) in graph.nodes[r].inputs.enumerated() where input == name && rewired[r]?[slot] == nil {
          rewired[r, default: [:]][slot] = dequantized
        }
      }
    }
    // 16-bit QuantizeLinear is standard from opset 21; below it, ONNX Runtime's com.microsoft
    // pair has the same inputs and meaning.
    let sixteenBitDomain = (model.defaultOpsetVersion ?? 1) >= 21 ? "" : "com.microsoft"
    var usedContribPair = false
    func pair(_ name: String) -> [Node] {
      guard let p = params[name], let pn = pairNames[name] else { return [] }
      let sName = pn.scale, zName = pn.zeroPoint
      newInitializers.append(Tensor(name: sName, dataType: .float, dims: [],
                                    data: ByteBuffer(copying: [p.scale].withUnsafeBytes { Array($0) })))
      let zeroBytes: [UInt8]
      switch p.type {
      case .int8: zeroBytes = [UInt8(bitPattern: Int8(p.zeroPoint))]
      case .uint16: zeroBytes = withUnsafeBytes(of: UInt16(p.zeroPoint).littleEndian) { Array($0) }
      case .int16: zeroBytes = withUnsafeBytes(of: Int16(p.zeroPoint).littleEndian) { Array($0) }
      default: zeroBytes = [UInt8(p.zeroPoint)]
      }
      newInitializers.append(Tensor(name: zName, dataType: p.type, dims: [], data: ByteBuffer(copying: zeroBytes)))
      let domain = p.type == .int16 || p.type == .uint16 ? sixteenBitDomain : ""
      if !domain.isEmpty { usedContribPair = true }
      return [Node(name: names.fresh("\(name).quantize"), opType: "QuantizeLinear", domain: domain, inputs: [name, sName, zName],
                   outputs: [pn.quantized]),
              Node(name: names.fresh("\(name).dequantize"), opType: "DequantizeLinear", domain: domain, inputs: [pn.quantized, sName, zName],
                   outputs: [pn.dequantized])]
    }
    var nodes = front
    let graphInputs = Set(graph.inputs.map(\.name))
    for name in paired.sorted() where graphInputs.contains(name) { nodes += pair(name) }
    for (i, var n) in graph.nodes.enumerated() {
      for (slot, input) in n.inputs.enumerated() {
        if let new = rewired[i]?[slot] {
          n.inputs[slot] = new
        } else if fullyQuantized.contains(input), let dequantized = pairNames[input]?.dequantized {
          n.inputs[slot] = dequantized
        }
      }
      nodes.append(n)
      for o in n.outputs where paired.contains(o) { nodes += pair(o) }
    }
    model.graph.nodes = nodes
    model.graph.initializers.removeAll { removedInitializers.contains($0.name) }
    model.graph.initializers += newInitializers
    model.graph.inputs.removeAll { removedInitializers.contains($0.name) }
    if usedContribPair && !model.opsetImports.contains(where: { $0.domain == "com.microsoft" }) {
      model.opsetImports.append(OpsetImport(domain: "com.microsoft", version: 1))
    }
    return changes
  }

  /// Quality-targeted mixed precision. Quantize everything; if the target fails, choose what a
  /// node kept float keeps: its activations only (weights stay int8) when the weight-only model
  /// meets the target, else its weights too (some models lose the target on int8 weights
  /// alone). Then measure each node's sensitivity (the score with only it quantized), and find
  /// by bisection the shortest most-damaging-first list to keep float that meets the target —
  /// the score falls as nodes are quantized in practice, and every bisection step is measured,
  /// so what is kept is a measured success. Not met: the best model seen, and the report says by how much it fell
  /// short (the command's gate then exits 2). `maxSeconds` ends the search with the best so far.
  func search(_ model: inout Model, target: QualityTarget, plans: [Plan], params: [String: Params], perChannel: Bool,
              corrections: [Int: BiasCorrection.Correction], context: PassContext) throws -> [PassResult.Change] {
    let started = DispatchTime.now().uptimeNanoseconds
    func outOfTime() -> Bool {
      guard let maxSeconds else { return false }
      return Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 > maxSeconds
    }
    let original = model
    let candidates = try Candidates(pass: self, original: original, target: target, plans: plans, params: params, perChannel: perChannel,
                                    corrections: corrections)
    typealias Candidate = Candidates.Candidate
    func candidate(float: Set<Int>, weightsToo: Bool) throws -> Candidate { try candidates.make(float: float, weightsToo: weightsToo) }
    let name = target.measureName
    func format(_ v: Double) -> String { String(format: "%.4f", v) }
    let all = try candidate(float: [], weightsToo: false)
    var best = all
    var sensitivity = [PassResult.Change]()
    var weightsToo = false
    var stoppedEarly = false
    var tried = 1
    stoppedEarly = !target.isMet(by: all.score) && outOfTime()
    if !target.isMet(by: all.score) && !plans.isEmpty && !stoppedEarly {
      let everyNode = Set(plans.indices)
      var base = try candidate(float: everyNode, weightsToo: false)
      tried += 1
      if !target.isMet(by: base.score) {
        weightsToo = true
        base = try candidate(float: everyNode, weightsToo: true)
        tried += 1
      }
      if target.isBetter(base.score, than: best.score) { best = base }
      // Each node's damage: the score with only it quantized, everything else as `base`. Errors
      // that spread over many nodes leave every single node's "kept float" gain in the noise of
      // the others; alone, each shows what it costs.
      var alone = [(plan: Int, score: Double)]()
      for i in plans.indices {
        if outOfTime() { stoppedEarly = true; break }
        let c = try candidate(float: everyNode.subtracting([i]), weightsToo: weightsToo)
        tried += 1
        alone.append((i, c.score))
        let n = original.graph.nodes[plans[i].node]
        sensitivity.append(.init(target: label(n), action: "sensitivity",
                                 detail: "\(name) \(format(c.score)) with only this node quantized (\(format(base.score)) with none\(weightsToo ? ", weights float" : ""), \(format(all.score)) with all)",
                                 values: ["whenAloneQuantized": c.score, "loss": target.lowerIsBetter ? c.score - base.score : base.score - c.score]))
      }
      if target.isMet(by: base.score) && !stoppedEarly {
        // Most damaging first; ties in graph order. Bisection on how many of them stay float:
        // `lo` falls short, `hi` is the shortest list known to meet the target.
        alone.sort { $0.score != $1.score ? target.isBetter($1.score, than: $0.score) : $0.plan < $1.plan }
        let order = alone.map(\.plan)
        var lo = 0, hi = order.count
        while hi - lo > 1 {
          if outOfTime() { stoppedEarly = true; break }
          let mid = (lo + hi) / 2
          let float = Set(order.prefix(mid))
          let c = try candidate(float: float, weightsToo: weightsToo)
          tried += 1
          if target.isMet(by: c.score) {
            hi = mid
            best = c
          } else {
            lo = mid
          }
        }
      }
    }
    let chosen = try candidates.final(best, context: context)
    model = chosen.model
    best.score = chosen.score
    if weightsToo { keptFloat?.nodes.formUnion(best.float.map { label(original.graph.nodes[plans[$0].node]) }) }
    var changes = chosen.changes
    for i in best.float.sorted() {
      changes.append(.init(target: label(original.graph.nodes[plans[i].node]), action: "kept float",
                           detail: "among the most sensitive nodes for \(target.description)\(weightsToo ? "; its weight too (the weight-only model misses the target)" : "")",
                           values: ["floatWeights": weightsToo ? 1 : 0]))
    }
    let met = target.isMet(by: best.score)
    var detail = "\(target.description)\(target.isDefault ? " (the default floor; not a gate)" : "") \(met ? "met" : "not met"): \(name) \(format(best.score)) with \(best.float.count) of \(plans.count) nodes float"
      + (weightsToo && !best.float.isEmpty ? ", weights included" : "") + " (\(format(all.score)) with every node quantized; \(tried) candidates measured)"
    if !met { detail += "; \(format(target.shortfall(best.score))) short with every candidate tried" }
    if stoppedEarly { detail += "; stopped at the time limit (--max-seconds) with the best so far" }
    changes.append(.init(target: "model", action: "target", detail: detail,
                         values: ["met": met ? 1 : 0, "score": best.score, "limit": target.limit, "allQuantized": all.score,
                                  "floatNodes": Double(best.float.count), "candidates": Double(plans.count),
                                  "measured": Double(tried), "floatWeights": weightsToo ? 1 : 0, "stoppedEarly": stoppedEarly ? 1 : 0]))
    return changes + sensitivity
  }
}

extension QuantizeStatic {
  /// Models with some planned nodes left float, scored against the float model. A node left
  /// float keeps int8 weights (the weight-only pass that follows), or float ones too. Candidates
  /// are scored with every such weight replaced once by the floats its DequantizeLinear will
  /// give (the weight-only pass is not run, nor its dequantizers, for each of them); `final`
  /// builds the chosen one for real.
  struct Candidates {
    typealias Candidate = (float: Set<Int>, weightsToo: Bool, score: Double)
    let pass: QuantizeStatic
    let original: Model
    let scorer: TargetScorer
    let plans: [Plan]
    let params: [String: Params]
    let perChannel: Bool
    /// Weight name → its int8 values as floats; and the weights of each plan's node.
    let rounded: [String: Tensor]
    /// Bias correction: each plan's corrected bias, used while its weight is int8.
    let corrections: [Int: BiasCorrection.Correction]

    init(pass: QuantizeStatic, original: Model, target: QualityTarget, plans: [Plan], params: [String: Params], perChannel: Bool,
         corrections: [Int: BiasCorrection.Correction] = [:]) throws {
      self.pass = pass; self.original = original; self.plans = plans; self.params = params; self.perChannel = perChannel
      self.corrections = corrections
      scorer = try TargetScorer(reference: original, target: target)
      rounded = try pass.weightsOfFloatNodes?.dequantizedWeights(original) ?? [:]
    }

    /// The corrected biases of the nodes whose weights are quantized.
    func correctedBiases(floatWeights keepFloat: Set<String>) -> [String: Tensor] {
      var biases = [String: Tensor]()
      for c in corrections.values where !keepFloat.contains(c.node) { biases[c.bias.name] = c.bias }
      return biases
    }

    /// The nodes whose weights stay float: the overrides', and `float` with `weightsToo`.
    func nodesWithFloatWeights(float: Set<Int>, weightsToo: Bool) -> Set<String> {
      let given = pass.keptFloat?.nodes ?? []
      return weightsToo ? given.union(float.map { label(original.graph.nodes[plans[$0].node]) }) : given
    }

    func make(float: Set<Int>, weightsToo: Bool) throws -> Candidate {
      let keepFloat = nodesWithFloatWeights(float: float, weightsToo: weightsToo)
      var floatWeights = Set<String>()
      for n in original.graph.nodes where keepFloat.contains(label(n)) {
        for i in QuantizeWeights.weightInputs(of: n) where i < n.inputs.count { floatWeights.insert(n.inputs[i]) }
      }
      var m = original
      let biases = correctedBiases(floatWeights: keepFloat)
      m.graph.initializers = m.graph.initializers.map { t in floatWeights.contains(t.name) ? t : rounded[t.name] ?? biases[t.name] ?? t }
      _ = try pass.rewrite(&m, plans: plans.indices.filter { !float.contains($0) }.map { plans[$0] }, params: params, perChannel: perChannel)
      return (float, weightsToo, try scorer.score(m))
    }

    /// The chosen candidate built from the float weights, as the command writes it (the
    /// weight-only pass follows), and its score measured on that model.
    func final(_ c: Candidate, context: PassContext) throws -> (model: Model, changes: [PassResult.Change], score: Double) {
      var m = original
      let biases = correctedBiases(floatWeights: nodesWithFloatWeights(float: c.float, weightsToo: c.weightsToo))
      m.graph.initializers = m.graph.initializers.map { biases[$0.name] ?? $0 }
      let changes = try pass.rewrite(&m, plans: plans.indices.filter { !c.float.contains($0) }.map { plans[$0] }, params: params,
                                     perChannel: perChannel)
      var scored = m
      if var weights = pass.weightsOfFloatNodes {
        weights.keptFloat = KeptFloatNodes(nodesWithFloatWeights(float: c.float, weightsToo: c.weightsToo))
        _ = try weights.run(&scored, context)
      }
      return (m, changes, try scorer.score(scored))
    }
  }

  /// `--analyze`: each node's sensitivity both ways — the score with only it quantized (every
  /// other node float, int8 weights), and with only it float (every other node quantized) —
  /// ranked by the first, most damaging first. The model is left as it was.
  func analyzeNodes(_ model: Model, target: QualityTarget, plans: [Plan], params: [String: Params], perChannel: Bool,
                    corrections: [Int: BiasCorrection.Correction], context: PassContext) throws -> [PassResult.Change] {
    let candidates = try Candidates(pass: self, original: model, target: target, plans: plans, params: params, perChannel: perChannel,
                                    corrections: corrections)
    let everyNode = Set(plans.indices)
    let all = try candidates.make(float: [], weightsToo: false).score
    let none = try candidates.make(float: everyNode, weightsToo: false).score
    var rows = [(change: PassResult.Change, alone: Double, plan: Int)]()
    let name = target.measureName
    func format(_ v: Double) -> String { String(format: "%.4f", v) }
    for i in plans.indices {
      let alone = try candidates.make(float: everyNode.subtracting([i]), weightsToo: false).score
      let floatAlone = try candidates.make(float: [i], weightsToo: false).score
      let loss = target.lowerIsBetter ? alone - none : none - alone
      let gain = target.lowerIsBetter ? all - floatAlone : floatAlone - all
      let n = model.graph.nodes[plans[i].node]
      rows.append((.init(target: label(n), action: "analyzed",
                         detail: "\(name) \(format(alone)) with only this node quantized (loss \(format(loss))), \(format(floatAlone)) with only this node float (gain \(format(gain)))",
                         values: ["whenAloneQuantized": alone, "loss": loss, "whenAloneFloat": floatAlone, "gain": gain]), alone, i))
    }
    rows.sort { $0.alone != $1.alone ? target.isBetter($1.alone, than: $0.alone) : $0.plan < $1.plan }
    var changes = rows.enumerated().map { rank, row -> PassResult.Change in
      var c = row.change
      c.values?["rank"] = Double(rank + 1)
      return c
    }
    changes.append(.init(target: "model", action: "analysis",
                         detail: "\(name) \(format(all)) with every node quantized, \(format(none)) with none (int8 weights); \(plans.count) nodes, \(2 * plans.count + 2) models measured on \(target.data)",
                         values: ["allQuantized": all, "noneQuantized": none, "nodes": Double(plans.count)]))
    return changes
  }
}

extension QuantizeStatic {
  /// Bias correction for every planned node with a weight, a bias of its own and its input's
  /// means: the weight rounded as the pass will round it, its shift ε·E[x] taken off the bias.
  func correctBiases(_ model: Model, setup: Setup, perChannel: Bool)
    throws -> (corrections: [Int: BiasCorrection.Correction], changes: [PassResult.Change]) {
    let graph = model.graph
    let initializers = graph.initializersByName
    let readers = graph.readers()
    let uses = graph.uses()
    var corrections = [Int: BiasCorrection.Correction]()
    var changes = [PassResult.Change]()
    for (k, p) in setup.plans.enumerated() {
      guard let (wi, _) = p.weight else { continue }
      let n = graph.nodes[p.node]
      func skip(_ why: String) { changes.append(.init(target: label(n), action: "bias not corrected", detail: why)) }
      guard let w = initializers[n.inputs[wi]] else { continue }
      guard let bias = BiasCorrection.bias(of: n, in: graph, initializers: initializers, uses: uses, readers: readers) else {
        skip("no bias of its own to correct"); continue
      }
      guard let means = setup.means[n.inputs[0]] else { skip("its input's channel means were not measured"); continue }
      let q = try QuantizedWeight(w, axis: p.weightAxis(perChannel: perChannel), symmetric: symmetricWeights, names: (w.name, "", ""),
                                  rounded: rounded)
      guard let c = try BiasCorrection.correct(n, weight: w, rounded: try NDArray(q.dequantized(name: w.name)).floats(),
                                               means: means, bias: bias) else {
        skip("its weight, input and bias do not line up channel by channel"); continue
      }
      corrections[k] = c
      changes.append(.init(target: label(n), action: "bias corrected",
                           detail: String(format: "'%@': the int8 weight's output shift ε·E[x] taken off, up to %.3g (mean %.3g) per channel",
                                          bias.tensor.name, c.largestShift, c.meanShift),
                           values: ["largestShift": c.largestShift, "meanShift": c.meanShift]))
    }
    return (corrections, changes)
  }

  /// Every node quantized with the algorithms asked for, against plain PTQ (the model as it
  /// came, calibrated the same way), scored on the same data. When plain PTQ scores better, its
  /// calibration is returned — and its own GPTQ levels when the algorithms had changed the
  /// weights — and the pass goes on without the algorithms.
  func compareWithPlain(_ plain: Model, _ model: Model, setup: Setup, corrections: [Int: BiasCorrection.Correction],
                        goal: QualityTarget, perChannel: Bool) throws
    -> (change: PassResult.Change, plainIsBetter: (setup: Setup, rounding: (RoundedWeights?, [PassResult.Change])?)?) {
    let changedWeights = equalize || smoothAlpha != nil
    let plainSetup = changedWeights ? try calibrate(plain, perChannel: perChannel, withMeans: false) : setup
    // Plain PTQ with its own GPTQ levels when the algorithms changed the weights.
    var plainPass = self
    var plainRounding: (RoundedWeights?, [PassResult.Change])?
    if changedWeights, rounded != nil {
      let levels = RoundedWeights()
      plainRounding = (levels, try roundWeights(plain, setup: plainSetup, perChannel: perChannel, into: levels))
      plainPass.rounded = levels
    }
    let before = try Candidates(pass: plainPass, original: plain, target: goal, plans: plainSetup.plans, params: plainSetup.params,
                                perChannel: perChannel).make(float: [], weightsToo: false).score
    let after = try Candidates(pass: self, original: model, target: goal, plans: setup.plans, params: setup.params,
                               perChannel: perChannel, corrections: corrections).make(float: [], weightsToo: false).score
    let names = (smoothAlpha.map { [String(format: "SmoothQuant α %.2f", $0)] } ?? []) + (equalize ? ["cross-layer equalization"] : [])
      + (biasCorrection ? ["bias correction"] : [])
    let metric = goal.measureName
    let kept = !goal.isBetter(before, than: after)
    var detail = String(format: "%@ %.6f with %@, %.6f with plain PTQ (every node quantized; same calibration and quality data)",
                        metric, after, names.joined(separator: " and "), before)
    detail += kept ? "; applied" : "; not applied: plain PTQ measures better"
    let change = PassResult.Change(target: "model", action: "algorithms", detail: detail,
                                   values: ["plain": before, "withAlgorithms": after, "applied": kept ? 1 : 0, "equalize": equalize ? 1 : 0,
                                            "smoothAlpha": smoothAlpha.map(Double.init) ?? 0, "biasCorrection": biasCorrection ? 1 : 0])
    return (change, kept ? nil : (plainSetup, plainRounding))
  }

  /// Every node quantized with GPTQ's levels against the same with every weight rounded to
  /// nearest, scored on the quality data: whether GPTQ measures better, and the report row.
  func compareRounding(_ model: Model, setup: Setup, levels: RoundedWeights, goal: QualityTarget, perChannel: Bool) throws
    -> (applied: Bool, change: PassResult.Change) {
    var withLevels = self, nearest = self
    withLevels.rounded = levels
    nearest.rounded = nil
    let gptq = try Candidates(pass: withLevels, original: model, target: goal, plans: setup.plans, params: setup.params,
                              perChannel: perChannel).make(float: [], weightsToo: false).score
    let plain = try Candidates(pass: nearest, original: model, target: goal, plans: setup.plans, params: setup.params,
                               perChannel: perChannel).make(float: [], weightsToo: false).score
    let applied = goal.isBetter(gptq, than: plain)
    var detail = String(format: "%@ %.6f with GPTQ's levels, %.6f rounded to nearest (every node quantized; same calibration and quality data)",
                        goal.measureName, gptq, plain)
    detail += applied ? "; applied" : "; not applied: round-to-nearest measures as well or better"
    return (applied, .init(target: "model", action: "weight rounding compared", detail: detail,
                           values: ["gptq": gptq, "nearest": plain, "applied": applied ? 1 : 0]))
  }

  /// GPTQ for the weights this pass stores int8: its planned nodes' and those of nodes
  /// `--overrides` keeps float with int8 weights (the weight-only pass rounds them with the same
  /// levels, so a saved search replays byte for byte).
  func roundWeights(_ model: Model, setup: Setup, perChannel: Bool, into levels: RoundedWeights) throws -> [PassResult.Change] {
    let graph = model.graph
    let initializers = graph.initializersByName
    var weights = [(name: String, node: Node, axis: Int?)]()
    var planned = [Int: Plan]()
    for p in setup.plans { planned[p.node] = p }
    for (i, n) in graph.nodes.enumerated() where n.isDefaultDomain && Self.quantizable.contains(n.opType) && n.inputs.count >= 2 {
      if let p = planned[i] {
        if let (wi, _) = p.weight { weights.append((n.inputs[wi], n, p.weightAxis(perChannel: perChannel))) }
      } else if filter.refusal(n) == nil, overrides.rule(for: n)?.skip == true, !setup.floatByOverrides.contains(label(n)),
                let t = initializers[n.inputs[1]], t.dataType == .float {
        weights.append((n.inputs[1], n, perChannel ? QuantizeWeights.channelAxis(n, rank: t.dims.count) : nil))
      }
    }
    return try WeightRounding.round(model: model, weights: weights, symmetric: symmetricWeights, data: data,
                                    maxSamples: calibrator.maxSamples, threads: calibrator.threads, into: levels)
  }
}

/// The nodes a static quality search kept entirely float, for the weight-only pass that follows
/// it in the same command: it leaves their weights float. Filled when the search ends.
public final class KeptFloatNodes: @unchecked Sendable {
  public var nodes: Set<String>
  public init(_ nodes: Set<String> = []) { self.nodes = nodes }
}
