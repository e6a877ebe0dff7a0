import ArgumentParser
import Datasets
import IR
import ONNX
import Runtime
import Support

#if canImport(Glibc)
import Glibc
#endif

extension Compressor {
  struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Execute a model with compressor's own runtime and print or save its outputs.",
      discussion: """
        Inputs are .npy files (name=FILE, or just FILE for a single-input model) or an .npz \
        archive whose arrays are named by the model's inputs. With -o, outputs are saved as .npz \
        (by output name), or as .npy when the model has one output.
        """)

    @Argument(help: "The ONNX model to run.")
    var model: String

    @Option(name: .customLong("input"), help: "An input: NAME=FILE (.npy or ONNX test-data .pb), FILE for a single-input model, or FILE.npz (repeatable).")
    var inputs: [String] = []

    @Option(name: .shortAndLong, help: "Save the outputs to this .npz (or .npy) file.")
    var output: String?

    @Option(help: "Threads for BLAS.")
    var threads = 1

    @Flag(help: "Replace the output if it exists.")
    var force = false

    @Flag(help: "Print a machine-readable summary of the outputs on stdout.")
    var json = false

    @OptionGroup var memory: MemoryOptions

    func validate() throws {
      if threads < 1 { throw ValidationError("--threads must be 1 or more, not \(threads)") }
      if let output, !output.hasSuffix(".npz") && !output.hasSuffix(".npy") {
        throw ValidationError("-o must name a .npz or .npy file")
      }
      for i in inputs where ![".npy", ".npz", ".pb"].contains(where: { i.hasSuffix($0) }) {
        throw ValidationError("input '\(i)' must be a .npy, .npz or .pb file")
      }
    }

    func run() throws {
      if let output { try checkOutputPath(output, force: force, inputs: FileIdentity(path: model).map { [$0] } ?? []) }
      let loaded = try ModelReader.read(model)
      let executor = try Executor(model: loaded.model, threads: threads)
      let feeds = try Self.feeds(inputs, model: loaded.model)
      let outputs = try executor.run(feeds)
      if let output {
        let bytes: [UInt8]
        if output.hasSuffix(".npy") {
          guard outputs.count == 1 else {
            throw CompressorError.usage("the model has \(outputs.count) outputs; save them to a .npz file")
          }
          bytes = try NPY.encode(outputs[0].value)
        } else {
          bytes = try NPZ.encode(outputs.map { ($0.name, $0.value) })
        }
        try checkOutputPath(output, force: force, inputs: loaded.inputFiles)
        let writer = try AtomicFileWriter(destination: output)
        try writer.write(bytes)
        try writer.commit()
      }
      let rows = try outputs.map { o -> String in
        let values = o.value.dataType == .string ? [] : try o.value.floats()
        let finite = values.filter { $0.isFinite }
        let mean = finite.isEmpty ? 0 : finite.reduce(0, +) / Float(finite.count)
        if json {
          return "{\"name\": \"\(jsonEscaped(o.name))\", \"type\": \"\(o.value.dataType)\", \"shape\": \(o.value.shape), "
            + "\"min\": \(finite.min() ?? 0), \"max\": \(finite.max() ?? 0), \"mean\": \(mean)}"
        }
        return "\(o.name)  \(o.value.dataType) \(o.value.shape)  min \(finite.min() ?? 0)  max \(finite.max() ?? 0)  mean \(mean)"
      }
      if json {
        FileHandle.standardOutput.write("{\"outputs\": [" + rows.joined(separator: ", ") + "], \"peakActivationBytes\": \(executor.peakLiveBytes)}\n")
      } else {
        FileHandle.standardOutput.write(rows.joined(separator: "\n") + "\n")
      }
    }

    /// Binds input files to the model's inputs by name (or position for a lone .npy).
    static func feeds(_ specs: [String], model: Model) throws -> [String: NDArray] {
      let initializers = Set(model.graph.initializers.map(\.name))
      let expected = model.graph.inputs.map(\.name).filter { !initializers.contains($0) }
      var feeds = [String: NDArray]()
      for spec in specs {
        let (name, path) = try split(spec, model: model)
        for (member, array) in try DataFile.load(path) {
          guard let key = member ?? name ?? (expected.count == 1 ? expected[0] : nil) else {
            throw CompressorError.usage("the model has \(expected.count) inputs; name them: --input NAME=\(path)")
          }
          feeds[key] = array
        }
      }
      return feeds
    }

    /// NAME=FILE or FILE. Names may hold `/`, `:`, `=` and spaces (`gpu_0/data_0`, torch's
    /// `/layer/Op_output_0`), so the split is at the `=` that leaves one of the model's input
    /// names on the left — the last such, so that a name containing `=` wins over its prefix.
    /// A spec with no such `=` is a file for the model's only input, or, when no file of that
    /// name exists and the left of its first `=` names nothing, a usage error.
    static func split(_ spec: String, model: Model) throws -> (name: String?, path: String) {
      let inputNames = Set(model.graph.inputs.map(\.name))
      var choice: (String, String)?
      var i = spec.startIndex
      while let eq = spec[i...].firstIndex(of: "=") {
        let left = String(spec[..<eq])
        if inputNames.contains(left) { choice = (left, String(spec[spec.index(after: eq)...])) }
        i = spec.index(after: eq)
      }
      if let (name, path) = choice { return (name, path) }
      if let eq = spec.firstIndex(of: "="), access(spec, F_OK) != 0 {
        let left = spec[..<eq]
        let known = model.graph.feedNames.map { "'\($0)'" }.joined(separator: ", ")
        throw CompressorError.usage("--input \(spec): the model has no input named '\(left)' (its inputs: \(known))")
      }
      return (nil, spec)
    }
  }
}
