import ArgumentParser
import Compression
import Datasets
import Foundation
import IR
import ONNX
import Report
import Support

extension Compressor {
  struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Quantize a model: int8/int4 weights (weight-only), run-time activation quantization (dynamic), or calibrated QDQ / QOperator (static).",
      discussion: """
        Runs the preparation passes of `optimize` first. weight-only: MatMul, Gemm, Conv, \
        ConvTranspose and Gather weights of 256 elements or more become int8 per output channel \
        (or int4 blocks for MatMul with --bits 4) followed by DequantizeLinear. dynamic: MatMul, \
        Gemm and Conv become DynamicQuantizeLinear + MatMulInteger/ConvInteger. static (needs \
        --data): Conv, MatMul and Gemm read calibrated int8/uint8 activations, per-channel int8 \
        weights and int32 biases, as QDQ pairs or QLinearConv/QLinearMatMul (--format qoperator). \
        Weights of nodes not quantized otherwise are stored int8 (weight-only). --report lists \
        every node quantized or skipped with the reason, every calibrated range, and with data \
        the quality against the float model. Models that are already quantized are refused (exit 69). \
        A model below opset 13 is converted to 13 first (DequantizeLinear has no per-channel axis \
        before), and below 21 with --bits 4 --format qdq to 21; --keep-opset keeps its opset \
        (per-tensor int8 weights below 13). --bits 4 below opset 21 writes MatMulNBits by default.
        """)

    typealias Mode = QuantizeStep.Mode
    typealias Format = QuantizeStep.Format

    @Argument(help: "The ONNX model to quantize.")
    var model: String

    @OptionGroup var output: OutputOption<QuantizeStep>

    @OptionGroup var step: QuantizeStep

    @OptionGroup var reporting: RunOptions<QuantizeStep>

    @OptionGroup var memory: MemoryOptions

    func run() throws {
      let out = output.output ?? defaultOutput(model, suffix: step.bits == 4 ? "int4" : "int8")
      let outcome = try TransformCommandRun(step: step, model: model, output: out, run: reporting, writesModel: !step.analyze)()
      guard step.analyze, let outcome else { return }
      // The ranked table: most damaging first.
      let changes = outcome.passes.first { $0.pass == QuantizeStatic.name }?.changes ?? []
      func f(_ v: Double?) -> String { String(format: "%.4f", v ?? .nan) }
      var text = ""
      if let a = changes.first(where: { $0.action == "analysis" }) { text += a.detail + "\n" }
      text += "rank  node  quantized alone  loss  float alone  gain\n"
      for row in changes where row.action == "analyzed" {
        let v = row.values ?? [:]
        text += "\(Int(v["rank"] ?? 0))  \(row.target)  \(f(v["whenAloneQuantized"]))  \(f(v["loss"]))  \(f(v["whenAloneFloat"]))  \(f(v["gain"]))\n"
      }
      FileHandle.standardOutput.write(text)
    }

    static let quantizedOps: Set<String> = ["QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                                            "QLinearMatMul", "MatMulInteger", "ConvInteger", "MatMulNBits"]
  }
}

/// `quantize`'s options (a recipe's `quantize:` step).
struct QuantizeStep: StepOptions, StepHelp {
  static let stepName = "quantize"
  static let pathKeys: Set<String> = ["data", "labels", "eval-data", "overrides", "save-overrides"]
  static let outputHelp = "Where to write the result (default: beside the input, MODEL.int8.onnx)."
  static let dataHelp = "Calibration data: a directory of .npy/.npz/.pb samples or one such file (needed by --mode static); also the quality data unless --eval-data is given."
  static let labelsHelp = "A .npy of class indices aligned with the quality data, for accuracy."
  static let threadsHelp = "Threads for calibration and evaluation."

  enum Mode: String, ExpressibleByArgument, CaseIterable, StringChoice { case weightOnly = "weight-only", dynamic, `static` }

  @Option(help: "Quantization mode (\(Mode.allCases.map(\.rawValue).joined(separator: ", "))).")
  var mode: Mode = .weightOnly

