import Dispatch
import IR
import Linalg
import Support

/// BatchNormalization(Conv(x, W, B)) = Conv(x, W', B') with W'[o] = W[o]·a[o] and
/// B'[o] = (B[o] − mean[o])·a[o] + shift[o], a = scale / √(var + ε). Nil when the parameters do
/// not have one value per output channel of a float weight.
public func foldBatchNorm(weight: NDArray, bias: NDArray?, scale: NDArray, shift: NDArray, mean: NDArray,
                          variance: NDArray, epsilon: Float) throws -> (weight: NDArray, bias: NDArray)? {
  guard weight.dataType == .float, weight.rank >= 2 else { return nil }
  let m = weight.shape[0]
  let s = try scale.floats(), b = try shift.floats(), mu = try mean.floats(), v = try variance.floats()
  let b0 = try bias?.floats() ?? [Float](repeating: 0, count: m)
  guard [s.count, b.count, mu.count, v.count, b0.count].allSatisfy({ $0 == m }), m > 0 else { return nil }
  var folded = weight
  let e = folded.mutableElements(Float.self)
  let per = weight.count / m
  var newBias = [Float](repeating: 0, count: m)
  for o in 0..<m {
    let a = s[o] / (v[o] + epsilon).squareRoot()
    for i in 0..<per { e[o * per + i] *= a }
    newBias[o] = (b0[o] - mu[o]) * a + b[o]
  }
  return (folded, NDArray(newBias, shape: [m]))
}

/// Values visible while a graph runs: its own, in the slots its plan numbered, then those of
/// the graphs around it. A run reads and writes slots by index; names are looked up only for
/// what a subgraph reads from outside it (and by kernels that ask by name).
final class Scope {
  /// What the run computed (and was fed) for each slot, as many as `slots` numbers: a buffer the
  /// scope owns, not an array, since the executor reads and writes it several times per node and
  /// an array behind a class reference is checked for uniqueness (and retained) on every write.
  let values: UnsafeMutablePointer<Value?>
  /// The values every run starts from (initializers, folded constants), shared by every run of
  /// the plan, not copied into `values` (a subgraph run once per inference would otherwise copy
  /// and release each of its weights every time). A slot's value is `values`', else this one's.
  let start: [Value?]
  let count: Int
  let slots: [String: Int]
  let parent: Scope?
  /// Names whose values are the same on every run (initializers, Constant nodes, what was folded
  /// from them): a subgraph may fold what it computes from these alone.
  let constants: Set<String>
  init(parent: Scope?, slots: [String: Int] = [:], values: [Value?] = [], constants: Set<String> = []) {
    self.parent = parent; self.slots = slots; self.constants = constants
    start = values
    count = values.count
    self.values = .allocate(capacity: max(values.count, 1))
    self.values.initialize(repeating: nil, count: values.count)
  }

  /// The value of `slot` in this scope, if it has one.
  @inline(__always)
  func value(_ slot: Int) -> Value? {
    if let v = values[slot] { return v }
    return start[slot]
  }

  deinit {
    values.deinitialize(count: count)
    values.deallocate()
  }

  /// The value of `name` when the scope that holds it has it as a constant.
  func constant(_ name: String) -> NDArray? {
    var s: Scope? = self
    while let scope = s {
      if let slot = scope.slots[name], slot < scope.count, let v = scope.value(slot) {
        guard scope.constants.contains(name), case .tensor(let t) = v else { return nil }
        return t
      }
      s = scope.parent
    }
    return nil
  }

  func lookup(_ name: String) -> Value? {
    var s: Scope? = self
    while let scope = s {
      if let slot = scope.slots[name], slot < scope.count, let v = scope.value(slot) { return v }
      s = scope.parent
    }
    return nil
  }
}

/// Runs a model's IR directly: nodes in topological order, each value freed after its last use,
/// subgraphs of If/Loop/Scan with their outer scopes.
public final class Executor {
  public let model: Model
  let opsets: [String: Int64]
  private var mainInitializers: [String: NDArray] = [:]
  /// The same, as the values a run starts from (built once: every run shares the dictionary).
  private var mainInitialValues: [String: Value] = [:]
  /// The main graph as it runs (BatchNormalization folded into Conv) and its schedule,
  /// computed once: every run reuses them.
  private var mainGraph: Graph
  private var mainPlan: Plan? { didSet { mainStart = mainPlan?.initialValues(mainInitialValues) ?? [] } }
  /// The main plan's value table with the initializers in place, as every run starts.
  private var mainStart = [Value?]()

  /// Node order, each step's kernel, and the run's value table: one slot per name the graph
  /// holds or reads (its inputs, initializers, node outputs, and what its nodes and their
  /// subgraphs read), so a run moves values by index instead of hashing names for every input.
  /// A class, not a struct: a subgraph's plan is fetched on every run of its If or Loop, and a
  /// struct of ten arrays is ten retains and releases each time.
  final class Plan {
    let order: [Int]
    /// The node of each step.
    let nodes: [NodeReference]
    let kernels: [ResolvedKernel]
    /// The version of each step's domain in the model's opset imports.
    let opsets: [Int64]
    let slots: [String: Int]
    /// Per step, where in `slotTable` its inputs', outputs' and freed values' slots lie.
    let steps: [StepSlots]
    /// Slot numbers, step after step: the slot of each node input (−1: an omitted optional
    /// input), of each output (−1: unnamed), then the slots whose last reader that step is
    /// (graph outputs never). One flat table, so a run reads it without retaining a row per step.
    let slotTable: [Int]
    let graphInputSlots: [Int]
    let graphOutputSlots: [Int]
    /// The graph's output names, for outputs read from the scopes around it.
    let graphOutputNames: [String]

    init(order: [Int], nodes: [NodeReference], kernels: [ResolvedKernel], opsets: [Int64], slots: [String: Int],
         steps: [StepSlots], slotTable: [Int], graphInputSlots: [Int], graphOutputSlots: [Int], graphOutputNames: [String]) {
      self.order = order; self.nodes = nodes; self.kernels = kernels; self.opsets = opsets; self.slots = slots
      self.steps = steps; self.slotTable = slotTable; self.graphInputSlots = graphInputSlots
      self.graphOutputSlots = graphOutputSlots; self.graphOutputNames = graphOutputNames
    }

    struct StepSlots {
      var inputs: Range<Int>
      var outputs: Range<Int>
      var frees: Range<Int>
    }

