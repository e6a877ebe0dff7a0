import ArgumentParser
import Compression
import Foundation
import IR
import Report
import Support

/// The options of one transforming step, declared once: the subcommand parses them from its
/// command line and `compressor pipeline` from a recipe step, whose keys are the same long
/// flag names (a recipe step is turned into the arguments of its command and parsed by the same
/// parser, so every check and every error is the command's). The value is Codable: decoded by
/// the argument parser, encoded (as recipe keys) for `--print-step` and the report's `options`.
protocol StepOptions: ParsableArguments, Encodable {
  /// The subcommand and recipe step name.
  static var stepName: String { get }
  /// Keys whose values are files, resolved against a recipe's directory.
  static var pathKeys: Set<String> { get }
  /// The files the step reads besides its input model, by role, for the report's digests and
  /// `--dry-run`'s checks.
  var inputFiles: [(role: String, path: String)] { get }
  /// The samples the step's quality section uses, if any (gates on quality need them).
  var qualityData: (data: String, labels: String?)? { get }
  /// Why the step cannot run inside a pipeline, if it cannot (it writes no model).
  var notAPipelineStep: String? { get }
  /// The passes and checks of the step for an input model.
  func plan(_ environment: StepEnvironment) throws -> StepPlan
}

extension StepOptions {
  var notAPipelineStep: String? { nil }

  func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: StepKey.self)
    for (key, value) in recipeValues(skippingDefaults: false) { try c.encode(value, forKey: StepKey(key)) }
  }

  /// The options as recipe keys, in declaration order; nil values (unset options) left out, and
  /// with `skippingDefaults` every value equal to its default too.
  func recipeValues(skippingDefaults: Bool) -> [(key: String, value: OptionValue)] {
    let arguments = StepArguments.of(Self.self)
    var values = [String: OptionValue]()
    collectOptionValues(self, into: &values)
    var result = [(key: String, value: OptionValue)]()
    for a in arguments.list {
      guard let v = values[a.normalized] else { continue }
      if skippingDefaults && a.isDefault(v) { continue }
      result.append((a.key, v))
    }
    return result
  }

  /// The report's form of the options.
  var reportOptions: [String: OptionValue] {
    Dictionary(recipeValues(skippingDefaults: false).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
  }
}

struct StepKey: CodingKey {
  var stringValue: String
  var intValue: Int? { nil }
  init(_ s: String) { stringValue = s }
  init?(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) { nil }
}

/// What a step may use besides its options.
struct StepEnvironment {
  /// How messages name the model the step starts from (a path, or "the model after step 2 (prune)").
  var inputLabel: String
  /// A pipeline's input model, for `teacher: original`.
  var original: Model?
  /// Progress lines (epochs) on stderr.
  var showProgress: Bool
}

/// What a step runs and checks.
struct StepPlan {
  var passes: [Pass]
  /// Sees the model as given to the step.
  var check: (Model) throws -> Void = { _ in }
  /// Sees the pass results and the model they made, before anything is written.
  var afterPasses: ([PassResult], Model) throws -> Void = { _, _ in }
  /// Compressing steps: a result larger than the input is refused (69), nothing written.
  var notLargerThanInput = false
  /// Gates the step's own options imply (`quantize --target`), checked like `--gate`.
  var gates: [GateSpec] = []

  /// `given` gates, and the implied ones of a kind not given.
  func gates(besides given: [GateSpec]) -> [GateSpec] {
    given + gates.filter { g in !given.contains { $0.kind == g.kind } }
  }
  /// Shape-changing steps: MACs before and after, and deflated sizes.
  var measureSizes = false
  /// The quality section: the result against the input (or `qualityReference`) on data.
  var quality: QualityCheck?
  var qualityReference: Model?
  /// What the quality section measures against: "input" or "teacher".
  var qualityAgainst = "input"
  /// The parenthesized part of the step's summary line, and its warnings.
  var summary: (StepOutcome) -> (text: String, warnings: [String])
}

// MARK: - Help texts the shared option groups take from their command

/// The help of the options every transforming command shares differs a little between commands
/// (what the data is for, what the output is called); each command gives its own.
protocol StepHelp {
  static var outputHelp: String { get }
  static var dataHelp: String { get }
  static var labelsHelp: String { get }
  static var threadsHelp: String { get }
  static var seedHelp: String { get }
  static var reportHelp: String { get }
}