  @Option(help: "Bits per weight: 8, or 4 (weight-only; MatMul weights, in blocks).")
  var bits = 8

  @Option(help: "With --bits 4: rows per block of scales (32, 64 or 128).")
  var blockSize = 32

  @Flag(inversion: .prefixedNo, help: "GPTQ weight rounding: each weight's rounding error is spread over the inputs not yet rounded, most active first, weighted by its inputs' Hessian on the --data samples (at most --calibration-samples), so the layer's output moves least; round-to-nearest is kept for a weight where it measures better. With --bits 4: the 4-bit MatMul weights (off by default). Int8: the weights of Conv, MatMul and Gemm, with round-to-nearest's scales and zero points, and round-to-nearest kept where the samples give fewer rows than the weight has inputs — weight-only with --data (off by default), static (on by default; --no-gptq rounds to nearest).")
  var gptq: Bool?

  @Flag(help: "With --bits 4: AWQ — each activation the 4-bit MatMuls read is divided per channel by s = a^α (a: the channel's root mean square on the --data samples) and their weight rows multiplied by s before rounding, so the channels that carry the most get the finest steps; α is searched from 0 to 1 by the readers' output error, and 1/s goes into the LayerNorm that produces the activation where it can (else a float Mul). Kept only where it measures better (with --gptq, against GPTQ too). The report gives every output error per weight and activation.")
  var awq = false

  enum Format: String, ExpressibleByArgument, CaseIterable, StringChoice { case qdq, qoperator, matmulnbits }

  @Option(help: "qdq (QuantizeLinear/DequantizeLinear pairs, the default); static: qoperator (QLinearConv, QLinearMatMul); --bits 4: matmulnbits (ONNX Runtime's com.microsoft MatMulNBits, the default below opset 21).")
  var format: Format?

  @Flag(help: "Keep the model's opset: below 13 int8 weights are per tensor (no per-channel DequantizeLinear), below 21 --bits 4 --format qdq is refused.")
  var keepOpset = false

  @OptionGroup var samples: DataOptions<QuantizeStep>

  @Option(help: "Data to measure the quality of the result against the float model (default: --data).")
  var evalData: String?

  @Option(help: "Measure quality on at most this many samples (0: no quality section).")
  var evalSamples: Int?

  @Option(help: "Calibration: auto (per tensor, the range among minmax, percentiles, mse and entropy that its readers' outputs tolerate best; the default), minmax, percentile[:P] (default P 99.99), entropy or mse.")
  var calibration = "auto"

  @Option(help: "Calibrate on at most this many samples (rows).")
  var calibrationSamples: Int?

  @Option(help: "Static: a quality to keep against the float model on the quality data (--eval-data, else --data): cosine>=X, agreement>=X, iou>=X[@T] (maps thresholded at T, default 0.5) or accuracy-drop<=X (points; --labels). Every node is quantized; if that falls short, the most sensitive stay float, as few as meet it. Not met: the best model and the report are written, and the command exits 2 (a gate). Default: a floor of \(QuantizeStep.defaultFloor) kept the same way but never a gate; none: every node quantized whatever the quality.")
  var target: String?

  @Flag(help: "Static: measure instead of quantizing — every quantizable node's quality with only it quantized and with only it float, on the quality data, ranked (stdout, and --report); writes no model.")
  var analyze = false

  @Option(help: "Static: per-node decisions from a YAML file — under nodes:, a name glob or op type → {skip: true[, weights: float]} (left float; its weight too) or {calibration: METHOD} (its activations' ranges); the first matching entry decides.")
  var overrides: String?

  @Option(help: "Static: write the run's per-node decisions (the --overrides given, and every node the quality search kept float) to this YAML file, for --overrides.")
  var saveOverrides: String?

