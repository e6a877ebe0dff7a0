import ArgumentParser
import Compression
import Foundation
import IR
import ONNX
import Support

#if canImport(Glibc)
import Glibc
#endif

extension Compressor {
  struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Train a student model to match a teacher model (knowledge distillation), or fine-tune it on labels.",
      discussion: """
        The loss is alpha·T²·KL(teacher/T ‖ student/T) + (1 − alpha)·cross-entropy on --labels \
        (without labels, the teacher alone; without a teacher, labels alone). --match adds feature \
        distillation on intermediate tensors. A student holding QuantizeLinear/DequantizeLinear \
        pairs trains with fake quantization (quantization-aware training) and is written back as \
        the same QDQ model. With --val-data the best epoch is kept; --patience stops early. The \
        report lists the loss and validation metrics of every epoch.
        """)

    @Option(help: "The model to train (the student).")
    var student: String

    @OptionGroup var output: OutputOption<DistillStep>

    @OptionGroup var step: DistillStep

    @OptionGroup var reporting: RunOptions<DistillStep>

    @OptionGroup var memory: MemoryOptions

    @Flag(help: "No progress lines.")
    var quiet = false

    func run() throws {
      try TransformCommandRun(step: step, model: student, output: output.output ?? defaultOutput(student, suffix: "distilled"), run: reporting,
                              showProgress: !quiet)()
    }
  }
}

/// `distill`'s options (a recipe's `distill:` step; the student is the model the step is given,
/// and `teacher: original` names the recipe's input model).
struct DistillStep: StepOptions, StepHelp {
  static let stepName = "distill"
  static let pathKeys: Set<String> = ["teacher", "data", "labels", "val-data", "val-labels"]
  static let outputHelp = "Where to write the result (default: beside the student, STUDENT.distilled.onnx)."
  static let dataHelp = "Training samples (a data file or a directory of them)."
  static let labelsHelp = "A .npy of class indices aligned with --data."
  static let threadsHelp = "Threads for BLAS and the runtime."
  static let seedHelp = "Seed for sample order, dropout and adapter initialization."
  static let reportHelp = "Write a JSON report (loss and metrics per epoch, quality) to this file."

  @Option(help: "The model to learn from; omit it to fine-tune on --labels alone.")
  var teacher: String?

  @OptionGroup var samples: DataOptions<DistillStep>

  @Option(help: "Validation samples, evaluated after every epoch.")
  var valData: String?

  @Option(help: "A .npy of class indices aligned with --val-data (validation accuracy).")
  var valLabels: String?

  @Option(help: "Passes over the training samples.")
  var epochs = 10

  @Option(help: "Samples per step.")
  var batchSize = 32

  @Option(help: "Peak learning rate.")
  var lr: Float = 1e-3

  @Option(help: "sgd, adam or adamw.")
  var optimizer = "adamw"

  @Option(help: "SGD momentum.")
  var momentum: Float = 0.9

  @Option(help: "Weight decay (decoupled for adamw, L2 otherwise).")
  var weightDecay: Float = 0

  @Option(help: "Learning-rate schedule: cosine, step or constant.")
  var schedule = "cosine"

  @Option(help: "Epochs of linear warm-up.")
  var warmupEpochs = 0

  @Option(help: "Step schedule: multiply the rate by --gamma every this many epochs.")
  var stepEpochs = 1

  @Option(help: "Step schedule: the decay factor.")
  var gamma: Float = 0.1

  @Option(help: "Clip the gradients' global L2 norm to this.")
  var clipNorm: Float?

  @Option(help: "Softmax temperature of the distillation loss.")
  var temperature: Float = 4

  @Option(help: "Weight of the distillation loss against cross-entropy on labels, in [0, 1].")
  var alpha: Float = 0.5

  @Option(help: "Output loss against the teacher: kl (classifiers) or mse (logits or regression).")
  var loss = "kl"

  @Option(help: "Feature distillation: TEACHER_TENSOR=STUDENT_TENSOR (repeatable).")
  var match: [String] = []

  @Option(help: "Weight of the feature-distillation losses.")
  var featureWeight: Float = 1

  @Flag(help: "Keep BatchNormalization's running statistics fixed instead of training with batch statistics.")
  var freezeBn = false

  @Flag(help: "Quantization-aware training: learn the quantization scales too (LSQ), not only the weights.")
  var learnScales = false

  @Option(help: "Mixup: blend pairs of samples with Beta(α, α) weights; the teacher labels every blended batch.")
  var mixup: Float?

  @Option(help: "Stop after this many epochs without a better validation score.")
  var patience: Int?

  @OptionGroup var runtime: RuntimeOptions<DistillStep>

  var data: String? { samples.data }
  var labels: String? { samples.labels }

