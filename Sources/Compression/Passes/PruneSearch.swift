import Datasets
import Foundation
import IR
import Runtime
import Support

/// Sensitivity analysis and budgeted structured pruning. Each prunable channel group is pruned
/// alone at ratios 0.1 … 0.7 and the model's outputs on the data are compared with the
/// original's (loss = 1 − mean cosine of the first output, per sample); MACs and parameters of
/// each trial are counted exactly. With a budget, ratios then grow greedily — always the step
/// that costs the least loss per MAC (or parameter) saved — until the estimate meets it, and
/// the chosen ratios are applied in one pruning. Without one, only the table is reported.
public struct PruneSearch: Pass {
  public static let name = "prune-search"
  public enum Budget: Equatable, Sendable { case macs(Double), parameters(Double) }
  public var budget: Budget?
  public var data: String
  public var criterion: PruneChannels.Criterion
  public var multiple: Int
  public var threads: Int
  /// Rows of data used to measure each trial.
  public var samples: Int
  public static let steps: [Double] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]

  public init(budget: Budget?, data: String, criterion: PruneChannels.Criterion = .l1, multiple: Int = 16,
              threads: Int = 1, samples: Int = 256) {
    self.budget = budget; self.data = data; self.criterion = criterion; self.multiple = multiple
    self.threads = threads; self.samples = samples
  }

  struct Trial { var loss: Double; var macs: Int; var parameters: Int }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    let dataset = try Dataset(path: data, inputNames: model.graph.feedNames)
    var feeds = [[String: NDArray]]()
    let used = try dataset.forEachChunk(rows: 32, limit: samples) { feeds.append($0) }
    if used == 0 { throw CompressorError.usage("the data holds no samples") }
    let reference = try outputs(model, feeds)
    let shapes = try dataset.sampleShapes()
    let baseMACs = try macs(model, shapes), baseParameters = parameters(model)
    let groups = PruneChannels.prunableGroups(model)
    if groups.isEmpty {
      return PassResult(pass: Self.name, changes: [.init(target: model.graph.name, action: "skipped", detail: "no prunable channel group")])
    }
    var table = [String: [Double: Trial]]()
    for g in groups {
      for r in Self.steps {
        var trial = model
        let result = try PruneChannels(ratio: 0, criterion: criterion, data: data, threads: threads, multiple: multiple,
                                       groupRatios: [g.name: r]).run(&trial, context)
        guard result.changes.contains(where: { $0.action == "pruned" }) else { continue }
        let loss = try cosineLoss(try outputs(trial, feeds), reference)
        let t = Trial(loss: loss, macs: try macs(trial, shapes), parameters: parameters(trial))
        if table[g.name]?.values.contains(where: { $0.macs == t.macs && $0.parameters == t.parameters }) == true { continue }
        table[g.name, default: [:]][r] = t
        changes.append(.init(target: g.name, action: "analyzed",
                             detail: String(format: "ratio %.1f alone: loss %.5f (1 − mean cosine), MACs %.3f×, parameters %.3f×",
                                            r, loss, Double(t.macs) / Double(max(baseMACs, 1)), Double(t.parameters) / Double(max(baseParameters, 1))),
                             values: ["ratio": r, "loss": loss, "macs": Double(t.macs), "parameters": Double(t.parameters)]))
      }
    }
    guard let budget else { return PassResult(pass: Self.name, changes: changes) }
    // Greedy: from nothing pruned, take the cheapest step (loss per unit saved) until the budget is met.
    let (goal, base): (Double, Int) = {
      switch budget {
      case .macs(let f): return (f * Double(baseMACs), baseMACs)
      case .parameters(let f): return (f * Double(baseParameters), baseParameters)
      }
    }()
    func size(_ t: Trial) -> Int { if case .macs = budget { return t.macs } else { return t.parameters } }
    var chosen = [String: Double]()
    var estimate = Double(base)
    while estimate > goal {
      var best: (name: String, ratio: Double, cost: Double, saved: Double)?
      for (name, trials) in table {
        let current = chosen[name]
        let currentTrial = current.flatMap { trials[$0] }
        let currentSize = Double(currentTrial.map(size) ?? base), currentLoss = currentTrial?.loss ?? 0
        for r in trials.keys.sorted() where r > (current ?? 0) {
          guard let t = trials[r] else { continue }
          let saved = currentSize - Double(size(t))
          guard saved > 0 else { continue }
          let cost = max(t.loss - currentLoss, 0) / saved
          if cost < (best?.cost ?? .infinity) { best = (name, r, cost, saved) }
          break
        }
      }
      guard let step = best else { break }
      chosen[step.name] = step.ratio
      estimate -= step.saved
    }
    if chosen.isEmpty {
      changes.append(.init(target: model.graph.name, action: "skipped", detail: "the budget is already met"))
      return PassResult(pass: Self.name, changes: changes)
    }
    let applied = try PruneChannels(ratio: 0, criterion: criterion, data: data, threads: threads, multiple: multiple,
                                    groupRatios: chosen).run(&model, context)
    let finalSize: Int = {
      if case .macs = budget { return (try? macs(model, shapes)) ?? 0 }
      return parameters(model)
    }()
    let met = Double(finalSize) <= goal
    for name in chosen.keys.sorted() {
      changes.append(.init(target: name, action: "chosen", detail: String(format: "ratio %.1f", chosen[name] ?? 0),
                           values: ["ratio": chosen[name] ?? 0]))
    }
    changes.append(.init(target: model.graph.name, action: met ? "budget met" : "budget not met",
                         detail: String(format: "%@ %.3f× of the original (budget %.3f×)",
                                        { if case .macs = budget { return "MACs" } else { return "parameters" } }(),
                                        Double(finalSize) / Double(max(base, 1)), goal / Double(max(base, 1))),
                         values: ["ratio": Double(finalSize) / Double(max(base, 1))]))
    return PassResult(pass: Self.name, changes: changes + applied.changes)
  }

  /// The first output of every chunk, as rows (samples) of floats.
  private func outputs(_ model: Model, _ feeds: [[String: NDArray]]) throws -> [(rows: Int, values: [Float])] {
    let executor = try Executor(model: model, threads: threads)
    return try feeds.map { f in
      let y = try executor.run(f)[0].value
      return (y.rank == 0 ? 1 : y.shape[0], try y.floats())
    }
  }

  private func macs(_ model: Model, _ shapes: [String: [Int]]) throws -> Int {
    try ShapeInference(model: model, bindings: shapes).totalMACs
  }

  private func parameters(_ model: Model) -> Int {
    model.graph.initializers.reduce(0) { $0 + $1.elementCount }
  }

  /// 1 − the mean over samples of the cosine between their outputs.
  private func cosineLoss(_ a: [(rows: Int, values: [Float])], _ b: [(rows: Int, values: [Float])]) throws -> Double {
    var sum = 0.0, samples = 0
    for (x, y) in zip(a, b) where x.values.count == y.values.count && x.rows > 0 {
      let width = x.values.count / x.rows
      for row in 0..<x.rows {
        var dot = 0.0, nx = 0.0, ny = 0.0
        for k in (row * width)..<((row + 1) * width) {
          let p = Double(x.values[k]), q = Double(y.values[k])
          dot += p * q; nx += p * p; ny += q * q
        }
        sum += nx > 0 && ny > 0 ? dot / (nx.squareRoot() * ny.squareRoot()) : (nx == ny ? 1 : 0)
        samples += 1
      }
    }
    return 1 - sum / Double(max(samples, 1))
  }
}
