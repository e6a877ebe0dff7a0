import Foundation
import IR
import Runtime
import Support

/// Trains the model (the student) to match a teacher model's outputs — and, optionally, its
/// intermediate tensors — on samples, mixed with cross-entropy on labels when there are any.
/// Without a teacher it is plain supervised fine-tuning. Quantized students train with fake
/// quantization (straight-through gradients), so this is also quantization-aware training.
public struct Distill: Pass {
  public static let name = "distill"

  public enum OutputLoss: String, CaseIterable { case kl, mse }

  public struct Settings {
    public var epochs = 10
    public var batchSize = 32
    public var learningRate: Float = 1e-3
    public var optimizer = "adamw"
    public var momentum: Float = 0.9
    public var weightDecay: Float = 0
    public var schedule = "cosine"
    public var warmupEpochs = 0
    /// Step schedule: decay by `gamma` every `stepEpochs` epochs.
    public var stepEpochs = 1
    public var gamma: Float = 0.1
    public var clipNorm: Float?
    public var temperature: Float = 4
    /// Weight of the distillation loss; 1 − alpha goes to cross-entropy on labels.
    public var alpha: Float = 0.5
    public var outputLoss = OutputLoss.kl
    /// Feature distillation: (teacher tensor, student tensor) pairs, MSE through a learned linear adapter.
    public var matches: [(teacher: String, student: String)] = []
    public var featureWeight: Float = 1
    public var freezeBatchNorm = false
    /// Quantization scales train too (LSQ).
    public var learnScales = false
    /// Blend samples (and what they are taught) with Beta(α, α) weights; the teacher then runs on every batch.
    public var mixup: Float?
    /// Stop after this many epochs without a better validation score.
    public var patience: Int?
    public var seed: UInt64 = 0
    public var threads = 1
    public init() {}
  }

  public var teacher: Model?
  public var data: String
  public var labels: (path: String, values: [Int])?
  public var validationData: String?
  public var validationLabels: (path: String, values: [Int])?
  public var settings: Settings
  /// Called after every epoch with a one-line summary (the command prints it on a terminal).
  public var progress: ((String) -> Void)?

  public init(teacher: Model?, data: String, labels: (path: String, values: [Int])?, validationData: String?,
              validationLabels: (path: String, values: [Int])?, settings: Settings, progress: ((String) -> Void)? = nil) {
    self.teacher = teacher
    self.data = data
    self.labels = labels
    self.validationData = validationData
    self.validationLabels = validationLabels
    self.settings = settings
    self.progress = progress
  }

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    let s = settings
    let inputNames = model.graph.feedNames
    if let teacher, Set(teacher.graph.feedNames) != Set(inputNames) {
      throw CompressorError.invalid("the teacher's inputs (\(teacher.graph.feedNames.joined(separator: ", "))) differ from the student's (\(inputNames.joined(separator: ", ")))")
    }
    let train = try Samples.load(data, inputNames: inputNames)
    if let labels, labels.values.count != train.count {
      throw CompressorError.invalid("\(labels.path): \(labels.values.count) labels for \(train.count) samples in \(data)")
    }
    let validation = try validationData.map { try Samples.load($0, inputNames: inputNames) }
    if let validationLabels, let validation, validationLabels.values.count != validation.count {
      throw CompressorError.invalid("\(validationLabels.path): \(validationLabels.values.count) labels for \(validation.count) samples in \(validationData ?? "")")
    }
    let alpha: Float = teacher == nil ? 0 : (labels == nil ? 1 : s.alpha)
    let outputNames = model.graph.outputs.map(\.name)
    let graph = try TrainingGraph(model: model, lossTensors: outputNames + s.matches.map(\.student),
                                  options: .init(freezeBatchNorm: s.freezeBatchNorm, learnScales: s.learnScales), threads: s.threads)
    guard graph.parameterCount > 0 else {
      throw CompressorError.unsupported("the student has no trainable weights (float initializers reaching its outputs)")
    }
    for name in graph.parameterNames {
      guard let values = try graph.parameters[name]?.floats(), let bad = values.firstIndex(where: { !$0.isFinite }) else { continue }
      throw CompressorError.invalid("weight '\(name)' holds \(values[bad]) at element \(bad); compressor will not train it")
    }
    var rng = SplitMix64(seed: s.seed)
    let runner = try teacher.map { try Teacher($0, features: s.matches.map(\.teacher), threads: s.threads) }
    // Without mixup the teacher sees every sample unchanged in every epoch: run it once.
    let cached = s.mixup == nil ? try runner?.run(train) : nil
    let validationTargets = try runner.flatMap { r in try validation.map { try r.run($0) } }
    // One sample through both models: output shapes, matched tensors and classes are checked on it.
    let probe = try graph.forward(train.rows(0..<1), training: false, rng: &rng).values
    let taughtProbe = try runner.map { try cached?.rows(0..<1) ?? $0.run(train.rows(0..<1)) }
    if let taughtProbe { try checkShapes(graph, probe, taughtProbe) }
    var adapters = try Adapters(s.matches, executor: graph.executor, student: probe, teacher: taughtProbe, rng: &rng)
    let mixup = s.mixup.map(Mixup.init)
    let classes = try outputClasses(graph, probe)

