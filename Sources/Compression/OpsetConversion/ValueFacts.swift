import IR
import Runtime
import Support

/// What the converter can tell about a value without running the model: its element type, its
/// rank and, for initializers and Constant outputs, its elements. Facts come from declarations
/// (graph inputs and outputs, value_info, initializers) and from one forward walk over the nodes
/// with each operator's type and rank rule; whatever no rule covers is unknown, and adapters that
/// need an unknown fact take the general path or refuse. A subgraph's facts fall back on those of
/// the graphs around it, whose values it may read.
final class ValueFacts {
  private let parent: ValueFacts?
  private var types: [String: DataType] = [:]
  private var ranks: [String: Int] = [:]
  private var constants: [String: Tensor] = [:]

  /// Facts of `graph` as read (before any conversion): conversion keeps every value's type and
  /// rank, so they stay true while its nodes are rewritten.
  init(graph: Graph, parent: ValueFacts?) {
    self.parent = parent
    for t in graph.initializers {
      types[t.name] = t.dataType
      ranks[t.name] = t.dims.count
      constants[t.name] = t
    }
    for v in graph.inputs + graph.valueInfo + graph.outputs { declare(v) }
    walk(graph.nodes)
  }

  /// Facts of a function body: its inputs are typed only at each call, so only what its own
  /// constants and nodes fix is known.
  init(function: Function) {
    parent = nil
    for v in function.valueInfo { declare(v) }
    walk(function.nodes)
  }

  private func declare(_ v: ValueInfo) {
    guard case .tensor(let type, let shape)? = v.type?.kind else { return }
    if type != .undefined && types[v.name] == nil { types[v.name] = type }
    if let shape, ranks[v.name] == nil { ranks[v.name] = shape.dims.count }
  }

  func elementType(_ name: String) -> DataType? {
    if name.isEmpty { return nil }
    return types[name] ?? parent?.elementType(name)
  }

  func rank(_ name: String) -> Int? {
    if name.isEmpty { return nil }
    return ranks[name] ?? parent?.rank(name)
  }

  /// The elements of an initializer or Constant output (inner graphs first, as scoping reads them).
  func constant(_ name: String) -> NDArray? {
    if name.isEmpty { return nil }
    if let t = constants[name] { return try? NDArray(t) }
    return parent?.constant(name)
  }

  func constantIntegers(_ name: String) -> [Int]? { try? constant(name)?.integers() }
  func constantFloats(_ name: String) -> [Float]? {
    guard let a = constant(name), a.dataType.isFloatingPoint else { return nil }
    return try? a.floats()
  }

  // MARK: - The forward walk

  private func walk(_ nodes: [Node]) {
    for n in nodes {
      if n.isDefaultDomain && n.opType == "Constant", let out = n.outputs.first, let t = Self.constantTensor(n) {
        constants[out] = t
      }
      let outTypes = n.isDefaultDomain ? Self.outputTypes(n, elementType) : []
      for (i, out) in n.outputs.enumerated() where !out.isEmpty && i < outTypes.count {
        if types[out] == nil, let t = outTypes[i] { types[out] = t }
      }
      let outRanks = n.isDefaultDomain ? outputRanks(n) : []
      for (i, out) in n.outputs.enumerated() where !out.isEmpty && i < outRanks.count {
        if ranks[out] == nil, let r = outRanks[i] { ranks[out] = r }
      }
    }
  }

  /// The tensor a Constant node defines, from whichever value attribute it uses.
  static func constantTensor(_ n: Node) -> Tensor? {
    guard let a = n.attributes.first, a.refAttrName.isEmpty else { return nil }
    switch (a.name, a.value) {
    case ("value", .tensor(let t)): return t.segment == nil && t.external == nil ? t : nil
    case ("value_float", .float(let f)): return NDArray([f], shape: []).irTensor(name: "")
    case ("value_floats", .floats(let f)): return NDArray(f, shape: [f.count]).irTensor(name: "")
    case ("value_int", .int(let i)): return NDArray([i], shape: []).irTensor(name: "")
    case ("value_ints", .ints(let i)): return NDArray(i, shape: [i.count]).irTensor(name: "")
    default: return nil
    }
  }

  /// Operators whose every output has the element type of their first input.
  static let typeOfFirstInput: Set<String> = [
    "Abs", "Acos", "Acosh", "Add", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "BatchNormalization", "BitShift",
    "Ceil", "Celu", "Clip", "Compress", "Concat", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace",
    "Det", "Div", "Elu", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu",
    "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "GroupNormalization", "HardSigmoid", "HardSwish",
    "Hardmax", "Identity", "InstanceNormalization", "LRN", "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax",
    "LpNormalization", "LpPool", "MatMul", "Max", "MaxRoiPool", "MaxUnpool", "Mean", "MeanVarianceNormalization",
    "Min", "Mish", "Mod", "Mul", "Neg", "PRelu", "Pad", "Pow", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu",
    "Reshape", "Resize", "ReverseSequence", "RoiAlign", "Round", "Scatter", "ScatterElements", "ScatterND", "Selu",
    "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split",
    "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "Transpose", "Trilu", "Unsqueeze",
    "Upsample", "GridSample", "DeformConv", "Einsum", "Range",
  ]