  func validate() throws {
    if data == nil { throw ValidationError("Missing expected argument '--data <data>'") }
    if epochs < 1 { throw ValidationError("--epochs must be 1 or more, not \(epochs)") }
    if batchSize < 1 { throw ValidationError("--batch-size must be 1 or more, not \(batchSize)") }
    if !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be positive, not \(lr)") }
    if !(alpha >= 0 && alpha <= 1) { throw ValidationError("--alpha must be in [0, 1], not \(alpha)") }
    if !(temperature > 0 && temperature.isFinite) { throw ValidationError("--temperature must be positive, not \(temperature)") }
    if !(weightDecay >= 0) { throw ValidationError("--weight-decay must be 0 or more, not \(weightDecay)") }
    if let c = clipNorm, !(c > 0) { throw ValidationError("--clip-norm must be positive, not \(c)") }
    if let m = mixup, !(m > 0 && m.isFinite) { throw ValidationError("--mixup must be positive, not \(m)") }
    if let p = patience, p < 1 { throw ValidationError("--patience must be 1 or more, not \(p)") }
    if warmupEpochs < 0 || stepEpochs < 1 { throw ValidationError("--warmup-epochs must be 0 or more and --step-epochs 1 or more") }
    let optimizers = ["sgd", "adam", "adamw"], schedules = ["cosine", "step", "constant"]
    if !optimizers.contains(optimizer) { throw ValidationError("--optimizer must be one of \(optimizers.joined(separator: ", ")), not '\(optimizer)'") }
    if !schedules.contains(schedule) { throw ValidationError("--schedule must be one of \(schedules.joined(separator: ", ")), not '\(schedule)'") }
    if Compression.Distill.OutputLoss(rawValue: loss) == nil { throw ValidationError("--loss must be kl or mse, not '\(loss)'") }
    if teacher == nil && labels == nil { throw ValidationError("give --teacher, --labels or both") }
    if teacher == nil && !match.isEmpty { throw ValidationError("--match needs --teacher") }
    if valLabels != nil && valData == nil { throw ValidationError("--val-labels needs --val-data") }
    for m in match where m.split(separator: "=", omittingEmptySubsequences: false).count != 2 || m.hasPrefix("=") || m.hasSuffix("=") {
      throw ValidationError("--match must be TEACHER_TENSOR=STUDENT_TENSOR, not '\(m)'")
    }
  }

  var inputFiles: [(role: String, path: String)] {
    [("teacher", teacher == "original" ? nil : teacher), ("data", data), ("labels", labels), ("val-data", valData),
     ("val-labels", valLabels)].compactMap { r, p in p.map { (r, $0) } }
  }
  var qualityData: (data: String, labels: String?)? { valData.map { ($0, valLabels) } }

  func plan(_ environment: StepEnvironment) throws -> StepPlan {
    var settings = Compression.Distill.Settings()
    settings.epochs = epochs
    settings.batchSize = batchSize
    settings.learningRate = lr
    settings.optimizer = optimizer
    settings.momentum = momentum
    settings.weightDecay = weightDecay
    settings.schedule = schedule
    settings.warmupEpochs = warmupEpochs
    settings.stepEpochs = stepEpochs
    settings.gamma = gamma
    settings.clipNorm = clipNorm
    settings.temperature = temperature
    settings.alpha = alpha
    settings.outputLoss = Compression.Distill.OutputLoss(rawValue: loss) ?? .kl
    settings.matches = match.map { m in
      let parts = m.split(separator: "=", maxSplits: 1).map(String.init)
      return (parts[0], parts.count > 1 ? parts[1] : "")
    }
    settings.featureWeight = featureWeight
    settings.freezeBatchNorm = freezeBn
    settings.mixup = mixup
    settings.learnScales = learnScales
    settings.patience = patience
    settings.seed = runtime.seed
    settings.threads = runtime.threads
    let teacherModel: Model?
    if teacher == "original", let original = environment.original {
      teacherModel = original
    } else {
      teacherModel = try teacher.map { try ModelReader.read($0).model }
    }
    let showProgress = environment.showProgress
    let pass = Compression.Distill(
      teacher: teacherModel, data: data ?? "", labels: try labels.map { ($0, try loadLabels($0)) }, validationData: valData,
      validationLabels: try valLabels.map { ($0, try loadLabels($0)) }, settings: settings,
      progress: showProgress ? { FileHandle.standardError.write("\($0)\n") } : nil)
    let quality = valData.map { QualityCheck(data: $0, labels: valLabels, threads: runtime.threads) }
    return StepPlan(passes: [ConstantsToInitializers(), pass], quality: quality, qualityReference: teacherModel,
                    qualityAgainst: teacherModel == nil ? "input" : "teacher", summary: { outcome in
      let rows = outcome.passes.first { $0.pass == Compression.Distill.name }?.changes ?? []
      var line = "\(rows.filter { $0.action == "trained" }.count) epochs"
      if let kept = rows.last(where: { $0.action == "kept" }) { line += ", kept \(kept.target)" }
      line += outcome.quality?.headline.replacingOccurrences(of: "input accuracy", with: teacherModel == nil ? "input accuracy" : "teacher accuracy") ?? ""
      return (line, [])
    })
  }
}
