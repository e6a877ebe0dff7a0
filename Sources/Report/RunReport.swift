/// The report of one run of a transforming command or of `compressor pipeline`, written by
/// `--report` as JSON (sorted keys) and by `--html` as a page. docs/report-schema.json describes
/// it. A subcommand's report is one step section (command, options, input, output, passes,
/// quality, gates, warnings) plus the run's own keys (schemaVersion, tool, inputs, metrics,
/// timings); a pipeline's report holds one such section per step in `steps`, so that every
/// section equals the report of the same step run as a subcommand.
///
/// Everything but `timings` depends only on the inputs and options: no clock, no host, no
/// absolute path, no `Dictionary` order (the encoder sorts keys).
public struct RunReport: Codable, Equatable {
  public static let schemaVersion = 2

  public var schemaVersion = RunReport.schemaVersion
  public var tool = ToolInfo()
  /// The subcommand, or "pipeline".
  public var command: String
  /// The step's options as recipe keys (subcommands); a pipeline's recipe is in `inputs`.
  public var options: [String: OptionValue]?
  /// Every file the run read, with its SHA-256.
  public var inputs: [InputFile]
  public var input: ModelFacts
  public var output: ModelFacts
  /// Subcommands: what each pass did.
  public var passes: [PassSection]?
  /// Subcommands with data: the output against the input (or the teacher) on those samples.
  public var quality: QualitySection?
  /// Pipelines: one section per step run, in order.
  public var steps: [StepSection]?
  /// Metrics of the input and after every step; quality against the run's input model.
  public var metrics: [MetricsRow]
  /// The gates the run was given (--gate, or the recipe's `gates:`), with their margins.
  public var gates: [GateResult]?
  public var warnings: [String]
  /// Wall-clock times and latencies; absent with --no-timings.
  public var timings: Timings?

  public init(command: String, options: [String: OptionValue]? = nil, inputs: [InputFile], input: ModelFacts,
              output: ModelFacts, passes: [PassSection]? = nil, quality: QualitySection? = nil, steps: [StepSection]? = nil,
              metrics: [MetricsRow], gates: [GateResult]? = nil, warnings: [String], timings: Timings? = nil) {
    self.command = command; self.options = options; self.inputs = inputs; self.input = input; self.output = output
    self.passes = passes; self.quality = quality; self.steps = steps; self.metrics = metrics; self.gates = gates
    self.warnings = warnings; self.timings = timings
  }

  /// A subcommand's report: its step section with the run's keys around it.
  public init(step: StepSection, inputs: [InputFile], metrics: [MetricsRow], timings: Timings?) {
    self.init(command: step.command, options: step.options, inputs: inputs, input: step.input, output: step.output,
              passes: step.passes, quality: step.quality, metrics: metrics, gates: step.gates, warnings: step.warnings,
              timings: timings)
  }
}

public struct ToolInfo: Codable, Equatable {
  public var name = "compressor"
  public var version = ToolInfo.currentVersion
  public static let currentVersion = "0.1.0"
  public init() {}
}

/// A file the run read: the model, its data, labels, a teacher, the recipe.
public struct InputFile: Codable, Equatable {
  /// model, data, labels, eval-data, val-data, teacher, recipe, …
  public var role: String
  /// The file's (or directory's) name, without its directory.
  public var file: String
  public var bytes: Int
  /// SHA-256 of the file; of a directory, of its data files' `sha256sum` lines ("<digest>  <name>\n"), in name order.
  public var sha256: String
  /// A directory: how many data files it holds.
  public var files: Int?
  public init(role: String, file: String, bytes: Int, sha256: String, files: Int? = nil) {
    self.role = role; self.file = file; self.bytes = bytes; self.sha256 = sha256; self.files = files
  }
}

