import ArgumentParser
import IR
import ONNX
import Report
import Runtime
import Support

extension Compressor {
  struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Describe a model: versions, inputs and outputs, operators, parameters, external data.")

    @Argument(help: "The ONNX model to describe.")
    var model: String

    @Flag(help: "Print a machine-readable JSON summary on stdout.")
    var json = false

    @Option(help: "How many of the largest tensors to list.")
    var top = 10

    @Flag(help: "Also infer every node's output shapes (symbolic where the inputs are), MACs and peak activation memory, statically.")
    var shapes = false

    @Option(name: .customLong("input-shape"), help: "NAME=D0xD1x… binds an input's shape (implies --shapes; repeatable).")
    var inputShapes: [String] = []

    @OptionGroup var memory: MemoryOptions

    func validate() throws {
      if top < 0 { throw ValidationError("--top must be 0 or more, not \(top)") }
      _ = try parseInputShapes(inputShapes)
    }

    func run() throws {
      let loaded = try ModelReader.read(model)
      var summary = ModelSummary(model: loaded.model, file: baseName(model), fileBytes: loaded.fileBytes,
                                 unknownFields: loaded.unknownFieldCount, largest: top)
      if shapes || !inputShapes.isEmpty {
        let inferred = try ShapeInference(model: loaded.model, bindings: try parseInputShapes(inputShapes))
        func split(_ e: DimExpr?) -> (Int?, String?) { (e?.constant, e.flatMap { $0.isConstant ? nil : $0.description }) }
        // FLOPs past 64 bits are left out rather than wrapped.
        let (macs, macsExpression) = split(inferred.macs), (flopCount, flopsExpression) = split(try? DimExpr(2) * inferred.macs)
        let (peak, peakExpression) = split(inferred.peakActivation)
        summary.shapes = ModelSummary.Shapes(
          unboundSymbols: inferred.unboundSymbols, dataDependentSymbols: inferred.dataDependentSymbols,
          macs: macs, macsExpression: macsExpression, flops: flopCount, flopsExpression: flopsExpression,
          peakActivationBytes: peak, peakActivationBytesExpression: peakExpression,
          incomplete: inferred.macsIncomplete || inferred.peakActivationIncomplete,
          nodes: inferred.nodes.map { n in
            ModelSummary.Shapes.Node(name: n.name, opType: n.opType,
                                     outputs: n.outputs.map { .init(name: $0.name, type: $0.type.name, shape: $0.shape) },
                                     macs: n.macs?.constant, macsExpression: n.macs.flatMap { $0.isConstant ? nil : $0.description })
          })
      }
      if json {
        FileHandle.standardOutput.write(try encodeJSON(summary))
      } else {
        FileHandle.standardOutput.write(InspectTable.render(summary))
      }
    }
  }
}

