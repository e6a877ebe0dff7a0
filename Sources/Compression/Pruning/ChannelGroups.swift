import IR
import Runtime
import Support

/// The channel dependency groups of a graph: sets of tensors whose channels must be removed
/// together, with every parameter that is indexed by those channels.
///
/// A group starts where a Conv, Gemm or MatMul writes new channels (its weight's output axis) and
/// follows them through everything that keeps channels apart: activations, pooling,
/// BatchNormalization, depthwise convolutions (whose channels are their input's), elementwise
/// arithmetic with scalars or per-channel constants, `Add`/`Mul` with tensors of another group
/// (residual sums and squeeze-excitation gates merge the two groups), `Concat` along the channel
/// axis (each input keeps its own group, at an offset) and flattening after a global pool. It
/// ends where a Conv, Gemm or MatMul reads the channels as its input dimension. Anything else
/// that reads them — a Reshape, a Transpose, a normalization over channels, a graph output, a
/// subgraph — blocks the group, with the reason.
struct ChannelGroups {
  /// A run of channels of one group inside a tensor, starting at `offset` (non-zero after Concat).
  struct Segment: Equatable { var space: Int; var offset: Int }
  /// A tensor's channels: its segments and the axis they lie on (1 for NCHW, -1 for features last).
  struct Layout { var segments: [Segment]; var axis: Int; var spatialOne: Bool }

  /// A parameter indexed by a group's channels along `axis`, from `offset`.
  struct Slice: Equatable { var tensor: String; var axis: Int; var offset: Int }

  struct Group {
    var channels: Int
    /// Weights (and biases) whose output axis creates the channels.
    var producers: [Slice] = []
    /// Weights whose input axis reads them.
    var consumers: [Slice] = []
    /// Other per-channel parameters: biases, BatchNorm statistics, depthwise kernels, constants.
    var parameters: [Slice] = []
    /// Depthwise Conv nodes (by output name) whose `group` attribute is the channel count.
    var depthwise: [String] = []
    /// BatchNormalization scales (γ), for the bn-scale criterion.
    var batchNormScales: [Slice] = []
    /// Node labels that create the channels, for reports.
    var producerNodes: [String] = []
    var tensors: [(name: String, axis: Int, offset: Int)] = []
    var blocked: String?
  }

  private(set) var groups: [Group] = []
  private var parent: [Int] = []
  private(set) var layouts: [String: Layout] = [:]

  init(_ model: Model) {
    let g = model.graph
    var initializers = [String: Tensor]()
    for t in g.initializers { initializers[t.name] = t }
    for n in g.nodes { analyze(n, initializers) }
    for o in g.outputs { block(o.name, "it is the graph output '\(o.name)'") }
    // Values read inside subgraphs keep their channels.
    for n in g.nodes {
      for a in n.attributes {
        var subgraphs = [Graph]()
        if case .graph(let s) = a.value { subgraphs = [s] }
        if case .graphs(let s) = a.value { subgraphs = s }
        for s in subgraphs {
          s.forEachGraph { sub in
            for m in sub.nodes { for i in m.inputs where layouts[i] != nil { block(i, "a subgraph of \(label(n)) reads '\(i)'") } }
          }
        }
      }
    }
    // A parameter sliced along the same axis by two different groups cannot follow both.
    var owner = [String: Int]()
    for (i, _) in groups.enumerated() where root(i) == i {
      for s in groups[i].producers + groups[i].consumers + groups[i].parameters {
        let key = "\(s.tensor)#\(s.axis)#\(s.offset)"  // Concat readers take each input at its own offset
        if let other = owner[key], other != i {
          groups[i].blocked = groups[i].blocked ?? "parameter '\(s.tensor)' is shared with another group"
          groups[other].blocked = groups[other].blocked ?? "parameter '\(s.tensor)' is shared with another group"
        }
        owner[key] = i
      }
    }
  }

  /// Group indices that are roots (one per independent group), in creation order.
  var roots: [Int] { groups.indices.filter { parent[$0] == $0 } }

  func group(_ i: Int) -> Group { groups[i] }