/// A model before or after a step.
public struct ModelFacts: Codable, Equatable {
  /// The file's name; empty for a model a pipeline held in memory.
  public var file: String
  public var bytes: Int
  public var nodes: Int
  public var initializers: Int
  public var parameters: Int
  /// Prune and factorize: multiply-accumulates for one sample.
  public var macs: Int?
  /// Prune and factorize: the serialized model deflated (zlib level 6).
  public var deflatedBytes: Int?
  public init(file: String, bytes: Int, nodes: Int, initializers: Int, parameters: Int, macs: Int? = nil, deflatedBytes: Int? = nil) {
    self.file = file; self.bytes = bytes; self.nodes = nodes; self.initializers = initializers
    self.parameters = parameters; self.macs = macs; self.deflatedBytes = deflatedBytes
  }
}

/// What one pass did (the Compression module's PassResult, as reports write it).
public struct PassSection: Codable, Equatable {
  public struct Change: Codable, Equatable {
    public var target: String
    public var action: String
    public var detail: String
    public var values: [String: Double]?
    public init(target: String, action: String, detail: String, values: [String: Double]?) {
      self.target = target; self.action = action; self.detail = detail; self.values = values
    }
  }
  public var pass: String
  public var modified: Bool
  public var changes: [Change]
  public init(pass: String, modified: Bool, changes: [Change]) { self.pass = pass; self.modified = modified; self.changes = changes }
}

/// The output model against a reference (the step's input, or distill's teacher) on data.
public struct QualitySection: Codable, Equatable {
  public var data: String
  public var samples: Int
  /// The reference model: accuracy with labels.
  public var float: [String: Double]
  /// The output model: accuracy with labels; agreement, meanCosine, maxAbsError, meanAbsError, sqnrDb.
  public var compressed: [String: Double]
  public init(data: String, samples: Int, float: [String: Double], compressed: [String: Double]) {
    self.data = data; self.samples = samples; self.float = float; self.compressed = compressed
  }
}

/// One step as run: what a subcommand's report holds besides the run's keys.
public struct StepSection: Codable, Equatable {
  public var command: String
  /// Pipelines: where the step is in the recipe ("3", or "4.2.1": step 4, its second repetition, sub-step 1).
  public var at: String?
  public var options: [String: OptionValue]
  public var input: ModelFacts
  public var output: ModelFacts
  public var passes: [PassSection]
  public var quality: QualitySection?
  public var gates: [GateResult]?
  public var warnings: [String]
  public init(command: String, at: String? = nil, options: [String: OptionValue], input: ModelFacts, output: ModelFacts,
              passes: [PassSection], quality: QualitySection?, gates: [GateResult]?, warnings: [String]) {
    self.command = command; self.at = at; self.options = options; self.input = input; self.output = output
    self.passes = passes; self.quality = quality; self.gates = gates; self.warnings = warnings
  }
}

/// An option's value as a recipe writes it.
public enum OptionValue: Codable, Equatable, CustomStringConvertible {
  case bool(Bool)
  case int(Int)
  case number(Double)
  case string(String)
  case list([String])

  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if let b = try? c.decode(Bool.self) { self = .bool(b) }
    else if let i = try? c.decode(Int.self) { self = .int(i) }
    else if let d = try? c.decode(Double.self) { self = .number(d) }
    else if let s = try? c.decode(String.self) { self = .string(s) }
    else { self = .list(try c.decode([String].self)) }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .bool(let b): try c.encode(b)
    case .int(let i): try c.encode(i)
    case .number(let d): try c.encode(d)
    case .string(let s): try c.encode(s)
    case .list(let l): try c.encode(l)
    }
  }

  /// As YAML writes it (flow style for lists; strings quoted where YAML would read them otherwise).
  public var description: String {
    switch self {
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .number(let d): return yamlNumber(d)
    case .string(let s): return yamlScalar(s)
    case .list(let l): return "[" + l.map(yamlScalar).joined(separator: ", ") + "]"
    }
  }
}

/// Shortest text that reads back as the same Double.
public func yamlNumber(_ d: Double) -> String {
  if d.isNaN { return ".nan" }
  if d.isInfinite { return d > 0 ? ".inf" : "-.inf" }
  return "\(d)"
}