/// The human-readable form of `inspect`.
enum InspectTable {
  static func render(_ s: ModelSummary) -> String {
    var out = ""
    func line(_ text: String = "") { out += text + "\n" }
    func bytes(_ n: Int) -> String {
      if n >= 1 << 20 { return String(format1: Double(n) / 1048576, "MiB") }
      if n >= 1 << 10 { return String(format1: Double(n) / 1024, "KiB") }
      return "\(n) B"
    }
    line("\(s.file)  (\(bytes(s.fileBytes)))")
    line("  IR version \(s.irVersion); producer \(s.producerName.isEmpty ? "?" : s.producerName) \(s.producerVersion)")
    line("  opsets: " + s.opsets.map { "\($0.domain.isEmpty ? "ai.onnx" : $0.domain) \($0.version)" }.joined(separator: ", "))
    line()
    for (title, values) in [("inputs", s.inputs), ("outputs", s.outputs)] {
      line("\(title):")
      for v in values {
        line("  \(v.name)  \(v.type)" + (v.shape.map { "  [" + $0.joined(separator: ", ") + "]" } ?? ""))
      }
    }
    line()
    line("operators: \(s.nodes) nodes, \(s.subgraphs) subgraphs, \(s.functions) functions")
    let width = s.ops.map { $0.opType.count + ($0.domain == "ai.onnx" ? 0 : $0.domain.count + 1) }.max() ?? 0
    for op in s.ops {
      let name = op.domain == "ai.onnx" ? op.opType : "\(op.domain).\(op.opType)"
      line("  " + name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + String(op.count))
    }
    line()
    line("parameters: \(s.parameters.elements) elements, \(bytes(s.parameters.bytes))")
    let typeWidth = (s.parameters.byType.map(\.type.count).max() ?? 0) + 1
    for t in s.parameters.byType {
      line("  \(t.type.padding(toLength: typeWidth, withPad: " ", startingAt: 0)) \(t.tensors) tensors, \(t.elements) elements, \(bytes(t.bytes))")
    }
    if s.constantWeights.nodes > 0 {
      line("  held in Constant nodes: \(s.constantWeights.nodes) tensors, \(s.constantWeights.elements) elements, \(bytes(s.constantWeights.bytes))")
    }
    if !s.largestTensors.isEmpty {
      line()
      line("largest tensors:")
      for t in s.largestTensors {
        line("  \(t.name)  \(t.type) [\(t.shape.map(String.init).joined(separator: ", "))]  \(bytes(t.bytes))  \(t.storage)")
      }
    }
    if !s.externalData.isEmpty {
      line()
      line("external data:")
      for f in s.externalData { line("  \(f.file)  \(f.tensors) tensors, \(bytes(f.bytes))") }
    }
    if let shapes = s.shapes {
      var notes = [String]()
      if !shapes.unboundSymbols.isEmpty { notes.append("unbound: " + shapes.unboundSymbols.joined(separator: ", ")) }
      if !shapes.dataDependentSymbols.isEmpty { notes.append("data-dependent: " + shapes.dataDependentSymbols.joined(separator: ", ")) }
      line()
      line("shapes" + (notes.isEmpty ? "" : " (\(notes.joined(separator: "; ")))") + ":")
      for n in shapes.nodes {
        let outs = n.outputs.map { "\($0.name) \($0.type)" + ($0.shape.map { "[" + $0.joined(separator: ", ") + "]" } ?? "[?]") }.joined(separator: ", ")
        let macs = n.macs.map { $0 > 0 ? "  \($0) MACs" : "" } ?? n.macsExpression.map { "  \($0) MACs" } ?? "  ? MACs"
        line("  \(n.name.isEmpty ? n.opType : n.name) (\(n.opType))  \(outs)" + macs)
      }
      let atLeast = shapes.incomplete ? "at least " : ""
      let macs = shapes.macs.map(String.init) ?? shapes.macsExpression ?? "?"
      let flops = shapes.flops.map(String.init) ?? shapes.flopsExpression ?? "?"
      // A symbolic peak is the largest of many live sets: shown whole only when it is short.
      let free = (shapes.unboundSymbols + shapes.dataDependentSymbols).joined(separator: ", ")
      let peak = shapes.peakActivationBytes.map(bytes) ?? shapes.peakActivationBytesExpression.map {
        $0.count <= 240 ? "\($0) bytes" : "depending on \(free) (bind them with --input-shape; the expression is in --json)"
      } ?? "?"
      line("  total: \(atLeast)\(macs) MACs (\(flops) FLOPs), peak activation memory \(atLeast)\(peak)")
    }
    if s.unknownFields > 0 {
      line()
      line("unknown fields: \(s.unknownFields) (kept unchanged when the model is written)")
    }
    return out
  }
}

extension String {
  /// One decimal place and a unit, without Foundation's locale-dependent formatting.
  init(format1 value: Double, _ unit: String) {
    let tenths = Int((value * 10).rounded())
    self = "\(tenths / 10).\(tenths % 10) \(unit)"
  }
}
