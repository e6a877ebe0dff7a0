import Datasets
import Foundation
import IR
import Runtime
import Support

/// Structured pruning: removes whole channels, so the model gets physically smaller and faster in
/// any runtime. Channels go by dependency group (see ChannelGroups): in each group that nothing
/// blocks, the `ratio` least important channels — never all of them — are cut from every weight,
/// bias, BatchNorm statistic and per-channel constant indexed by them, and depthwise
/// convolutions' `group` follows. Importance per channel is summed over the group's producers:
/// the l1 or l2 norm of their output slices, |γ| of its BatchNormalizations (`bn-scale`), or the
/// mean |activation| of its tensors over calibration data (`activation`).
public struct PruneChannels: Pass {
  public static let name = "prune-channels"
  public enum Criterion: String, CaseIterable, Sendable { case l1, l2, bnScale = "bn-scale", activation }
  public var ratio: Double
  public var criterion: Criterion
  public var overrides: RatioOverrides
  /// Samples for the activation criterion.
  public var data: String?
  public var threads: Int
  /// Channels kept are whole multiples of this (when a group has at least that many; see
  /// `blockedKept`): runtimes block channels for SIMD — ONNX Runtime by 16 with AVX-512 and 8
  /// with AVX2 — and run 45 channels no faster than 48, 12 no faster than 16.
  public var multiple: Int
  /// Ratios for named groups (a group's name is its producers' labels joined by "+"), chosen by
  /// the budget search; other groups take `ratio`.
  public var groupRatios: [String: Double]
  public init(ratio: Double, criterion: Criterion = .l1, overrides: RatioOverrides = .init(), data: String? = nil,
              threads: Int = 1, multiple: Int = 16, groupRatios: [String: Double] = [:]) {
    self.ratio = ratio; self.criterion = criterion; self.overrides = overrides; self.data = data; self.threads = threads
    self.multiple = max(1, multiple)
    self.groupRatios = groupRatios
  }

  /// Channels a group of `channels` keeps at `ratio` when kept counts are whole blocks of
  /// `multiple`: of the multiples below `channels`, and `channels` itself, the nearest to the
  /// exact (1 − ratio)·channels, ties keeping more. Rounding always up left 16-channel groups
  /// whole at any ratio below one half; to the nearest, the pruned fraction is right on average.
  static func blockedKept(channels: Int, ratio: Double, multiple: Int) -> Int {
    let exact = Double(channels) * (1 - ratio)
    var kept = channels, distance = Double(channels) - exact
    var k = (channels - 1) / multiple * multiple
    while k >= multiple {
      if abs(Double(k) - exact) < distance { kept = k; distance = abs(Double(k) - exact) }
      k -= multiple
    }
    return kept
  }

