import ArgumentParser
import Compression
import Runtime

extension Compressor {
  struct Ops: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "List the operators compressor's own runtime executes, by domain, with their opsets.",
      discussion: """
        Each operator is listed with the range of its domain's opsets the runtime supports \
        (ai.onnx: from the opset that introduced it to the last that has it; com.microsoft: \
        ONNX Runtime's contrib operators, version 1). "grad" marks the operators the training \
        engine differentiates (distill).

        --json prints the operator names as a JSON array, default-domain names bare and others \
        as DOMAIN.NAME (stable: scripts read it); --json --detailed prints one object per \
        operator: {"differentiable", "domain", "firstOpset", "lastOpset", "op"}.
        """)

    @Flag(help: "Print a JSON array on stdout.")
    var json = false

    @Flag(help: "With --json: an object per operator (domain, opsets, differentiable) instead of names.")
    var detailed = false

    func validate() throws {
      if detailed && !json { throw ValidationError("--detailed goes with --json") }
    }

    func run() throws {
      let ops = Kernels.operators
      let differentiable = Gradients.differentiableOperators
      func isDifferentiable(_ o: Kernels.Operator) -> Bool { o.domain == "ai.onnx" && differentiable.contains(o.opType) }
      if json && detailed {
        let rows = ops.map { o in
          "{\"differentiable\": \(isDifferentiable(o)), \"domain\": \"\(o.domain)\", \"firstOpset\": \(o.firstOpset), "
            + "\"lastOpset\": \(o.lastOpset), \"op\": \"\(o.opType)\"}"
        }
        FileHandle.standardOutput.write("[" + rows.joined(separator: ",\n ") + "]\n")
      } else if json {
        FileHandle.standardOutput.write("[" + Kernels.supportedOps.map { "\"\($0)\"" }.joined(separator: ", ") + "]\n")
      } else {
        var lines = [String]()
        for domain in ["ai.onnx", "com.microsoft", "ai.onnx.preview.training"] {
          let members = ops.filter { $0.domain == domain }
          guard !members.isEmpty else { continue }
          let grads = members.filter(isDifferentiable).count
          lines.append("\(domain): \(members.count) operators" + (grads > 0 ? ", \(grads) differentiable (grad)" : ""))
          let width = members.map(\.opType.count).max() ?? 0
          for o in members {
            let name = o.opType.padding(toLength: width, withPad: " ", startingAt: 0)
            let range = o.firstOpset == o.lastOpset ? "\(o.firstOpset)" : "\(o.firstOpset)-\(o.lastOpset)"
            lines.append("  \(name)  \(range.padding(toLength: 6, withPad: " ", startingAt: 0))" + (isDifferentiable(o) ? "grad" : "")
              .trimmingTrailingSpaces)
          }
        }
        FileHandle.standardOutput.write(lines.map(\.trimmingTrailingSpaces).joined(separator: "\n") + "\n")
      }
    }
  }
}

private extension String {
  var trimmingTrailingSpaces: String {
    var s = self
    while s.last == " " { s.removeLast() }
    return s
  }
}
