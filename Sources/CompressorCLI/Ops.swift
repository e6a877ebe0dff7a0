import ArgumentParser
import Runtime

extension Compressor {
  struct Ops: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "List the operators compressor's own runtime executes (domain ai.onnx).")

    @Flag(help: "Print a JSON array on stdout.")
    var json = false

    func run() throws {
      let ops = Kernels.supportedOps
      if json {
        FileHandle.standardOutput.write("[" + ops.map { "\"\($0)\"" }.joined(separator: ", ") + "]\n")
      } else {
        FileHandle.standardOutput.write(ops.joined(separator: "\n") + "\n")
      }
    }
  }
}
