import ArgumentParser
import Compression
import IR
import ONNX
import Support

extension Compressor {
  struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Rewrite a model losslessly, moving weights to or from an external data file, or to another opset.",
      discussion: """
        Without --external-data every tensor is written inline (one file, at most 2 GiB). With it, \
        initializers of at least --size-threshold bytes go to OUTPUT.data beside the output. \
        --opset N converts the standard operator set to opset N: upward from any opset 7 or later, \
        every node (subgraphs and model-local functions included) is rewritten so that it computes \
        exactly what it did, or the command exits 69 naming the node; downward only when no \
        node's operator changed between the two opsets. docs/convert.md lists every adapter.
        """)

    @Argument(help: "The ONNX model to read.")
    var input: String

    @Argument(help: "Where to write the model.")
    var output: String

    @Flag(help: "Store large initializers in an external data file beside the output.")
    var externalData = false

    @Option(help: "With --external-data: tensors of at least this many bytes go to the data file.")
    var sizeThreshold: Int?

    @Option(help: "With --external-data: the data file's name (default: OUTPUT's file name + .data).")
    var dataLocation: String?

    @Option(help: "Convert the standard operator set (domain ai.onnx) to this opset (\(ConvertOpset.supportedOpsets.lowerBound)...\(ConvertOpset.supportedOpsets.upperBound)).")
    var opset: Int64?

    @Flag(help: "Replace the output (and its data file) if it exists.")
    var force = false

    @Flag(help: "Print a machine-readable result on stdout.")
    var json = false

    @OptionGroup var memory: MemoryOptions

    func validate() throws {
      if let t = sizeThreshold {
        if !externalData { throw ValidationError("--size-threshold needs --external-data") }
        if t < 0 { throw ValidationError("--size-threshold must be 0 or more, not \(t)") }
      }
      if dataLocation != nil && !externalData { throw ValidationError("--data-location needs --external-data") }
      if let n = opset, !ConvertOpset.supportedOpsets.contains(n) {
        throw ValidationError("--opset must be in \(ConvertOpset.supportedOpsets.lowerBound)...\(ConvertOpset.supportedOpsets.upperBound), not \(n)")
      }
    }

    func run() throws {
      let options = WriteOptions(
        force: force,
        externalData: externalData ? ExternalDataOptions(location: dataLocation, sizeThreshold: sizeThreshold ?? 1024) : nil)
      // Refuse a bad output before reading anything; the input identity is checked again below.
      try ModelWriter.checkOutput(output, options: options, inputs: FileIdentity(path: input).map { [$0] } ?? [])
      let loaded = try ModelReader.read(input)
      var model = loaded.model
      var conversion: PassResult.Change?
      if let opset {
        let results = try PassManager([ConvertOpset(target: opset)]).run(&model, file: input)
        conversion = results.first?.changes.first
      }
      let result = try ModelWriter.write(model, to: output, options: options, inputs: loaded.inputFiles)
      if json {
        var text = "{\"dataBytes\": \(result.dataBytes), \"externalTensors\": \(result.externalTensors), \"modelBytes\": \(result.modelBytes), \"output\": \"\(jsonEscaped(output))\"}\n"
        if let conversion, let opset {
          let from = Int(conversion.values?["from"] ?? Double(opset)), rewritten = Int(conversion.values?["rewritten"] ?? 0)
          text = text.replacingOccurrences(
            of: "\"output\"", with: "\"opset\": {\"from\": \(from), \"rewrittenNodes\": \(rewritten), \"to\": \(opset)}, \"output\"")
        }
        if let dataPath = result.dataPath {
          text = text.replacingOccurrences(of: "\"dataBytes\"", with: "\"dataFile\": \"\(jsonEscaped(dataPath))\", \"dataBytes\"")
        }
        FileHandle.standardOutput.write(text)
      } else {
        var message = "wrote \(output) (\(result.modelBytes) bytes"
        if let conversion { message += "; \(conversion.detail)" }
        message += ")"
        if let dataPath = result.dataPath {
          message += " and \(dataPath) (\(result.externalTensors) tensors, \(result.dataBytes) bytes)"
        }
        FileHandle.standardError.write(message + "\n")
      }
    }
  }
}

func jsonEscaped(_ s: String) -> String {
  var out = ""
  for u in s.unicodeScalars {
    switch u {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    default:
      if u.value < 0x20 { out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16) }
      else { out.unicodeScalars.append(u) }
    }
  }
  return out
}