  /// The groups this pass could prune, by name, with their channel counts.
  static func prunableGroups(_ model: Model) -> [(name: String, channels: Int)] {
    let groups = ChannelGroups(model)
    return groups.roots.compactMap { r in
      let g = groups.group(r)
      return g.blocked == nil && !g.consumers.isEmpty ? (g.producerNodes.joined(separator: "+"), g.channels) : nil
    }
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    let groups = ChannelGroups(model)
    var changes = [PassResult.Change]()
    var initializers = [String: Tensor]()
    for t in model.graph.initializers { initializers[t.name] = t }
    let nodesByName = Dictionary(model.graph.nodes.map { (label($0), $0) }, uniquingKeysWith: { a, _ in a })
    let activation = criterion == .activation ? try activationMeans(model, groups) : [:]
    // Channels removed per group root.
    var removed = [Int: [Int]]()
    for r in groups.roots {
      let g = groups.group(r)
      let name = g.producerNodes.joined(separator: "+")
      func skip(_ why: String) {
        changes.append(.init(target: name, action: "skipped", detail: "group of \(g.channels) channels: \(why)"))
      }
      if let why = g.blocked { skip(why); continue }
      if g.consumers.isEmpty { skip("no layer reads its channels"); continue }
      let groupRatio = groupRatios[name] ?? g.producerNodes.compactMap { nodesByName[$0].flatMap(overrides.ratio) }.max() ?? ratio
      var count = min(Int((Double(g.channels) * groupRatio).rounded(.down)), g.channels - 1)
      if multiple > 1 && g.channels >= multiple {
        count = g.channels - Self.blockedKept(channels: g.channels, ratio: groupRatio, multiple: multiple)
      }
      if count <= 0 {
        skip(groupRatio == 0 ? "ratio 0" : multiple > 1 && g.channels >= multiple && Double(g.channels) * groupRatio >= 1
             ? "\(g.channels) kept after rounding to the nearest multiple of \(multiple)" : "\(g.channels) channels × \(groupRatio) rounds to none")
        continue
      }
      var importance = [Double](repeating: 0, count: g.channels)
      switch criterion {
      case .l1, .l2:
        for p in g.producers { try accumulateNorms(initializers[p.tensor], axis: p.axis, squared: criterion == .l2, into: &importance) }
      case .bnScale:
        guard !g.batchNormScales.isEmpty else { skip("no BatchNormalization scales its channels (bn-scale)"); continue }
        for s in g.batchNormScales {
          guard let t = initializers[s.tensor] else { continue }
          for (c, v) in try NDArray(t).floats().enumerated() where c < importance.count { importance[c] += Double(abs(v)) }
        }
      case .activation:
        guard let means = activation[r] else { skip("its activations were not observed"); continue }
        importance = means
      }
      let order = importance.indices.sorted { importance[$0] != importance[$1] ? importance[$0] < importance[$1] : $0 < $1 }
      let cut = order.prefix(count).sorted()
      removed[r] = cut
      changes.append(.init(target: name, action: "pruned",
                           detail: "\(count) of \(g.channels) channels removed (\(criterion.rawValue)); channels \(cut.map(String.init).joined(separator: ","))",
                           values: ["channelsBefore": Double(g.channels), "channelsAfter": Double(g.channels - count)]))
    }
    guard !removed.isEmpty else { return PassResult(pass: Self.name, changes: changes) }

    // Every (tensor, axis) with the indices to drop along it.
    var drops = [String: [Int: Set<Int>]]()
    for (r, cut) in removed {
      let g = groups.group(r)
      for s in g.producers + g.consumers + g.parameters {
        for c in cut { drops[s.tensor, default: [:]][s.axis, default: []].insert(s.offset + c) }
      }
    }
    var paramsBefore = [String: Int](), paramsAfter = [String: Int]()
    for (i, t) in model.graph.initializers.enumerated() {
      guard let axes = drops[t.name] else { continue }
      if t.dataType.isFloatingPoint { _ = try finiteWeights(t) }
      var array = try NDArray(t)
      for axis in axes.keys.sorted() {
        guard let cut = axes[axis] else { continue }
        let keep = (0..<(axis < array.rank ? array.shape[axis] : 0)).filter { !cut.contains($0) }
        array = try TensorEdits.keeping(keep, along: axis, of: array, tensor: t.name)
      }
      paramsBefore[t.name] = t.elementCount
      paramsAfter[t.name] = array.count
      var pruned = array.irTensor(name: t.name)
      pruned.docString = t.docString
      model.graph.initializers[i] = pruned
    }
    // Depthwise convolutions: one group per remaining channel.
    let depthwise = Dictionary(removed.flatMap { r, cut in groups.group(r).depthwise.map { ($0, groups.group(r).channels - cut.count) } },
                               uniquingKeysWith: { a, _ in a })
    for i in model.graph.nodes.indices {
      guard let out = model.graph.nodes[i].outputs.first, let groupCount = depthwise[out] else { continue }
      model.graph.nodes[i].attributes = model.graph.nodes[i].attributes.map {
        $0.name == "group" ? Attribute(name: "group", value: .int(Int64(groupCount))) : $0
      }
    }
    // Shapes recorded for pruned values are stale.
    let stale = Set(removed.keys.flatMap { groups.group($0).tensors.map(\.name) })
    model.graph.valueInfo.removeAll { stale.contains($0.name) }
    for n in model.graph.nodes {
      let touched = n.inputs.filter { paramsBefore[$0] != nil }
      guard !touched.isEmpty, ["Conv", "ConvTranspose", "Gemm", "MatMul"].contains(n.opType) else { continue }
      let before = touched.reduce(0) { $0 + (paramsBefore[$1] ?? 0) }, after = touched.reduce(0) { $0 + (paramsAfter[$1] ?? 0) }
      changes.append(.init(target: label(n), action: "resized", detail: "parameters \(before) → \(after)",
                           values: ["parametersBefore": Double(before), "parametersAfter": Double(after)]))
    }
    return PassResult(pass: Self.name, changes: changes)
  }

  /// Adds each output channel's l1 norm (or squared l2) of `t` along `axis` into `importance`.
  private func accumulateNorms(_ t: Tensor?, axis: Int, squared: Bool, into importance: inout [Double]) throws {
    guard let t else { return }
    let values = try finiteWeights(t)
    let dims = t.dims.map { Int($0) }
    let channels = dims[axis], inner = dims[(axis + 1)...].reduce(1, *)
    guard channels == importance.count else { return }
    for (i, v) in values.enumerated() {
      let c = (i / inner) % channels
      importance[c] += squared ? Double(v) * Double(v) : Double(abs(v))
    }
  }

  /// Mean |activation| per channel of every group's tensors over the calibration samples.
  private func activationMeans(_ model: Model, _ groups: ChannelGroups) throws -> [Int: [Double]] {
    guard let data else { throw CompressorError.usage("--criterion activation needs --data") }
    var wanted = [String: [(root: Int, axis: Int, offset: Int)]]()
    for r in groups.roots where groups.group(r).blocked == nil {
      for t in groups.group(r).tensors { wanted[t.name, default: []].append((r, t.axis, t.offset)) }
    }
    final class Sums { var values: [Int: [Double]] = [:]; var counts: [Int: Double] = [:] }
    let sums = Sums()
    let executor = try Executor(model: model, threads: threads)
    executor.observer = { node, _, outputs in
      for (name, value) in zip(node.outputs, outputs) {
        guard let targets = wanted[name], value.dataType == .float, value.rank >= 2, let f = try? value.floats() else { continue }
        for t in targets {
          let channels = groups.group(t.root).channels
          let axis = t.axis < 0 ? value.rank + t.axis : t.axis
          let inner = value.shape[(axis + 1)...].reduce(1, *), width = value.shape[axis]
          var acc = sums.values[t.root] ?? [Double](repeating: 0, count: channels)
          for (i, v) in f.enumerated() {
            let c = (i / inner) % width - t.offset
            if c >= 0 && c < channels { acc[c] += Double(abs(v)) }
          }
          sums.values[t.root] = acc
          sums.counts[t.root, default: 0] += Double(value.count / max(width, 1))
        }
      }
    }
    let dataset = try Dataset(path: data, inputNames: model.graph.feedNames)
    let used = try dataset.forEachChunk(rows: 8) { _ = try executor.run($0) }
    if used == 0 { throw CompressorError.usage("the data holds no samples") }
    return sums.values.mapValues { v in v }.reduce(into: [:]) { out, entry in
      let n = max(sums.counts[entry.key] ?? 1, 1)
      out[entry.key] = entry.value.map { $0 / n }
    }
  }
}