    /// The value table a run starts from: the initializers in their slots.
    func initialValues(_ initializers: [String: Value]) -> [Value?] {
      var values = [Value?](repeating: nil, count: slots.count)
      for (name, slot) in slots { if let v = initializers[name] { values[slot] = v } }
      return values
    }
  }
  /// Bytes of intermediate values alive at once, at most, in the last run.
  public private(set) var peakLiveBytes = 0
  /// When set, nanoseconds spent per node accumulate here, keyed by node display name, with the
  /// node's op type (`bench --profile`).
  public var profile: [String: (opType: String, nanoseconds: UInt64)]?
  /// When set, called after every node of the main graph with its inputs and outputs. Observed
  /// runs keep activations apart from the convolutions before them (calibration and analyses
  /// read the convolution's own output), so setting an observer undoes those fusions.
  public var observer: ((Node, [NDArray?], [NDArray]) -> Void)? {
    didSet {
      if observer != nil, let unfused = graphWithoutFusedActivations, let p = try? plan(unfused) {
        mainGraph = unfused
        mainPlan = p
        graphWithoutFusedActivations = nil
      }
    }
  }
  /// The main graph before `fuseActivationsIntoConv`, while the fused one is in use.
  private var graphWithoutFusedActivations: Graph?
  /// Subgraphs' schedules and initializer values, made the first time each runs: If branches and
  /// Loop bodies run on every inference (a body once per iteration), and planning one took longer
  /// than running it (silero-vad: 130 ms of a 150 ms run). Keyed by the address of the subgraph's
  /// node storage; the entry holds the graph, so that storage lives and no other graph can take
  /// its address.
  private var subgraphs: [UnsafeRawPointer: SubgraphEntry] = [:]
  /// The storage of every subgraph initializer and evaluated Constant node (kept by `subgraphs`
  /// as long as the executor lives): what is derived from them (packed weights) is made once too.
  private var subgraphConstants = Set<ObjectIdentifier>()
  /// `source` keeps the key's storage alive; `graph` is what runs (its Constant nodes evaluated
  /// into `start`, the value table a run begins with).
  /// A class for the same reason as `Plan`: fetched on every run of the node that owns it.
  final class SubgraphEntry {
    let source: Graph
    let plan: Plan
    let start: [Value?]
    let constants: Set<String>
    init(source: Graph, plan: Plan, start: [Value?], constants: Set<String>) {
      self.source = source; self.plan = plan; self.start = start; self.constants = constants
    }
  }
  /// The main graph's names a subgraph may take as constants: initializers and what was folded
  /// from them, never a graph input (a feed may replace it).
  private var mainConstantNames = Set<String>()
  private var liveBytes = 0

  public init(model: Model, threads: Int = 1) throws {
    self.model = model
    var opsets = [String: Int64]()
    for o in model.opsetImports { opsets[o.isDefaultDomain ? "" : o.domain] = o.version }
    self.opsets = opsets
    Linalg.setThreads(threads)
    Parallel.threads = max(1, threads)
    try Self.checkKernels(model.graph)
    mainGraph = model.graph
    for t in model.graph.initializers {
      var a = try NDArray(t)
      a.makeAligned()
      mainInitializers[t.name] = a
    }
    try foldBatchNormIntoConv()
    // Observed runs (calibration, analyses) see every node as the model has it: the graph before
    // constant folding and fusion.
    graphWithoutFusedActivations = mainGraph
    if foldConstants() {
      try foldBatchNormIntoConv()
    }
    foldChannelScalesAndShifts()
    fuseDecomposedHardSwish()
    fuseDecomposedGelu()
    fuseResidualAddIntoConv()
    fuseActivationsIntoConv()
    fuseDecomposedSiLUIntoConv()
    fuseSoftmaxAttention()
    mainPlan = try plan(mainGraph)
    mainInitialValues = mainInitializers.mapValues(Value.tensor)
    // Folded values stand for computations of an input's default only while it is not fed; the
    // run that handles a feed replacing one does not pass these to its subgraphs.
    mainConstantNames = (foldedFromInputs.isEmpty ? Set(mainInitializers.keys) : Set(model.graph.initializers.map(\.name)))
      .subtracting(mainGraph.inputs.map(\.name))
    mainStart = mainPlan?.initialValues(mainInitialValues) ?? []
  }

  /// Initializers that folded constants were computed from and that a feed may override (IR 3
  /// lists weights among the inputs): a run that feeds one runs the unfolded graph.
  private var foldedFromInputs = Set<String>()

  /// What kernels derived from constants of the main graph (`KernelContext.derived`).
  let derivedArrays = DerivedArrays()

  /// The storage of `array` when it is the main graph's constant `name` (an initializer, or a
  /// folded value), not a feed that overrides it.
  func constantStorage(_ array: NDArray, name: String) -> NDArray.Storage? {
    if let constant = mainInitializers[name], constant.storage === array.storage { return array.storage }
    return subgraphConstants.contains(ObjectIdentifier(array.storage)) ? array.storage : nil
  }

  /// Nodes whose inputs are all constants — initializers, and outputs of nodes folded before
  /// them — run once here and their outputs become initializers: Paddle exports compute
  /// BatchNormalization's parameters with Constant nodes, caffe2-era models fill every weight with
  /// ConstantOfShape, exporters slice recurrent weights apart; ONNX Runtime folds all of them when
  /// it loads a model, and then folds BatchNormalization into the Conv before it, as this does.
  /// Random operators and nodes with subgraphs are left to run. True when anything was folded.
  private func foldConstants() -> Bool {
    // A graph input's initializer is only a default (IR 4 and later), except in IR 3 models,
    // which list every weight among the inputs; ONNX Runtime takes those as constants too.
    let inputs = Set(mainGraph.inputs.map(\.name))
    var constant = Set(mainInitializers.keys)
    if model.irVersion >= 4 { constant.subtract(inputs) }
    guard let order = try? topologicalOrder(mainGraph) else { return false }
    var removed = Set<Int>()
    for n in order {
      let node = mainGraph.nodes[n]
      guard Self.foldable(node),
            node.inputs.allSatisfy({ $0.isEmpty || constant.contains($0) }),
            let results = try? evaluate(node, node.inputs.map { $0.isEmpty ? nil : mainInitializers[$0] }),
            results.count >= node.outputs.filter({ !$0.isEmpty }).count else { continue }
      for (name, value) in zip(node.outputs, results) where !name.isEmpty {
        var v = value
        v.makeAligned()
        mainInitializers[name] = v
        constant.insert(name)
      }
      for name in node.inputs where inputs.contains(name) { foldedFromInputs.insert(name) }
      removed.insert(n)
    }
    guard !removed.isEmpty else { return false }
    mainGraph.nodes = mainGraph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    return true
  }

  /// Whether a node computed from constants may be evaluated once in their place: not a random
  /// operator, no sequences or optionals, no subgraphs.
  private static func foldable(_ n: Node) -> Bool {
    let random: Set<String> = ["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"]
    return !random.contains(n.opType) && !n.opType.contains("Sequence") && !n.opType.hasPrefix("Optional")
      && n.attributes.allSatisfy({ $0.subgraphs.isEmpty }) && !n.outputs.isEmpty
  }

  func plan(_ g: Graph) throws -> Plan {
    let order = try topologicalOrder(g)
    let kernels = try order.map { i -> ResolvedKernel in
      let n = g.nodes[i]
      guard let k = Kernels.resolve(domain: n.domain, opType: n.opType) else {
        throw CompressorError.unsupported("operator \(n.opType) is not supported (\(n.displayName))")
      }
      return k
    }
    let versions = order.map { opsets[g.nodes[$0].isDefaultDomain ? "" : g.nodes[$0].domain] ?? 1 }
    var slots = [String: Int]()
    func slot(_ name: String) -> Int {
      if name.isEmpty { return -1 }
      if let s = slots[name] { return s }
      slots[name] = slots.count
      return slots.count - 1
    }
    let graphInputSlots = g.inputs.map { slot($0.name) }
    var inputSlots = [[Int]](), outputSlots = [[Int]]()
    for i in order {
      let n = g.nodes[i]
      inputSlots.append(n.inputs.map(slot))
      outputSlots.append(n.outputs.map(slot))
      for name in dependencies(n) { _ = slot(name) }
    }
    let graphOutputSlots = g.outputs.map { slot($0.name) }
    let outputs = Set(g.outputs.map(\.name))
    let frees = lastUses(g, order: order).map { names in names.filter { !outputs.contains($0) }.compactMap { slots[$0] } }
    var table = [Int](), steps = [Plan.StepSlots]()
    func append(_ row: [Int]) -> Range<Int> {
      table += row
      return (table.count - row.count)..<table.count
    }
    for step in order.indices {
      steps.append(Plan.StepSlots(inputs: append(inputSlots[step]), outputs: append(outputSlots[step]), frees: append(frees[step])))
    }
    return Plan(order: order, nodes: order.map { NodeReference(g.nodes[$0]) }, kernels: kernels, opsets: versions, slots: slots,
                steps: steps, slotTable: table, graphInputSlots: graphInputSlots, graphOutputSlots: graphOutputSlots,
                graphOutputNames: g.outputs.map(\.name))
  }