  @Flag(help: "Static: cross-layer equalization before calibration — in each Conv/Gemm/MatMul pair joined through Relu, LeakyRelu, PRelu or pooling (depthwise convolutions included), the first node's output channels and the second's input channels are rescaled to the same weight range; the float function is unchanged. The report compares the result with plain PTQ.")
  var equalize = false

  @Option(help: "Static: SmoothQuant with this α in [0, 1] — each activation read by MatMul/Gemm weights is divided per channel by max|x|^α / max|W|^(1−α) (measured on the calibration data) and their weight rows multiplied by it, into the LayerNorm that produces it where it can (else a float Mul); α 0.5 is the usual choice for transformers. The report compares the result with plain PTQ.")
  var smoothAlpha: Float?

  @Flag(help: "Static: bias correction — each int8 weight's output shift ε·E[x] (E[x]: its input's per-channel mean on the calibration data) is taken off the node's bias. The report compares the result with plain PTQ.")
  var biasCorrection = false

  @Option(help: "Static: end the search for --target (or the default floor) after this many seconds, with the best model so far.")
  var maxSeconds: Double?

  /// What static int8 keeps when no --target is given: measured and reported, never a gate.
  /// 0.005 above the 0.99 it is meant to give: the floor is measured on the data it is given
  /// (usually the calibration samples), and unseen inputs fall that much lower on the suite.
  static let defaultFloor = "cosine>=0.995"

  @Flag(inversion: .prefixedNo, help: "Static: int8 activations with zero point 0 (default: uint8 with a zero point).")
  var symmetricActivations = false

  @Flag(inversion: .prefixedNo, help: "int8 weights with zero point 0 (default), or uint8 with a zero point per channel.")
  var symmetricWeights = true

  @Option(help: "Weight-only: the per-channel axis of every weight, overriding each op's output-channel axis.")
  var axis: Int?

  @Option(parsing: .singleValue, help: "Quantize only nodes whose name matches this glob or whose op type is this (repeatable).")
  var include: [String] = []

  @Option(parsing: .singleValue, help: "Leave nodes whose name matches this glob or whose op type is this in float (repeatable).")
  var exclude: [String] = []

  @OptionGroup var runtime: RuntimeOptions<QuantizeStep>

  var data: String? { samples.data }
  var labels: String? { samples.labels }

  func validate() throws {
    if bits != 8 && bits != 4 { throw ValidationError("--bits must be 8 or 4, not \(bits)") }
    if ![32, 64, 128].contains(blockSize) { throw ValidationError("--block-size must be 32, 64 or 128, not \(blockSize)") }
    if gptq == true && mode == .dynamic { throw ValidationError("--gptq needs --mode weight-only or static") }
    if gptq == true && data == nil { throw ValidationError("--gptq needs --data (calibration samples for the Hessians)") }
    if awq && bits != 4 { throw ValidationError("--awq needs --bits 4") }
    if awq && data == nil { throw ValidationError("--awq needs --data (calibration samples for the activation scales)") }
    if bits == 4 && mode != .weightOnly { throw ValidationError("--bits 4 is weight-only; --mode \(mode.rawValue) is int8") }
    if format == .matmulnbits && bits != 4 { throw ValidationError("--format matmulnbits needs --bits 4") }
    if format == .qoperator && mode != .static { throw ValidationError("--format qoperator needs --mode static") }
    if mode == .dynamic && !symmetricWeights { throw ValidationError("--mode dynamic stores symmetric weights (ConvInteger takes one weight zero point)") }
    if mode == .static && data == nil { throw ValidationError("--mode static needs --data (calibration samples)") }
    if CalibrationMethod(argument: calibration) == nil {
      throw ValidationError("--calibration must be minmax, percentile[:P] with 50 < P ≤ 100, entropy, mse or auto, not '\(calibration)'")
    }
    if let n = evalSamples, n < 0 { throw ValidationError("--eval-samples must be 0 or more, not \(n)") }
    if let n = calibrationSamples, n < 1 { throw ValidationError("--calibration-samples must be 1 or more, not \(n)") }
    if labels != nil && data == nil && evalData == nil { throw ValidationError("--labels needs --data or --eval-data") }
    if let s = maxSeconds, !(s > 0) { throw ValidationError("--max-seconds must be positive, not \(jsonNumber(s))") }
    if (overrides != nil || saveOverrides != nil) && mode != .static {
      throw ValidationError("--\(overrides != nil ? "overrides" : "save-overrides") needs --mode static")
    }
    if let o = overrides, let s = saveOverrides, FileIdentity(path: o) != nil, FileIdentity(path: o) == FileIdentity(path: s) {
      throw ValidationError("--save-overrides '\(s)' is the --overrides file; write the decisions elsewhere")
    }
    if (equalize || biasCorrection || smoothAlpha != nil) && mode != .static {
      throw ValidationError("--\(equalize ? "equalize" : biasCorrection ? "bias-correction" : "smooth-alpha") needs --mode static")
    }
    if let a = smoothAlpha, !(a >= 0 && a <= 1) { throw ValidationError("--smooth-alpha must be in [0, 1], not \(a)") }
    if analyze {
      if mode != .static { throw ValidationError("--analyze needs --mode static") }
      if evalSamples == 0 { throw ValidationError("--analyze measures quality; --eval-samples 0 leaves nothing to measure it on") }
    }
    if target != nil && target != "none" {
      if mode != .static { throw ValidationError("--target needs --mode static (it chooses which nodes stay float)") }
      if evalSamples == 0 { throw ValidationError("--target measures quality; --eval-samples 0 leaves nothing to measure it on") }
      if try parsedTarget()?.kind == .accuracyDrop && labels == nil {
        throw ValidationError("--target accuracy-drop needs --labels (accuracy is measured against them)")
      }
    }
  }

