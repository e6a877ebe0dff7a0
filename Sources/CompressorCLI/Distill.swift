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

    @Option(help: "The model to learn from; omit it to fine-tune on --labels alone.")
    var teacher: String?

    @Option(name: .shortAndLong, help: "Where to write the result (default: beside the student, STUDENT.distilled.onnx).")
    var output: String?

    @Option(help: "Training samples (a data file or a directory of them).")
    var data: String

    @Option(help: "A .npy of class indices aligned with --data.")
    var labels: String?

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

    @Option(help: "Seed for sample order, dropout and adapter initialization.")
    var seed: UInt64 = 0

    @Option(help: "Threads for BLAS and the runtime.")
    var threads = 1

    @Option(help: "Write a JSON report (loss and metrics per epoch, quality) to this file.")
    var report: String?

    @Flag(help: "Replace the output (and report) if they exist.")
    var force = false

    @Flag(help: "No progress lines.")
    var quiet = false

    @OptionGroup var memory: MemoryOptions

    func validate() throws {
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
      if threads < 1 { throw ValidationError("--threads must be 1 or more, not \(threads)") }
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

    func run() throws {
      let out = output ?? defaultOutput(student, suffix: "distilled")
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
      settings.seed = seed
      settings.threads = threads
      let teacherModel = try teacher.map { try ModelReader.read($0).model }
      let showProgress = !quiet && isatty(2) != 0
      let pass = Compression.Distill(
        teacher: teacherModel, data: data, labels: try labels.map { ($0, try loadLabels($0)) }, validationData: valData,
        validationLabels: try valLabels.map { ($0, try loadLabels($0)) }, settings: settings,
        progress: showProgress ? { FileHandle.standardError.write("\($0)\n") } : nil)
      let quality = valData.map { QualityCheck(data: $0, labels: valLabels, threads: threads) }
      let outcome = try TransformRun(command: "distill", model: student, output: out, report: report, force: force,
                                     quality: quality, qualityReference: teacherModel).run([ConstantsToInitializers(), pass])
      let rows = outcome.passes.first { $0.pass == Compression.Distill.name }?.changes ?? []
      var line = "wrote \(out) (\(rows.filter { $0.action == "trained" }.count) epochs"
      if let kept = rows.last(where: { $0.action == "kept" }) { line += ", kept \(kept.target)" }
      line += outcome.quality?.headline.replacingOccurrences(of: "input accuracy", with: teacherModel == nil ? "input accuracy" : "teacher accuracy") ?? ""
      FileHandle.standardError.write(line + ")\n")
    }
  }
}
