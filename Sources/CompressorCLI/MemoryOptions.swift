import ArgumentParser
import Support

/// `--max-memory`, taken by every command that reads a model: the one budget that sizes coming
/// from the model or its data are checked against before anything is allocated (exit 65).
struct MemoryOptions: ParsableArguments {
  @Option(name: .customLong("max-memory"),
          help: ArgumentHelp("The most memory that tensors computed from the model or its data may hold at once, e.g. 512M, 4G (default: half the machine's memory, \(MemoryBudget.describe(MemoryBudget.defaultLimit)) here).",
                             valueName: "size"))
  var maxMemory: String?

  func validate() throws {
    if let m = maxMemory, MemoryBudget.parse(m) == nil {
      throw ValidationError("--max-memory must be a size such as 512M or 4G, not '\(m)'")
    }
  }

  /// Installs the budget (once, before the command runs).
  func apply() {
    if let bytes = maxMemory.flatMap(MemoryBudget.parse) { MemoryBudget.setLimit(bytes) }
  }
}

/// A command that reads models, and so takes `--max-memory`.
protocol ReadsModels {
  var memory: MemoryOptions { get }
}

extension Compressor.Inspect: ReadsModels {}
extension Compressor.Convert: ReadsModels {}
extension Compressor.Optimize: ReadsModels {}
extension Compressor.Quantize: ReadsModels {}
extension Compressor.Prune: ReadsModels {}
extension Compressor.Factorize: ReadsModels {}
extension Compressor.Distill: ReadsModels {}
extension Compressor.Run: ReadsModels {}
extension Compressor.Eval: ReadsModels {}
extension Compressor.Bench: ReadsModels {}
extension Compressor.Pipeline: ReadsModels {}