  /// `--target` as the gate it implies: cosine, agreement or iou at least a fraction, or
  /// accuracy-drop at most some points.
  func parsedTarget() throws -> GateSpec? {
    guard let target, target != "none" else { return nil }
    let place = "--target '\(target)'"
    let forms = "cosine>=X, agreement>=X, iou>=X[@T] or accuracy-drop<=X"
    guard let op = ["<=", ">="].first(where: { target.contains($0) }), let r = target.range(of: op) else {
      throw ValidationError("\(place) is not \(forms)")
    }
    let name = target[..<r.lowerBound].trimmingCharacters(in: .whitespaces)
    guard QualityTarget.Metric(rawValue: name) != nil else { throw ValidationError("\(place): the target is \(forms), not '\(name)'") }
    let spec = try GateSpec.make(name: name, value: String(target[r.upperBound...]), where: place)
    guard op == spec.comparison else {
      throw ValidationError("\(place): \(name) is \(spec.kind.isLowerBound ? "a lower" : "an upper") bound (\(spec.comparison))")
    }
    if spec.kind != .accuracyDrop && !(spec.limit > 0 && spec.limit <= 1) {
      throw ValidationError("\(place): \(name) must be in (0, 1], not \(jsonNumber(spec.limit))")
    }
    return spec
  }

  var inputFiles: [(role: String, path: String)] {
    [("data", data), ("eval-data", evalData), ("labels", labels), ("overrides", overrides)].compactMap { r, p in p.map { (r, $0) } }
  }

  var notAPipelineStep: String? { analyze ? "quantize --analyze writes no model" : nil }

  var qualityData: (data: String, labels: String?)? {
    evalSamples == 0 ? nil : (evalData ?? data).map { ($0, labels) }
  }