  mutating func root(_ i: Int) -> Int {
    var r = i
    while parent[r] != r { r = parent[r] }
    var j = i
    while parent[j] != r { let next = parent[j]; parent[j] = r; j = next }
    return r
  }

  private mutating func newGroup(_ channels: Int) -> Int {
    groups.append(Group(channels: channels))
    parent.append(groups.count - 1)
    return groups.count - 1
  }

  private mutating func union(_ a: Int, _ b: Int, _ why: String) {
    let ra = root(a), rb = root(b)
    guard ra != rb else { return }
    if groups[ra].channels != groups[rb].channels {
      blockGroup(ra, why + " (channel counts differ)")
      blockGroup(rb, why + " (channel counts differ)")
      return
    }
    var merged = groups[ra]
    let other = groups[rb]
    merged.producers += other.producers
    merged.consumers += other.consumers
    merged.parameters += other.parameters
    merged.depthwise += other.depthwise
    merged.batchNormScales += other.batchNormScales
    merged.producerNodes += other.producerNodes
    merged.tensors += other.tensors
    merged.blocked = merged.blocked ?? other.blocked
    groups[ra] = merged
    parent[rb] = ra
  }

  private mutating func blockGroup(_ i: Int, _ why: String) {
    let r = root(i)
    if groups[r].blocked == nil { groups[r].blocked = why }
  }

  private mutating func block(_ tensor: String, _ why: String) {
    guard let l = layouts[tensor] else { return }
    for s in l.segments { blockGroup(s.space, why) }
  }

  private func channelCount(_ l: Layout) -> Int {
    l.segments.reduce(0) { $0 + groups[$1.space].channels }
  }

  private mutating func assign(_ tensor: String, _ layout: Layout) {
    guard !tensor.isEmpty else { return }
    layouts[tensor] = layout
    for s in layout.segments {
      let r = root(s.space)
      groups[r].tensors.append((tensor, layout.axis, s.offset))
    }
  }

  /// Records that `weight`'s `axis` reads (consumer) or holds (parameter) the channels of `input`.
  private mutating func attach(_ layout: Layout, tensor: String, axis: Int, consumer: Bool) {
    for s in layout.segments {
      let r = root(s.space)
      let slice = Slice(tensor: tensor, axis: axis, offset: s.offset)
      if consumer { groups[r].consumers.append(slice) } else { groups[r].parameters.append(slice) }
    }
  }