  static func outputTypes(_ n: Node, _ type: (String) -> DataType?) -> [DataType?] {
    let first = n.inputs.first.flatMap(type)
    switch n.opType {
    case "Cast":
      return [n.attribute("to")?.int.map { DataType(rawValue: Int32(truncatingIfNeeded: $0)) }]
    case "CastLike": return [n.inputs.count > 1 ? type(n.inputs[1]) : nil]
    case "Shape", "Size", "NonZero", "ArgMax", "ArgMin", "NonMaxSuppression": return [.int64]
    case "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Not", "IsNaN", "IsInf":
      return [.bool]
    case "Constant": return [constantTensor(n)?.dataType]
    case "ConstantOfShape": return [n.attribute("value")?.tensor?.dataType ?? .float]
    case "TopK": return [first, .int64]
    case "MaxPool": return [first, .int64]
    case "Where": return [n.inputs.count > 1 ? type(n.inputs[1]) : nil]
    case "OneHot": return [n.inputs.count > 2 ? type(n.inputs[2]) : nil]
    case "DequantizeLinear": return [n.inputs.count > 1 ? type(n.inputs[1]) : nil]
    case "QuantizeLinear": return [n.inputs.count > 2 ? type(n.inputs[2]) : .uint8]
    case "Dropout": return [first, nil]
    default:
      guard typeOfFirstInput.contains(n.opType) else { return [] }
      return n.opType == "Split" ? Array(repeating: first, count: n.outputs.count) : [first]
    }
  }

  /// Operators whose first output has the rank of their first input.
  static let rankOfFirstInput: Set<String> = [
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "BatchNormalization", "Cast", "CastLike",
    "Ceil", "Celu", "Clip", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace", "Dropout", "Elu", "Erf",
    "Exp", "Floor", "Gelu", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "GroupNormalization", "HardSigmoid",
    "HardSwish", "Hardmax", "Identity", "InstanceNormalization", "IsInf", "IsNaN", "LRN", "LayerNormalization",
    "LeakyRelu", "Log", "LogSoftmax", "LpNormalization", "LpPool", "MaxPool", "MaxUnpool", "MeanVarianceNormalization",
    "Mish", "Neg", "Not", "PRelu", "Pad", "Reciprocal", "Relu", "Resize", "ReverseSequence", "Round", "Scatter",
    "ScatterElements", "ScatterND", "Selu", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Slice", "Softmax", "Softplus",
    "Softsign", "SpaceToDepth", "Split", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu",
    "Upsample", "Concat", "Compress", "GatherElements",
  ]

  /// Element-wise operators with multidirectional broadcasting: the largest input rank.
  static let broadcasting: Set<String> = [
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Equal", "Greater", "Less", "GreaterOrEqual",
    "LessOrEqual", "And", "Or", "Xor", "Mod", "BitShift", "Where",
  ]

  private func outputRanks(_ n: Node) -> [Int?] {
    let r0 = n.inputs.first.flatMap(rank)
    func axesCount() -> Int? {
      if let a = n.attribute("axes")?.ints { return a.count }
      if n.inputs.count > 1, let a = constantIntegers(n.inputs[1]) { return a.count }
      return nil
    }
    if Self.rankOfFirstInput.contains(n.opType) {
      if n.opType == "Compress" && n.attribute("axis") == nil { return [1] }
      return ["Split", "TopK", "MaxPool", "Dropout"].contains(n.opType) ? Array(repeating: r0, count: n.outputs.count) : [r0]
    }
    if Self.broadcasting.contains(n.opType) {
      let rs = n.inputs.filter { !$0.isEmpty }.map(rank)
      guard !rs.isEmpty, rs.allSatisfy({ $0 != nil }) else { return [nil] }
      return [rs.compactMap { $0 }.max()]
    }
    switch n.opType {
    case "Shape", "NonMaxSuppression", "Range": return [n.opType == "NonMaxSuppression" ? 2 : 1]
    case "Size": return [0]
    case "NonZero": return [2]
    case "Gemm", "Flatten": return [2]
    case "Constant": return [Self.constantTensor(n)?.dims.count]
    case "ConstantOfShape":
      guard let s = n.inputs.first.flatMap(constant), s.shape.count == 1 else { return [nil] }
      return [s.shape[0]]
    case "MatMul":
      guard let a = r0, n.inputs.count > 1, let b = rank(n.inputs[1]) else { return [nil] }
      if a == 1 && b == 1 { return [0] }
      if a == 1 { return [b - 1] }
      if b == 1 { return [a - 1] }
      return [max(a, b)]
    case "Reshape":
      guard n.inputs.count > 1 else { return [nil] }
      if let s = constant(n.inputs[1]), s.shape.count == 1 { return [s.shape[0]] }
      return [nil]
    case "Expand":
      guard n.inputs.count > 1, let s = constant(n.inputs[1]), s.shape.count == 1, let r = r0 else { return [nil] }
      return [max(r, s.shape[0])]
    case "Unsqueeze":
      guard let r = r0, let k = axesCount() else { return [nil] }
      return [r + k]
    case "Squeeze":
      guard let r = r0, let k = axesCount() else { return [nil] }
      return [r - k]
    case "Gather":
      guard let r = r0, n.inputs.count > 1, let q = rank(n.inputs[1]) else { return [nil] }
      return [r - 1 + q]
    case "ArgMax", "ArgMin":
      guard let r = r0 else { return [nil] }
      return [(n.attribute("keepdims")?.int ?? 1) != 0 ? r : r - 1]
    case "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
         "ReduceProd", "ReduceSum", "ReduceSumSquare":
      guard let r = r0 else { return [nil] }
      if (n.attribute("keepdims")?.int ?? 1) != 0 { return [r] }
      let axesGiven = n.attribute("axes") != nil || (n.inputs.count > 1 && !n.inputs[1].isEmpty)
      if !axesGiven { return [(n.attribute("noop_with_empty_axes")?.int ?? 0) != 0 ? r : 0] }
      guard let k = axesCount() else { return [nil] }
      return [k == 0 ? ((n.attribute("noop_with_empty_axes")?.int ?? 0) != 0 ? r : 0) : r - k]
    default:
      return []
    }
  }
}