    let stepsPerEpoch = (train.count + s.batchSize - 1) / s.batchSize
    let schedule = Schedule(kind: Schedule.Kind(rawValue: s.schedule) ?? .cosine, base: s.learningRate,
                            warmupSteps: s.warmupEpochs * stepsPerEpoch, totalSteps: s.epochs * stepsPerEpoch,
                            stepSize: s.stepEpochs * stepsPerEpoch, gamma: s.gamma)
    var optimizer = Optimizer(kind: Optimizer.Kind(rawValue: s.optimizer) ?? .adamw, momentum: s.momentum, weightDecay: s.weightDecay)
    var changes = [PassResult.Change]()
    changes.append(.init(target: "student", action: "trainable",
                         detail: "\(graph.parameterNames.count) tensors, \(graph.parameterCount) elements; \(train.count) samples, \(stepsPerEpoch) steps per epoch",
                         values: ["tensors": Double(graph.parameterNames.count), "elements": Double(graph.parameterCount),
                                  "samples": Double(train.count)]))
    // Higher is better: validation accuracy (else agreement with the teacher), ties broken by the lower loss.
    var best: (epoch: Int, score: Double, loss: Double, model: Model)?
    var step = 0, sinceBest = 0
    var order = Array(0..<train.count)
    for epoch in 1...max(s.epochs, 1) {
      order.shuffle(using: &rng)
      var sums = [String: Double](), batches = 0
      for start in stride(from: 0, to: train.count, by: s.batchSize) {
        let indices = Array(order[start..<min(start + s.batchSize, train.count)])
        var feeds = train.rows(indices)
        var mix: (partner: [Int], lambda: [Float])?
        if let mixup {
          let m = try mixup.apply(feeds, rows: indices.count, rng: &rng)
          feeds = m.feeds
          mix = (m.partner, m.lambda)
        }
        let taught = try cached?.rows(indices) ?? runner?.run(feeds)
        let trace = try graph.forward(feeds, training: true, rng: &rng)
        var seeds = [String: NDArray]()
        for (k, name) in outputNames.enumerated() {
          guard let out = trace.values[name], out.dataType == .float else { continue }
          var grad: NDArray?
          if alpha > 0, let t = taught?.outputs[k] {
            let (loss, g) = s.outputLoss == .kl
              ? Loss.distillation(student: out, teacher: t, temperature: s.temperature)
              : Loss.meanSquared(student: out, teacher: t)
            sums["distillationLoss", default: 0] += loss
            grad = g.scaled(by: alpha)
          }
          if k == 0, alpha < 1, let labels {
            let q = try Loss.labelTargets(indices.map { labels.values[$0] }, classes: classes, mix: mix)
            let (loss, g) = Loss.crossEntropy(logits: out, targets: q)
            sums["crossEntropy", default: 0] += loss
            let scaled = g.scaled(by: 1 - alpha)
            if var existing = grad { existing.add(scaled); grad = existing } else { grad = scaled }
          }
          if let grad { seeds[name] = grad }
        }
        if let taught, !s.matches.isEmpty {
          sums["featureLoss", default: 0] += try adapters.loss(trace, taught, weight: s.featureWeight, seeds: &seeds)
        }
        var grads = try graph.backward(trace, seeds: seeds)
        for (name, g) in adapters.gradients { grads[name] = g }
        let norm = clipGradients(&grads, maxNorm: s.clipNorm)
        guard norm.isFinite else {
          throw CompressorError.invalid("training diverged at epoch \(epoch) (the gradient is not finite); lower --lr or set --clip-norm")
        }
        let lr = schedule.rate(at: step)
        optimizer.step(&graph.parameters, grads, names: graph.parameterNames, lr: lr)
        optimizer.step(&adapters.weights, grads, names: adapters.names, lr: lr)
        step += 1
        batches += 1
      }
      var values = sums.mapValues { $0 / Double(max(batches, 1)) }
      values["loss"] = Double(alpha) * (values["distillationLoss"] ?? 0) + Double(1 - alpha) * (values["crossEntropy"] ?? 0)
        + Double(s.featureWeight) * (values["featureLoss"] ?? 0)
      values["learningRate"] = Double(schedule.rate(at: max(step - 1, 0)))
      // Without validation data the last epoch is kept (the schedule has annealed by then).
      var score = Double(epoch), tieLoss = 0.0
      if let validation {
        let metrics = try evaluate(graph, validation, validationTargets, rng: &rng)
        for (k, v) in metrics { values["validation" + k.prefix(1).uppercased() + k.dropFirst()] = v }
        score = metrics["accuracy"] ?? metrics["agreement"] ?? 0
        tieLoss = metrics["loss"] ?? tieLoss
      }
      var line = "epoch \(epoch)/\(s.epochs): loss \(format(values["loss"] ?? 0))"
      for key in ["validationAccuracy", "validationAgreement"] where values[key] != nil {
        line += ", \(key) \(format(values[key] ?? 0))"
      }
      changes.append(.init(target: "epoch \(epoch)", action: "trained", detail: line, values: values))
      progress?(line)
      if best.map({ score > $0.score || (score == $0.score && tieLoss < $0.loss) }) ?? true {
        var snapshot = model
        try graph.write(into: &snapshot)
        best = (epoch, score, tieLoss, snapshot)
        sinceBest = 0
      } else {
        sinceBest += 1
        if let patience = s.patience, sinceBest >= patience {
          changes.append(.init(target: "epoch \(epoch)", action: "stopped", detail: "no better validation score for \(patience) epochs"))
          break
        }
      }
    }
    if let best {
      model = best.model
      let how = validation == nil ? "the last epoch (no --val-data)" : "the best validation score"
      changes.append(.init(target: "epoch \(best.epoch)", action: "kept", detail: "\(how) (score \(format(best.score)), loss \(format(best.loss)))",
                           values: ["epoch": Double(best.epoch), "score": best.score, "loss": best.loss]))
    }
    return PassResult(pass: Self.name, changes: changes)
  }

  /// Classes of the first output (its last axis), for labels; checks it is a [samples, classes] tensor.
  private func outputClasses(_ graph: TrainingGraph, _ probe: [String: NDArray]) throws -> Int {
    let name = graph.graph.outputs[0].name
    let out = probe[name]
    guard let out, out.rank == 2 || labels == nil else {
      throw CompressorError.invalid("labels need the student's first output '\(name)' to be [samples, classes], not \(out?.shape ?? [])")
    }
    return out.shape.last ?? 1
  }

  /// Student and teacher outputs must pair up one to one with equal shapes.
  private func checkShapes(_ graph: TrainingGraph, _ probe: [String: NDArray], _ targets: TeacherTargets) throws {
    let names = graph.graph.outputs.map(\.name)
    guard names.count == targets.outputs.count else {
      throw CompressorError.invalid("the student has \(names.count) outputs, the teacher \(targets.outputs.count)")
    }
    for (k, name) in names.enumerated() {
      let mine = Array((probe[name]?.shape ?? []).dropFirst()), theirs = Array(targets.outputs[k].shape.dropFirst())
      if mine != theirs {
        throw CompressorError.invalid("student output '\(name)' has shape \(mine) per sample but the teacher's output \(k) has \(theirs)")
      }
    }
  }

  /// Validation: accuracy with labels, agreement with and loss against the teacher when there is one.
  private func evaluate(_ graph: TrainingGraph, _ samples: Samples, _ targets: TeacherTargets?,
                        rng: inout SplitMix64) throws -> [String: Double] {
    var correct = 0, agree = 0, loss = 0.0, chunks = 0
    let output = graph.graph.outputs[0].name
    for start in stride(from: 0, to: samples.count, by: 256) {
      let range = start..<min(start + 256, samples.count)
      let trace = try graph.forward(samples.rows(range), training: false, rng: &rng)
      guard let out = try trace.values[output]?.asFloat() else { continue }
      let predicted = argmaxRows(out)
      if let labels = validationLabels?.values {
        correct += zip(predicted, range).filter { $0 == labels[$1] }.count
      }
      if let t = targets?.outputs.first {
        let slice = t.gatherRows(range)
        agree += zip(predicted, argmaxRows(slice)).filter { $0 == $1 }.count
        loss += settings.outputLoss == .kl ? Loss.distillation(student: out, teacher: slice, temperature: settings.temperature).0
          : Loss.meanSquared(student: out, teacher: slice).0
        chunks += 1
      }
    }
    var metrics = [String: Double]()
    let n = Double(max(samples.count, 1))
    if validationLabels != nil { metrics["accuracy"] = Double(correct) / n }
    if targets != nil {
      metrics["agreement"] = Double(agree) / n
      metrics["loss"] = loss / Double(max(chunks, 1))
    }
    return metrics
  }

  private func format(_ v: Double) -> String { String(format: "%.4f", v) }
}

/// Index of the largest value of each row (last axis).
func argmaxRows(_ a: NDArray) -> [Int] {
  let classes = a.shape.last ?? 1, rows = a.count / max(classes, 1)
  return a.withFloats { p in
    (0..<rows).map { r in
      var best = 0
      for k in 1..<max(classes, 1) where p[r * classes + k] > p[r * classes + best] { best = k }
      return best
    }
  }
}

extension NDArray {
  /// The rows at `indices` of the leading axis.
  func gatherRows<C: Collection>(_ indices: C) -> NDArray where C.Element == Int {
    Samples(arrays: ["x": self], count: shape.first ?? 0).rows(indices)["x"] ?? self
  }

  func scaled(by k: Float) -> NDArray {
    if k == 1 { return self }
    return NDArray.filled(shape) { out, n in withFloats { p in for i in 0..<n { out[i] = p[i] * k } } }
  }
}