/// A string as a YAML plain scalar where that reads back as the same string, else double-quoted.
public func yamlScalar(_ s: String) -> String {
  let plain = !s.isEmpty && s.unicodeScalars.allSatisfy { c in
    (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || "._/-+:*=".unicodeScalars.contains(c)
  }
  let reserved = ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"].contains(s.lowercased())
  let numeric = Double(s) != nil || s.hasPrefix("-") || s.hasPrefix(":") || s.hasPrefix("*") || s.hasSuffix(":") || s.contains(": ")
  if plain && !reserved && !numeric { return s }
  var out = "\""
  for c in s.unicodeScalars {
    switch c {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    case "\t": out += "\\t"
    default:
      if c.value < 0x20 { out += "\\x" + String(c.value, radix: 16).leftPadded(to: 2) } else { out.unicodeScalars.append(c) }
    }
  }
  return out + "\""
}

extension String {
  func leftPadded(to n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}

/// Size, cost and quality of the model at one point of the run.
public struct MetricsRow: Codable, Equatable {
  /// "input", or the step's command.
  public var step: String
  /// "0" for the input; the step's place otherwise (as `StepSection.at`).
  public var at: String
  public var bytes: Int
  public var deflatedBytes: Int?
  public var parameters: Int
  public var nodes: Int
  public var macs: Int?
  /// Against the run's input model on the evaluation data: accuracy (labels), agreement, meanCosine.
  public var quality: [String: Double]?
  public init(step: String, at: String, bytes: Int, deflatedBytes: Int?, parameters: Int, nodes: Int, macs: Int?,
              quality: [String: Double]?) {
    self.step = step; self.at = at; self.bytes = bytes; self.deflatedBytes = deflatedBytes; self.parameters = parameters
    self.nodes = nodes; self.macs = macs; self.quality = quality
  }
}

/// One quality gate and how the run did against it.
public struct GateResult: Codable, Equatable {
  /// accuracy-drop, accuracy, agreement, cosine, size, params, macs, latency-p50.
  public var gate: String
  /// "<=" or ">=".
  public var comparison: String
  public var limit: Double
  /// "ratio" (of the reference model's), "points", "fraction", "bytes", "macs", "parameters", "ms".
  public var unit: String
  /// What the value is measured against: "input" (the run's input model), "step input", "teacher", "reference".
  public var against: String
  /// The measured value; absent for latency with --no-timings.
  public var value: Double?
  /// How far inside the limit the value is (negative: by how much it failed); absent with the value.
  public var margin: Double?
  public var passed: Bool
  /// "size 0.31 > 0.25 (failed by 0.06)" — the line the summary prints.
  public var summary: String?
  public init(gate: String, comparison: String, limit: Double, unit: String, against: String, value: Double?,
              margin: Double?, passed: Bool, summary: String?) {
    self.gate = gate; self.comparison = comparison; self.limit = limit; self.unit = unit; self.against = against
    self.value = value; self.margin = margin; self.passed = passed; self.summary = summary
  }
}

/// Everything that depends on the clock.
public struct Timings: Codable, Equatable {
  public struct Step: Codable, Equatable {
    public var step: String
    public var at: String
    public var ms: Double
    public init(step: String, at: String, ms: Double) { self.step = step; self.at = at; self.ms = ms }
  }
  public struct Latency: Codable, Equatable {
    public var step: String
    public var at: String
    /// Median latency of one sample, this model and the run's input model, measured interleaved.
    public var p50Ms: Double
    public var inputP50Ms: Double
    public init(step: String, at: String, p50Ms: Double, inputP50Ms: Double) {
      self.step = step; self.at = at; self.p50Ms = p50Ms; self.inputP50Ms = inputP50Ms
    }
  }
  public var totalMs: Double
  public var steps: [Step]
  public var latency: [Latency]?
  public init(totalMs: Double, steps: [Step], latency: [Latency]? = nil) {
    self.totalMs = totalMs; self.steps = steps; self.latency = latency
  }
}