extension StepHelp {
  static var labelsHelp: String { "A .npy of class indices aligned with --data, for accuracy." }
  static var seedHelp: String { "Seed for everything random the step does." }
  static var reportHelp: String { "Write a JSON report of every change to this file." }
}

/// `-o/--output`.
struct OutputOption<Help: StepHelp>: ParsableArguments {
  @Option(name: .shortAndLong, help: ArgumentHelp(Help.outputHelp))
  var output: String?
}

/// `--data` and `--labels`: samples for calibration, training or the quality section.
struct DataOptions<Help: StepHelp>: ParsableArguments {
  @Option(help: ArgumentHelp(Help.dataHelp))
  var data: String?

  @Option(help: ArgumentHelp(Help.labelsHelp))
  var labels: String?
}

/// `--threads` and `--seed`.
struct RuntimeOptions<Help: StepHelp>: ParsableArguments {
  @Option(help: ArgumentHelp(Help.threadsHelp))
  var threads = 1

  @Option(help: ArgumentHelp(Help.seedHelp))
  var seed: UInt64 = 0

  func validate() throws {
    if threads < 1 { throw ValidationError("--threads must be 1 or more, not \(threads)") }
  }
}

/// What every transforming command does with its result: report, gates, overwriting.
struct RunOptions<Help: StepHelp>: ParsableArguments {
  @Option(help: ArgumentHelp(Help.reportHelp))
  var report: String?

  @Option(help: "Write the report as one self-contained HTML page to this file.")
  var html: String?

  @Flag(help: "Leave wall-clock times and latencies out of the report, so that it is byte-identical run after run.")
  var noTimings = false

  @OptionGroup var gate: GateOptions

  @Flag(help: "Replace the output (and report) if they exist.")
  var force = false

  @Flag(help: "Print this command's options as a recipe step (YAML) on stdout and exit.")
  var printStep = false

  var parsedGates: [GateSpec] { gate.parsedGates }
}

/// `--gate`, on every command that measures a model.
struct GateOptions: ParsableArguments {
  @Option(name: .customLong("gate"), parsing: .singleValue,
          help: ArgumentHelp("A quality gate, NAME<=LIMIT or NAME>=LIMIT (repeatable): accuracy-drop (points), accuracy, agreement, cosine, size, params, macs, latency-p50; limits relative to the input unless given with a unit (2MiB, 1.5M, 4ms). A failed gate exits 2 (after writing the model and report).",
                             valueName: "gate"))
  var gates: [String] = []

  func validate() throws {
    for g in gates { _ = try GateSpec.parse(g) }
  }

  var parsedGates: [GateSpec] { gates.compactMap { try? GateSpec.parse($0) } }
}

// MARK: - Reading option values

/// An option's value in recipe form.
protocol OptionValueConvertible { var optionValue: OptionValue? { get } }

extension Int: OptionValueConvertible { var optionValue: OptionValue? { .int(self) } }
extension UInt64: OptionValueConvertible { var optionValue: OptionValue? { .int(Int(clamping: self)) } }
extension Double: OptionValueConvertible { var optionValue: OptionValue? { .number(self) } }
extension Float: OptionValueConvertible {
  // Float's own shortest text ("0.001", not 0.0010000000474974513).
  var optionValue: OptionValue? { .number(Double("\(self)") ?? Double(self)) }
}
extension String: OptionValueConvertible { var optionValue: OptionValue? { .string(self) } }
extension Optional: OptionValueConvertible where Wrapped: OptionValueConvertible {
  var optionValue: OptionValue? { self?.optionValue }
}
extension Array: OptionValueConvertible where Element == String {
  var optionValue: OptionValue? { isEmpty ? nil : .list(self) }
}
/// Choices (`enum …: String, ExpressibleByArgument`).
protocol StringChoice: RawRepresentable, OptionValueConvertible where RawValue == String {}
extension StringChoice { var optionValue: OptionValue? { .string(rawValue) } }

private protocol WrappedOptionReading { var wrappedOptionValue: OptionValue? { get } }
extension Option: WrappedOptionReading where Value: OptionValueConvertible {
  fileprivate var wrappedOptionValue: OptionValue? { wrappedValue.optionValue }
}
extension Flag: WrappedOptionReading where Value == Bool {
  fileprivate var wrappedOptionValue: OptionValue? { .bool(wrappedValue) }
}
private protocol WrappedGroupReading { var wrappedGroup: Any { get } }
extension OptionGroup: WrappedGroupReading {
  fileprivate var wrappedGroup: Any { wrappedValue }
}