  func plan(_ environment: StepEnvironment) throws -> StepPlan {
    let threads = runtime.threads
    let filter = NodeFilter(include: include, exclude: exclude)
    // Per-channel int8 (DequantizeLinear's axis) needs opset 13, 4-bit QDQ opset 21: older models
    // are converted after the preparation passes (which bring Constant-node weights into
    // initializers), exactly or not at all; the report and the summary line say which.
    let fourBitQDQ = bits == 4 && format == .qdq
    // The nodes a static quality search keeps entirely float: the last weight-only pass leaves them.
    let keptFloat = KeptFloatNodes()
    var weightOnly = QuantizeWeights(symmetric: symmetricWeights, axis: axis, filter: filter)
    weightOnly.keptFloat = keptFloat
    // Static: GPTQ's levels, chosen by the static pass, for every int8 weight made after it.
    let rounded = mode == .static && gptq != false ? RoundedWeights() : nil
    weightOnly.rounded = rounded
    if mode == .weightOnly && bits == 8 && gptq == true, let data {
      weightOnly.gptq = QuantizeWeights4Bit.Calibration(data: data, maxSamples: calibrationSamples, threads: threads)
    }
    let candidates = weightOnly
    let policy: ConvertOpset.Policy = keepOpset ? .keep : .atLeast(required: fourBitQDQ)
    var upgrade = ConvertOpset(target: fourBitQDQ ? 21 : 13, policy: policy,
                               purpose: fourBitQDQ ? "4-bit DequantizeLinear" : "per-channel weights")
    if !fourBitQDQ {
      upgrade.isNeeded = { (model: Model) -> Bool in candidates.hasPerChannelCandidates(model) }
    }
    var passes: [Pass] = preparationPasses() + [upgrade]
    let given = try overrides.map(OverridesFile.read) ?? QuantizeOverrides()
    if let save = saveOverrides, let identity = FileIdentity(path: save), identity == FileIdentity(path: environment.inputLabel) {
      throw CompressorError.usage("--save-overrides '\(save)' is the input model; write the decisions elsewhere")
    }
    switch mode {
    case .weightOnly:
      if bits == 4 {
        let chosen: QuantizeWeights4Bit.Format? = format == .matmulnbits ? .matmulnbits : format == .qdq ? .qdq : nil
        let calibration = (gptq == true || awq) ? QuantizeWeights4Bit.Calibration(data: data ?? "", maxSamples: calibrationSamples, threads: threads) : nil
        passes.append(QuantizeWeights4Bit(blockSize: blockSize, format: chosen, filter: filter, calibration: calibration, gptq: gptq == true, awq: awq))
      }
    case .dynamic:
      passes.append(QuantizeDynamic(filter: filter))
    case .static:
      let method = CalibrationMethod(argument: calibration) ?? .minmax
      var calibrator = Calibrator(method: method, maxSamples: calibrationSamples, threads: threads)
      calibrator.symmetricActivations = symmetricActivations
      if environment.showProgress {
        // One line, rewritten in place: only ever on a terminal.
        calibrator.progress = { FileHandle.standardError.write("\rcalibrating: \($0) samples\u{1B}[K") }
      }
      // The target, or the default floor (not when quality is switched off, nor with --target none).
      let floor = (target == nil || analyze) && evalSamples != 0 ? try GateSpec.make(name: "cosine", value: "0.995", where: "the default floor") : nil
      let goal = try (parsedTarget() ?? floor).map {
        var goal = QualityTarget(metric: QualityTarget.Metric(rawValue: $0.kind.rawValue) ?? .cosine, limit: $0.limit,
                                 threshold: $0.kind == .iou ? $0.threshold ?? 0.5 : nil, data: evalData ?? data ?? "",
                                 labels: $0.kind == .accuracyDrop ? labels : nil, maxSamples: evalSamples, threads: threads)
        goal.isDefault = target == nil
        return goal
      }
      var pass = QuantizeStatic(calibrator: calibrator, data: data ?? "", symmetricActivations: symmetricActivations,
                                symmetricWeights: symmetricWeights, filter: filter, target: goal, weightsOfFloatNodes: weightOnly)
      pass.equalize = equalize
      pass.biasCorrection = biasCorrection
      pass.smoothAlpha = smoothAlpha
      if goal == nil, let quality = qualityData {
        // --target none: the algorithms are still measured against plain PTQ, by cosine.
        pass.comparison = QualityTarget(metric: .cosine, limit: 1, threshold: nil, data: quality.data, labels: nil,
                                        maxSamples: evalSamples, threads: threads)
      }
      pass.keptFloat = keptFloat
      pass.rounded = rounded
      pass.maxSeconds = maxSeconds
      pass.analyze = analyze
      pass.overrides = given
      passes.append(pass)
      if analyze {
        return StepPlan(passes: passes, summary: { outcome in
          let analyzed = outcome.passes.flatMap(\.changes).filter { $0.action == "analyzed" }.count
          return ("\(analyzed) nodes analyzed", [])
        })
      }
      if format == .qoperator { passes.append(QDQToQOperator()) }
    }
    passes.append(weightOnly)
    // Float biases replaced by int32 ones, and dequantizers the integer operators no longer read.
    passes.append(RemoveDeadCode())
    let quality = evalSamples == 0 ? nil : (evalData ?? data).map {
      QualityCheck(data: $0, labels: labels, threads: threads, maxSamples: evalSamples)
    }
    let label = environment.inputLabel
    let (mode, bits, keepOpset, saveOverrides) = (self.mode, self.bits, self.keepOpset, self.saveOverrides)
    return StepPlan(passes: passes, check: { model in
      var alreadyQuantized: Node?
      model.graph.forEachGraph { g in
        for n in g.nodes where alreadyQuantized == nil && Compressor.Quantize.quantizedOps.contains(n.opType) { alreadyQuantized = n }
      }
      if let n = alreadyQuantized {
        throw CompressorError.unsupported("\(label) is already quantized (\(n.displayName)); quantize the float model instead")
      }
    }, afterPasses: { results, _ in
      if let saveOverrides { try OverridesFile.save(given, results: results, to: saveOverrides, command: "compressor quantize \(baseName(label))") }
    }, notLargerThanInput: true, gates: try parsedTarget().map { [$0] } ?? [], quality: quality, summary: { outcome in
      let quantized = outcome.passes.filter { $0.pass.hasPrefix("quantize") }
        .reduce(0) { $0 + $1.changes.filter { $0.action == "quantized" }.count }
      let ratio = Double(outcome.outputBytes) / Double(max(outcome.input.bytes, 1))
      var line = "\(mode.rawValue)\(bits == 4 ? " int4" : " int8"), \(quantized) nodes/weights quantized, \(outcome.outputBytes) bytes, \(String(format: "%.2f", ratio))× the input"
      var warnings = [String]()
      if let opset = outcome.passes.first(where: { $0.pass == ConvertOpset.name })?.changes.first {
        let from = Int(opset.values?["from"] ?? 0), to = Int(opset.values?["to"] ?? 0)
        if opset.action == "opset" {
          line += ", opset \(from) → \(to) for \(fourBitQDQ ? "4-bit QDQ" : "per-channel weights")"
        } else if opset.values?["needed"] != 0 {
          line += ", opset \(from) kept\(keepOpset ? " (--keep-opset)" : ""): int8 weights per tensor"
          if !keepOpset { warnings.append(opset.detail) }
        }
      }
      if let t = outcome.passes.first(where: { $0.pass == QuantizeStatic.name })?.changes.first(where: { $0.action == "target" }),
         let floatNodes = t.values?["floatNodes"], let candidates = t.values?["candidates"] {
        line += ", \(Int(floatNodes)) of \(Int(candidates)) nodes kept float for the target"
      }
      line += outcome.quality?.headline ?? ""
      if let awq = outcome.passes.first(where: { $0.pass == QuantizeWeights4Bit.name })?.changes.first(where: { $0.action == "awq-total" })?.values,
         let rtn = awq["meanOutputErrorRTN"], let kept = awq["meanOutputErrorKept"] {
        line += String(format: ", AWQ scales on %d of %d activations, mean output error %.4g → %.4g",
                       Int(awq["activationsScaled"] ?? 0), Int(awq["activations"] ?? 0), rtn, kept)
      }
      if quantized == 0 { warnings.append("nothing was quantized; see --report for the reasons") }
      return (line, warnings)
    })
  }
}
