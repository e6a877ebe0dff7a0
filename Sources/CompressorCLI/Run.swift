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

        Sequence and optional values: a sequence- or optional-typed input is read from an ONNX \
        test-data .pb (SequenceProto, OptionalProto), or a sequence from .npz members NAME.0, \
        NAME.1, …. In a saved .npz a sequence output NAME is the arrays NAME.0 … NAME.<n-1> (none \
        when it is empty), an optional output is its value under the same rule (nothing when it \
        has none); --json tells them apart by type and length.
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
      let feeds = try Self.valueFeeds(inputs, model: loaded.model)
      let outputs = try executor.runValues(feeds)
      if let output {
        let bytes: [UInt8]
        if output.hasSuffix(".npy") {
          let arrays = outputs.count == 1 ? Self.arrays(outputs[0].name, outputs[0].value) : []
          guard arrays.count == 1, arrays[0].0 == outputs[0].name else {
            throw CompressorError.usage("the model has \(outputs.count) outputs\(outputs.count == 1 ? " (not a tensor)" : ""); save them to a .npz file")
          }
          bytes = try NPY.encode(arrays[0].1)
        } else {
          let arrays = outputs.flatMap { Self.arrays($0.name, $0.value) }
          var seen = Set<String>()
          for (name, _) in arrays where !seen.insert(name).inserted {
            throw CompressorError.usage("two outputs would both be saved as '\(name)' in the .npz (a sequence's elements are NAME.0, NAME.1, …); save to .npy or rename an output")
          }
          bytes = try NPZ.encode(arrays)
        }
        try checkOutputPath(output, force: force, inputs: loaded.inputFiles)
        let writer = try AtomicFileWriter(destination: output)
        try writer.write(bytes)
        try writer.commit()
      }
      let rows = try outputs.map { o in try Self.summary(o.name, o.value) }
      if json {
        FileHandle.standardOutput.write("{\"outputs\": [" + rows.map(\.json).joined(separator: ", ") + "], \"peakActivationBytes\": \(executor.peakLiveBytes)}\n")
      } else {
        FileHandle.standardOutput.write(rows.map(\.text).joined(separator: "\n") + "\n")
      }
    }

    /// The arrays a value is saved as: a tensor under its name, a sequence's elements as NAME.0,
    /// NAME.1, …, an optional's value (if any) by the same rule.
    static func arrays(_ name: String, _ value: Value) -> [(String, NDArray)] {
      switch value {
      case .tensor(let t): return [(name, t)]
      case .sequence(let s): return s.tensors.enumerated().map { ("\(name).\($0.offset)", $0.element) }
      case .optional(let v): return v.map { arrays(name, $0) } ?? []
      }
    }

    /// One line of human output and one JSON object for an output.
    static func summary(_ name: String, _ value: Value) throws -> (text: String, json: String) {
      let (text, fields) = try describe(name, value)
      return (text, "{\"name\": \"\(jsonEscaped(name))\", " + fields + "}")
    }

    /// The human line and the JSON fields (without the name) of a value.
    private static func describe(_ name: String, _ value: Value) throws -> (text: String, fields: String) {
      func tensorFields(_ t: NDArray) throws -> (text: String, fields: String) {
        let values = t.dataType == .string ? [] : try t.floats()
        let finite = values.filter { $0.isFinite }
        let mean = finite.isEmpty ? 0 : finite.reduce(0, +) / Float(finite.count)
        let lo = finite.min() ?? 0, hi = finite.max() ?? 0
        return ("\(t.dataType) \(t.shape)  min \(lo)  max \(hi)  mean \(mean)",
                "\"type\": \"\(t.dataType)\", \"shape\": \(t.shape), \"min\": \(lo), \"max\": \(hi), \"mean\": \(mean)")
      }
      switch value {
      case .tensor(let t):
        let f = try tensorFields(t)
        return ("\(name)  \(f.text)", f.fields)
      case .sequence(let seq):
        let elements = try seq.tensors.map(tensorFields)
        let text = (["\(name)  \(value.typeDescription) of \(seq.tensors.count)"]
          + elements.enumerated().map { "  \(name).\($0.offset)  \($0.element.text)" }).joined(separator: "\n")
        return (text, "\"type\": \"\(value.typeDescription)\", \"length\": \(seq.tensors.count), \"elements\": ["
          + elements.map { "{\($0.fields)}" }.joined(separator: ", ") + "]")
      case .optional(nil):
        return ("\(name)  optional without a value", "\"type\": \"optional(none)\", \"hasValue\": false")
      case .optional(let inner?):
        let d = try describe(name, inner)
        return ("\(d.text)  (optional)", "\"optionalType\": \"\(value.typeDescription)\", \"hasValue\": true, " + d.fields)
      }
    }

    /// Binds input files to the model's inputs as values: sequence- and optional-typed inputs
    /// from SequenceProto / OptionalProto .pb files, or a sequence from .npz members NAME.0, NAME.1, ….
    static func valueFeeds(_ specs: [String], model: Model) throws -> [String: Value] {
      let initializers = Set(model.graph.initializers.map(\.name))
      let expected = model.graph.inputs.filter { !initializers.contains($0.name) }
      var types = [String: TypeInfo]()
      for input in model.graph.inputs { types[input.name] = input.type }
      func isContainer(_ name: String) -> Bool {
        switch types[name]?.kind {
        case .sequence?, .optional?: return true
        default: return false
        }
      }
      var feeds = [String: Value]()
      var sequenceParts = [String: [(Int, NDArray)]]()
      for spec in specs {
        let (name, path) = try split(spec, model: model)
        let target = name ?? (expected.count == 1 ? expected[0].name : nil)
        if path.hasSuffix(".pb"), let target, isContainer(target) {
          feeds[target] = try value(TensorFile.readValue(path, type: types[target]), declared: types[target])
          continue
        }
        for (member, array) in try DataFile.load(path) {
          // NAME.k of a sequence-typed input is its k-th element.
          if let member, let dot = member.lastIndex(of: "."), let k = Int(member[member.index(after: dot)...]), k >= 0,
             case .sequence? = types[String(member[..<dot])]?.kind, types[member] == nil {
            sequenceParts[String(member[..<dot]), default: []].append((k, array))
            continue
          }
          guard let key = member ?? target else {
            throw CompressorError.usage("the model has \(expected.count) inputs; name them: --input NAME=\(path)")
          }
          feeds[key] = .tensor(array)
        }
      }
      for (name, parts) in sequenceParts {
        let sorted = parts.sorted { $0.0 < $1.0 }
        guard sorted.map(\.0) == Array(0..<sorted.count) else {
          throw CompressorError.usage("sequence input '\(name)': the arrays must be \(name).0 … \(name).\(sorted.count - 1) without gaps")
        }
        feeds[name] = .sequence(TensorSequence(elementType: sorted[0].1.dataType, tensors: sorted.map(\.1)))
      }
      return feeds
    }

    /// A test-data value as a runtime value; an empty sequence takes its element type from the
    /// model's declaration.
    static func value(_ v: TensorFile.Value, declared: TypeInfo?) throws -> Value {
      switch v {
      case .tensor(let t): return .tensor(try NDArray(t))
      case .sequence(var type, let tensors):
        if type == .undefined, case .sequence(let e)? = declared?.kind, case .tensor(let t, _)? = e?.kind { type = t }
        return .sequence(TensorSequence(elementType: type, tensors: try tensors.map { try NDArray($0) }))
      case .optional(let inner):
        var innerType: TypeInfo?
        if case .optional(let e)? = declared?.kind { innerType = e }
        return .optional(try inner.map { try value($0, declared: innerType) })
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