/// Walks the stored properties (`_name: Option<…>`) of parsed options, into groups too.
private func collectOptionValues(_ value: Any, into values: inout [String: OptionValue]) {
  for child in Mirror(reflecting: value).children {
    guard let label = child.label else { continue }
    let name = normalizedKey(label.hasPrefix("_") ? String(label.dropFirst()) : label)
    if let option = child.value as? WrappedOptionReading {
      if let v = option.wrappedOptionValue { values[name] = v }
    } else if let group = child.value as? WrappedGroupReading {
      collectOptionValues(group.wrappedGroup, into: &values)
    }
  }
}

/// `blockSize`, `block-size` → `blocksize`: how a property and its flag are matched.
func normalizedKey(_ s: String) -> String { s.lowercased().filter { $0 != "-" && $0 != "_" } }

// MARK: - The arguments a step takes (from the parser's own description of them)

/// One long option or flag of a step, as the argument parser describes it.
struct StepArgument {
  var key: String
  var normalized: String
  var isFlag: Bool
  var isRepeating: Bool
  /// `--no-KEY` exists (inversion flags).
  var hasInversion: Bool
  var defaultValue: String?
  var valueName: String?

  func isDefault(_ v: OptionValue) -> Bool {
    switch v {
    case .bool(let b): return hasInversion ? b == (defaultValue == "--" + key) : !b
    case .list(let l): return l.isEmpty
    case .int(let i): return defaultValue.flatMap { Double($0) } == Double(i)
    case .number(let d): return defaultValue.flatMap { Double($0) } == d
    case .string(let s): return defaultValue == s
    }
  }
}

struct StepArguments {
  var list: [StepArgument]
  func argument(_ key: String) -> StepArgument? { list.first { $0.key == key } }

  nonisolated(unsafe) private static var cache = [ObjectIdentifier: StepArguments]()

  /// From `_dumpHelp()`, the JSON the argument parser makes for completions and manuals.
  static func of(_ type: ParsableArguments.Type) -> StepArguments {
    if let cached = cache[ObjectIdentifier(type)] { return cached }
    struct Dump: Decodable {
      struct Command: Decodable { var arguments: [Argument]? }
      struct Argument: Decodable {
        struct Name: Decodable { var kind: String; var name: String }
        var kind: String
        var isRepeating: Bool
        var names: [Name]?
        var preferredName: Name?
        var defaultValue: String?
        var valueName: String?
      }
      var command: Command
    }
    let dump = (try? JSONDecoder().decode(Dump.self, from: Data(type._dumpHelp().utf8)))?.command.arguments ?? []
    func longName(_ a: Dump.Argument) -> String? {
      a.preferredName.flatMap { $0.kind == "long" ? $0.name : nil } ?? a.names?.first(where: { $0.kind == "long" })?.name
    }
    // An inversion (`--x/--no-x`) is described as two flags; `--no-x` is folded into `x`.
    let flags = Set(dump.filter { $0.kind == "flag" }.compactMap(longName))
    var list = [StepArgument]()
    for a in dump where a.kind != "positional" {
      guard let long = longName(a), long != "help" else { continue }
      if a.kind == "flag" && long.hasPrefix("no-") && flags.contains(String(long.dropFirst(3))) { continue }
      list.append(StepArgument(key: long, normalized: normalizedKey(long), isFlag: a.kind == "flag", isRepeating: a.isRepeating,
                               hasInversion: flags.contains("no-" + long), defaultValue: a.defaultValue, valueName: a.valueName))
    }
    let result = StepArguments(list: list)
    cache[ObjectIdentifier(type)] = result
    return result
  }
}

// MARK: - Printing a step

/// `--print-step`: the command's options as one recipe step, non-default values only.
func printStepYAML<S: StepOptions>(_ step: S, gates: [GateSpec]) -> String {
  let values = step.recipeValues(skippingDefaults: true)
  var text = "- \(S.stepName):"
  if values.isEmpty && gates.isEmpty { return text + " {}\n" }
  text += "\n"
  for (key, value) in values { text += "    \(key): \(value)\n" }
  if !gates.isEmpty {
    text += "    gate:\n"
    for g in gates { text += "      \(g.kind.rawValue): \(Double(g.recipeText) != nil ? g.recipeText : yamlScalar(g.recipeText))\n" }
  }
  return text
}