  static let unary: Set<String> = [
    "Relu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Clip", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Erf",
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Softplus", "Softsign", "Identity", "Dropout", "Cast", "Mish", "Round", "Floor",
    "Ceil", "Reciprocal", "Sin", "Cos", "ThresholdedRelu", "Shrink", "Sign",
  ]
  static let pools: Set<String> = ["MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"]
  static let binary: Set<String> = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "PRelu"]

  private mutating func analyze(_ n: Node, _ initializers: [String: Tensor]) {
    let ins = n.inputs.map { layouts[$0] }
    let why = "read by \(n.opType) \(label(n))"
    func blockInputs() { for i in n.inputs { block(i, why) } }
    // Every case below reads its first input and writes its first output.
    guard n.isDefaultDomain, !n.outputs.isEmpty, !n.inputs.isEmpty else { blockInputs(); return }
    switch n.opType {
    case "Conv":
      guard n.inputs.count >= 2, let w = initializers[n.inputs[1]], w.dataType == .float, w.dims.count >= 3 else { blockInputs(); return }
      let out = Int(w.dims[0]), group = Int(clamping: n.attribute("group")?.int ?? 1)
      let bias = n.inputs.count > 2 && !n.inputs[2].isEmpty ? n.inputs[2] : nil
      // A bias is sliced with the output channels: it must be an initializer of one value each.
      if let bias, initializers[bias]?.dims != [Int64(out)] { blockInputs(); return }
      if group > 1 && w.dims[1] == 1 && group == out, let x = ins[0], x.segments.count == 1 {
        // Depthwise: the output's channels are the input's.
        attach(x, tensor: w.name, axis: 0, consumer: false)
        if let bias { attach(x, tensor: bias, axis: 0, consumer: false) }
        let r = root(x.segments[0].space)
        groups[r].depthwise.append(n.outputs[0])
        assign(n.outputs[0], Layout(segments: x.segments, axis: 1, spatialOne: false))
        return
      }
      if group > 1 {
        blockInputs()
      } else if let x = ins[0] {
        attach(x, tensor: w.name, axis: 1, consumer: true)
      }
      let s = newGroup(out)
      groups[s].producers.append(Slice(tensor: w.name, axis: 0, offset: 0))
      groups[s].producerNodes.append(label(n))
      if let bias { groups[s].parameters.append(Slice(tensor: bias, axis: 0, offset: 0)) }
      if group > 1 { groups[s].blocked = "produced by grouped convolution \(label(n))" }
      assign(n.outputs[0], Layout(segments: [Segment(space: s, offset: 0)], axis: 1, spatialOne: false))
    case "ConvTranspose":
      // Weight [C_in, C_out / group, k…]: reads its input channels on axis 0, writes on axis 1.
      guard n.inputs.count >= 2, let w = initializers[n.inputs[1]], w.dataType == .float, w.dims.count >= 3,
            (n.attribute("group")?.int ?? 1) == 1, n.attribute("output_shape") == nil else { blockInputs(); return }
      if let x = ins[0] { attach(x, tensor: w.name, axis: 0, consumer: true) }
      let s = newGroup(Int(w.dims[1]))
      groups[s].producers.append(Slice(tensor: w.name, axis: 1, offset: 0))
      groups[s].producerNodes.append(label(n))
      if n.inputs.count > 2, !n.inputs[2].isEmpty {
        guard initializers[n.inputs[2]]?.dims == [w.dims[1]] else { groups[s].blocked = "the bias of \(label(n)) is not one value per channel"; return }
        groups[s].parameters.append(Slice(tensor: n.inputs[2], axis: 0, offset: 0))
      }
      assign(n.outputs[0], Layout(segments: [Segment(space: s, offset: 0)], axis: 1, spatialOne: false))
    case "Gemm", "MatMul":
      guard n.inputs.count >= 2, let w = initializers[n.inputs[1]], w.dataType == .float, w.dims.count == 2, initializers[n.inputs[0]] == nil else {
        blockInputs(); return
      }
      let transB = n.opType == "Gemm" && (n.attribute("transB")?.int ?? 0) != 0
      if n.opType == "Gemm" && (n.attribute("transA")?.int ?? 0) != 0 { blockInputs(); return }
      if let x = ins[0] {
        if x.axis == -1 || x.spatialOne || n.opType == "Gemm" {
          attach(x, tensor: w.name, axis: transB ? 1 : 0, consumer: true)
        } else {
          block(n.inputs[0], why)
        }
      }
      let out = Int(w.dims[transB ? 0 : 1])
      let s = newGroup(out)
      groups[s].producers.append(Slice(tensor: w.name, axis: transB ? 0 : 1, offset: 0))
      groups[s].producerNodes.append(label(n))
      if n.opType == "Gemm", n.inputs.count > 2, !n.inputs[2].isEmpty {
        let c = initializers[n.inputs[2]]
        if let c, c.elementCount == out, c.dims.last == Int64(out) {
          groups[s].parameters.append(Slice(tensor: c.name, axis: c.dims.count - 1, offset: 0))
        } else if c?.elementCount != 1 {
          groups[s].blocked = "Gemm \(label(n)) adds a bias that is not per channel"
        }
      }
      assign(n.outputs[0], Layout(segments: [Segment(space: s, offset: 0)], axis: -1, spatialOne: false))
    case "BatchNormalization", "InstanceNormalization":
      guard let x = ins[0] else { return }
      guard x.axis == 1 else { blockInputs(); return }
      for p in n.inputs.dropFirst() where !p.isEmpty {
        // Its parameters are one value per channel; anything else cannot be sliced with them.
        guard let t = initializers[p], t.dims.count == 1 else { blockInputs(); return }
        attach(x, tensor: p, axis: 0, consumer: false)
      }
      if n.inputs.count > 1, x.segments.count == 1 {
        let r = root(x.segments[0].space)
        groups[r].batchNormScales.append(Slice(tensor: n.inputs[1], axis: 0, offset: 0))
      }
      assign(n.outputs[0], x)
    case _ where Self.unary.contains(n.opType) || Self.pools.contains(n.opType):
      guard let x = ins[0] else { return }
      if n.opType == "Clip" || n.opType == "Dropout" {
        for extra in n.inputs.dropFirst() where !extra.isEmpty && initializers[extra].map({ $0.elementCount != 1 }) ?? true {
          if n.opType == "Clip" { block(n.inputs[0], why + " with a non-scalar bound"); return }
        }
      }
      if Self.pools.contains(n.opType) && x.axis != 1 { blockInputs(); return }
      var y = x
      y.spatialOne = n.opType.hasPrefix("Global") || x.spatialOne
      assign(n.outputs[0], y)
    case _ where Self.binary.contains(n.opType):
      var layout: Layout?
      for i in n.inputs.indices where ins[i] != nil {
        guard let l = ins[i] else { continue }
        if let seen = layout {
          guard seen.segments.count == l.segments.count,
                seen.axis == l.axis || seen.spatialOne || l.spatialOne,
                zip(seen.segments, l.segments).allSatisfy({ $0.offset == $1.offset }) else { blockInputs(); return }
          for (a, b) in zip(seen.segments, l.segments) { union(a.space, b.space, why) }
        } else {
          layout = l
        }
      }
      guard let l = layout else { return }
      let total = channelCount(l)
      for (i, name) in n.inputs.enumerated() where ins[i] == nil && !name.isEmpty {
        guard let c = initializers[name] else { blockInputs(); return }
        if c.elementCount == 1 { continue }
        // Per-channel: exactly one dimension of size `total`, every other 1, aligned with the axis.
        let dims = c.dims.map { Int($0) }
        guard dims.filter({ $0 != 1 }) == [total], let axis = dims.firstIndex(of: total),
              l.axis == -1 ? axis == dims.count - 1 : dims.count - axis >= 3 else {
          blockInputs(); return
        }
        attach(l, tensor: name, axis: axis, consumer: false)
      }
      for o in n.outputs { assign(o, l) }
    case "Concat":
      let axis = Int(n.attribute("axis")?.int ?? 0)
      guard ins.allSatisfy({ $0 != nil }), let first = ins[0] else { blockInputs(); return }
      guard (first.axis == 1 && axis == 1) || (first.axis == -1 && axis == -1), ins.allSatisfy({ $0?.axis == first.axis }) else {
        blockInputs(); return
      }
      var segments = [Segment](), offset = 0
      for l in ins.compactMap({ $0 }) {
        for s in l.segments { segments.append(Segment(space: s.space, offset: offset + s.offset)) }
        offset += channelCount(l)
      }
      assign(n.outputs[0], Layout(segments: segments, axis: first.axis, spatialOne: ins.allSatisfy { $0?.spatialOne ?? false }))
    case "Flatten", "Reshape", "Squeeze":
      // [N, C, 1, 1] → [N, C]: the channels become the last axis, one feature each.
      guard let x = ins[0] else { return }
      var flat = x.spatialOne
      if n.opType == "Flatten" { flat = flat && (n.attribute("axis")?.int ?? 1) == 1 }
      if n.opType == "Reshape" {
        let shape = n.inputs.count > 1 ? initializers[n.inputs[1]].flatMap { try? NDArray($0).integers() } : nil
        flat = flat && shape.map { $0.count == 2 && ($0[1] == -1 || $0[0] == 0 || $0[0] == -1) } == true
      }
      if n.opType == "Squeeze" {
        let axes = n.inputs.count > 1 ? initializers[n.inputs[1]].flatMap { try? NDArray($0).integers() }
          : n.attribute("axes")?.ints.map { $0.map(Int.init) }
        flat = flat && axes.map { Set($0) == [2, 3] || Set($0) == [-1, -2] } == true
      }
      guard flat else { block(n.inputs[0], why); return }
      assign(n.outputs[0], Layout(segments: x.segments, axis: -1, spatialOne: true))
    default:
      blockInputs()
    }
  }
}