  /// For the load-time fusions: how many readers each value of the main graph has (graph outputs
  /// count), and which node produces it.
  private func readersAndProducers() -> (readers: [String: Int], producer: [String: Int]) {
    var readers = [String: Int]()
    for n in mainGraph.nodes { for i in n.inputs { readers[i, default: 0] += 1 } }
    for o in mainGraph.outputs { readers[o.name, default: 0] += 1 }
    var producer = [String: Int]()
    for (i, n) in mainGraph.nodes.enumerated() { for o in n.outputs { producer[o] = i } }
    return (readers, producer)
  }

  /// Conv → BatchNormalization (inference) where the Conv's output feeds nothing else and every
  /// parameter is an initializer becomes one Conv with scaled weights and a shifted bias: one
  /// pass over the feature map instead of two, as other runtimes do when they load a model.
  private func foldBatchNormIntoConv() throws {
    let (consumers, producer) = readersAndProducers()
    var names = NameScope(model)
    var removed = Set<Int>()
    for (b, bn) in mainGraph.nodes.enumerated() where bn.opType == "BatchNormalization" && bn.isDefaultDomain {
      guard bn.outputs.count == 1 || bn.outputs.dropFirst().allSatisfy(\.isEmpty),
            (bn.attribute("training_mode")?.int ?? 0) == 0, bn.inputs.count == 5,
            let ci = producer[bn.inputs[0]], consumers[bn.inputs[0]] == 1 else { continue }
      let conv = mainGraph.nodes[ci]
      guard conv.opType == "Conv", conv.isDefaultDomain, conv.inputs.count >= 2,
            let w = mainInitializers[conv.inputs[1]], w.dataType == .float, w.rank >= 3,
            let scale = mainInitializers[bn.inputs[1]], let shift = mainInitializers[bn.inputs[2]],
            let mean = mainInitializers[bn.inputs[3]], let variance = mainInitializers[bn.inputs[4]] else { continue }
      var bias: NDArray?
      if conv.inputs.count > 2, !conv.inputs[2].isEmpty {
        guard let b0 = mainInitializers[conv.inputs[2]] else { continue }
        bias = b0
      }
      guard let (folded, newBias) = try foldBatchNorm(weight: w, bias: bias, scale: scale, shift: shift, mean: mean,
                                                      variance: variance, epsilon: bn.attribute("epsilon")?.float ?? 1e-5)
      else { continue }
      let wName = names.fresh("\(conv.inputs[1]).folded"), bName = names.fresh("\(bn.outputs[0]).folded_bias")
      mainInitializers[wName] = folded
      mainInitializers[bName] = newBias
      var fused = conv
      fused.inputs = [conv.inputs[0], wName, bName]
      fused.outputs = [bn.outputs[0]]
      mainGraph.nodes[ci] = fused
      removed.insert(b)
    }
    if !removed.isEmpty {
      mainGraph.nodes = mainGraph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
  }

  /// Conv or BatchNormalization → Mul by a constant → Add a constant, one value per channel (or
  /// one for all): old exporters write a second normalization as Mul and Add after the real one
  /// (the ONNX model zoo's DenseNet-121 and Inception v2, where the two passes were 12% and 6% of
  /// the time). The constants go into the Conv's weights and bias, or the BatchNormalization's
  /// scale and shift, as ONNX Runtime folds Mul and Add into a Conv when it loads a model; the
  /// Relu after them then fuses into the Conv.
  private func foldChannelScalesAndShifts() {
    var names = NameScope(model)
    func fresh(_ base: String) -> String {
      var name = names.fresh(base)
      while mainInitializers[name] != nil { name = names.fresh(base) }
      return name
    }
    while true {
      let (readers, producer) = readersAndProducers()
      var ranks = [String: Int]()
      var removed = Set<Int>(), changed = Set<Int>()
      for (i, op) in mainGraph.nodes.enumerated() where (op.opType == "Mul" || op.opType == "Add") && op.isDefaultDomain
        && op.inputs.count == 2 && op.outputs.count == 1 {
        for side in 0..<2 {
          let value = op.inputs[side]
          guard let pi = producer[value], readers[value] == 1, !changed.contains(pi),
                let constant = mainInitializers[op.inputs[1 - side]], constant.dataType == .float else { continue }
          var node = mainGraph.nodes[pi]
          guard node.isDefaultDomain, node.outputs.count == 1 || node.outputs.dropFirst().allSatisfy(\.isEmpty) else { continue }
          let scaling = op.opType == "Mul"
          if node.opType == "Conv" {
            guard node.inputs.count >= 2, node.inputs.count <= 3, node.attribute(FusedActivation.attribute) == nil,
                  let w = mainInitializers[node.inputs[1]], w.dataType == .float, w.rank >= 3,
                  let k = try? perChannel(constant, channels: w.shape[0], rank: w.rank) else { continue }
            let m = w.shape[0], per = w.count / m
            var bias = [Float](repeating: 0, count: m)
            if node.inputs.count == 3, !node.inputs[2].isEmpty {
              guard let b = mainInitializers[node.inputs[2]], let values = try? b.floats(), values.count == m else { continue }
              bias = values
            }
            if scaling {
              var scaled = w
              let e = scaled.mutableElements(Float.self)
              for o in 0..<m { for j in 0..<per { e[o * per + j] *= k[o] } }
              let name = fresh("\(node.inputs[1]).scaled")
              mainInitializers[name] = scaled
              node.inputs[1] = name
              for o in 0..<m { bias[o] *= k[o] }
            } else {
              for o in 0..<m { bias[o] += k[o] }
            }
            let name = fresh("\(op.outputs[0]).bias")
            mainInitializers[name] = NDArray(bias, shape: [m])
            node.inputs = [node.inputs[0], node.inputs[1], name]
          } else if node.opType == "BatchNormalization" {
            guard (node.attribute("training_mode")?.int ?? 0) == 0, node.inputs.count == 5,
                  let scale = mainInitializers[node.inputs[1]], let shift = mainInitializers[node.inputs[2]],
                  var a = try? scale.floats(), var b = try? shift.floats(), a.count == b.count,
                  let rank = knownRank(node.inputs[0], producer, &ranks),
                  let k = try? perChannel(constant, channels: a.count, rank: rank) else { continue }
            for o in a.indices {
              if scaling { a[o] *= k[o]; b[o] *= k[o] } else { b[o] += k[o] }
            }
            let scaleName = fresh("\(op.outputs[0]).scale"), shiftName = fresh("\(op.outputs[0]).shift")
            mainInitializers[scaleName] = NDArray(a, shape: [a.count])
            mainInitializers[shiftName] = NDArray(b, shape: [b.count])
            node.inputs[1] = scaleName
            node.inputs[2] = shiftName
          } else {
            continue
          }
          node.outputs = [op.outputs[0]]
          mainGraph.nodes[pi] = node
          removed.insert(i)
          changed.insert(pi)
          break
        }
      }
      if removed.isEmpty { return }
      mainGraph.nodes = mainGraph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
  }

  /// The values of a constant that multiplies or adds to a feature map of rank `rank`, one per
  /// channel (axis 1): a single value, or `channels` values along the dimension that lines up
  /// with axis 1, the others 1 — nil for any other shape (one that would broadcast the map).
  private func perChannel(_ c: NDArray, channels: Int, rank: Int) throws -> [Float]? {
    guard c.rank <= rank, channels > 0 else { return nil }
    let values = try c.floats()
    if values.count == 1 { return [Float](repeating: values[0], count: channels) }
    let axis = c.rank - (rank - 1)
    guard axis >= 0, c.shape[axis] == channels, values.count == channels else { return nil }
    return values
  }

  /// The rank of a value of the main graph where the nodes before it fix it: a graph input's
  /// declared shape, a Conv's weight, and what keeps its input's rank (normalization, pooling,
  /// activations, Concat, element-wise arithmetic with a constant of no higher rank).
  private func knownRank(_ name: String, _ producer: [String: Int], _ memo: inout [String: Int]) -> Int? {
    if let r = memo[name] { return r }
    var rank: Int?
    if let i = producer[name] {
      let n = mainGraph.nodes[i]
      switch n.isDefaultDomain ? n.opType : "" {
      case "Conv":
        rank = n.inputs.count > 1 ? mainInitializers[n.inputs[1]]?.rank : nil
      case "BatchNormalization", "Relu", "MaxPool", "AveragePool", "LRN", "Dropout", "Identity", "Sigmoid", "Clip", "LeakyRelu":
        rank = n.inputs.first.flatMap { knownRank($0, producer, &memo) }
      case "Concat":
        for input in n.inputs where rank == nil { rank = knownRank(input, producer, &memo) }
      case "Add", "Mul":
        if n.inputs.count == 2, let c = mainInitializers[n.inputs[1]], let r = knownRank(n.inputs[0], producer, &memo), c.rank <= r {
          rank = r
        }
      default:
        rank = nil
      }
    } else if let input = mainGraph.inputs.first(where: { $0.name == name }), case .tensor(_, let shape?)? = input.type?.kind {
      rank = shape.dims.count
    }
    if let rank { memo[name] = rank }
    return rank
  }

  /// The single float value of a constant, if `name` is one.
  private func scalarConstant(_ name: String) -> Float? {
    guard let v = mainInitializers[name], v.dataType == .float, v.count == 1 else { return nil }
    return v.elements(Float.self)[0]
  }

  /// A Clip's bounds when they are constants (attributes before opset 11, inputs after).
  private func clipBounds(_ clip: Node) -> (Float, Float)? {
    if (opsets[""] ?? 1) < 11 {
      return (clip.attribute("min")?.float ?? -.infinity, clip.attribute("max")?.float ?? .infinity)
    }
    func bound(_ i: Int, _ fallback: Float) -> Float? {
      guard i < clip.inputs.count, !clip.inputs[i].isEmpty else { return fallback }
      return scalarConstant(clip.inputs[i])
    }
    guard let low = bound(1, -.infinity), let high = bound(2, .infinity) else { return nil }
    return (low, high)
  }

  /// y·Clip(y + 3, 0, 6)/6 — HardSwish as Paddle writes it (Add, Clip, Mul, then Div by 6 or Mul
  /// by 1/6) — becomes one HardSwish node, which `fuseActivationsIntoConv` then moves into the
  /// Conv before it: four passes over the feature map become none (ONNX Runtime fuses the same).
  private func fuseDecomposedHardSwish() {
    let (readers, producer) = readersAndProducers()
    var removed = Set<Int>()
    for (d, last) in mainGraph.nodes.enumerated() where last.isDefaultDomain && last.inputs.count == 2 && last.outputs.count == 1 {
      guard let k = scalarConstant(last.inputs[1]),
            last.opType == "Div" ? k == 6 : (last.opType == "Mul" && Swift.abs(k - 1 / 6) < 1e-7),
            let mi = producer[last.inputs[0]], readers[last.inputs[0]] == 1, !removed.contains(mi) else { continue }
      let mul = mainGraph.nodes[mi]
      guard mul.opType == "Mul", mul.isDefaultDomain, mul.inputs.count == 2 else { continue }
      for (yi, ci) in [(0, 1), (1, 0)] {
        let y = mul.inputs[yi]
        guard let clipIndex = producer[mul.inputs[ci]], readers[mul.inputs[ci]] == 1, !removed.contains(clipIndex) else { continue }
        let clip = mainGraph.nodes[clipIndex]
        guard clip.opType == "Clip", clip.isDefaultDomain, let bounds = clipBounds(clip), bounds == (0, 6),
              let ai = producer[clip.inputs[0]], readers[clip.inputs[0]] == 1, !removed.contains(ai) else { continue }
        let add = mainGraph.nodes[ai]
        guard add.opType == "Add", add.isDefaultDomain, add.inputs.count == 2,
              (add.inputs[0] == y && scalarConstant(add.inputs[1]) == 3) || (add.inputs[1] == y && scalarConstant(add.inputs[0]) == 3)
        else { continue }
        mainGraph.nodes[d] = Node(name: last.name, opType: "HardSwish", inputs: [y], outputs: last.outputs)
        removed.formUnion([mi, clipIndex, ai])
        break
      }
    }
    if !removed.isEmpty {
      mainGraph.nodes = mainGraph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
  }

  /// x·(0.5·(Erf(x/√2) + 1)) — GELU as torch's exporter writes it (Div, Erf, Add, Mul, Mul) —
  /// becomes one Gelu node computing the same operations in one pass (ConvNeXt, ViT, BERT,
  /// Whisper: five passes over the MLP's widest activation became one). Either operand order of
  /// the Add and Muls; every intermediate read only by the next node.
  private func fuseDecomposedGelu() {
    let (readers, producer) = readersAndProducers()
    var removed = Set<Int>()
    /// The node producing `name` when it is of type `op`, read once, not yet taken.
    func single(_ name: String, _ op: String) -> (Int, Node)? {
      guard let i = producer[name], readers[name] == 1, !removed.contains(i) else { return nil }
      let node = mainGraph.nodes[i]
      guard node.opType == op, node.isDefaultDomain, node.outputs.count == 1 else { return nil }
      return (i, node)
    }
    /// The operand of a two-input node other than the scalar constant `k`.
    func other(_ node: Node, _ k: Float) -> String? {
      guard node.inputs.count == 2 else { return nil }
      if scalarConstant(node.inputs[1]) == k { return node.inputs[0] }
      if scalarConstant(node.inputs[0]) == k { return node.inputs[1] }
      return nil
    }
    for (d, last) in mainGraph.nodes.enumerated() where last.opType == "Mul" && last.isDefaultDomain && last.inputs.count == 2
      && last.outputs.count == 1 && !removed.contains(d) {
      for (xi, hi) in [(0, 1), (1, 0)] {
        let x = last.inputs[xi]
        guard let (half, halfNode) = single(last.inputs[hi], "Mul"), let sumName = other(halfNode, 0.5),
              let (sum, sumNode) = single(sumName, "Add"), let erfName = other(sumNode, 1),
              let (erf, erfNode) = single(erfName, "Erf"), let (div, divNode) = single(erfNode.inputs[0], "Div"),
              divNode.inputs.count == 2, divNode.inputs[0] == x, scalarConstant(divNode.inputs[1]) == Float(2.0.squareRoot())
        else { continue }
        mainGraph.nodes[d] = Node(name: last.name, opType: "Gelu", inputs: [x], outputs: last.outputs)
        removed.formUnion([half, sum, erf, div])
        break
      }
    }
    if !removed.isEmpty {
      mainGraph.nodes = mainGraph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
  }

  /// Add(Conv(x), r) where the Conv's output feeds nothing else becomes one Conv with r as a
  /// fourth input, added to each block of output while it is in cache (the Conv kernel adds r
  /// after the convolution when its shape is not the output's); a Relu or other activation after
  /// the Add then fuses as after any Conv: ResNet's residual joins cost no pass of their own, as in
  /// ONNX Runtime's FusedConv. A Sum of two values is an Add (the ONNX zoo's ResNet-50 joins its
  /// residuals with Sum).
  private func fuseResidualAddIntoConv() {
    let (readers, producer) = readersAndProducers()
    var removed = Set<Int>()
    var fusedConvs = Set<Int>()
    for (a, add) in mainGraph.nodes.enumerated() where (add.opType == "Add" || add.opType == "Sum") && add.isDefaultDomain && add.inputs.count == 2
      && add.outputs.count == 1 && add.inputs[0] != add.inputs[1] {
      for side in 0..<2 {
        let name = add.inputs[side]
        guard let ci = producer[name], readers[name] == 1, !fusedConvs.contains(ci), !removed.contains(ci) else { continue }
        let conv = mainGraph.nodes[ci]
        guard conv.opType == "Conv", conv.isDefaultDomain, conv.outputs.count == 1, conv.inputs.count >= 2, conv.inputs.count <= 3,
              conv.attribute(FusedActivation.attribute) == nil,
              let w = mainInitializers[conv.inputs[1]], w.dataType == .float, w.rank == 3 || w.rank == 4 else { continue }
        var node = conv
        node.inputs = [conv.inputs[0], conv.inputs[1], conv.inputs.count > 2 ? conv.inputs[2] : "", add.inputs[1 - side]]
        node.outputs = add.outputs
        mainGraph.nodes[ci] = node
        fusedConvs.insert(ci)
        removed.insert(a)
        break
      }
    }
    if !removed.isEmpty {
      mainGraph.nodes = mainGraph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
  }

  /// MatMul(Q, Kᵀ) [→ Add(mask)] → Softmax(last axis) [→ Where(IsNaN(p), 0, p)] → MatMul(·, V),
  /// each value read by the next node alone, becomes one MatMul node with inputs [Q, Kᵀ, V, mask]
  /// (`SoftmaxAttention`): the scores of every head are never held at once. The Where(IsNaN)
  /// step is what exporters add for fully masked rows.
  private func fuseSoftmaxAttention() {
    guard (opsets[""] ?? 1) >= 13 else { return }  // before 13 Softmax flattens the axes after `axis`
    let (readers, producer) = readersAndProducers()
    var removed = Set<Int>()
    func node(_ value: String, _ op: String) -> Int? {
      guard let i = producer[value], !removed.contains(i), mainGraph.nodes[i].opType == op, mainGraph.nodes[i].isDefaultDomain,
            mainGraph.nodes[i].outputs.count == 1 else { return nil }
      return i
    }
    for (bi, b) in mainGraph.nodes.enumerated() where b.opType == "MatMul" && b.isDefaultDomain && b.inputs.count == 2
      && b.outputs.count == 1 && b.attribute(SoftmaxAttention.attribute) == nil && !removed.contains(bi) {
      var parts = [Int]()
      var probabilities = b.inputs[0]
      var nanTo: Float?
      if let wi = node(probabilities, "Where"), readers[probabilities] == 1 {
        // Where(IsNaN(p), zero, p), zero a constant scalar.
        let w = mainGraph.nodes[wi]
        guard w.inputs.count == 3, let ni = node(w.inputs[0], "IsNaN"), readers[w.inputs[0]] == 1,
              mainGraph.nodes[ni].inputs.first == w.inputs[2], readers[w.inputs[2]] == 2,
              let zero = mainInitializers[w.inputs[1]], zero.dataType == .float, zero.count == 1 else { continue }
        nanTo = zero.elements(Float.self)[0]
        parts += [wi, ni]
        probabilities = w.inputs[2]
      } else if readers[probabilities] != 1 {
        continue
      }
      guard let si = node(probabilities, "Softmax"), (mainGraph.nodes[si].attribute("axis")?.int ?? -1) == -1 else { continue }
      var scores = mainGraph.nodes[si].inputs[0]
      guard readers[scores] == 1 else { continue }
      parts.append(si)
      var mask = ""
      if let ai = node(scores, "Add") {
        let add = mainGraph.nodes[ai]
        guard add.inputs.count == 2, let side = [0, 1].first(where: { node(add.inputs[$0], "MatMul") != nil && readers[add.inputs[$0]] == 1 })
        else { continue }
        mask = add.inputs[1 - side]
        scores = add.inputs[side]
        parts.append(ai)
      }
      guard let pi = node(scores, "MatMul"), readers[scores] == 1, mainGraph.nodes[pi].inputs.count == 2,
            mainGraph.nodes[pi].attribute(SoftmaxAttention.attribute) == nil else { continue }
      parts.append(pi)
      var fused = b
      fused.inputs = [mainGraph.nodes[pi].inputs[0], mainGraph.nodes[pi].inputs[1], b.inputs[1], mask]
      fused.attributes.append(SoftmaxAttention.make(nanTo: nanTo))
      mainGraph.nodes[bi] = fused
      removed.formUnion(parts)
    }
    if !removed.isEmpty {
      mainGraph.nodes = mainGraph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
  }

  /// Conv → Sigmoid and Mul(conv, sigmoid) — SiLU as exporters write it (EfficientNet, YOLO) —
  /// where the Conv's output feeds just those two becomes one Conv applying x·σ(x) to each block
  /// of output: two passes over the feature map, and their two tensors, become none.
  private func fuseDecomposedSiLUIntoConv() {
    let (readers, producer) = readersAndProducers()
    var removed = Set<Int>()
    for (mi, mul) in mainGraph.nodes.enumerated() where mul.opType == "Mul" && mul.isDefaultDomain && mul.inputs.count == 2
      && mul.outputs.count == 1 {
      for side in 0..<2 {
        let x = mul.inputs[side], s = mul.inputs[1 - side]
        guard let si = producer[s], readers[s] == 1, !removed.contains(si), mainGraph.nodes[si].opType == "Sigmoid",
              mainGraph.nodes[si].isDefaultDomain, mainGraph.nodes[si].inputs.first == x,
              let ci = producer[x], readers[x] == 2, !removed.contains(ci) else { continue }
        let conv = mainGraph.nodes[ci]
        guard conv.opType == "Conv", conv.isDefaultDomain, conv.outputs.count == 1, conv.attribute(FusedActivation.attribute) == nil,
              let w = mainInitializers[conv.inputs.count > 1 ? conv.inputs[1] : ""], w.dataType == .float, w.rank == 3 || w.rank == 4
        else { continue }
        var node = conv
        node.attributes.append(FusedActivation.attribute(.silu))
        node.outputs = mul.outputs
        mainGraph.nodes[ci] = node
        removed.formUnion([si, mi])
        break
      }
    }
    if !removed.isEmpty {
      mainGraph.nodes = mainGraph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
  }

  /// Conv → activation (Relu, Clip with constant bounds, HardSwish, HardSigmoid, LeakyRelu) where
  /// the Conv's output feeds nothing else becomes one Conv that applies the activation to each
  /// block of its output while it is in cache, as ONNX Runtime's FusedConv does.
  private func fuseActivationsIntoConv() {
    let (consumers, producer) = readersAndProducers()
    let opset = opsets[""] ?? 1
    var removed = Set<Int>()
    for (a, act) in mainGraph.nodes.enumerated() where act.isDefaultDomain && act.outputs.count == 1 && !act.inputs.isEmpty {
      guard let ci = producer[act.inputs[0]], consumers[act.inputs[0]] == 1, !removed.contains(ci) else { continue }
      let conv = mainGraph.nodes[ci]
      guard conv.opType == "Conv", conv.isDefaultDomain, conv.outputs.count == 1, conv.attribute(FusedActivation.attribute) == nil,
            let w = mainInitializers[conv.inputs.count > 1 ? conv.inputs[1] : ""], w.dataType == .float, w.rank == 3 || w.rank == 4
      else { continue }
      let fused: Attribute
      switch act.opType {
      case "Relu": fused = FusedActivation.attribute(.relu)
      case "HardSwish": fused = FusedActivation.attribute(.hardSwish)
      case "HardSigmoid": fused = FusedActivation.attribute(.hardSigmoid, act.attribute("alpha")?.float ?? 0.2, act.attribute("beta")?.float ?? 0.5)
      case "LeakyRelu": fused = FusedActivation.attribute(.leakyRelu, act.attribute("alpha")?.float ?? 0.01)
      case "Clip":
        var low = -Float.infinity, high = Float.infinity
        if opset < 11 {
          low = act.attribute("min")?.float ?? low
          high = act.attribute("max")?.float ?? high
        } else {
          func bound(_ i: Int) -> Float?? {
            guard i < act.inputs.count, !act.inputs[i].isEmpty else { return .some(nil) }
            guard let v = mainInitializers[act.inputs[i]], v.dataType == .float, v.count == 1 else { return nil }
            return .some(v.elements(Float.self)[0])
          }
          guard let lo = bound(1), let hi = bound(2) else { continue }
          low = lo ?? low
          high = hi ?? high
        }
        fused = FusedActivation.attribute(.clip, low, high)
      default: continue
      }
      var node = conv
      node.attributes.append(fused)
      node.outputs = act.outputs
      mainGraph.nodes[ci] = node
      removed.insert(a)
    }
    if !removed.isEmpty {
      mainGraph.nodes = mainGraph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
  }

  /// Every op of every graph must have a kernel: exit 69 naming the first that has none.
  static func checkKernels(_ g: Graph) throws {
    try g.forEachGraph { sub in
      for n in sub.nodes where Kernels.resolve(domain: n.domain, opType: n.opType) == nil {
        let op = n.isDefaultDomain ? n.opType : "\(n.domain).\(n.opType)"
        throw CompressorError.unsupported("operator \(op) is not supported by the executor (\(n.displayName))")
      }
    }
  }

  /// Runs the main graph. `feeds` must name every graph input that is not an initializer. Every
  /// output must be a tensor (`runValues` returns sequences and optionals too).
  public func run(_ feeds: [String: NDArray]) throws -> [(name: String, value: NDArray)] {
    try runValues(feeds.mapValues(Value.tensor)).map { name, v in
      guard case .tensor(let t) = v else {
        throw CompressorError.unsupported("model output '\(name)' is a \(v.typeDescription); only `compressor run` handles outputs that are not tensors")
      }
      return (name, t)
    }
  }

  /// Runs the main graph with inputs of any kind (tensors, sequences, optionals); returns every
  /// output, whatever its kind.
  public func runValues(_ feeds: [String: Value]) throws -> [(name: String, value: Value)] {
    let g = mainGraph
    let initializerNames = Set(g.initializers.map(\.name))
    // Aligned with the graph's inputs. An input with an initializer of its name is a weight (IR 3
    // lists every weight among the inputs): it keeps the initializer's value unless a feed
    // overrides it, as in ONNX Runtime.
    var ordered = [Value?]()
    for input in g.inputs {
      guard let v = feeds[input.name] else {
        if initializerNames.contains(input.name) { ordered.append(nil); continue }
        throw CompressorError.invalid("model input '\(input.name)' was not given\(expected(input))")
      }
      try checkFeed(v, against: input)
      // An optional input fed a tensor or a sequence holds that value, as in ONNX Runtime.
      if case .optional? = input.type?.kind, v.isNotOptional {
        ordered.append(.optional(v))
      } else {
        ordered.append(v)
      }
    }
    for name in feeds.keys.sorted() where !g.inputs.contains(where: { $0.name == name }) {
      throw CompressorError.invalid("the model has no input named '\(name)'")
    }
    peakLiveBytes = 0
    liveBytes = 0
    if !foldedFromInputs.isEmpty, feeds.keys.contains(where: foldedFromInputs.contains), observer == nil,
       let unfolded = graphWithoutFusedActivations {
      // A feed overrides a weight that constants were folded from: run the nodes as the model has them.
      let p = try plan(unfolded)
      let outputs = try execute(p, start: p.initialValues(mainInitialValues), constants: [], outer: nil, feeds: ordered)
      return zip(g.outputs.map(\.name), outputs).map { ($0, $1) }
    }
    guard let mainPlan else { throw CompressorError.internalError("the main graph has no plan") }
    let outputs = try execute(mainPlan, start: mainStart, constants: mainConstantNames, outer: nil, feeds: ordered)
    return zip(g.outputs.map(\.name), outputs).map { ($0, $1) }
  }

  /// Runs one node outside any plan, its subgraphs seeing no outer values (engines that drive the
  /// graph themselves — training — and gradients built from forward kernels).
  public func evaluate(_ node: Node, _ inputs: [NDArray?]) throws -> [NDArray] {
    guard let kernel = Kernels.kernel(domain: node.domain, opType: node.opType) else {
      throw CompressorError.unsupported("operator \(node.opType) is not supported (\(node.displayName))")
    }
    // The same guards as a planned run: constant folding and the passes evaluate nodes too.
    let reference = NodeReference(node)
    try Self.checkPackedInputs(reference, inputs)
    let context = KernelContext(node: reference, inputs: inputs, opset: opsets[node.isDefaultDomain ? "" : node.domain] ?? 1,
                                executor: self, scope: Scope(parent: nil))
    let results = try kernel(context)
    try Self.checkResults(reference, results)
    return results
  }

  private func expected(_ v: ValueInfo) -> String {
    guard let t = v.type else { return "" }
    return " (expected \(t.description))"
  }

  private func checkFeed(_ value: Value, against info: ValueInfo) throws {
    guard let kind = info.type?.kind else { return }
    switch (kind, value) {
    case (.tensor(let type, let shape), .tensor(let v)):
      if type != .undefined && type != v.dataType {
        throw CompressorError.invalid("input '\(info.name)' is \(v.dataType) but the model expects \(type)")
      }
      guard let shape else { return }
      var ok = shape.dims.count == v.rank
      if ok {
        for (d, n) in zip(shape.dims, v.shape) {
          if let k = d.size, k != n { ok = false }
        }
      }
      if !ok {
        throw CompressorError.invalid("input '\(info.name)' has shape \(v.shape) but the model expects \(shape)")
      }
    case (.sequence(let element), .sequence(let s)):
      if case .tensor(let type, _)? = element?.kind, type != .undefined, type != s.elementType {
        throw CompressorError.invalid("input '\(info.name)' is a sequence of \(s.elementType) but the model expects \(type)")
      }
    case (.optional, _), (.sparseTensor, _), (.map, _), (.opaque, _), (.none, _): return
    default:
      throw CompressorError.invalid("input '\(info.name)' is a \(value.typeDescription) but the model expects \(info.type?.description ?? "?")")
    }
  }

  /// Runs subgraph `g` with `feeds` bound to its inputs in order (nil: not fed); returns its
  /// outputs in order.
  func runGraph(_ g: Graph, outer: Scope?, feeds: [Value?]) throws -> [Value] {
    if let entry = try subgraphEntry(g, outer: outer) {
      return try execute(entry.plan, start: entry.start, constants: entry.constants, outer: outer, feeds: feeds)
    }
    let schedule = try plan(g)
    var initializers = [String: Value]()
    for t in g.initializers { initializers[t.name] = .tensor(try NDArray(t)) }
    return try execute(schedule, start: schedule.initialValues(initializers), constants: [], outer: outer, feeds: feeds)
  }

  /// Runs the subgraph in attribute `name` of the node `reference`: the entry is kept in the
  /// reference after the first run, so an If run on every inference finds it without hashing.
  func runSubgraph(of reference: NodeReference, attribute name: String, outer: Scope, feeds: [Value?]) throws -> [Value] {
    for (cached, entry) in reference.subgraphs where cached == name {
      return try execute(entry.plan, start: entry.start, constants: entry.constants, outer: outer, feeds: feeds)
    }
    guard case .graph(let g)? = reference.node.attribute(name)?.value else {
      throw CompressorError.invalid("\(reference.node.displayName): attribute '\(name)' (a graph) is missing")
    }
    guard let entry = try subgraphEntry(g, outer: outer) else { return try runGraph(g, outer: outer, feeds: feeds) }
    reference.subgraphs.append((name, entry))
    return try execute(entry.plan, start: entry.start, constants: entry.constants, outer: outer, feeds: feeds)
  }

  /// Runs the steps of `schedule` from the value table `start` (initializers in place).
  func execute(_ schedule: Plan, start startValues: [Value?], constants: Set<String>, outer: Scope?, feeds: [Value?]) throws -> [Value] {
    let scope = Scope(parent: outer, slots: schedule.slots, values: startValues, constants: constants)
    // Subgraph inputs (Loop/Scan bodies) are bound by position; a feed may be absent (optional).
    for (i, slot) in schedule.graphInputSlots.enumerated() where i < feeds.count {
      if let v = feeds[i] { scope.values[slot] = v }
    }
    let nodes = schedule.nodes, kernels = schedule.kernels, domainOpsets = schedule.opsets
    let steps = schedule.steps, table = schedule.slotTable
    // Bytes of each value this run produced and still holds (0: none): freeing a slot then
    // needs no look at its value (a copy, retained and released, of what is being dropped).
    var producedBytes = [Int](repeating: 0, count: schedule.slots.count)
    /// A node input: this graph's slot, else (a name this graph reads from around it) the outer scopes'.
    func input(_ reference: NodeReference, _ k: Int, _ slot: Int) throws -> Value {
      if let v = scope.value(slot) ?? outer?.lookup(reference.node.inputs[k]) { return v }
      throw CompressorError.invalid("\(reference.node.displayName): input '\(reference.node.inputs[k])' has no value")
    }
    // One array for every step's inputs: unique again once a kernel returns (its context gone),
    // so it is refilled in place instead of allocated per node.
    var inputs = [NDArray?]()
    for step in nodes.indices {
      let reference = nodes[step]
      let slots = steps[step]
      let started = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
      switch kernels[step] {
      case .tensor(let kernel):
        // The common path: tensors in, tensors out, exactly as before sequences existed.
        inputs.removeAll(keepingCapacity: true)
        for i in slots.inputs {
          let slot = table[i]
          if slot < 0 { inputs.append(nil); continue }
          if case .tensor(let t)? = scope.values[slot] { inputs.append(t); continue }
          if case .tensor(let t)? = scope.start[slot] { inputs.append(t); continue }
          let value = try input(reference, i - slots.inputs.lowerBound, slot)
          guard case .tensor(let t) = value else { throw Self.notATensor(reference, i - slots.inputs.lowerBound, value) }
          inputs.append(t)
        }
        try Self.checkPackedInputs(reference, inputs)
        let results: [NDArray]
        do {
          results = try kernel(KernelContext(borrowing: reference, inputs: inputs, opset: domainOpsets[step], executor: self, scope: scope))
        } catch let e as CompressorError {
          throw Self.naming(e, reference)
        }
        try Self.checkResults(reference, results)
        if profile != nil { record(reference, since: started) }
        if let observer, outer == nil { Self.show(reference, inputs, results, to: observer) }
        for i in slots.outputs {
          let slot = table[i], k = i - slots.outputs.lowerBound
          guard slot >= 0 && k < results.count else { continue }
          let bytes = results[k].storage.byteCount
          scope.values[slot] = .tensor(results[k])
          liveBytes += bytes - producedBytes[slot]
          producedBytes[slot] = bytes
        }
      case .value(let kernel):
        var values = [Value?]()
        values.reserveCapacity(slots.inputs.count)
        for i in slots.inputs {
          let slot = table[i]
          values.append(slot < 0 ? nil : try input(reference, i - slots.inputs.lowerBound, slot))
        }
        let context = KernelContext(borrowing: reference, inputs: [], opset: domainOpsets[step], executor: self, scope: scope,
                                    values: values)
        let results: [Value]
        do {
          results = try kernel(context)
        } catch let e as CompressorError {
          throw Self.naming(e, reference)
        }
        try Self.checkResults(reference, results.compactMap { $0.tensor })
        if profile != nil { record(reference, since: started) }
        // Observers (calibration, analyses) see tensors only: a node with a sequence or optional
        // output is not shown to them, and a sequence input is shown as absent.
        if let observer, outer == nil {
          let tensors = results.compactMap { $0.tensor }
          if tensors.count == results.count { Self.show(reference, values.map { $0?.tensor }, tensors, to: observer) }
        }
        for i in slots.outputs {
          let slot = table[i], k = i - slots.outputs.lowerBound
          guard slot >= 0 && k < results.count else { continue }
          let bytes = results[k].byteCount
          scope.values[slot] = results[k]
          liveBytes += bytes - producedBytes[slot]
          producedBytes[slot] = bytes
        }
      }
      peakLiveBytes = max(peakLiveBytes, liveBytes)
      // Free what no later node (nor a graph output) needs.
      for i in slots.frees {
        let slot = table[i]
        liveBytes -= producedBytes[slot]
        producedBytes[slot] = 0
        scope.values[slot] = nil
      }
    }
    for bytes in producedBytes { liveBytes -= bytes }
    return try zip(schedule.graphOutputNames, schedule.graphOutputSlots).map { name, slot in
      guard let v = scope.value(slot) ?? outer?.lookup(name) else {
        throw CompressorError.invalid("graph output '\(name)' has no value")
      }
      return v
    }
  }

  /// Kernels move elements a byte or more wide; 4-bit tensors only enter the operators that
  /// unpack them (or look at their shape).
  static let packedTypeOps: Set<String> = ["DequantizeLinear", "QuantizeLinear", "Identity", "Shape", "Size", "MatMulNBits", "Cast", "CastLike",
                                           "GatherBlockQuantized"]

  static func checkPackedInputs(_ reference: NodeReference, _ inputs: [NDArray?]) throws {
    for i in inputs.indices {
      guard let type = inputs[i]?.dataType, (type.bitWidth ?? 8) < 8 else { continue }
      let node = reference.node
      guard !packedTypeOps.contains(node.opType) else { continue }
      throw CompressorError.unsupported("\(node.displayName): \(node.opType) on \(type) tensors is not supported")
    }
  }

  // What the per-node loop does with the node itself lives out of line: named there, the node's
  // ten fields would be copied (and released) on every step, not only when the path runs.

  /// A kernel's error, prefixed with the node's name unless it names it already.
  @inline(never)
  static func naming(_ e: CompressorError, _ reference: NodeReference) -> CompressorError {
    let name = reference.node.displayName
    return e.message.contains(name) ? e : CompressorError(e.kind, "\(name): \(e.message)")
  }

  @inline(never)
  static func notATensor(_ reference: NodeReference, _ k: Int, _ value: Value) -> CompressorError {
    let node = reference.node
    return .invalid("\(node.displayName): input '\(node.inputs[k])' is a \(value.typeDescription); \(node.opType) takes tensors")
  }

  @inline(never)
  private func record(_ reference: NodeReference, since started: UInt64) {
    let node = reference.node
    profile?[node.displayName, default: (node.opType, 0)].nanoseconds += DispatchTime.now().uptimeNanoseconds - started
  }

  @inline(never)
  static func show(_ reference: NodeReference, _ inputs: [NDArray?], _ results: [NDArray],
                   to observer: (Node, [NDArray?], [NDArray]) -> Void) {
    observer(reference.node, inputs, results)
  }

  /// Every result holds exactly the bytes its shape and type need: a kernel that got this wrong
  /// would let the next one read past the end of a buffer.
  static func checkResults(_ reference: NodeReference, _ results: [NDArray]) throws {
    for i in results.indices {
      var count = 1
      for d in results[i].shape {
        let (r, o) = count.multipliedReportingOverflow(by: d)
        guard d >= 0, !o else { throw CompressorError.invalid("\(reference.node.displayName): a result has shape \(results[i].shape)") }
        count = r
      }
      let consistent = results[i].dataType == .string ? results[i].strings.count == count
        : results[i].dataType.byteCount(elements: count) == results[i].storage.byteCount
      guard consistent else {
        throw CompressorError.internalError(
          "\(reference.node.displayName): a \(results[i].dataType) result of shape \(results[i].shape) holds \(results[i].storage.byteCount) bytes")
      }
    }
  }

  /// The cached schedule and initializers of subgraph `g` (nil for a graph without nodes: every
  /// empty array shares one address). Constant nodes, and nodes computed from constants only —
  /// the subgraph's own or those of the scopes around it — are evaluated here once, not on every
  /// run: exporters write dozens in the branches of an If that runs on every inference (silero-vad
  /// slices and concatenates its LSTM's weights in one). A node that fails stays, to fail when it
  /// runs.
  private func subgraphEntry(_ g: Graph, outer: Scope?) throws -> SubgraphEntry? {
    guard let key = g.nodes.withUnsafeBufferPointer({ $0.baseAddress.map { UnsafeRawPointer($0) } }) else { return nil }
    if let entry = subgraphs[key] { return entry }
    var values = [String: Value]()
    for t in g.initializers {
      var a = try NDArray(t)
      a.makeAligned()
      values[t.name] = .tensor(a)
    }
    let inputs = Set(g.inputs.map(\.name))
    var local = inputs.union(g.initializers.map(\.name))
    for n in g.nodes { local.formUnion(n.outputs.filter { !$0.isEmpty }) }
    /// A constant input: the subgraph's own, or one it reads from a scope that holds it as one.
    func constant(_ name: String) -> NDArray? {
      if inputs.contains(name) { return nil }
      if local.contains(name) { return values[name]?.tensor }
      return outer?.constant(name)
    }
    var folded = Set<Int>()
    for i in (try? topologicalOrder(g)) ?? [] {
      let n = g.nodes[i]
      guard Self.foldable(n) else { continue }
      let arguments = n.inputs.map { $0.isEmpty ? nil : constant($0) }
      guard zip(n.inputs, arguments).allSatisfy({ $0.isEmpty || $1 != nil }),
            let results = try? evaluate(n, arguments), results.count >= n.outputs.filter({ !$0.isEmpty }).count else { continue }
      for (name, result) in zip(n.outputs, results) where !name.isEmpty {
        var a = result
        a.makeAligned()
        values[name] = .tensor(a)
      }
      folded.insert(i)
    }
    var runnable = g
    runnable.nodes = g.nodes.enumerated().filter { !folded.contains($0.offset) }.map(\.element)
    let p = try plan(runnable)
    for case .tensor(let a) in values.values { subgraphConstants.insert(ObjectIdentifier(a.storage)) }
    let entry = SubgraphEntry(source: g, plan: p, start: p.initialValues(values), constants: Set(values.keys).subtracting(inputs))
    subgraphs[key] = entry
    return entry
  }

  /// Node indices in an order where every producer runs before its consumers.
  public func topologicalOrder(_ g: Graph) throws -> [Int] {
    var producer = [String: Int]()
    for (i, n) in g.nodes.enumerated() { for o in n.outputs where !o.isEmpty { producer[o] = i } }
    var order = [Int]()
    order.reserveCapacity(g.nodes.count)
    var state = [UInt8](repeating: 0, count: g.nodes.count)
    // Each node's dependencies are listed once, when it is pushed: an If's walk its branches,
    // and listing them again for every one of them made loading silero-vad quadratic.
    for start in g.nodes.indices where state[start] == 0 {
      var stack = [(start, dependencies(g.nodes[start]), 0)]
      state[start] = 1
      while let (n, deps, k) = stack.last {
        if k < deps.count {
          stack[stack.count - 1].2 += 1
          if let p = producer[deps[k]], p != n {
            if state[p] == 1 { throw CompressorError.invalid("graph '\(g.name)' contains a cycle") }
            if state[p] == 0 { state[p] = 1; stack.append((p, dependencies(g.nodes[p]), 0)) }
          }
        } else {
          state[n] = 2
          order.append(n)
          stack.removeLast()
        }
      }
    }
    return order
  }

  /// A node's inputs and the outer-scope names its subgraphs read.
  private func dependencies(_ n: Node) -> [String] {
    var deps = n.inputs.filter { !$0.isEmpty }
    for a in n.attributes {
      for g in a.subgraphs {
        g.forEachGraph { sub in
          for node in sub.nodes { deps += node.inputs.filter { !$0.isEmpty } }
          deps += sub.outputs.map(\.name)
        }
      }
    }
    return deps
  }

  /// For each step, the values whose last reader is that step.
  func lastUses(_ g: Graph, order: [Int]) -> [[String]] {
    var last = [String: Int]()
    for (step, n) in order.enumerated() {
      for name in dependencies(g.nodes[n]) { last[name] = step }
      for o in g.nodes[n].outputs where !o.isEmpty && last[o] == nil { last[o] = step }
    }
    var byStep = [[String]](repeating: [], count: order.count)
    for (name, step) in last { byStep[step].append(name) }
    return byStep
  }
}
